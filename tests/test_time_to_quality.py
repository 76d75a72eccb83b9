"""The time-to-quality benchmark's logic (benchmarks/time_to_quality.py, music_ssl/demo/time_to_quality.py): the
reached-quality rule on made-up curves, the checkpoints a run left, the FLOP counter on real training steps of both
tiny models, the demo's music2vec2 flag (slow: the whole small demo) and the --quick path end to end."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from music_ssl.demo.pipeline import DemoSettings, plan
from music_ssl.demo.report import SOURCES, TRAINING_RUNS, columns
from music_ssl.demo.time_to_quality import (MODELS, Point, Score, count_flops, demo_batches, feature_encoder_flops,
                                            first_reached, log_interval_for, ratios, reached, saved_points,
                                            step_seconds, time_to_quality, trainer_for, training_stage,
                                            training_step_flops)

TASKS = ("key", "pitch", "beat")


def curve(values: dict, wall_per_update: float = 1.0, step=100) -> list[Point]:
    """Made-up probed points: ``values`` task -> [(mean, ci) per checkpoint], a checkpoint every ``step`` updates."""
    n = len(next(iter(values.values())))
    return [Point((i + 1) * step, (i + 1) * step * wall_per_update, (i + 1) * step * wall_per_update * 0.9,
                  Path(f"c{i}.pt"), {t: Score(*values[t][i]) for t in values}) for i in range(n)]


def test_reached_means_the_ci_overlaps_or_lies_above_the_reference():
    ref = Score(0.5, 0.25)  # [0.25, 0.75] (binary fractions: exact bounds)
    assert reached(Score(0.125, 0.25), ref)  # [-0.125, 0.375] overlaps
    assert reached(Score(0.875, 0.0625), ref)  # above
    assert not reached(Score(0.125, 0.0625), ref)  # [0.0625, 0.1875] below
    assert reached(Score(0.25, math.nan), ref)  # NaN CI counts as 0: 0.25 touches the lower bound
    assert not reached(Score(0.24, math.nan), ref)


def test_first_reached_is_the_first_checkpoint_reaching_every_task_at_once():
    points = curve({"key": [(0.1, 0.01), (0.4, 0.01), (0.4, 0.01), (0.1, 0.01)],
                    "pitch": [(0.9, 0.01), (0.1, 0.01), (0.9, 0.01), (0.9, 0.01)]})
    ref = {"key": Score(0.4, 0.0), "pitch": Score(0.9, 0.0)}
    assert first_reached(points, ref, ("key",)).updates == 200
    assert first_reached(points, ref, ("pitch",)).updates == 100
    assert first_reached(points, ref, ("key", "pitch")).updates == 300  # not 200: pitch dips there
    assert first_reached(points[::-1], ref, ("key",)).updates == 200  # order of the list does not matter
    assert first_reached(points[:1], ref, ("key",)) is None


def test_time_to_quality_and_ratios_on_made_up_curves():
    ref = {t: Score(0.5, 0.02) for t in TASKS}
    slow = curve({t: [(0.1, 0.01), (0.3, 0.01), (0.45, 0.04), (0.5, 0.02)] for t in TASKS}, wall_per_update=1.0)
    fast = curve({"key": [(0.49, 0.01), (0.5, 0.01), (0.5, 0.01), (0.5, 0.01)],
                  "pitch": [(0.2, 0.01), (0.48, 0.01), (0.5, 0.01), (0.5, 0.01)],
                  "beat": [(0.1, 0.01)] * 4}, wall_per_update=2.0)
    hits = time_to_quality({"music2vec": slow, "music2vec2": fast}, ref)
    assert hits["music2vec"]["key"]["updates"] == 300  # 0.45 + 0.04 >= 0.5 - 0.02
    assert hits["music2vec2"]["key"] == {"updates": 100, "wall_s": 200.0, "step_s": 180.0}
    assert hits["music2vec2"]["pitch"]["updates"] == 200
    assert hits["music2vec2"]["beat"] is None and hits["music2vec2"]["all"] is None
    reference_point = {"updates": 400, "wall_s": 400.0, "step_s": 360.0}
    costs = {"music2vec": {"seconds_per_update": 0.2}, "music2vec2": {"seconds_per_update": 0.5}}
    r = ratios(hits, reference_point, costs)
    assert r["key"]["wall"] == pytest.approx(0.5)
    assert r["key"]["step"] == pytest.approx(0.5)
    assert r["key"]["wall_vs_first"] == pytest.approx(200 / 300)
    assert r["key"]["updates"] == pytest.approx(100 / 400)
    assert r["key"]["cost_model"] == pytest.approx(100 * 0.5 / (400 * 0.2))
    assert r["pitch"]["wall"] == pytest.approx(1.0)
    assert math.isnan(r["beat"]["wall"]) and math.isnan(r["all"]["cost_model"])


@pytest.mark.parametrize("interval", [1, 2, 7, 50, 100, 250])
def test_log_interval_divides_the_checkpoint_interval(interval):
    log = log_interval_for(interval)
    assert interval % log == 0 and 1 <= log <= max(1, interval // 5)


def test_training_stage_saves_every_interval_with_the_run_seed_and_keeps_the_corpus_seed(tmp_path):
    settings = DemoSettings(out_dir=tmp_path, seed=0)
    for model, seeded in (("music2vec", True), ("music2vec2", False)):
        stage = training_stage(settings, model, 2, 1000, 100)
        command = " ".join(stage.command)
        assert f"--config-name {MODELS[model]}" in command
        for part in ("checkpoint.save_interval_updates=100", "checkpoint.keep_interval_updates=-1",
                     "checkpoint.no_epoch_checkpoints=false", "optimization.max_update=1000", "common.seed=2",
                     "common.log_interval=20"):
            assert part in stage.command, part
        assert ("++model.seeded_masks=true" in stage.command) == seeded
        assert "task.crop_reading=true" in stage.command  # checkpoints and validation leave the run unchanged
        assert stage.workdir == tmp_path / "checkpoints" / f"ttq_{model}_seed2"
    assert settings.seed == 0


def test_a_recipe_variant_of_the_candidate_gets_runs_and_a_report_of_its_own(tmp_path):
    from music_ssl.demo.time_to_quality import TimeToQualitySettings, variant_tag

    t = TimeToQualitySettings(demo=DemoSettings(out_dir=tmp_path), candidate_overrides=("model.clone_batch=2",))
    assert t.overrides("music2vec") == () and t.overrides("music2vec2") == ("model.clone_batch=2",)
    tag = variant_tag(t.candidate_overrides)
    assert tag.startswith("_v") and len(tag) == 10 and tag != variant_tag(("model.clone_batch=4",))
    stage = training_stage(t.demo, "music2vec2", 1, 1000, 100, t.overrides("music2vec2"))
    assert stage.command[-1] == "model.clone_batch=2"  # after ours: the variant wins
    assert stage.workdir == tmp_path / "checkpoints" / f"ttq_music2vec2{tag}_seed1"
    assert training_stage(t.demo, "music2vec", 1, 1000, 100).workdir.name == "ttq_music2vec_seed1"  # shared
    assert t.out == tmp_path / f"time_to_quality{tag}"
    assert TimeToQualitySettings(demo=DemoSettings(out_dir=tmp_path)).out == tmp_path / "time_to_quality"


def fake_checkpoint(path: Path, updates: int, wall: float) -> None:
    torch.save({"optimizer_history": [{"num_updates": updates}], "extra_state": {"previous_training_time": wall}}, path)


def test_saved_points_take_update_and_epoch_named_checkpoints_once_each(tmp_path):
    fake_checkpoint(tmp_path / "checkpoint_1_50.pt", 50, 5.0)  # not a multiple of 100
    fake_checkpoint(tmp_path / "checkpoint_2_100.pt", 100, 10.0)
    fake_checkpoint(tmp_path / "checkpoint3.pt", 200, 21.0)  # an interval save on an epoch end
    fake_checkpoint(tmp_path / "checkpoint4.pt", 260, 25.0)
    fake_checkpoint(tmp_path / "checkpoint_5_300.pt", 300, 30.0)
    fake_checkpoint(tmp_path / "checkpoint_last.pt", 300, 30.5)  # the same update count: one point
    fake_checkpoint(tmp_path / "checkpoint_6_400.pt", 400, 40.0)  # beyond `updates`
    points = saved_points(tmp_path, 100, 300)
    assert [(p.updates, p.wall_s, p.path.name) for p in points] == [
        (100, 10.0, "checkpoint_2_100.pt"), (200, 21.0, "checkpoint3.pt"), (300, 30.0, "checkpoint_5_300.pt")]
    with pytest.raises(FileNotFoundError):
        saved_points(tmp_path, 1000, 300)


def test_step_seconds_sums_train_wall_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "hydra_train.log"
    lines = [f"[2026-01-01 00:00:0{i}][train_inner][INFO] - " + json.dumps(
        {"epoch": 1, "loss": "1.0", "num_updates": str(20 * (i + 1)), "train_wall": str(i + 1), "wall": "0"})
        for i in range(5)]
    log.write_text("\n".join(lines) + "\n")
    assert step_seconds(log, 60) == 1 + 2 + 3
    assert step_seconds(log, 100) == 15
    assert math.isnan(step_seconds(log, 50))  # no log line ends there
    resumed = "[2026-01-01 00:01:00][train_inner][INFO] - " + json.dumps(
        {"epoch": 1, "loss": "1.0", "num_updates": "40", "train_wall": "7", "wall": "0"})
    log.write_text("\n".join(lines[:3] + [resumed]) + "\n")  # resumed at 20: update 40 redone and logged again
    assert step_seconds(log, 60) == 1 + 7 + 3


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    from conftest import write_clips, write_manifest

    root = tmp_path_factory.mktemp("ttq_flops")
    clips = write_clips(root / "audio", 6, 2.0, seed=3)
    write_manifest(root / "train.tsv", root / "audio", clips)
    write_manifest(root / "valid.tsv", root / "audio", clips[:2])
    return {m: trainer_for(config, root) for m, config in MODELS.items()}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_flops_of_a_training_step_are_positive_and_scale_with_the_batch(trainers, model):
    trainer = trainers[model]
    one, two = demo_batches(trainer, 2, clips=1), demo_batches(trainer, 2, clips=2)
    trainer.train_step([one[0]])  # builds the EMA teacher
    small, large = training_step_flops(trainer, one[1]), training_step_flops(trainer, two[1])
    assert small["flops"] > 1e6
    assert small["audio_seconds"] == pytest.approx(2.0) and large["audio_seconds"] == pytest.approx(4.0)
    assert large["flops"] / small["flops"] == pytest.approx(2.0, rel=0.1)
    assert large["flops_per_audio_second"] == pytest.approx(small["flops_per_audio_second"], rel=0.1)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_training_step_counts_the_backward_too(trainers, model):
    trainer = trainers[model]
    batch = demo_batches(trainer, 2, clips=2)
    trainer.train_step([batch[0]])
    sample = trainer._prepare_sample(batch[1])[0]
    trainer.model.train()
    with torch.no_grad():
        forward = count_flops(lambda: trainer.criterion(trainer.model, sample))
    step = training_step_flops(trainer, batch[1])["flops"]
    assert forward > 0 and step > 1.5 * forward  # backward ≈ 2 × the student's forward


def test_trainer_for_composes_a_base_config_as_fairseq_hydra_train_does(tmp_path):
    """The device script's ttq step builds music2vec2_base with trainer_for: without the registered dataclasses'
    defaults its YAML's ``${model.num_heads}`` (data2vec 2.0's alibi heads) does not resolve."""
    from conftest import write_clips, write_manifest

    clips = write_clips(tmp_path / "audio", 2, 2.0, seed=5)
    for split in ("train", "valid"):
        write_manifest(tmp_path / f"{split}.tsv", tmp_path / "audio", clips)
    overrides = ["distributed_training.distributed_world_size=1", "common.fp16=false", "dataset.num_workers=0",
                 "task.crop_seconds=2", "task.min_sample_size=8000", "model.depth=1"]
    trainer = trainer_for("music2vec2_base", tmp_path, overrides=overrides)
    assert trainer.model.cfg.num_heads == 12 and len(trainer.model.blocks) == 1 and trainer.model.cfg.clone_batch == 8


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_conv_encoder_share_is_its_forward_and_backward_within_the_step(trainers, model):
    trainer = trainers[model]
    batch = demo_batches(trainer, 2, clips=2)
    trainer.train_step([batch[0]])
    step = training_step_flops(trainer, batch[1])["flops"]
    sample = trainer._prepare_sample(batch[1])[0]
    encoder = feature_encoder_flops(trainer.model, sample)
    with torch.no_grad():
        encoder_forward = count_flops(lambda: trainer.model.feature_extractor(sample["net_input"]["source"]))
    assert encoder == pytest.approx(3 * encoder_forward, rel=0.05)  # backward: input and weight gradients
    assert 0 < encoder < step
    assert all(p.grad is None for p in trainer.model.feature_extractor.parameters())


def test_demo_flag_adds_music2vec2_and_leaves_the_default_demo_unchanged(tmp_path):
    default = plan(DemoSettings(out_dir=tmp_path))
    flagged = plan(DemoSettings(out_dir=tmp_path, music2vec2=True))
    names = [s.name for s in default]
    assert not any("music2vec2" in n for n in names)
    assert [s.name for s in flagged if "music2vec2" not in s.name] == names
    assert {"music2vec2", "probe_music2vec2", "probe_random_music2vec2"} <= {s.name for s in flagged}
    same = {s.name: s.command for s in default}
    assert all(same[s.name] == s.command for s in flagged if s.name in same)
    m2v2 = next(s for s in flagged if s.name == "music2vec2")
    assert "music2vec2_tiny" in m2v2.command and "++model.seeded_masks=true" not in m2v2.command
    assert columns(DemoSettings()) == (SOURCES, columns(DemoSettings())[1], TRAINING_RUNS)
    sources, pairs, runs = columns(DemoSettings(music2vec2=True))
    assert ("probe_music2vec2", "music2vec2") in sources and ("music2vec2", "music2vec2") in runs
    assert ("probe_music2vec2", "probe_random_music2vec2") in pairs


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs FluidSynth (make env installs it)")
def test_quick_benchmark_end_to_end(tmp_path):  # ~20 s uncontended on 2 cores (corpus render included)
    out = tmp_path / "ttq"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "time_to_quality.py"), "--quick",
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in (*TASKS, "all"):
        assert f"seed 1 {task}: music2vec2 / music2vec wall time to quality" in proc.stdout
    results = json.loads((out / "time_to_quality" / "results.json").read_text())
    run = results["seeds"]["1"]
    assert [p["updates"] for p in run["points"]["music2vec"]] == [2, 4]
    assert [p["updates"] for p in run["points"]["music2vec2"]] == [2, 4]
    assert all(0 < p["wall_s"] for m in run["points"].values() for p in m)
    assert run["reached"]["music2vec"]["all"] is not None  # music2vec reaches its own final scores
    for model in MODELS:
        assert results["costs"][model]["flops"] > 0 and results["costs"][model]["seconds_per_update"] > 0
    assert (out / "time_to_quality" / "curves.png").stat().st_size > 1000
    assert "| seed | task |" in (out / "time_to_quality" / "report.md").read_text()


def test_summary_table_and_verdicts_from_made_up_runs():
    from music_ssl.demo.time_to_quality import TimeToQualitySettings, markdown_table, summarise, verdict_lines

    t = TimeToQualitySettings(seeds=(1,), updates=300, interval=100)
    m2v = curve({t_: [(0.1, 0.01), (0.3, 0.01), (0.5, 0.02)] for t_ in TASKS}, wall_per_update=1.0)
    m2v2 = curve({"key": [(0.5, 0.01)] * 3, "pitch": [(0.1, 0.01), (0.5, 0.01), (0.5, 0.01)],
                  "beat": [(0.1, 0.01)] * 3}, wall_per_update=0.5)
    costs = {"music2vec": {"seconds_per_update": 1.0}, "music2vec2": {"seconds_per_update": 0.5}}
    results = summarise(t, {1: {"music2vec": m2v, "music2vec2": m2v2}}, costs)
    r = results["seeds"][1]["ratios"]
    assert r["key"]["wall"] == pytest.approx(50 / 300) and r["pitch"]["wall"] == pytest.approx(100 / 300)
    lines = verdict_lines(results)
    assert "seed 1 key:" in lines[0] and lines[0].endswith("met)") and "NOT" not in lines[0]
    assert "seed 1 pitch:" in lines[1] and "0.33" in lines[1] and "NOT" not in lines[1]  # 1/3 is within the target
    assert lines[2].endswith("not reached)") and lines[3].endswith("not reached)")
    table = markdown_table(results)
    assert table.count("\n") == 2 + 4 and "| 1 | key | 50.0 ± 2.0 | 300 upd, 300 s | 100 upd, 50 s | **0.17** |" in table


def test_probe_order_puts_the_reference_first_then_the_candidate_then_the_reference_curve():
    from music_ssl.demo.time_to_quality import TimeToQualitySettings, probe_order

    t = TimeToQualitySettings(seeds=(1,), updates=600, interval=100, reference_interval=200)
    points = {("music2vec", 1): curve({"key": [(0.1, 0.0)] * 6}), ("music2vec2", 1): curve({"key": [(0.1, 0.0)] * 6})}
    order = [(run[0], p.updates) for run, p in probe_order(points, t)]
    assert order == [("music2vec", 600)] + [("music2vec2", u) for u in range(100, 700, 100)] + [
        ("music2vec", 200), ("music2vec", 400)]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs FluidSynth (make env installs it)")
def test_demo_with_the_music2vec2_flag_reports_its_column_and_gains(tmp_path):
    from music_ssl.demo.pipeline import run_demo

    small = dict(n_pieces=12, n_notes=12, piece_seconds=4.0, n_clusters=8, label_layer=2, hubert_updates=4,
                 music2vec_updates=4, probe_seeds=2, probe_epochs=4, device="cpu")
    settings = DemoSettings(out_dir=tmp_path / "out", music2vec2=True, **small)
    text = run_demo(settings).read_text()
    assert "| task | metric | MusicHuBERT | music2vec | random MusicHuBERT | random music2vec | music2vec2 | " \
           "random music2vec2 | CHROMA | MFCC |" in text
    assert "music2vec2 beats its random init" in text and "music2vec2 (data2vec 2.0 recipe): train loss" in text
    results = json.loads((settings.out_dir / "results.json").read_text())
    assert set(results["selected"]["probe_music2vec2"]) == {"key", "instrument", "note_instrument", "pitch", "beat"}
    assert "music2vec2" in results["pretraining"]
