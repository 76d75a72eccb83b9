"""fairseq → transformers export: strict conversion, hidden-state parity, HFEncoder, CLI.

Stock fairseq ``hubert`` / ``data2vec_audio`` models are built in-process (tiny, random) and saved the way
fairseq saves checkpoints; our ``music_hubert`` / ``music2vec`` come from the shared ``tiny_checkpoints``
fixture (2 training updates). Parity tolerance: |fairseq - transformers| <= 1e-4 + 1e-4 * max|hidden| on
every hidden state, unpadded and padded (valid frames); on CPU with torch 2.11 the measured difference is 0.
"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.dataclass.configs import FairseqConfig
from omegaconf import OmegaConf, open_dict
from test_bad_input_labels import run_cli

import music_ssl  # noqa: F401  (registers models; allows Dictionary in weights_only loads)
from music_ssl.checkpoint import CheckpointError, FrozenEncoder
from music_ssl.export.hf import ExportError, convert_checkpoint, export_checkpoint
from music_ssl.export.hf_encoder import HFEncoder, HFModelError, hf_hidden_states
from music_ssl.export.parity import ATOL, RTOL, parity_check

transformers = pytest.importorskip("transformers")

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
        tmp, normalize=True, extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True, conv_pos=17,
        activation_fn="gelu_accurate", conv_feature_layers="[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2"),
    "data2vec_audio": lambda tmp: stock_data2vec(tmp),
    "data2vec_audio_base_pos_conv_relu": lambda tmp: stock_data2vec(  # base geometry: 5 convs of kernel 95 // 5
        tmp, conv_pos=95, pos_conv_depth=5, activation_fn="relu"),
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


def test_padded_hubert_parity_needs_the_conv_formula_mask(tmp_path, monkeypatch):
    """At the padded length parity uses, fairseq HuBERT's own frame mask keeps one frame more than transformers':
    compared without the conv-formula mask the padded states differ, so the padded check is not vacuous."""
    from contextlib import nullcontext

    from music_ssl.export import parity

    ckpt = stock_hubert(tmp_path)
    export_checkpoint(ckpt, tmp_path / "hf")
    monkeypatch.setattr(parity, "conv_formula_padding", lambda model, _spec, _lengths: nullcontext(model))
    result = parity_check(ckpt, tmp_path / "hf")
    assert result["unpadded_max_abs_diff"] <= ATOL and result["padded_max_abs_diff"] > 1e-2, result
    assert not result["passed"]


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


def edited_checkpoint(ckpt: Path, model_edit=None, cfg_edit=None, name: str = "edited.pt") -> Path:
    state = torch.load(ckpt, weights_only=True)
    if model_edit:
        model_edit(state["model"])
    if cfg_edit:
        cfg_edit(state["cfg"]["model"])
    out = ckpt.with_name(name)
    torch.save(state, out)
    return out


@pytest.mark.parametrize("make, edit, message", [
    (stock_data2vec, dict(model_edit=lambda m: m.__setitem__("encoder.extra_head.weight", torch.zeros(3))),
     "no transformers counterpart"),
    (stock_data2vec, dict(model_edit=lambda m: m.pop("encoder.layers.1.fc2.bias")), "missing"),
    (stock_data2vec, dict(cfg_edit=lambda c: c.__setitem__("new_arch_option", 1)), "does not know.*new_arch_option"),
    (stock_data2vec, dict(cfg_edit=lambda c: c.pop("encoder_ffn_embed_dim")), "lacks.*encoder_ffn_embed_dim"),
    (stock_data2vec, dict(cfg_edit=lambda c: c.__setitem__("layer_type", "conformer")), "layer_type=conformer"),
    (stock_data2vec, dict(cfg_edit=lambda c: c.__setitem__("layer_norm_first", True)), "post-LN only"),
    (stock_data2vec, dict(cfg_edit=lambda c: c.__setitem__("activation_fn", "relu_squared")), "activation_fn"),
    (stock_data2vec, dict(cfg_edit=lambda c: c.__setitem__("_name", "wav2vec2")), "no transformers converter"),
    (stock_hubert, dict(cfg_edit=lambda c: c.__setitem__("conv_pos_batch_norm", True)), "conv_pos_batch_norm=True"),
])
def test_strict_conversion_raises(tmp_path, make, edit, message):
    bad = edited_checkpoint(make(tmp_path), **edit)
    with pytest.raises(ExportError, match=message) as err:
        convert_checkpoint(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


class NotAllowed:  # a class torch's weights-only unpickler refuses
    pass


def without_cfg(path: Path) -> None:
    state = torch.load(stock_data2vec(path.parent), weights_only=True)
    state["cfg"] = None
    torch.save(state, path)


@pytest.mark.parametrize("write, message", [
    (lambda path: path.write_bytes(b"RIFF....WAVEfmt "), r"a WAV audio file, not a fairseq checkpoint"),
    (lambda path: path.write_bytes(b"\x00garbage" * 10), r"cannot be read as a fairseq checkpoint \(the safe unpickler"),
    (lambda path: torch.save({"model": NotAllowed()}, path), "Unsupported global"),
    (lambda path: torch.save({"model": {}}, path), "KeyError"),
    (without_cfg, "no model config"),
])
def test_unreadable_checkpoints_raise_one_line(tmp_path, write, message):
    bad = tmp_path / "bad.pt"
    write(bad)
    with pytest.raises(CheckpointError, match=message) as err:
        convert_checkpoint(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_overwrite_replaces_only_the_exports_files_and_keeps_the_users(tmp_path):
    ckpt, out = stock_hubert(tmp_path), tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    export_checkpoint(ckpt, out)  # a folder with only the user's files needs no overwrite
    first = (out / "model.safetensors").read_bytes()
    with pytest.raises(ExportError, match=r"already holds config.json, model.safetensors, .* pass overwrite=True"):
        export_checkpoint(ckpt, out)
    (out / "config.json").write_text("{}")  # a damaged earlier export
    export_checkpoint(ckpt, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").read_bytes() == first
    assert json.loads((out / "config.json").read_text())["model_type"] == "hubert"
    assert sorted(p.name for p in out.iterdir()) == sorted(["notes.txt", "config.json", "model.safetensors",
                                                            "preprocessor_config.json", "export_info.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # no staging leftovers


def test_bad_export_target_other_weights_or_a_file(tmp_path):
    ckpt, out = stock_hubert(tmp_path), tmp_path / "hf"
    out.mkdir()
    (out / "pytorch_model.bin").write_bytes(b"old weights")
    with pytest.raises(ExportError, match="pytorch_model.bin.*transformers could load instead"):
        export_checkpoint(ckpt, out, overwrite=True)
    assert (out / "pytorch_model.bin").read_bytes() == b"old weights"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="file: exists and is not a folder"):
        export_checkpoint(ckpt, tmp_path / "file")


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_export_permissions_follow_the_umask(tmp_path, mask):
    ckpt, out = stock_hubert(tmp_path), tmp_path / "new" / "hf"
    old = os.umask(mask)
    try:
        export_checkpoint(ckpt, out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


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
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "no-such-model"}')
    with pytest.raises(HFModelError, match="odd: config.json is not a config"):
        HFEncoder.from_pretrained(tmp_path / "odd")
    export_checkpoint(stock_hubert(tmp_path), tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(HFModelError, match="hf: cannot load the weights"):
        HFEncoder.from_pretrained(tmp_path / "hf")


def run_cli_in_process(monkeypatch, capsys, *args) -> tuple:
    """(exit code, stderr) of ``music-ssl-export-hf ARGS`` run in this process."""
    from music_ssl.cli.export_hf import cli

    return run_cli(monkeypatch, capsys, cli, "music-ssl-export-hf", *args)


def test_cli_bad_inputs_give_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    ckpt = stock_data2vec(tmp_path)
    not_wav2vec2 = edited_checkpoint(ckpt, cfg_edit=lambda c: c.__setitem__("_name", "transformer_lm"))
    unknown_key = edited_checkpoint(ckpt, model_edit=lambda m: m.__setitem__("encoder.adapter.weight", torch.zeros(2)),
                                    name="unknown_key.pt")
    (tmp_path / "taken").write_text("a file")
    cases = [((tmp_path / "missing.pt", tmp_path / "a"), "missing.pt: checkpoint not found"),
             ((not_wav2vec2, tmp_path / "b"), "edited.pt: model 'transformer_lm' has no transformers converter"),
             ((unknown_key, tmp_path / "c"), "unknown_key.pt: weights with no transformers counterpart"),
             ((ckpt, tmp_path / "taken"), "taken: exists and is not a folder")]
    for args, message in cases:
        code, err = run_cli_in_process(monkeypatch, capsys, *args)
        lines = [line for line in err.splitlines() if not line[:4].isdigit()]  # drop timestamped log lines
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
        assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging leftovers


@pytest.mark.slow  # one interpreter start-up importing fairseq + transformers (~10 s on 2 cores)
def test_console_script_exports_with_check(tmp_path):
    ckpt = stock_hubert(tmp_path)
    script = Path(sys.executable).parent / "music-ssl-export-hf"
    proc = subprocess.run([str(script), str(ckpt), str(tmp_path / "hf"), "--check"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "hf" / "export_info.json").read_text())
    assert info["parity"]["passed"] and info["transformers_class"] == "HubertModel"
    assert "HubertModel from hubert, 16000 Hz" in proc.stderr
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    assert type(model).__name__ == "HubertModel"


def moved_away(ckpt: Path, tmp: Path) -> Path:
    """A copy of ``ckpt`` whose data and label folders do not exist (a checkpoint taken to another machine)."""
    state = torch.load(ckpt, weights_only=True)
    for key in ("data", "label_dir"):
        if key in state["cfg"]["task"]:
            state["cfg"]["task"][key] = str(tmp / "gone")
    torch.save(state, tmp / "moved.pt")
    return tmp / "moved.pt"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["music2vec", "music_hubert"])
def test_music_models_export_with_parity(tiny_checkpoints, tmp_path, name):
    ckpt = moved_away(tiny_checkpoints[name], tmp_path)
    info = export_checkpoint(ckpt, tmp_path / name, check=True)
    expected = {"music2vec": "Data2VecAudioModel", "music_hubert": "HubertModel"}[name]
    assert info["fairseq_model"] == name and info["transformers_class"] == expected
    assert_parity(info["parity"])
    pre = json.loads((tmp_path / name / "preprocessor_config.json").read_text())
    assert pre["sampling_rate"] == 16000 and pre["do_normalize"] == (name == "music2vec")  # the tiny configs
    reloaded = transformers.AutoModel.from_pretrained(tmp_path / name)
    assert type(reloaded).__name__ == expected
    hidden = hf_hidden_states(reloaded.eval(), torch.zeros(1, 16000))
    assert len(hidden) == 5 and hidden[0].shape == (1, 49, 64)


def test_hf_encoder_reads_any_wav2vec2_family_folder(tmp_path):
    """A folder not written by us (wav2vec2 saved in float16, no preprocessor_config.json): defaults, float32,
    every hidden state."""
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=[16] * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).half().save_pretrained(tmp_path / "w2v")
    enc = HFEncoder.from_pretrained(tmp_path / "w2v", device="cpu")
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
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
