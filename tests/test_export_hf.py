"""fairseq → transformers export: strict conversion, hidden-state parity, HFEncoder, CLI.

Stock fairseq ``hubert`` / ``data2vec_audio`` models are built in-process (tiny, random) and saved the way
fairseq saves checkpoints; our ``music_hubert`` / ``music2vec`` come from the shared ``tiny_checkpoints``
fixture (2 training updates). Parity tolerance: |fairseq - transformers| <= 1e-4 + 1e-4 * max|hidden| on
every hidden state, unpadded and padded (valid frames).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.dataclass.configs import FairseqConfig
from omegaconf import OmegaConf, open_dict

from conftest import write_clips

import music_ssl  # noqa: F401  (registers models; allows Dictionary in weights_only loads)
from music_ssl.checkpoint import FrozenEncoder
from music_ssl.export.hf import ExportError, convert_checkpoint, export_checkpoint
from music_ssl.export.hf_encoder import HFEncoder, HFModelError, hf_hidden_states
from music_ssl.export.parity import ATOL, RTOL, parity_check

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
CONV = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"
TINY = dict(conv_feature_layers=CONV, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
            encoder_attention_heads=2, conv_pos=16, conv_pos_groups=4)


def save_fairseq_checkpoint(path: Path, task_cfg: dict, model_cfg, seed: int = 0) -> Path:
    """Build a random fairseq model from (task, model) configs and save it as fairseq-hydra-train does."""
    from fairseq import tasks

    task_cfg = OmegaConf.create(task_cfg)
    task = tasks.setup_task(task_cfg)
    torch.manual_seed(seed)
    model = task.build_model(model_cfg)
    if hasattr(model, "make_ema_teacher"):
        model.make_ema_teacher()  # real data2vec checkpoints carry the teacher as "_ema"
    with torch.no_grad():  # random non-trivial norms/biases so a wrong mapping cannot pass by accident
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    cfg = OmegaConf.structured(FairseqConfig())
    with open_dict(cfg):
        cfg.optimization.max_update = 10
        cfg.task, cfg.model = task.cfg, model_cfg
    state = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "args": None, "model": model.state_dict(), "task_state": task.state_dict(), "last_optimizer_state": None,
        "optimizer_history": [{"criterion_name": "none", "optimizer_name": "none",
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "extra_state": {"train_iterator": {"epoch": 1}},
    }
    torch.save(state, path)
    return path


def stock_hubert(tmp: Path, normalize: bool = False, **overrides) -> Path:
    from fairseq.models.hubert.hubert import HubertConfig

    labels = tmp / "labels"
    labels.mkdir(exist_ok=True)
    (labels / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(8)))
    task = {"_name": "hubert_pretraining", "data": str(labels), "label_dir": str(labels), "labels": ["km"],
            "label_rate": 50.0, "normalize": normalize}
    cfg = OmegaConf.structured(HubertConfig(label_rate=50.0, final_dim=16, **{**TINY, **overrides}))
    cfg._name = "hubert"
    return save_fairseq_checkpoint(tmp / "hubert.pt", task, cfg)


def stock_data2vec(tmp: Path, normalize: bool = True, **overrides) -> Path:
    from fairseq.examples.data2vec.models.data2vec_audio import Data2VecAudioConfig

    task = {"_name": "audio_pretraining", "data": str(tmp), "normalize": normalize}
    fields = dict(extractor_mode="layer_norm", pos_conv_depth=2, average_top_k_layers=2, ema_anneal_end_step=10,
                  max_update=10)
    cfg = OmegaConf.structured(Data2VecAudioConfig(**{**TINY, **fields, **overrides}))
    cfg._name = "data2vec_audio"
    return save_fairseq_checkpoint(tmp / "data2vec.pt", task, cfg)


STOCK = {
    "hubert": lambda tmp: stock_hubert(tmp),
    "hubert_prenorm_layernorm_noproj": lambda tmp: stock_hubert(  # conv width == encoder width: no post_extract_proj
        tmp, normalize=True, extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True,
        conv_feature_layers="[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2"),
    "data2vec_audio": lambda tmp: stock_data2vec(tmp),
}


@pytest.fixture(params=sorted(STOCK))
def stock_checkpoint(request, tmp_path):
    return STOCK[request.param](tmp_path)


def assert_parity(result: dict) -> None:
    tolerance = ATOL + RTOL * result["max_abs_hidden"]
    assert result["unpadded_max_abs_diff"] <= tolerance, result
    assert result["padded_max_abs_diff"] <= tolerance, result
    assert result["passed"], result


def test_export_writes_hf_folder_with_parity(stock_checkpoint, tmp_path):
    out = tmp_path / "hf"
    info = export_checkpoint(stock_checkpoint, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "export_info.json", "model.safetensors", "preprocessor_config.json"]
    config = json.loads((out / "config.json").read_text())
    state = torch.load(stock_checkpoint, weights_only=True)
    task = state["cfg"]["task"]
    assert config["model_type"] == ("hubert" if "hubert" in task["_name"] else "data2vec-audio")
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["sampling_rate"] == 16000 and pre["do_normalize"] == task["normalize"]
    assert "final_proj.weight" in info["dropped_pretraining_only_keys"]
    assert_parity(parity_check(stock_checkpoint, out))


def test_parity_check_catches_a_wrong_model(tmp_path):
    """The comparison is sensitive: an export of a different random model fails it by a wide margin."""
    ckpt = stock_data2vec(tmp_path)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = stock_data2vec(other_dir)
    state = torch.load(other, weights_only=True)
    state["model"] = {k: (v + 0.05 * torch.randn_like(v) if torch.is_tensor(v) and v.is_floating_point() else v)
                      for k, v in state["model"].items()}
    torch.save(state, other)
    export_checkpoint(other, tmp_path / "hf_other")
    result = parity_check(ckpt, tmp_path / "hf_other")
    assert not result["passed"] and result["unpadded_max_abs_diff"] > 1e-2


def test_weight_norm_parametrization_keys_convert_the_same(tmp_path):
    """fairseq saved with torch parametrizations (original0/1) converts to the same model as weight_g/v."""
    ckpt = stock_hubert(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    renamed = {k.replace("pos_conv.0.weight_g", "pos_conv.0.parametrizations.weight.original0")
                .replace("pos_conv.0.weight_v", "pos_conv.0.parametrizations.weight.original1"): v
               for k, v in state["model"].items()}
    assert renamed.keys() != state["model"].keys()
    state["model"] = renamed
    other = tmp_path / "parametrized.pt"
    torch.save(state, other)
    a, b = convert_checkpoint(ckpt).model.state_dict(), convert_checkpoint(other).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def edited_checkpoint(ckpt: Path, model_edit=None, cfg_edit=None) -> Path:
    state = torch.load(ckpt, weights_only=True)
    if model_edit:
        model_edit(state["model"])
    if cfg_edit:
        cfg_edit(state["cfg"]["model"])
    out = ckpt.with_name("edited.pt")
    torch.save(state, out)
    return out


@pytest.mark.parametrize("edit, message", [
    (dict(model_edit=lambda m: m.__setitem__("encoder.extra_head.weight", torch.zeros(3))), "no transformers counterpart"),
    (dict(model_edit=lambda m: m.pop("encoder.layers.1.fc2.bias")), "missing"),
    (dict(cfg_edit=lambda c: c.__setitem__("layer_norm_first", True)), "post-LN only"),
    (dict(cfg_edit=lambda c: c.__setitem__("activation_fn", "relu_squared")), "activation_fn"),
    (dict(cfg_edit=lambda c: c.__setitem__("_name", "wav2vec2")), "no transformers converter"),
])
def test_strict_conversion_raises(tmp_path, edit, message):
    bad = edited_checkpoint(stock_data2vec(tmp_path), **edit)
    with pytest.raises(ExportError, match=message) as err:
        convert_checkpoint(bad)
    assert str(bad) in str(err.value)


def test_existing_folder_needs_overwrite(tmp_path):
    ckpt, out = stock_hubert(tmp_path), tmp_path / "hf"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(ExportError, match="--overwrite"):
        export_checkpoint(ckpt, out)
    export_checkpoint(ckpt, out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # no staging leftovers


def test_hf_encoder_matches_frozen_encoder(tmp_path):
    """HFEncoder over the export == FrozenEncoder over the checkpoint: batch with padding and encode_long."""
    ckpt = stock_data2vec(tmp_path)
    export_checkpoint(ckpt, tmp_path / "hf")
    hf, fs = HFEncoder.from_pretrained(tmp_path / "hf", device="cpu"), FrozenEncoder.from_checkpoint(ckpt, "cpu")
    for attr in ("sample_rate", "normalize", "frame_rate", "num_layers", "dim", "stride", "receptive_field"):
        assert getattr(hf, attr) == getattr(fs, attr), attr
    audio = 0.3 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([16000, 11000])
    (h_hf, n_hf), (h_fs, n_fs) = hf(audio, lengths), fs(audio, lengths)
    assert torch.equal(n_hf, n_fs) and len(h_hf) == 3
    for a, b in zip(h_hf, h_fs):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)
    single, _ = hf(audio[1:, :11000])  # padded item == item alone
    assert torch.allclose(single[-1][0], h_hf[-1][1, : int(n_hf[1])], atol=1e-5)
    long_audio = audio[0].repeat(3).numpy()  # 3 s in 1-s chunks
    states = hf.encode_long(long_audio, chunk_seconds=1.0)
    reference = fs.encode_long(long_audio, chunk_seconds=1.0)
    assert len(states) == 3 and states[0].shape == (int(hf.frames(torch.tensor(len(long_audio)))), 64)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(states, reference))
    assert hf.sha256 == HFEncoder.from_pretrained(tmp_path / "hf", "cpu").sha256


def test_hf_encoder_prenorm_last_state_is_encoder_output(tmp_path):
    """Pre-LN models: the last hidden state is the normed encoder output (transformers 5 reports it unnormed)."""
    ckpt = STOCK["hubert_prenorm_layernorm_noproj"](tmp_path)
    export_checkpoint(ckpt, tmp_path / "hf")
    enc = HFEncoder.from_pretrained(tmp_path / "hf", device="cpu")
    audio = torch.randn(1, 8000)
    out = enc.model(audio, output_hidden_states=True)
    hidden, _ = enc.forward(audio, None, normalize=False)  # the raw model saw unnormalised audio
    assert torch.equal(hidden[-1], out.last_hidden_state)
    assert not torch.allclose(out.hidden_states[-1], out.last_hidden_state, atol=1e-3)


def test_hf_encoder_rejects_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        HFEncoder.from_pretrained(tmp_path)
    bert = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(HFModelError, match="not a wav2vec2-family"):
        HFEncoder.from_pretrained(tmp_path / "bert")


def test_probe_encoder_source_reads_hf_folder(tmp_path):
    from music_ssl.probe.features.encoder_source import EncoderSource

    export_checkpoint(stock_hubert(tmp_path), tmp_path / "hf")
    source = EncoderSource("hf", tmp_path / "hf", device="cpu")
    assert isinstance(source.encoder, HFEncoder) and source.encoder.num_layers == 2
    paths = write_clips(tmp_path / "audio", 2, 1.0)
    features, names, frame_rate = source.extract(paths, "frames", None, None)
    assert names == ["cnn", "layer1", "layer2"] and frame_rate == 50.0
    assert [f.shape for f in features] == [(49, 3, 64)] * 2


def run_export_cli(*args):
    return subprocess.run([sys.executable, "-m", "tools.export_hf", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two interpreter start-ups importing fairseq + transformers (~20 s on 2 cores)
def test_cli_exports_with_check_and_reports_bad_input(tmp_path):
    ckpt = stock_hubert(tmp_path)
    proc = run_export_cli(ckpt, tmp_path / "hf", "--check")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "hf" / "export_info.json").read_text())
    assert info["parity"]["passed"] and info["transformers_class"] == "HubertModel"
    proc = run_export_cli(tmp_path / "missing.pt", tmp_path / "hf2")
    assert proc.returncode == 1 and "missing.pt" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["music2vec", "music_hubert"])
def test_music_models_export_with_parity(tiny_checkpoints, tmp_path, name):
    ckpt = tiny_checkpoints[name]
    info = export_checkpoint(ckpt, tmp_path / name)
    expected = {"music2vec": "Data2VecAudioModel", "music_hubert": "HubertModel"}[name]
    assert info["fairseq_model"] == name and info["transformers_class"] == expected
    assert_parity(parity_check(ckpt, tmp_path / name))
    reloaded = transformers.AutoModel.from_pretrained(tmp_path / name)
    assert type(reloaded).__name__ == expected
    hidden = hf_hidden_states(reloaded.eval(), torch.zeros(1, 16000))
    assert len(hidden) == 5 and hidden[0].shape == (1, 49, 64)


def test_hf_encoder_reads_any_wav2vec2_family_folder(tmp_path):
    """A folder not written by us (wav2vec2, no preprocessor_config.json): defaults, every hidden state."""
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=[16] * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    enc = HFEncoder.from_pretrained(tmp_path / "w2v", device="cpu")
    assert (enc.sample_rate, enc.normalize, enc.frame_rate, enc.num_layers, enc.dim) == (16000, False, 50.0, 3, 32)
    audio = 0.3 * torch.randn(2, 12000, generator=torch.Generator().manual_seed(2))
    hidden, frames = enc(audio, torch.tensor([12000, 7000]))
    assert len(hidden) == 4 and frames.tolist() == [37, 21] and hidden[0].shape == (2, 37, 32)
    alone, _ = enc(audio[1:, :7000])
    assert all(torch.allclose(a[0], h[1, :21], atol=1e-5) for a, h in zip(alone, hidden))
    assert (hidden[-1][1, 21:] == 0).all()  # padding frames are zero


@pytest.mark.gpu
def test_hf_encoder_on_cuda_matches_cpu(tmp_path):
    export_checkpoint(stock_data2vec(tmp_path), tmp_path / "hf")
    audio = 0.3 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3))
    cpu, _ = HFEncoder.from_pretrained(tmp_path / "hf", device="cpu")(audio)
    gpu, _ = HFEncoder.from_pretrained(tmp_path / "hf", device="cuda")(audio.cuda())
    assert all(torch.allclose(a, b.cpu(), atol=1e-3) for a, b in zip(cpu, gpu))
