"""Probe training and runs: batched == sequential, a probe's numbers independent of its stack, full runs on
synthetic CSV tasks (a feature carrying the label beats one that does not), reports, the CLI and its errors."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, SAMPLE_RATE, synth_clip, write_clips

from music_ssl.probe import run_probe
from music_ssl.probe.data import ProbeData, SplitArrays
from music_ssl.probe.errors import MissingDataError, ProbeConfigError
from music_ssl.probe.protocols import WEIGHTED_SUM, ProbeConfig, TrainSettings, expand, get_protocol
from music_ssl.probe.task_types import TASK_TYPES
from music_ssl.probe.datasets.dataset import ProbeDataset
from music_ssl.probe.trainer import train_batched, train_sequential

SPLIT_SIZES = {"train": 40, "valid": 16, "test": 16}


@pytest.fixture(autouse=True)
def one_thread():
    """Probe tensors here are tiny: one thread is fastest, and immune to oversubscription on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_data(kind: str, seed: int = 0, num_states: int = 3, dim: int = 8, outputs: int = 3) -> ProbeData:
    """A tiny task whose label is visible in hidden state 1 only: x (S, N, C) per split."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in SPLIT_SIZES.items():
        x = rng.standard_normal((num_states, n, dim)).astype(np.float32)
        if kind == "multiclass":
            y = rng.integers(0, outputs, n)
            x[1, :, :outputs] += 2 * np.eye(outputs)[y]
        elif kind == "multilabel":
            y = (rng.random((n, outputs)) < 0.5).astype(np.float32)
            x[1, :, :outputs] += 2 * y
        else:
            y = rng.standard_normal((n, outputs)).astype(np.float32)
            x[1, :, :outputs] += y
        splits[split] = SplitArrays(torch.from_numpy(x), torch.from_numpy(y))
    task = ProbeDataset("synthetic", kind, [], classes=[str(k) for k in range(outputs)],
                    output_names=[f"y{k}" for k in range(outputs)])
    return ProbeData(task, TASK_TYPES[kind], splits, outputs, None, [f"s{i}" for i in range(num_states)])


def small_grid() -> list:
    """Linear and MLP, standardised or not, two batch sizes, dropout and L2 on and off, two seeds."""
    grid = [ProbeConfig(hidden=h, standardize=s, batch_size=b, lr=lr, dropout=d, l2=l2)
            for h, s, b, lr, d, l2 in [(0, True, 8, 1e-2, 0.0, 0.0), (16, False, 16, 1e-2, 0.25, 1e-3),
                                       (16, True, 8, 3e-3, 0.5, 0.0), (0, False, 16, 3e-2, 0.75, 1e-3)]]
    return expand(grid, [0, 1, WEIGHTED_SUM], [0, 1])


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "regression"])
def test_batched_equals_sequential(kind):
    data = synthetic_data(kind)
    configs = small_grid()
    settings = TrainSettings(eval_every=3, patience=4, max_epochs=8)
    batched = train_batched(configs, data, settings, progress=False)
    sequential = train_sequential(configs, data, settings, progress=False)
    np.testing.assert_array_equal(batched.steps, sequential.steps)
    np.testing.assert_array_equal(batched.best_step, sequential.best_step)
    np.testing.assert_allclose(batched.best_valid, sequential.best_valid, atol=1e-5)
    for split in ("valid", "test"):
        np.testing.assert_allclose(batched.logits[split], sequential.logits[split], atol=1e-4)
    assert len(set(batched.steps.tolist())) > 1  # early stopping really stopped probes at different steps
    best = {c.layer: [] for c in configs}
    for p, c in enumerate(configs):
        best[c.layer].append(batched.best_valid[p])
    assert max(best[1]) > max(best[0])  # the informative state wins


def test_a_probe_trains_the_same_alone_or_in_any_stack():
    data = synthetic_data("multiclass", seed=1)
    configs = small_grid()
    settings = TrainSettings(eval_every=2, patience=None, max_epochs=3)
    everyone = train_batched(configs, data, settings, progress=False)
    picked = [5, 17, 3]
    alone = train_batched([configs[p] for p in picked], data, settings, progress=False)
    np.testing.assert_allclose(alone.logits["test"], everyone.logits["test"][picked], atol=1e-5)
    other_seed = train_batched([configs[p] for p in (4, 16, 2)], data, settings, progress=False)  # seed 0 twins
    assert not np.allclose(other_seed.logits["test"], alone.logits["test"], atol=1e-3)


def test_jukemir_grid_has_216_configs_and_presets_differ():
    grid = get_protocol("jukemir").grid
    assert len(grid) == len(set(grid)) == 216
    assert {c.hidden for c in grid} == {0, 512} and {c.batch_size for c in grid} == {64, 256}
    assert {c.lr for c in grid} == {1e-5, 1e-4, 1e-3} and {c.dropout for c in grid} == {0.25, 0.5, 0.75}
    assert {c.l2 for c in grid} == {0.0, 1e-4, 1e-3} and {c.standardize for c in grid} == {False, True}
    marble, mulap = get_protocol("marble"), get_protocol("mulap")
    assert {c.hidden for c in marble.grid + mulap.grid} == {512} and len(marble.grid) == 6  # probe_m2v.sh's rates
    assert mulap.seeds == [0, 1, 2] and mulap.settings.max_epochs == 200 and marble.layers == "all+sum"
    with pytest.raises(ProbeConfigError, match="unknown protocol 'hear'"):
        get_protocol("hear")


# ---------------------------------------------------------------- full runs on synthetic CSV tasks

def write_task(root, labels: list, name: str = "task") -> str:
    """Audio clips (0.2 s) and ``<name>.csv`` with a 60/20/20 split; returns the CSV path."""
    paths = write_clips(root / "audio", len(labels), 0.2)
    cycle = ["train", "train", "train", "valid", "test"]
    rows = [f"audio/{p.name},{label},{cycle[i % 5]}" for i, (p, label) in enumerate(zip(paths, labels))]
    (root / f"{name}.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return str(root / f"{name}.csv")


def write_jukebox(folder, labels: list, informative: bool, dim: int = 16, seed: int = 0):
    """JukeMIR-layout features: noise, plus a label code when ``informative``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, label in enumerate(labels):
        vector = rng.standard_normal(dim).astype(np.float32)
        if informative:
            vector[int(label)] += 3.0
        np.save(folder / f"clip{i:03d}.npy", vector)
    return folder


def jukebox_run(tmp_path, csv_path, features, out: str, **extra) -> dict:
    cfg = {"name": out, "source": {"kind": "jukebox", "path": str(features), "dim": 16},
           "tasks": [{"name": "csv", "path": csv_path, "type": "multiclass"}],
           "protocol": {"name": "marble", "seeds": [0, 1], "train": {"max_epochs": 40, "patience": 5}},
           "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / out), "progress": False, "device": "cpu",
           **extra}
    return run_probe(cfg)


def test_feature_that_carries_the_label_beats_one_that_does_not(tmp_path):
    labels = [i % 4 for i in range(60)]
    csv_path = write_task(tmp_path, labels)
    good = jukebox_run(tmp_path, csv_path, write_jukebox(tmp_path / "good", labels, True), "good",
                       wandb={"project": "probe-test"})
    noise = jukebox_run(tmp_path, csv_path, write_jukebox(tmp_path / "noise", labels, False), "noise")
    good_row, noise_row = good["selected"][0], noise["selected"][0]
    assert good_row["test_mean"] > noise_row["test_mean"] + 0.3 and good_row["test_mean"] > 0.7
    assert good_row["seeds"] == 2 and good_row["test_ci95"] >= 0 and good_row["metric"] == "accuracy"
    # the report: Markdown + CSV + JSON (config hash, versions, split checksums) + per-layer plot
    out = tmp_path / "good"
    assert {"results.md", "results.csv", "probes.csv", "results.json", "layers.png"} <= {p.name for p in out.iterdir()}
    assert "| task | jukebox36 ★ | accuracy |" in (out / "results.md").read_text()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["run"] == "good" and rows[0]["source"] == "jukebox" and float(rows[0]["test_mean"]) > 0.7
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["config_hash"]) == 64 and summary["versions"]["mir_eval"] and summary["versions"]["torch"]
    assert set(summary["tasks"]["task"]["split_checksums"]) == {"train", "valid", "test"}
    assert summary["tasks"]["task"]["split_checksums"] == noise["tasks"]["task"]["split_checksums"]
    assert summary["config_hash"] != noise["config_hash"]
    assert len(summary["probes"]) == 12  # 6 learning rates x 2 seeds
    assert {(p["layer"], p["layer_index"]) for p in summary["probes"]} == {("jukebox36", 0)}  # name and index both kept
    assert list((out / "wandb").glob("offline-run-*"))  # logged to wandb (offline in tests)


def test_feature_cache_is_hit_by_a_second_run(tmp_path):
    labels = [i % 2 for i in range(20)]
    csv_path = write_task(tmp_path, labels)
    features = write_jukebox(tmp_path / "features", labels, True)
    first = jukebox_run(tmp_path, csv_path, features, "first")
    second = jukebox_run(tmp_path, csv_path, features, "second")
    assert first["tasks"]["task"]["feature_cache"] == "miss" and second["tasks"]["task"]["feature_cache"] == "hit"
    np.save(features / "clip000.npy", np.zeros(16, np.float32))  # new features: new key
    assert jukebox_run(tmp_path, csv_path, features, "third")["tasks"]["task"]["feature_cache"] == "miss"


def click_track(seconds: float, period: float, seed: int) -> np.ndarray:
    """Music-like audio with a loud click every ``period`` seconds from 0.25 s."""
    audio = 0.3 * synth_clip(seconds, seed)
    for beat in np.arange(0.25, seconds, period):
        start = int(beat * SAMPLE_RATE)
        audio[start:start + 160] += 0.6 * np.hanning(160).astype(np.float32)
    return np.clip(audio, -1, 1)


def write_demo_like_corpus(root, n: int = 20, seconds: float = 4.0) -> None:
    """The demo corpus layout: key.csv, instrument.csv, pitch.csv, beat.csv (+ beats/*.beats) with splits."""
    keys, families = ["C major", "A minor", "G major", "E minor"], ["piano", "organ"]
    tables = {name: ["path,label,split"] for name in ("key", "instrument", "pitch", "beat")}
    (root / "beats").mkdir(parents=True)
    (root / "audio").mkdir()
    for i in range(n):
        split = ["train", "train", "train", "valid", "test"][i % 5]
        period = 0.5 if i % 2 else 0.4
        sf.write(root / "audio" / f"piece_{i}.wav", click_track(seconds, period, i), SAMPLE_RATE)
        (root / "beats" / f"piece_{i}.beats").write_text(
            "".join(f"{t:.3f}\t{k % 4 + 1}\n" for k, t in enumerate(np.arange(0.25, seconds, period))))
        tables["key"].append(f"audio/piece_{i}.wav,{keys[i % 4]},{split}")
        tables["instrument"].append(f"audio/piece_{i}.wav,{families[i % 2]},{split}")
        tables["beat"].append(f"audio/piece_{i}.wav,beats/piece_{i}.beats,{split}")
        tables["pitch"].append(f"audio/piece_{i}.wav,{60 + i % 3},{split}")
    for name, lines in tables.items():
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")


def test_key_and_beat_csv_tasks_end_to_end_with_a_baseline(tmp_path):
    write_demo_like_corpus(tmp_path / "corpus")
    corpus = tmp_path / "corpus"
    summary = run_probe({
        "source": {"kind": "mfcc"}, "device": "cpu", "progress": False, "out_dir": str(tmp_path / "out"),
        "cache_dir": None, "protocol": {"name": "mulap", "seeds": [0, 1], "train": {"max_epochs": 10}},
        "tasks": [{"name": "csv", "path": str(corpus / "key.csv"), "type": "key"},
                  {"name": "csv", "path": str(corpus / "beat.csv"), "type": "beat"}]})
    rows = {r["task"]: r for r in summary["selected"]}
    assert rows["key"]["metric"] == "score" and rows["key"]["strategy"] in ("vote", "max", "mean_logit", "mean_prob")
    assert 0 <= rows["key"]["test_mean"] <= 1 and "test_clip_score" in rows["key"]["metrics"]
    assert rows["beat"]["metric"] == "f_measure" and 0 < rows["beat"]["test_mean"] <= 1
    assert summary["tasks"]["beat"]["pooling"] == "frames" and summary["tasks"]["beat"]["rows"]["train"] > 1000


@pytest.mark.slow  # trains the session's tiny checkpoints when no other test did
def test_demo_config_on_a_checkpoint_and_its_random_init(tiny_checkpoints, tmp_path):
    """The exact command line the demo uses, for a checkpoint and for its random initialisation."""
    from music_ssl.cli.probe import main

    write_demo_like_corpus(tmp_path / "corpus", n=15, seconds=2.0)
    corpus = tmp_path / "corpus"
    tasks = ",".join(f"{{name:csv,path:'{corpus / (name + '.csv')}',type:{kind}}}"
                     for name, kind in (("key", "key"), ("instrument", "multiclass"), ("pitch", "multiclass"),
                                        ("beat", "beat")))
    results = {}
    for name, extra in (("trained", []), ("random", ["source.random_init=true"])):
        summary = main(str(REPO / "config" / "probe"), "demo", [
            f"name={name}", f"tasks=[{tasks}]", f"out_dir={tmp_path / name}", f"cache_dir={tmp_path / 'cache'}",
            "protocol.seeds=[0,1]", "protocol.train.max_epochs=5", "device=cpu", "progress=false",
            "source.kind=checkpoint", f"source.path={tiny_checkpoints['music2vec']}", *extra])
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
        assert summary["name"] == name
    for name, summary in results.items():
        assert summary["source"]["random_init"] == (name == "random")
        assert {r["task"] for r in summary["selected"]} == {"key", "instrument", "pitch", "beat"}
        assert {r["layer"] for r in summary["selected"]} == {"input", "layer1", "layer2", "layer3", "layer4",
                                                             "weighted_sum"}
        assert sum(r["best_on_valid"] for r in summary["selected"]) == 4
        assert all(r["config"].endswith("std=1") for r in summary["selected"])  # demo.yaml z-scores features
    assert results["trained"]["source"]["sha256"] == results["random"]["source"]["sha256"]
    # pitch reuses instrument's features (same files, same pooling); the random init reuses none of the trained
    hits = {name: [info["feature_cache"] for info in s["tasks"].values()] for name, s in results.items()}
    assert hits["trained"] == hits["random"] == ["miss", "miss", "hit", "miss"]


def test_bad_override_value_says_why_in_one_line(monkeypatch, capsys):
    from test_bad_input_labels import cli_error

    from music_ssl.cli.probe import cli

    line = cli_error(monkeypatch, capsys, cli, "music-ssl-probe", "--config-name", "demo", "data_root=x",
                     "protocol.standardize=maybe")
    assert line == ("error: Error merging override protocol.standardize=maybe: Value 'maybe' is not a valid bool "
                    "(type str)")


def test_cli_bad_inputs_fail_with_one_clear_line(tmp_path):
    from hydra.errors import HydraException

    from music_ssl.cli.probe import main

    config_dir = str(REPO / "config" / "probe")
    csv_path = write_task(tmp_path, [i % 2 for i in range(10)])
    cases = [
        (["source.bogus=1"], HydraException, "Could not override 'source.bogus'"),
        (["source.kind=jukebox", f"source.path={tmp_path / 'none'}", f"tasks=[{{name:csv,path:'{csv_path}'}}]"],
         MissingDataError, "Jukebox feature folder not found"),
    ]
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            main(config_dir, "demo", overrides)
    with pytest.raises(ProbeConfigError, match="Missing mandatory value: data_root; set it on the command line"):
        main(config_dir, "music2vec", ["source.path=x.pt"])
    with pytest.raises(ProbeConfigError, match=r"nope\.yaml: probe config not found; available: \[.*'demo'"):
        main(config_dir, "nope")
    proc = subprocess.run([sys.executable, "-m", "music_ssl.cli.probe", "--config-dir", config_dir, "--config-name", "demo",
                           "tasks=[{name:gtzan,root:/x}]"], cwd=REPO, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert errors == ["error: unknown task 'gtzan'; known tasks: csv, emomusic, giantsteps_key, gtzan_beat, "
                      "gtzan_genre, mtg_genre, mtg_instrument, mtg_moodtheme, mtg_top50, mtt_top50, nsynth_instrument, "
                      "nsynth_pitch, vocalset_singer, vocalset_technique."]


def test_cli_sweep_with_a_bad_override_fails_with_one_clear_line(tmp_path):
    """``music-ssl-probe -m``: hydra composes the sweep's configs; a bad override ends in one ``error:`` line (not
    hydra's multi-line report) before any job starts."""
    proc = subprocess.run([sys.executable, "-m", "music_ssl.cli.probe", "-m", "--config-name", "demo",
                           f"data_root={tmp_path}", "protocol.nme=x", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  warnings.warn")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert lines == ["error: Could not override 'protocol.nme'. To append to your config use +protocol.nme=x: "
                     "Key 'nme' not in 'ProtocolConfig'"]
    assert not (tmp_path / "sweep").exists()
