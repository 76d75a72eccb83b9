"""The plugin imports, registers its names in fairseq, keeps torch.load safe, and trains through fairseq-hydra-train."""
import argparse

import torch

from conftest import REPO, USER_DIR, run_cli

PLUGIN_MODELS = {"music2vec", "music_hubert"}
PLUGIN_TASKS = {"music2vec_pretraining", "music_hubert_pretraining"}


def test_import_registers_data2vec_audio_and_safe_dictionary():
    import music_ssl  # noqa: F401
    from fairseq.data.dictionary import Dictionary
    from fairseq.models import MODEL_REGISTRY

    assert "data2vec_audio" in MODEL_REGISTRY
    assert Dictionary in torch.serialization.get_safe_globals()


def test_user_dir_registers_plugin_names():
    from fairseq import utils
    from fairseq.models import MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    utils.import_user_module(argparse.Namespace(user_dir=str(USER_DIR)))
    assert PLUGIN_MODELS <= set(MODEL_REGISTRY), PLUGIN_MODELS - set(MODEL_REGISTRY)
    assert PLUGIN_TASKS <= set(TASK_REGISTRY), PLUGIN_TASKS - set(TASK_REGISTRY)
    for name in PLUGIN_MODELS:
        assert MODEL_REGISTRY[name].__module__.startswith("music_ssl.models")
    for name in PLUGIN_TASKS:
        assert TASK_REGISTRY[name].__module__.startswith("music_ssl.tasks")


def test_checkpoint_with_dictionary_loads_with_weights_only(tmp_path):
    from fairseq.data.dictionary import Dictionary

    import music_ssl  # noqa: F401

    d = Dictionary()
    d.add_symbol("7")
    torch.save({"dictionaries": [d]}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert loaded["dictionaries"][0].index("7") == d.index("7")


def test_fairseq_hydra_train_help_runs_in_venv(tmp_path):
    proc = run_cli(["fairseq-hydra-train", "--help"], cwd=tmp_path, timeout=120)
    assert "fairseq" in (proc.stdout + proc.stderr).lower()


def test_stock_hubert_trains_two_updates_with_user_dir(tmp_path, audio_corpus):
    save = tmp_path / "ckpt"
    run_cli([
        "fairseq-hydra-train", "--config-dir", str(REPO / "tests" / "configs"),
        "--config-name", "stock_hubert_tiny",
        f"task.data={audio_corpus}", f"task.label_dir={audio_corpus}",
        f"checkpoint.save_dir={save}", f"common.user_dir={USER_DIR}", f"hydra.run.dir={tmp_path / 'run'}",
    ], cwd=tmp_path)
    state = torch.load(save / "checkpoint_last.pt", weights_only=True, map_location="cpu")
    assert state["optimizer_history"][-1]["num_updates"] == 2
