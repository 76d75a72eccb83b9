"""music2vec2 + music2vec_pretraining equals stock fairseq data2vec 2.0 (``data2vec_multi`` + ``audio_pretraining``)
when the music settings sit at neutral values: bit-identical logged losses, gradients, parameters and EMA teacher
over several real fairseq ``Trainer`` updates (fp32, CPU), as tests/test_equivalence.py does for the other models.

Both arms are built from the shipped ``music2vec2_tiny.yaml`` shrunk to 2 blocks x 32 dims; the stock arm states the
settings ours has as defaults (audio modality, instance-normalised top-2 targets) and starts from our weights. The
block masks come from the dataset (``precompute_mask_config``: fairseq's ``compute_block_mask_1d`` draws from torch's
global generator when an item is read) and the crops from numpy, so both generators are seeded before each collate.
"""
import copy

import torch
from omegaconf import OmegaConf

import music_ssl  # noqa: F401  (registers music2vec2 and data2vec_multi)
from conftest import REPO
from music_ssl.tasks import fields_beyond_stock
from test_equivalence import CLIPS_PER_BATCH, CROP, UPDATES, assert_same_history, batch, build_trainer, corpus  # noqa: F401

LOGGED = ("loss", "target_var", "pred_var", "ema_decay", "gnorm", "lr")
STOCK_DEFAULTS = {"supported_modality": "AUDIO", "average_top_k_layers": 2, "instance_norm_target_layer": True}


def tiny_config(data, stock: bool, model_overrides: dict = ()) -> dict:
    """music2vec2_tiny.yaml as a plain dict at 2 blocks x 32 dims and 1-s crops; ``stock``: fairseq's names."""
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "config" / "pretrain" / "music2vec2_tiny.yaml"))
    cfg.pop("hydra", None)
    cfg["common"].update(cpu=True, seed=1, log_format="none")
    cfg["task"].update(data=str(data), crop_seconds=None, max_sample_size=CROP)
    cfg["dataset"].update(max_tokens=CROP * CLIPS_PER_BATCH, batch_size=CLIPS_PER_BATCH)
    cfg["optimization"].update(max_update=UPDATES * 2)
    cfg["lr_scheduler"].update(warmup_updates=2)
    audio = cfg["model"]["modalities"]["audio"]
    audio.update(feature_encoder_spec="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2", conv_pos_width=16,
                 conv_pos_groups=4, conv_pos_depth=1)
    audio["decoder"].update(decoder_dim=16, decoder_groups=4, decoder_layers=1)
    cfg["model"].update(depth=2, embed_dim=32, num_heads=2, average_top_k_layers=2, ema_anneal_end_step=UPDATES * 2)
    if stock:
        for key in fields_beyond_stock(cfg["task"]["_name"]):
            cfg["task"].pop(key, None)
        cfg["model"].update(STOCK_DEFAULTS)
        cfg["model"]["_name"], cfg["task"]["_name"] = "data2vec_multi", "audio_pretraining"
    cfg["model"].update(dict(model_overrides))
    return cfg


def run(trainer, updates: int = UPDATES) -> list[dict]:
    history = []
    for step in range(updates):
        torch.manual_seed(step)  # the dataset's block masks (numpy, the crops, is seeded by ``batch``)
        sample = batch(trainer, step)
        logged = trainer.train_step([sample])
        model = trainer.model
        history.append({
            "sample": sample,
            "logged": {key: logged[key] for key in LOGGED if key in logged},
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "teacher": {n: t.clone() for n, t in model.ema.model.state_dict().items()},
        })
    return history


def pair(corpus, ours_overrides=(), stock_overrides=(), updates=UPDATES):
    ours, stock = build_trainer(tiny_config(corpus, False, ours_overrides)), build_trainer(
        tiny_config(corpus, True, stock_overrides))
    stock.model.load_state_dict(copy.deepcopy(ours.model.state_dict()), strict=True)
    return run(ours, updates), run(stock, updates)


def test_music2vec2_equals_stock_data2vec_multi_with_its_ema_teacher(corpus):
    ours, stock = pair(corpus)
    assert type(ours[0]["sample"]["net_input"].get("precomputed_mask")) is torch.Tensor, "dataset block masks"
    for a, b in zip(ours, stock):
        torch.testing.assert_close(a["sample"]["net_input"]["precomputed_mask"],
                                   b["sample"]["net_input"]["precomputed_mask"], rtol=0, atol=0)
    assert_same_history(ours, stock)
    assert ours[-1]["logged"]["loss"] != ours[0]["logged"]["loss"]
    first, last = ours[0]["teacher"], ours[-1]["teacher"]
    assert first and any(not torch.equal(first[n], last[n]) for n in first), "the EMA teacher moved"


def test_the_comparison_can_fail(corpus):
    """Another target setting in the stock arm only (top-1 block instead of top-2) gives other first gradients
    (the logged loss is rounded to 3 decimals, so the gradients are what tells)."""
    ours, stock = pair(corpus, stock_overrides={"average_top_k_layers": 1}, updates=1)
    torch.testing.assert_close(ours[0]["sample"]["net_input"]["source"], stock[0]["sample"]["net_input"]["source"])
    assert any(not torch.equal(g, stock[0]["grads"][n]) for n, g in ours[0]["grads"].items())
