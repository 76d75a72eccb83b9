"""The demo pipeline at its smallest size: every stage's outputs exist and agree with each other, reruns reuse."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from music_ssl.checkpoint import FrozenEncoder
from music_ssl.data.label_alignment import check_label_alignment
from music_ssl.data.label_files import write_dictionary, write_sidecar
from music_ssl.demo.pipeline import DemoSettings, StageRunner, Stage, plan, run_demo
from music_ssl.demo.report import SOURCES, curve, learning_summary, majority_rate, read_training_log

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs FluidSynth (make env installs it)")

TASKS = ("key", "instrument", "note_instrument", "pitch", "beat")
SMALL = dict(n_pieces=12, n_notes=12, piece_seconds=4.0, n_clusters=8, label_layer=2, hubert_updates=4,
             music2vec_updates=4, probe_seeds=2, probe_epochs=4, device="cpu")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    settings = DemoSettings(out_dir=tmp_path_factory.mktemp("demo") / "out", **SMALL)
    report = run_demo(settings)
    return settings, report


@pytest.mark.slow
def test_every_stage_ran_and_the_report_lists_every_task_and_source(demo):
    settings, report = demo
    text = report.read_text()
    for _stage, title in SOURCES:
        assert title in text
    for task in TASKS:
        assert f"| {task} |" in text
    for words in ("## Target", "majority label", "masked ÷ majority", "EMA decay", "What we expect"):
        assert words in text
    for png in ("loss_curves.png", "learning.png", "layers.png"):
        assert (settings.out_dir / png).stat().st_size > 1000
    markers = sorted(p.stem for p in (settings.out_dir / ".stages").glob("*.json"))
    assert markers == sorted(stage.name for stage in plan(settings))


@pytest.mark.slow
def test_labels_match_the_manifest_at_their_rates(demo):
    settings, _ = demo
    labels = settings.out_dir / "labels"
    for folder, rate in ((f"mfcc39_k{settings.n_clusters}", 100), (f"layer{settings.label_layer}_k{settings.n_clusters}", 50)):
        for split in ("train", "valid"):
            alignment = check_label_alignment(settings.out_dir / "manifest" / f"{split}.tsv",
                                              labels / folder / f"{split}.km", rate, 16000)
            assert alignment.num_labels.min() > 0
        ids = {int(line.split()[0]) for line in (labels / folder / "dict.km.txt").read_text().splitlines()}
        assert ids == set(range(settings.n_clusters))


@pytest.mark.slow
def test_manifest_covers_the_training_audio_exactly(demo):
    settings, _ = demo
    audio = sorted((settings.out_dir / "corpus" / "audio" / "train").rglob("*.wav"))
    rows = []
    for split in ("train", "valid"):
        lines = (settings.out_dir / "manifest" / f"{split}.tsv").read_text().splitlines()
        root = lines[0]
        rows += [(Path(root, line.split("\t")[0]).resolve(), int(line.split("\t")[1])) for line in lines[1:]]
    assert sorted(p for p, _ in rows) == [p.resolve() for p in audio]
    assert all(n == sf.info(p).frames for p, n in rows)


@pytest.mark.slow
def test_checkpoints_load_and_give_every_hidden_state(demo):
    settings, _ = demo
    clip = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    for run in ("hubert_iter1", "hubert_iter2", "music2vec"):
        encoder = FrozenEncoder.from_checkpoint(settings.out_dir / "checkpoints" / run / "checkpoint_last.pt", "cpu")
        hidden, frames = encoder(clip[None])
        assert len(hidden) == encoder.num_layers + 1 and int(frames[0]) == 49


@pytest.mark.slow
def test_hubert_runs_took_the_label_rate_label_prep_recorded_and_carry_it(demo, tmp_path):
    """No task.label_rate was given: each run used the rate beside its labels, and its checkpoint carries it, so it
    loads where the label folder does not exist."""
    import torch

    from music_ssl.checkpoint import load_fairseq_model

    settings, _ = demo
    for run, rate in (("hubert_iter1", 100.0), ("hubert_iter2", 50.0)):
        state = torch.load(settings.out_dir / "checkpoints" / run / "checkpoint_last.pt", weights_only=True)
        assert state["cfg"]["task"]["label_rate"] == -1  # never typed
        assert state["task_state"]["label_rate"] == rate and state["cfg"]["model"]["label_rate"] == rate
        state["cfg"]["task"]["label_dir"] = str(tmp_path / "elsewhere")  # another machine: no labels
        torch.save(state, tmp_path / f"{run}.pt")
        model, _cfg = load_fairseq_model(tmp_path / f"{run}.pt")
        assert model.feat2tar_ratio == rate * 320 / 16000


@pytest.mark.slow
def test_results_have_a_row_per_task_and_source(demo):
    settings, _ = demo
    results = json.loads((settings.out_dir / "results.json").read_text())
    for stage, _title in SOURCES:
        assert sorted(results["selected"][stage]) == sorted(TASKS)
        for row in results["selected"][stage].values():
            assert np.isfinite(row["test_mean"])
    assert len(results["gains"]) == 2 * len(TASKS)
    hubert, m2v = results["pretraining"]["hubert_iter1"], results["pretraining"]["music2vec"]
    assert 0 <= hubert["valid_masked_acc"] <= 1 and 0 < hubert["majority_rate"] <= 1
    assert 0.99 <= m2v["ema_decay_first"] <= m2v["ema_decay_last"] <= 1


@pytest.mark.slow
def test_rerun_reuses_every_stage(demo):
    settings, report = demo
    before = report.stat().st_mtime_ns
    stages = plan(settings)
    runner = StageRunner(settings.out_dir, len(stages))
    for stage in stages:
        assert runner.run(stage).status == "reused", stage.name
    assert report.stat().st_mtime_ns == before


def test_changed_command_reruns_the_stage_and_its_dependents(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = Stage("a", "touch a", ["touch", out / "a"], [out / "a"])
    second = Stage("b", "touch b", ["touch", out / "b"], [out / "b"], upstream=("a",))
    runner = StageRunner(out, 2)
    assert [runner.run(s).status for s in (first, second)] == ["ran", "ran"]
    runner = StageRunner(out, 2)
    assert [runner.run(s).status for s in (first, second)] == ["reused", "reused"]
    changed = Stage("a", "touch a", ["touch", out / "a", out / "a2"], [out / "a"])
    runner = StageRunner(out, 2)
    assert [runner.run(s).status for s in (changed, second)] == ["ran", "ran"]


def test_edited_config_file_reruns_the_stage_and_its_dependents(tmp_path):
    out, config = tmp_path / "out", tmp_path / "tiny.yaml"
    out.mkdir()
    config.write_text("lr: 0.002\n")
    first = Stage("a", "touch a", ["touch", out / "a"], [out / "a"], configs=(config,))
    second = Stage("b", "touch b", ["touch", out / "b"], [out / "b"], upstream=("a",))

    def statuses():
        runner = StageRunner(out, 2)
        return [runner.run(s).status for s in (first, second)]

    assert statuses() == ["ran", "ran"]
    assert statuses() == ["reused", "reused"]
    config.write_text("lr: 0.0005\n")  # same command, other YAML contents
    assert statuses() == ["ran", "ran"]


def test_device_takes_cuda_n_and_every_string_goes_through_the_resolver(tmp_path, monkeypatch, capsys):
    """--device auto/cpu/cuda/cuda:N, checked by core.device.resolve_device before any stage (no stage runs here)."""
    from music_ssl.cli import demo as demo_cli

    assert demo_cli.build_parser().parse_args(["--device", "cuda:1"]).device == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with two CUDA devices
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    stages = {stage.name: stage for stage in plan(DemoSettings(out_dir=tmp_path, device="cuda:1"))}
    assert stages["mfcc_labels"].command[-2:] == ["--device", "cuda:1"] and "device=cuda:1" in stages["probe_mfcc"].command
    assert "common.cpu=false" in stages["hubert_iter1"].command  # fairseq trains on the one visible device
    assert stages["hubert_iter1"].env == stages["music2vec"].env == {"CUDA_VISIBLE_DEVICES": "1"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert DemoSettings(device="cuda:1").training_env() == {"CUDA_VISIBLE_DEVICES": "6"}
    assert DemoSettings(device="cuda").training_env() == DemoSettings(device="cpu").training_env() == {}
    for device, error in (("cuda:2", "error: device 'cuda:2': this machine has 2 CUDA device(s)"),
                          ("gpu", "error: device 'gpu': not a device; use auto (CUDA when present), cpu, cuda or cuda:N")):
        monkeypatch.setattr(sys, "argv", ["music-ssl-demo", "--out-dir", str(tmp_path / "out"), "--device", device])
        with pytest.raises(SystemExit) as exit_info:
            demo_cli.cli()
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 1 and err[-1].startswith(error), err
    assert not (tmp_path / "out").exists(), "refused before any stage"


def test_failing_stage_names_its_command_and_log_and_leaves_no_marker(tmp_path):
    from music_ssl.demo.pipeline import DemoError

    runner = StageRunner(tmp_path, 1)
    with pytest.raises(DemoError, match=r"stage broken failed .*false.*broken\.log"):
        runner.run(Stage("broken", "fails", ["false"], [tmp_path / "never"]))
    assert not (tmp_path / ".stages" / "broken.json").exists()


LOG = """\
[2026-12-02 04:52:59,354][train_inner][INFO] - {"epoch": 1, "loss": "6.284", "correct_m_0": "0.027", "num_updates": "10", "lr": "0.0008"}
[2026-12-02 04:53:00,001][valid][INFO] - {"epoch": 1, "valid_loss": "6.1", "valid_correct_m_0": "0.2", "valid_correct_u_0": "0.1", "valid_num_updates": "23", "valid_best_loss": "6.1"}
[2026-12-02 04:53:00,002][fairseq.trainer][INFO] - begin training epoch 2
[2026-12-02 04:53:01,000][train_inner][INFO] - {"epoch": 2, "loss": "5.9", "correct_m_0": "0.05", "num_updates": "40", "lr": "0.0007"}
[2026-12-02 04:53:02,000][valid][INFO] - {"epoch": 2, "valid_loss": "5.5", "valid_correct_m_0": "0.3", "valid_correct_u_0": "0.2", "valid_num_updates": "46", "valid_best_loss": "5.5"}
"""
M2V_LOG = """\
[2026-12-02 04:52:59,354][train_inner][INFO] - {"epoch": 1, "loss": "0.9", "ema_decay": "999.0", "target_var": "0.3", "pred_var": "0.02", "num_updates": "10"}
[2026-12-02 04:53:01,000][train_inner][INFO] - {"epoch": 2, "loss": "0.4", "ema_decay": "999.5", "target_var": "0.25", "pred_var": "0.1", "num_updates": "20"}
"""


def test_training_log_gives_loss_accuracy_and_ema_curves(tmp_path):
    (tmp_path / "h.log").write_text(LOG)
    (tmp_path / "m.log").write_text(M2V_LOG)
    hubert, m2v = read_training_log(tmp_path / "h.log"), read_training_log(tmp_path / "m.log")
    assert curve(hubert["train"], "loss") == [(10, 6.284), (40, 5.9)]
    assert curve(hubert["valid"], "correct_m_0") == [(23, 0.2), (46, 0.3)]
    assert curve(m2v["train"], "ema_decay", 1e-3) == [(10, pytest.approx(0.999)), (20, pytest.approx(0.9995))]
    summary = learning_summary({"hubert_iter1": hubert, "hubert_iter2": hubert, "music2vec": m2v},
                               {"hubert_iter1": 0.1, "hubert_iter2": 0.06})
    assert summary["hubert_iter1"]["valid_masked_acc"] == pytest.approx(0.3)
    assert summary["hubert_iter1"]["ratio"] == pytest.approx(3.0)
    assert summary["hubert_iter2"]["ratio"] == pytest.approx(5.0)
    row = summary["music2vec"]
    assert (row["target_std_first"], row["target_std_last"]) == (0.3, 0.25)
    assert (row["ema_decay_first"], row["ema_decay_last"]) == (pytest.approx(0.999), pytest.approx(0.9995))


def test_majority_rate_counts_the_frames_hubert_predicts(tmp_path):
    km = tmp_path / "valid.km"
    km.write_text("5 0 5 0 5 0 7 0\n")
    write_dictionary(tmp_path, 8)
    write_sidecar(km, {"k": 8, "label_rate": 100.0})
    assert majority_rate(km) == pytest.approx(0.75)  # every other 100 Hz label: 5 5 5 7
    write_sidecar(km, {"k": 8, "label_rate": 50.0})
    assert majority_rate(km) == pytest.approx(0.5)  # every label: 0 four times of 8
