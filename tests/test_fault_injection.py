"""Fault injection: a console script SIGKILLed at a random (seeded) point inside its work, then rerun, gives the
outputs of an uninterrupted run and leaves no temporary file. ``pytest -k fault`` runs them.

Each stage is run three times as a user would run it (console scripts, fresh processes, one CPU thread so the
outputs are bit-comparable): uninterrupted (the reference, whose work window is measured: from a start signal
— a log line or file the stage writes once its real work begins — to its completion signal), killed after a
delay drawn uniformly inside that window, then rerun. A kill that lands after the completion signal (timing
noise) does not count: the outputs are reset and the kill redrawn inside a shorter window.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, synth_clip, write_manifest

pytestmark = pytest.mark.slow  # each stage starts several fresh interpreters (≈10 s each on 2 shared cores)

POLL_SECONDS = 0.002
TRIES = 6


def cli_env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", LOGLEVEL="INFO",
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_MININTERVAL="0")


def log_has(log: Path, pattern: str) -> Callable[[], bool]:
    regex = re.compile(pattern)
    return lambda: log.exists() and bool(regex.search(log.read_text(errors="replace")))


def wait_for(proc: subprocess.Popen, signal_: Callable[[], bool]) -> bool:
    """Poll until ``signal_()`` or the process ends; whether the signal came."""
    while not signal_():
        if proc.poll() is not None:
            return signal_()
        time.sleep(POLL_SECONDS)
    return True


def run_reference(cmd: list, log: Path, started: Callable[[], bool], done: Callable[[], bool]) -> float:
    """Run ``cmd`` uninterrupted; returns its work window in seconds (start signal → done signal)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, env=cli_env())
        assert wait_for(proc, started), log.read_text()[-3000:]
        start = time.perf_counter()
        while not done() and proc.poll() is None:
            time.sleep(POLL_SECONDS)
        window = time.perf_counter() - start
        assert proc.wait() == 0 and done(), log.read_text()[-3000:]
    return window


def kill_inside(cmd: list, log: Path, started: Callable[[], bool], done: Callable[[], bool], window: float,
                rng: np.random.Generator, reset: Callable[[], None]) -> float:
    """SIGKILL ``cmd`` after a random delay inside its work window; retried until the kill lands before the done
    signal. Returns the delay (s) after the start signal."""
    for _ in range(TRIES):
        delay = float(rng.uniform(0, window))
        with open(log, "w") as out:
            proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, env=cli_env())
            assert wait_for(proc, started), log.read_text()[-3000:]
            deadline = time.perf_counter() + delay
            while time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(POLL_SECONDS)
            proc.send_signal(signal.SIGKILL)
            code = proc.wait()
        if code == -signal.SIGKILL and not done():
            print(f"{cmd[0]} {cmd[1]}: killed {delay:.3f} s into a {window:.3f}-s work window")  # shown with -s
            return delay
        reset()  # finished before the kill: start over with a shorter window
        window /= 2
    pytest.fail(f"no SIGKILL landed inside {' '.join(map(str, cmd))} in {TRIES} tries")


def rerun(cmd: list, log: Path) -> None:
    with open(log, "w") as out:
        code = subprocess.run(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, env=cli_env()).returncode
    assert code == 0, log.read_text()[-3000:]


def temporaries(*folders: Path) -> list:
    """Every temporary file or folder (``.NAME.tmp-…``) under ``folders``."""
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if ".tmp-" in p.name]


def same_content(a: Path, b: Path) -> bool:
    """Equal files; k-means models compared by centroids and metadata (safetensors orders metadata by hash)."""
    if a.suffix == ".safetensors":
        from music_ssl.labels import KMeansModel

        x, y = KMeansModel.load(a), KMeansModel.load(b)
        return np.array_equal(x.centroids, y.centroids) and x.metadata == y.metadata
    return a.read_bytes() == b.read_bytes()


def same_files(a: Path, b: Path, names) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture
def corpus(tmp_path):
    """80 synthetic clips of 10 s (13 minutes, 80k MFCC frames) with train.tsv in ``tmp_path/data``."""
    audio, data = tmp_path / "audio", tmp_path / "data"
    data.mkdir()
    paths = []
    for i in range(80):
        path = audio / f"clip{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth_clip(10.0, seed=i), SAMPLE_RATE)
        paths.append(path)
    write_manifest(data / "train.tsv", audio, paths)
    return data


def test_fault_kmeans_features_fit_apply_killed_then_rerun(corpus, tmp_path):
    rng = np.random.default_rng(12)
    logs = tmp_path / "logs"
    logs.mkdir()

    def stages(root: Path) -> dict:
        """(command, start signal, done signal, outputs) of each stage writing under ``root``."""
        feat, km, lab = root / "feat", root / "km.safetensors", root / "lab"
        log = logs / f"{root.name}.log"
        return {
            "features": (["music-ssl-kmeans", "features", corpus, "train", 1, 0, feat, "--device", "cpu"],
                         log_has(log, r"rows 0-80 of 80"), lambda: (feat / "train_0_1.npy.done").exists(),
                         [feat / "train_0_1.npy", feat / "train_0_1.len"]),
            "fit": (["music-ssl-kmeans", "fit", feat, "train", 1, km, "--n-clusters", 64, "--tol", 0, "--max-iter", 60,
                     "--device", "cpu"], log_has(log, r"sampled \d+ of \d+ train frames"), km.exists, [km]),
            "apply": (["music-ssl-kmeans", "apply", feat, "train", km, 1, 0, lab, "--device", "cpu"],
                      log_has(log, r"train_0_1: "), lambda: (lab / "train_0_1.km.done").exists(),
                      [lab / "train_0_1.km", lab / "dict.km.txt"]),
        }

    reference, faulty = stages(tmp_path / "ref"), stages(tmp_path / "kill")
    for name in ("features", "fit", "apply"):
        cmd, started, done, outputs = reference[name]
        window = run_reference(cmd, logs / "ref.log", started, done)
        cmd, started, done, outputs = faulty[name]

        def reset(outputs=outputs):
            for path in outputs:
                path.unlink(missing_ok=True)
                Path(str(path) + ".done").unlink(missing_ok=True)

        if name != "features":  # fit and apply start from the reference's complete inputs
            shutil.rmtree(tmp_path / "kill", ignore_errors=True)
            shutil.copytree(tmp_path / "ref", tmp_path / "kill")
            reset()
        delay = kill_inside(cmd, logs / "kill.log", started, done, window, rng, reset)
        rerun(cmd, logs / "kill.log")
        for ref_path, path in zip(reference[name][3], outputs):
            assert same_content(path, ref_path), f"{name}: {path.name} differs (killed {delay:.3f} s into the work)"
        assert not temporaries(tmp_path / "kill"), (name, temporaries(tmp_path / "kill"))


def test_fault_export_killed_then_rerun_keeps_the_users_files(tmp_path):
    pytest.importorskip("transformers")
    from test_export_hf import stock_hubert

    ckpt = stock_hubert(tmp_path)
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "export.log"
    started = log_has(log, r"-> HubertModel, dropped")
    window = run_reference(["music-ssl-export-hf", ckpt, ref], log, started, (ref / "export_info.json").exists)
    out.mkdir()
    (out / "notes.txt").write_text("the user's notes")
    cmd = ["music-ssl-export-hf", ckpt, out, "--overwrite"]
    done = (out / "export_info.json").exists
    kill_inside(cmd, log, started, done, window, np.random.default_rng(5),
                lambda: (out / "export_info.json").unlink(missing_ok=True))
    rerun(cmd, log)
    same_files(ref, out, ["config.json", "model.safetensors", "preprocessor_config.json", "export_info.json"])
    assert (out / "notes.txt").read_text() == "the user's notes"
    assert not temporaries(tmp_path), temporaries(tmp_path)


def test_fault_probe_feature_extraction_killed_then_rerun(tmp_path):
    from test_export_hf import stock_hubert

    ckpt = stock_hubert(tmp_path)
    clips = []
    for i in range(16):
        clips.append(tmp_path / "audio" / f"c{i:02d}.wav")
        clips[-1].parent.mkdir(exist_ok=True)
        sf.write(clips[-1], synth_clip(4.0, seed=i), SAMPLE_RATE)
    splits = ["train"] * 8 + ["valid"] * 4 + ["test"] * 4
    (tmp_path / "task.csv").write_text("path,label,split\n" + "".join(
        f"{clip},{i % 2},{split}\n" for i, (clip, split) in enumerate(zip(clips, splits))))

    def command(name: str) -> list:
        return ["music-ssl-probe", "--config-name", "demo", f"data_root={tmp_path}", f"out_dir={tmp_path / name}",
                f"cache_dir={tmp_path / ('cache_' + name)}", f"tasks=[{{name:csv,path:{tmp_path / 'task.csv'},"
                f"type:multiclass}}]", "protocol.seeds=[0]", "protocol.train.max_epochs=2", "device=cpu",
                "progress=false", "source.kind=checkpoint", f"source.path={ckpt}"]

    def cache_entries(name: str) -> list:
        return sorted((tmp_path / f"cache_{name}").rglob("*.npz"))

    log = tmp_path / "probe.log"
    started = log_has(log, r"extracting checkpoint features of 16 files")
    window = run_reference(command("ref"), log, started, lambda: bool(cache_entries("ref")))
    kill_inside(command("kill"), log, started, lambda: bool(cache_entries("kill")), window,
                np.random.default_rng(7), lambda: shutil.rmtree(tmp_path / "cache_kill", ignore_errors=True))
    rerun(command("kill"), log)
    (ref_entry,), (entry,) = cache_entries("ref"), cache_entries("kill")
    assert entry.name == ref_entry.name
    with np.load(ref_entry) as a, np.load(entry) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    rows = [json.loads((tmp_path / name / "results.json").read_text())["selected"] for name in ("ref", "kill")]
    assert rows[0] and rows[0] == rows[1]
    assert not temporaries(tmp_path), temporaries(tmp_path)
