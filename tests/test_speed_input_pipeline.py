"""The input-pipeline benchmark's quick mode runs end to end and reports both arms and the memory growth.

No timing is asserted here: the speed targets live in benchmarks/input_pipeline.py, which prints them; this test
only holds that the benchmark works (real fairseq tasks and iterators, a forked worker, both datasets) on CI.
"""
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

WORKERS = (0, 1)  # the quick mode's DataLoader workers counts
TASKS = ("music2vec", "music_hubert")


def number(text: str) -> float:
    return float(text.rstrip("x"))


def table(lines: list, first_column: str) -> list:
    """The rows of the markdown table whose header starts with ``first_column``, as {header: cell} dicts."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, (c.strip() for c in line.strip("|").split("|")))))
    return rows


@pytest.mark.slow
def test_quick_benchmark_prints_both_arms_and_the_memory_growth(tmp_path):
    env = dict(os.environ, LOGLEVEL="WARNING")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "input_pipeline.py"), "--quick",
                           "--cache", str(tmp_path / "cache")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()

    rows = table(lines, "format")
    assert {(r["format"], r["task"]) for r in rows} == {(f, t) for f in ("WAV", "FLAC") for t in TASKS}
    for row in rows:
        for n in WORKERS:
            for column in (f"w{n} ours", f"w{n} stock", f"w{n} ours/stock"):
                value = number(row[column])
                assert math.isfinite(value) and value > 0, (column, row)
        for column in ("cores/GPU ours", "cores/GPU stock"):
            assert math.isfinite(number(row[column])) and number(row[column]) > 0, (column, row)

    memory = table(lines, "task")
    assert {(r["task"], r["arm"]) for r in memory} == {(t, a) for t in TASKS for a in ("ours", "stock")}
    for row in memory:
        for column in ("dataset MB", "worker RSS start", "RSS end", "USS start", "USS end"):
            assert number(row[column]) > 0, (column, row)
        assert re.fullmatch(r"[+-]\d+\.\d", row["USS growth"]), row
    for task in TASKS:
        assert any(line.startswith(f"target ours:{task} <= 200 MB") for line in lines), task
