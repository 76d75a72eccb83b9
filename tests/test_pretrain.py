"""Pretraining through fairseq-hydra-train: both music models train, resume, check labels, and their configs compose."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import music_ssl  # noqa: F401  (allows fairseq.Dictionary in weights_only loads)
from conftest import REPO, USER_DIR, train_tiny

PRETRAIN_DIR = REPO / "config" / "pretrain"


@pytest.mark.parametrize("model", ["music2vec", "music_hubert"])
def test_tiny_models_train_two_updates(tiny_checkpoints, model):
    state = torch.load(tiny_checkpoints[model], weights_only=True, map_location="cpu")
    assert state["cfg"]["model"]["_name"] == model
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert state["cfg"]["task"]["crop_reading"] and state["cfg"]["dataset"]["num_workers"] == 1
    if model == "music2vec":
        assert "_ema" in state["model"], "the EMA teacher is saved with the student"


def test_resume_continues_update_count(tmp_path, session_corpus):
    save = tmp_path / "ckpt"
    train_tiny("music2vec_tiny", session_corpus, save, max_update=2)
    first = torch.load(save / "checkpoint_last.pt", weights_only=True, map_location="cpu")
    train_tiny("music2vec_tiny", session_corpus, save, max_update=4)
    resumed = torch.load(save / "checkpoint_last.pt", weights_only=True, map_location="cpu")
    assert resumed["optimizer_history"][-1]["num_updates"] == 4
    teacher_before, teacher_after = first["model"]["_ema"], resumed["model"]["_ema"]
    assert any(not torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before), "teacher restored and moved"


def test_label_rate_mismatch_fails_at_load_with_the_rate_it_found(tmp_path, session_corpus):
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(PRETRAIN_DIR),
           "--config-name", "music_hubert_tiny", f"task.data={session_corpus}", f"task.label_dir={session_corpus}",
           "task.label_rate=100", f"checkpoint.save_dir={tmp_path / 'ckpt'}", f"common.user_dir={USER_DIR}",
           f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "train.km" in proc.stderr or "valid.km" in proc.stderr
    assert "align at 50 Hz" in proc.stderr and "task.label_rate=50" in proc.stderr


def compose_pretrain(name: str, *overrides: str):
    """Compose a config of config/pretrain exactly as fairseq-hydra-train does (schema stored under its name)."""
    from hydra import compose, initialize_config_dir

    from conftest import fairseq_schema

    with fairseq_schema(name), initialize_config_dir(config_dir=str(PRETRAIN_DIR), version_base="1.1"):
        cfg = compose(config_name=name, overrides=["task.data=/data", *overrides])  # as fairseq-hydra-train
    return OmegaConf.to_container(cfg, resolve=False)


def flatten(tree, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}.{key}" if prefix else key).items()}


def test_music2vec_base_has_the_papers_settings():
    cfg = compose_pretrain("music2vec_base")
    assert cfg["model"]["_name"] == "music2vec" and cfg["task"]["_name"] == "music2vec_pretraining"
    assert cfg["task"]["crop_seconds"] == 30 and cfg["model"]["mask_length"] == 10
    assert cfg["model"]["mask_prob"] == 0.65 and cfg["model"]["average_top_k_layers"] == 8
    assert cfg["optimization"]["max_update"] == 400000
    assert cfg["distributed_training"]["distributed_world_size"] == 8
    assert (cfg["model"]["ema_decay"], cfg["model"]["ema_end_decay"]) == (0.999, 0.9999)


ABLATIONS = {
    "crop5": ("task.crop_seconds", 5), "crop10": ("task.crop_seconds", 10), "crop15": ("task.crop_seconds", 15),
    "span5": ("model.mask_length", 5), "span15": ("model.mask_length", 15),
    "prob50": ("model.mask_prob", 0.5), "prob70": ("model.mask_prob", 0.7),
    "prob80": ("model.mask_prob", 0.8),
    "top12": ("model.average_top_k_layers", 12), "800k": ("optimization.max_update", 800000),
}


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_each_ablation_changes_exactly_its_setting(ablation):
    base = flatten(compose_pretrain("music2vec_base"))
    varied = flatten(compose_pretrain("music2vec_base", f"+ablation={ablation}"))
    key, value = ABLATIONS[ablation]
    changed = {k for k in base.keys() | varied.keys() if base.get(k) != varied.get(k)}
    assert changed == {key} and varied[key] == value


@pytest.mark.parametrize("name,label_dir", [
    ("music_hubert_k500_mfcc39", "km_mfcc39_k500"), ("music_hubert_k500_mfcc60", "km_mfcc60_k500"),
    ("music_hubert_k2000_iter1", "km_mfcc39_k2000"), ("music_hubert_k2000_iter2", "km_layer6_k2000"),
])
def test_music_hubert_variants_have_hubert_base_settings(name, label_dir):
    cfg = compose_pretrain(name)
    model, task = cfg["model"], cfg["task"]
    assert model["_name"] == "music_hubert" and task["_name"] == "music_hubert_pretraining"
    assert task["label_dir"].endswith(label_dir) and task["label_rate"] == -1  # read from the labels' record
    assert (model["mask_prob"], model["mask_length"], model["final_dim"]) == (0.8, 10, 256)
    assert cfg["criterion"]["loss_weights"] == [10] and cfg["optimization"]["lr"] == [0.0005]
    assert cfg["lr_scheduler"]["warmup_updates"] == 32000 and cfg["optimization"]["max_update"] == 400000


def offline_run(wandb_dir: Path):
    """(run record, history keys) of the one offline wandb run written under ``wandb_dir``."""
    from conftest import wandb_offline_records

    (run_dir,) = [d for d in wandb_dir.glob("offline-run-*") if list(d.glob("run-*.wandb"))]
    for _ in range(300):  # wandb's core process may still be flushing the file when finish() returns
        records = wandb_offline_records(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    history = {"/".join(item.nested_key) or item.key for r in records if r.WhichOneof("record_type") == "history"
               for item in r.history.item}
    return run, history


@pytest.mark.slow
def test_tensorboard_and_wandb_log_our_metrics_and_probes_join_the_training_run(tmp_path, session_corpus, monkeypatch):
    """common.tensorboard_logdir / common.wandb_project (offline) with music2vec: the loss and the model's own
    metrics (EMA decay, target / prediction variance) are logged; the checkpoint's probe run lands in its group."""
    from conftest import tensorboard_scalars
    from test_probe_train import write_demo_like_corpus

    from music_ssl.probe import run_probe

    monkeypatch.setenv("WANDB_MODE", "offline")
    save, tb = tmp_path / "m2v_run7", tmp_path / "tb"
    ckpt = train_tiny("music2vec_tiny", session_corpus, save, f"common.tensorboard_logdir={tb}",
                      "common.wandb_project=music-ssl-tests")
    train = tensorboard_scalars(tb / "train")
    for tag in ("loss", "ema_decay", "target_var", "pred_var", "lr"):
        assert sorted(train[tag]) == [1, 2], f"{tag} logged at each epoch end (one update per epoch)"
    assert {"loss", "target_var"} <= set(tensorboard_scalars(tb / "valid"))
    run, history = offline_run(save / "hydra" / "wandb")
    assert (run.project, run.display_name) == ("music-ssl-tests", "m2v_run7"), "fairseq names it after save_dir"
    assert {"train/loss", "train/ema_decay", "train/target_var", "train/pred_var"} <= history

    write_demo_like_corpus(tmp_path / "corpus", n=15, seconds=2.0)
    out = tmp_path / "probe"
    run_probe({"name": "keys", "source": {"kind": "checkpoint", "path": str(ckpt)}, "device": "cpu",
               "progress": False, "out_dir": str(out), "cache_dir": None, "wandb": {"project": "music-ssl-tests"},
               "protocol": {"name": "mulap", "seeds": [0], "layers": "last", "train": {"max_epochs": 2}},
               "tasks": [{"name": "csv", "path": str(tmp_path / "corpus" / "key.csv"), "type": "key"}]})
    probe, probe_history = offline_run(out / "wandb")
    assert (probe.project, probe.run_group, probe.job_type) == ("music-ssl-tests", "m2v_run7", "probe")
    assert probe.display_name == "m2v_run7/probe-keys"
    pretraining = json.loads({item.key: item.value_json for item in probe.config.update}["pretraining"])
    assert (pretraining["project"], pretraining["run"], pretraining["num_updates"]) == ("music-ssl-tests", "m2v_run7", 2)
