"""The device script's CPU rehearsal: every arm runs at tiny size and the JSON + markdown table come out."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_device_script_smoke_runs_every_arm_and_writes_its_table(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "device_run.sh"), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "device_run.json").read_text())
    assert results["env"]["smoke"] is True
    for section in ("train", "kmeans", "probe", "masks"):
        assert results[section]["errors"] == [] and results[section]["skipped"] == [], results[section]
        assert results[section]["rows"], section
    train = results["train"]["rows"]
    assert {(r["family"], r["arm"], r["clips"]) for r in train} == {
        (f, a, c) for f in ("hubert", "data2vec") for a in ("stock", "ours") for c in ("2 s", "mixed")}
    assert all(r["audio_s_per_s"] > 0 for r in train) and sum("ours_over_stock" in r for r in train) == 4
    assert any("apply_speedup" in r and r.get("label_agreement") == 1.0 for r in results["kmeans"]["rows"])
    table = (tmp_path / "device_run.md").read_text()
    assert "## train" in table and "| hubert | ours |" in table and "FAILED" not in table


def test_device_script_without_fairseq_or_wheels_says_what_to_do(tmp_path):
    """A python that cannot import fairseq (no site-packages) and no .whl/: one clear line, exit status 1."""
    bare = tmp_path / "python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")  # isolated: no site-packages
    bare.chmod(0o755)
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "benchmarks" / "device_run.sh").write_text((REPO / "benchmarks" / "device_run.sh").read_text())
    env = dict(os.environ, PYTHON=str(bare), OUT=str(tmp_path / "out"))
    proc = subprocess.run(["bash", str(repo / "benchmarks" / "device_run.sh")], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: fairseq is not installed and .whl/ holds no wheels: run `make wheelhouse` here and carry .whl"]
