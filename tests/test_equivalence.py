"""Our models and tasks equal stock fairseq's when our options sit at their neutral values; each option that changes
the computation changes only what it says.

Two arms, each a real fairseq ``Trainer`` (fp32, CPU) built from the same config dict (the shipped tiny YAML,
shrunk to 2 layers x 32 dims): ``music_hubert`` + ``music_hubert_pretraining`` against ``hubert`` +
``hubert_pretraining``, and ``music2vec`` + ``music2vec_pretraining`` against ``data2vec_audio`` +
``audio_pretraining``. The stock arm starts from the other arm's weights (state_dict copy), both collate the same
batches (same numpy seed before each collate: the random crops), both draw the same masks (fairseq's
``compute_mask_indices`` takes its seed from OS entropy, so it is patched in both arms to the same seeded call),
and each update is fairseq's own criterion, backward, gradient clipping and Adam step. After every update the
tests compare logged losses, every gradient, every parameter and, for music2vec, every EMA-teacher parameter.
"""
import copy

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import fairseq.examples.data2vec.models.data2vec_audio as stock_data2vec
import fairseq.models.hubert.hubert as stock_hubert
import music_ssl  # noqa: F401  (registers our models and tasks)
from music_ssl.data.crop import crop_start
from music_ssl.tasks import fields_beyond_stock
from conftest import REPO, write_clips, write_manifest, write_random_labels
from fairseq import tasks
from fairseq.data.data_utils import compute_mask_indices
from fairseq.dataclass.configs import FairseqConfig
from fairseq.dataclass.initialize import add_defaults
from fairseq.trainer import Trainer

UPDATES = 4
CLIPS_PER_BATCH = 4
CROP = 16000  # samples: 1-s crops
TINY_MODEL = dict(conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2", encoder_layers=2,
                  encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2, conv_pos=16,
                  conv_pos_groups=4)
LOGGED = {  # logged values compared exactly (timing keys differ between any two runs)
    "hubert": ("loss", "loss_m_0", "correct_m_0", "count_m_0", "correct_u_0", "gnorm", "lr"),
    "music2vec": ("loss", "target_var", "pred_var", "ema_decay", "gnorm", "lr"),
}
STOCK_NAMES = {"music_hubert": ("hubert", "hubert_pretraining"), "music2vec": ("data2vec_audio", "audio_pretraining")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 clips of 1.5 s and 2 s (crops matter), a manifest and random 50 Hz labels (k = 8)."""
    root = tmp_path_factory.mktemp("equivalence")
    audio = root / "audio"
    paths = write_clips(audio / "short", 6, 1.5, seed=0) + write_clips(audio / "long", 6, 2.0, seed=10)
    write_manifest(root / "train.tsv", audio, paths)
    write_random_labels(root / "train.tsv", root / "train.km", 50, 8)
    return root


class StockMasks:
    """Stands in for ``compute_mask_indices`` in the stock modules (our models call their parents' ``apply_mask``,
    which look the function up there), so both arms draw the same masks for the same ``step`` and rows.

    Default: fairseq's own function with seed, epoch (``step + 1 + offset``) and row indices filled in.
    ``span=True``: our seeded ``span_mask`` (seed 1, update ``step``, the batch's sample ``ids``) as numpy, i.e. what
    ``model.seeded_masks=true`` draws.
    """

    def __init__(self):
        self.step, self.offset, self.ids, self.span, self.calls = 0, 0, None, False, 0

    def __call__(self, shape, padding_mask, mask_prob, mask_length, *args, **kwargs):
        self.calls += 1
        if self.span:
            from music_ssl.models.masking import span_mask

            return span_mask(shape, padding_mask, mask_prob, mask_length, min_masks=kwargs.get("min_masks", 0),
                             require_same_masks=kwargs.get("require_same_masks", True),
                             mask_dropout=kwargs.get("mask_dropout", 0.0), seed=1, update=self.step,
                             ids=self.ids).numpy()
        kwargs.update(seed=1234, epoch=self.step + 1 + self.offset, indices=torch.arange(shape[0]))
        return compute_mask_indices(shape, padding_mask, mask_prob, mask_length, *args, **kwargs)


@pytest.fixture
def masks(monkeypatch):
    stand_in = StockMasks()
    monkeypatch.setattr(stock_hubert, "compute_mask_indices", stand_in)
    monkeypatch.setattr(stock_data2vec, "compute_mask_indices", stand_in)
    return stand_in


def tiny_config(model: str, data, stock: bool, task: dict = (), model_overrides: dict = ()) -> dict:
    """The shipped tiny YAML of ``model`` as a plain dict, shrunk; ``stock`` swaps in fairseq's names and drops our
    task fields (our arm gets ``max_sample_size`` instead of ``crop_seconds`` unless ``task`` sets it)."""
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "config" / "pretrain" / f"{model}_tiny.yaml"))
    cfg.pop("hydra", None)  # hydra's own node (its callbacks), which hydra removes before fairseq sees the config
    cfg["common"].update(cpu=True, seed=1, log_format="none")
    cfg["task"].update(data=str(data), crop_seconds=None, max_sample_size=CROP)
    cfg["dataset"].update(max_tokens=CROP * CLIPS_PER_BATCH, batch_size=CLIPS_PER_BATCH)
    cfg["optimization"].update(max_update=UPDATES * 2)
    cfg["lr_scheduler"].update(warmup_updates=2)
    cfg["model"].update(TINY_MODEL)
    if model == "music_hubert":
        cfg["task"].update(label_dir=str(data), label_rate=50)
    else:
        cfg["model"].update(average_top_k_layers=2, instance_norm_target_layer=True,  # ours defaults to True
                            ema_anneal_end_step=UPDATES * 2)
    cfg["task"].update(dict(task))
    cfg["model"].update(dict(model_overrides))
    if stock:
        for key in fields_beyond_stock(cfg["task"]["_name"]):  # task fields stock fairseq does not have
            cfg["task"].pop(key, None)
        cfg["model"]["_name"], cfg["task"]["_name"] = STOCK_NAMES[model]
    return cfg


def build_trainer(cfg: dict) -> Trainer:
    """Task, model, criterion and Trainer exactly as fairseq-hydra-train builds them from ``cfg``."""
    cfg = OmegaConf.merge(OmegaConf.structured(FairseqConfig), cfg)
    add_defaults(cfg)  # the registered dataclass of each named component, as hydra_train does
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    return Trainer(cfg, task, model, criterion)


def batch(trainer: Trainer, step: int, batches=None) -> dict:
    """The clips of ``step`` (``batches[step]``, else a fixed rotation), collated after seeding numpy (the crops)."""
    dataset = trainer.task.dataset("train")
    ids = batches[step] if batches else [(step * CLIPS_PER_BATCH + i) % len(dataset) for i in range(CLIPS_PER_BATCH)]
    np.random.seed(step)
    return dataset.collater([dataset[i] for i in ids])


def run(trainer: Trainer, masks, kind: str, updates: int = UPDATES, batches=None) -> list[dict]:
    """``updates`` fairseq train steps; after each, the logged values, gradients, parameters and EMA teacher."""
    history = []
    for step in range(updates):
        sample = batch(trainer, step, batches)
        masks.step, masks.ids = step, sample["id"]
        logged = trainer.train_step([sample])
        model = trainer.model
        teacher = getattr(model, "ema", None)
        history.append({
            "sample": sample,
            "logged": {key: logged[key] for key in LOGGED[kind] if key in logged},
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "teacher": {} if teacher is None else {n: t.clone() for n, t in teacher.model.state_dict().items()},
        })
    return history


def train_pair(ours_cfg: dict, stock_cfg: dict, masks, kind: str, updates: int = UPDATES):
    """Both arms from the same weights (the stock arm loads ours): their histories."""
    ours, stock = build_trainer(ours_cfg), build_trainer(stock_cfg)
    stock.model.load_state_dict(copy.deepcopy(ours.model.state_dict()), strict=True)
    return run(ours, masks, kind, updates), run(stock, masks, kind, updates)


def assert_same_history(ours: list[dict], stock: list[dict], exact: bool = True) -> None:
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-4, atol=1e-5)
    for step, (a, b) in enumerate(zip(ours, stock)):
        for key in ("source", "padding_mask"):
            torch.testing.assert_close(a["sample"]["net_input"].get(key), b["sample"]["net_input"].get(key),
                                       rtol=0, atol=0, msg=f"update {step}: batches differ ({key})")
        assert a["logged"].keys() == b["logged"].keys() and a["logged"], step
        for key in a["logged"]:
            assert a["logged"][key] == pytest.approx(b["logged"][key], rel=0 if exact else 1e-4), (step, key)
        for part in ("grads", "params", "teacher"):
            assert a[part].keys() == b[part].keys(), (step, part)
            for name in a[part]:
                torch.testing.assert_close(a[part][name], b[part][name], **tol, msg=f"update {step}: {part} {name}")
    assert len(ours) == len(stock) == UPDATES


def pair(model: str, corpus, masks, task=(), model_overrides=(), stock_task=(), updates=UPDATES):
    """Histories of our ``model`` (with ``task`` / ``model_overrides``) and its stock fairseq counterpart."""
    kind = "hubert" if model == "music_hubert" else "music2vec"
    return train_pair(tiny_config(model, corpus, False, task, model_overrides),
                      tiny_config(model, corpus, True, stock_task), masks, kind, updates)


# ---- neutral options: bit-identical to stock fairseq --------------------------------------------------------------

@pytest.mark.parametrize("task", [{}, {"crop_seconds": 1.0, "max_sample_size": None}], ids=["max_sample_size", "crop"])
def test_music_hubert_equals_stock_hubert(corpus, masks, task):
    """crop_seconds=1 is max_sample_size=16000 and nothing else."""
    ours, stock = pair("music_hubert", corpus, masks, task)
    assert_same_history(ours, stock)
    assert ours[-1]["logged"]["loss"] != ours[0]["logged"]["loss"]  # the runs did train
    assert any(not torch.equal(ours[0]["params"][n], p) for n, p in ours[-1]["params"].items())


@pytest.mark.parametrize("task", [{}, {"crop_seconds": 1.0, "max_sample_size": None}], ids=["max_sample_size", "crop"])
def test_music2vec_equals_stock_data2vec_audio_with_its_ema_teacher(corpus, masks, task):
    ours, stock = pair("music2vec", corpus, masks, task)
    assert_same_history(ours, stock)
    first, last = ours[0]["teacher"], ours[-1]["teacher"]
    assert first and any(not torch.equal(first[n], last[n]) for n in first), "the EMA teacher moved"


# ---- options that change the computation: what they change, and nothing else --------------------------------------

def test_other_masks_give_other_losses(corpus, masks):
    """The comparison above can fail: the stock arm with other masks (only) logs another loss."""
    ours, stock = build_trainer(tiny_config("music_hubert", corpus, False)), build_trainer(
        tiny_config("music_hubert", corpus, True))
    stock.model.load_state_dict(ours.model.state_dict())
    first = run(ours, masks, "hubert", 1)
    masks.offset = 100
    other = run(stock, masks, "hubert", 1)
    torch.testing.assert_close(first[0]["sample"]["net_input"]["source"], other[0]["sample"]["net_input"]["source"])
    assert first[0]["logged"]["loss"] != other[0]["logged"]["loss"]


@pytest.mark.parametrize("model", ["music_hubert", "music2vec"])
def test_seeded_masks_change_only_the_mask_draws(corpus, masks, model):
    """model.seeded_masks=true (music_ssl.models.masking.span_mask, seeded from common.seed, the update and the sample
    ids) equals stock fairseq handed the same span_mask draws: the option changes which frames are masked, nothing
    else. (Its distribution against fairseq's draws is tested in tests/test_masking.py.)"""
    masks.span = True  # the stock arm draws span_mask(seed=1, update, ids); ours draws it itself (seed = common.seed)
    ours, stock = pair(model, corpus, masks, model_overrides={"seeded_masks": True})
    assert masks.calls == UPDATES, "only the stock arm called compute_mask_indices: ours drew its own masks"
    assert_same_history(ours, stock)
    assert any(not torch.equal(ours[0]["sample"]["id"], step["sample"]["id"]) for step in ours), "ids matter"


@pytest.mark.parametrize("model", ["music_hubert", "music2vec"])
def test_pos_conv_fp32_changes_nothing_without_autocast(corpus, masks, model):
    """pos_conv_fp32 only matters under bf16 autocast: off or on (the default, used above), fp32 runs are stock."""
    assert_same_history(*pair(model, corpus, masks, model_overrides={"pos_conv_fp32": False}))


@pytest.mark.parametrize("model", ["music_hubert", "music2vec"])
def test_sdpa_attention_changes_only_rounding(corpus, masks, model):
    """sdpa_attention=true computes the same attention through another kernel: equal within fp32 rounding after
    every update (not bit-identical, hence off by default), with the same parameters and state-dict keys."""
    ours, stock = pair(model, corpus, masks, model_overrides={"sdpa_attention": True})
    assert_same_history(ours, stock, exact=False)


@pytest.mark.parametrize("model", ["music_hubert", "music2vec"])
def test_bf16_autocast_changes_only_the_matmul_precision(corpus, masks, model):
    """task.bf16_autocast=true: the first update's loss within 2% of stock fp32 (bf16 rounding, so not equal), while
    weights and gradients stay fp32 under the same names (mixed precision, no loss scaling)."""
    ours, stock = pair(model, corpus, masks, task={"bf16_autocast": True}, updates=1)
    assert ours[0]["logged"]["loss"] == pytest.approx(stock[0]["logged"]["loss"], rel=0.02)
    assert ours[0]["logged"]["loss"] != stock[0]["logged"]["loss"], "bf16 matmuls round differently"
    assert all(t.dtype == torch.float32 for part in ("grads", "params") for t in ours[0][part].values())
    assert ours[0]["params"].keys() == stock[0]["params"].keys()


@pytest.mark.parametrize("model", ["music_hubert", "music2vec"])
def test_bucketing_changes_only_which_clips_share_a_batch(corpus, masks, model):
    """task.bucket_seconds=0.5 with 2-s crops: every batch holds clips of one bucket (1.5 s or 2 s here); the stock
    arm fed the same index batches collates the same tensors (fairseq crops a batch to its shortest clip, which is
    the bucket length when durations are multiples of 0.5 s) and trains identically."""
    kind = "hubert" if model == "music_hubert" else "music2vec"
    crop = {"max_sample_size": 2 * CROP}
    ours = build_trainer(tiny_config(model, corpus, False, {**crop, "bucket_seconds": 0.5}))
    stock = build_trainer(tiny_config(model, corpus, True, crop))
    stock.model.load_state_dict(copy.deepcopy(ours.model.state_dict()))
    dataset = ours.task.dataset("train")
    np.random.seed(0)
    batches = dataset.batch_by_size(dataset.ordered_indices(), max_tokens=2 * CROP * 2)[:UPDATES]
    lengths = [{int(dataset.sizes[i]) for i in b} for b in batches]
    assert all(len(one) == 1 for one in lengths) and set().union(*lengths) == {24000, 32000}, lengths
    a, b = run(ours, masks, kind, batches=batches), run(stock, masks, kind, batches=batches)
    assert_same_history(a, b)
    assert {s["sample"]["net_input"]["source"].shape[1] for s in a} == {24000, 32000}


class StockOffsets:
    """Stands in for ``np.random.randint`` while the stock arm collates: returns, in batch order, the crop offsets
    crop reading drew for the same clips (``crop_start(seed, epoch 1, id, slack)``), checking that fairseq asks for
    the same range ``0..slack``."""

    def __init__(self, sizes: np.ndarray, crop: int, batches: list, seed: int = 1):
        self.queue = []
        for ids in batches:
            target = min(min(int(sizes[i]) for i in ids), crop)
            self.queue += [(int(sizes[i]) - target, crop_start(seed, 1, i, int(sizes[i]) - target)) for i in ids
                           if sizes[i] > target]

    def __call__(self, low, high):
        slack, offset = self.queue.pop(0)
        assert (low, high) == (0, slack + 1), "fairseq draws the offset from another range"
        return offset


@pytest.mark.parametrize("model", ["music_hubert", "music2vec"])
def test_crop_reading_changes_only_where_the_offsets_come_from(corpus, masks, model, monkeypatch):
    """task.crop_reading=true decodes only each crop; fed the offsets crop reading drew, stock fairseq (whole files,
    then its collater's crop, and for MusicHuBERT its label slicing at round(start × 50 / 16000)) collates the same
    tensors and trains identically. Most offsets fall between label frames (320 samples apart). Waveform
    normalisation is off in both arms: fairseq standardises the whole file before cropping, crop reading the crop."""
    kind = "hubert" if model == "music_hubert" else "music2vec"
    whole_file_statistics = {"normalize": False}  # crop reading standardises the crop (test_crop_reading.py)
    ours = build_trainer(tiny_config(model, corpus, False, {"crop_reading": True, **whole_file_statistics}))
    stock = build_trainer(tiny_config(model, corpus, True, whole_file_statistics))
    stock.model.load_state_dict(copy.deepcopy(ours.model.state_dict()))
    assert type(ours.task.dataset("train")).__name__.startswith("CropReading")
    a = run(ours, masks, kind)
    dataset = ours.task.dataset("train")
    batches = [[(step * CLIPS_PER_BATCH + i) % len(dataset) for i in range(CLIPS_PER_BATCH)] for step in range(UPDATES)]
    offsets = StockOffsets(np.asarray(dataset.sizes), CROP, batches)
    assert sum(offset % 320 != 0 for _, offset in offsets.queue) > len(offsets.queue) // 2
    monkeypatch.setattr(np.random, "randint", offsets)
    b = run(stock, masks, kind)
    assert not offsets.queue
    assert_same_history(a, b)
    if kind == "hubert":
        for x, y in zip(a, b):
            torch.testing.assert_close(x["sample"]["target_list"][0], y["sample"]["target_list"][0], rtol=0, atol=0)
