"""music2vec2 → transformers export (#24): a remote-code folder (configuration_music2vec2.py + modeling_music2vec2.py,
``auto_map``) whose ``Music2Vec2Model`` gives the fairseq model's hidden states, loaded by ``AutoModel`` and
``HFEncoder`` only with ``trust_remote_code=True``; HEAR over the checkpoint and the folder.

The trained model is music2vec2_tiny after 2 updates (fairseq-hydra-train on CPU, once per module); the architecture
variants (group-norm conv stack, context blocks, pre-LN, per-layer ALiBi scales, 3 heads, a negative scale) are built
in-process with random weights. Parity tolerance as for the other models: |fairseq - transformers| <= 1e-4 + 1e-4 *
max|hidden| on every hidden state, unpadded and padded (valid frames); measured on CPU with torch 2.11: 0.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.dataclass.configs import FairseqConfig
from omegaconf import OmegaConf, open_dict

import music_ssl  # noqa: F401  (registers music2vec2; allows Dictionary in weights_only loads)
from conftest import run_cli, train_tiny
from music_ssl.checkpoint import FrozenEncoder, load_fairseq_model, read_fairseq_state
from music_ssl.core.errors import ExportError
from music_ssl.export import hear
from music_ssl.export.hf import REMOTE_CODE, convert_music2vec2, export_checkpoint, music2vec2_config
from music_ssl.export.hf_encoder import HFEncoder, RemoteCodeRefusedError
from music_ssl.export.parity import ATOL, RTOL, parity_check

transformers = pytest.importorskip("transformers")
EXPORT_DIR = Path(music_ssl.__file__).parent / "export"
FILES = sorted(["config.json", "model.safetensors", "preprocessor_config.json", "export_info.json", *REMOTE_CODE])


@pytest.fixture(scope="module")
def hf_modules(tmp_path_factory):
    """transformers copies remote code into HF_MODULES_CACHE and imports it as ``transformers_modules``: a tmp folder
    for this module (also for the console script, by the environment), all undone afterwards."""
    import transformers.dynamic_module_utils as dynamic

    cache = str(tmp_path_factory.mktemp("hf_modules"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dynamic, "HF_MODULES_CACHE", cache)
        patch.setenv("HF_MODULES_CACHE", cache)
        patch.setattr(sys, "path", list(sys.path))
        yield cache
        for name in [m for m in sys.modules if m.split(".")[0] == "transformers_modules"]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_corpus):
    """checkpoint_last.pt of music2vec2_tiny after 2 updates (EMA teacher and decoder inside)."""
    return train_tiny("music2vec2_tiny", session_corpus, tmp_path_factory.mktemp("m2v2") / "ckpt")


@pytest.fixture(scope="module")
def exported(trained, hf_modules, tmp_path_factory):
    """(folder, stderr) of ``music-ssl-export-hf CHECKPOINT OUT --check`` on the trained checkpoint."""
    out = tmp_path_factory.mktemp("export") / "music2vec2"
    proc = run_cli(["music-ssl-export-hf", str(trained), str(out), "--check"], cwd=out.parent)
    return out, proc.stderr


def noise(batch: int, samples: int, seed: int = 1) -> torch.Tensor:
    """(batch, samples) Gaussian noise of std 0.3."""
    return 0.3 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def load_folder(folder: Path):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder), local_files_only=True, trust_remote_code=True).eval()


def assert_parity(result: dict) -> None:
    tolerance = ATOL + RTOL * result["max_abs_hidden"]
    assert result["passed"], result
    assert result["unpadded_max_abs_diff"] <= tolerance and result["padded_max_abs_diff"] <= tolerance, result


def test_console_script_writes_a_remote_code_folder_that_passed_its_parity_check(exported, trained):
    out, stderr = exported
    assert sorted(p.name for p in out.iterdir()) == FILES
    for name in REMOTE_CODE:  # the package's own files, copied unchanged
        assert (out / name).read_bytes() == (EXPORT_DIR / name).read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "music2vec2" and config["architectures"] == ["Music2Vec2Model"]
    assert config["auto_map"] == {"AutoConfig": "configuration_music2vec2.Music2Vec2Config",
                                  "AutoModel": "modeling_music2vec2.Music2Vec2Model"}
    assert (config["conv_dim"], config["conv_kernel"], config["conv_stride"]) == (
        [64] * 7, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])  # music2vec2_tiny's feature_encoder_spec
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (4, 64, 4)
    assert config["use_alibi"] and config["alibi_scale_per_head"] and config["num_conv_pos_layers"] == 2
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["sampling_rate"] == 16000 and pre["do_normalize"] is True  # music2vec2_tiny: task.normalize
    info = json.loads((out / "export_info.json").read_text())
    assert info["transformers_class"] == "Music2Vec2Model" and info["remote_code"] == list(REMOTE_CODE)
    assert_parity(info["parity"])
    assert "Music2Vec2Model from music2vec2" in stderr and "parity max |diff|" in stderr


def test_teacher_and_decoder_are_not_exported(exported, trained):
    from safetensors.torch import load_file

    out, _ = exported
    dropped = json.loads((out / "export_info.json").read_text())["dropped_pretraining_only_keys"]
    source = torch.load(trained, weights_only=True, map_location="cpu")["model"]
    assert "_ema" in dropped and source["_ema"], "the checkpoint carries the EMA teacher"
    assert sorted(dropped) == sorted(k for k in source if k == "_ema" or ".decoder." in k)
    names = set(load_file(out / "model.safetensors"))
    assert not [n for n in names if "decoder" in n or "ema" in n]
    student = [k for k in source if k not in dropped]
    assert len(names) == len(student) and "encoder.alibi_scale" in names
    assert torch.equal(load_file(out / "model.safetensors")["encoder.alibi_scale"],
                       source["modality_encoders.AUDIO.alibi_scale"])


def test_automodel_gives_the_fairseq_hidden_states_padded_and_not(exported, trained):
    """Every hidden state (L + 1, index 0 the input of block 1) equals Music2Vec2Model.extract_hidden_states."""
    out, _ = exported
    model = load_folder(out)
    assert type(model).__name__ == "Music2Vec2Model"
    fairseq_model, _cfg = load_fairseq_model(trained)
    audio, lengths = noise(2, 24000), torch.tensor([24000, 13000])
    padding = torch.arange(24000)[None] >= lengths[:, None]
    audio = audio.masked_fill(padding, 0.0)
    with torch.no_grad():
        reference, frame_mask = fairseq_model.extract_hidden_states(audio, padding_mask=padding)
        result = model(audio, attention_mask=(~padding).long(), output_hidden_states=True)
    hidden = result.hidden_states
    assert len(hidden) == 4 + 1 and all(h.shape == (2, 74, 64) for h in hidden)
    valid = ~frame_mask  # frames of item 2 past its 40 valid ones are padding
    assert int(valid[1].sum()) == 40
    for ref, out_state in zip(reference, hidden):
        torch.testing.assert_close(out_state[valid], ref[valid], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(result.last_hidden_state, hidden[-1], rtol=0, atol=0)
    assert not torch.allclose(hidden[0], hidden[1]), "state 0 is the input of block 1"
    with torch.no_grad():  # batch vs single: the padded item alone gives its valid frames again
        alone = model(audio[1:, :13000], output_hidden_states=True).hidden_states
        unpadded, _ = fairseq_model.extract_hidden_states(audio[:1])
        first = model(audio[:1]).last_hidden_state
    torch.testing.assert_close(first, unpadded[-1], rtol=RTOL, atol=ATOL)
    assert alone[-1].shape == (1, 40, 64)


def test_modeling_files_import_only_torch_and_transformers():
    allowed = {"math", "typing", "torch", "transformers", "configuration_music2vec2"}
    for name in REMOTE_CODE:
        tree = ast.parse((EXPORT_DIR / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported <= allowed, (name, imported - allowed)


BLOCKED_RUN = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("fairseq", "music_ssl", "examples"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], local_files_only=True, trust_remote_code=True).eval()
with torch.no_grad():
    out = model(torch.from_numpy(np.load(sys.argv[2])), output_hidden_states=True)
np.save(sys.argv[3], torch.stack(out.hidden_states).numpy())
print(type(model).__module__, sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq", "music_ssl")))
"""


@pytest.mark.slow  # one interpreter importing torch + transformers
def test_folder_runs_without_fairseq_or_music_ssl(exported, trained, tmp_path):
    """A fresh interpreter where fairseq and music_ssl cannot be imported loads the folder and gives the states."""
    out, _ = exported
    audio = noise(1, 16000, seed=3).numpy()
    np.save(tmp_path / "audio.npy", audio)
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(out), str(tmp_path / "audio.npy"),
                           str(tmp_path / "hidden.npy")], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "[]" and "transformers_modules" in proc.stdout
    fairseq_model, _cfg = load_fairseq_model(trained)
    with torch.no_grad():
        reference, _ = fairseq_model.extract_hidden_states(torch.from_numpy(audio))
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "hidden.npy")), torch.stack(reference),
                               rtol=RTOL, atol=ATOL)


def test_remote_code_is_never_implied(exported, trained):
    out, _ = exported
    with pytest.raises(RemoteCodeRefusedError, match="modeling_music2vec2.py"):
        HFEncoder.from_pretrained(out, device="cpu")
    with pytest.raises(RemoteCodeRefusedError):
        parity_check(trained, out)
    with pytest.raises(RemoteCodeRefusedError):  # HEAR too: only with its trust_remote_code=True
        hear.load_model(str(out), device="cpu")


def test_hf_encoder_and_hear_match_the_checkpoint(exported, trained):
    out, _ = exported
    folder = HFEncoder.from_pretrained(out, device="cpu", trust_remote_code=True)
    checkpoint = FrozenEncoder.from_checkpoint(trained, device="cpu")
    assert folder.remote_code and (folder.num_layers, folder.dim, folder.frame_rate, folder.sample_rate) == (
        checkpoint.num_layers, checkpoint.dim, checkpoint.frame_rate, checkpoint.sample_rate) == (4, 64, 50.0, 16000)
    assert folder.normalize and checkpoint.normalize and folder.receptive_field == checkpoint.receptive_field == 400
    audio, lengths = noise(3, 24000, seed=5), torch.tensor([24000, 20000, 9000])
    states, frames = folder(audio, lengths)
    reference, reference_frames = checkpoint(audio, lengths)
    assert torch.equal(frames, reference_frames) and len(states) == 5
    for ours, ref in zip(states, reference):  # normalisation: fairseq's eps in both (export_info.json marks ours)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    long_clip = noise(1, 16000 * 5, seed=6)[0].numpy()
    for ours, ref in zip(folder.encode_long(long_clip, chunk_seconds=2.0), checkpoint.encode_long(long_clip, 2.0)):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)

    from_checkpoint = hear.load_model(str(trained), device="cpu")
    from_folder = hear.load_model(str(out), device="cpu", trust_remote_code=True)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, from_checkpoint)
    folder_embeddings, folder_timestamps = hear.get_timestamp_embeddings(audio, from_folder)
    assert embeddings.shape == (3, 74, 64) and from_checkpoint.scene_embedding_size == 64
    torch.testing.assert_close(folder_embeddings, embeddings, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(folder_timestamps, timestamps, rtol=0, atol=0)
    scene = hear.get_scene_embeddings(audio, from_checkpoint)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, from_folder), scene, rtol=1e-4, atol=1e-4)


def test_parity_check_catches_a_wrong_alibi_scale(exported, trained, tmp_path):
    """The check is sensitive to the ALiBi scale (one per head): zeroed in a copy of the folder, it fails."""
    from safetensors.torch import load_file, save_file

    out, _ = exported
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in out.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    weights = load_file(out / "model.safetensors")
    weights["encoder.alibi_scale"] = torch.zeros_like(weights["encoder.alibi_scale"])
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    result = parity_check(trained, broken, trust_remote_code=True)
    assert not result["passed"] and result["unpadded_max_abs_diff"] > 1e-2


# ---- architecture variants, built in-process -------------------------------------------------------------------

TINY = dict(depth=2, embed_dim=48, num_heads=4, clone_batch=1, average_top_k_layers=2, norm_eps=1e-5,
            modalities=dict(audio=dict(feature_encoder_spec="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
                                       conv_pos_width=16, conv_pos_groups=4, conv_pos_depth=2, prenet_depth=0,
                                       use_alibi_encoder=True, learned_alibi_scale=True,
                                       learned_alibi_scale_per_head=True,
                                       decoder=dict(decoder_dim=16, decoder_groups=4, decoder_layers=1))))
VARIANTS = {
    "tiny": {},
    "group_norm_prenet_pre_ln_pos_per_layer_alibi_3_heads": dict(  # odd head count: the interleaved ALiBi slopes
        num_heads=3, modalities=dict(audio=dict(
            extractor_mode="default", prenet_depth=1, conv_pos_pre_ln=True, conv_pos_width=15,
            learned_alibi_scale_per_layer=True))),
    "pre_ln_no_affine_one_alibi_scale": dict(
        layer_norm_first=True, norm_affine=False, mlp_ratio=3.0,
        modalities=dict(audio=dict(conv_pos_depth=1, learned_alibi_scale_per_head=False, alibi_scale=0.7))),
    "no_alibi": dict(modalities=dict(audio=dict(use_alibi_encoder=False))),
}


def save_music2vec2(path: Path, overrides: dict, seed: int = 0) -> Path:
    """A random music2vec2 (with EMA teacher and decoder) saved as fairseq-hydra-train saves checkpoints; every
    weight perturbed (so a swapped mapping cannot pass) and one ALiBi scale negative (fairseq clamps it to 0)."""
    from fairseq import tasks

    from music_ssl.models.music2vec2 import Music2Vec2Config, Music2Vec2Model

    structured = OmegaConf.structured(Music2Vec2Config(ema_anneal_end_step=10, max_update=10, seed=1))
    root = OmegaConf.create({"model": OmegaConf.merge(structured, TINY, overrides)})  # II("model.…") resolve here
    torch.manual_seed(seed)
    model = Music2Vec2Model.build_model(root.model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(0.1 * torch.randn_like(param))
        scale = model.audio_encoder.alibi_scale
        if scale is not None:
            scale.view(-1)[0] = -0.2
    cfg = OmegaConf.structured(FairseqConfig())
    task = tasks.setup_task(OmegaConf.create({"_name": "audio_pretraining", "data": str(path.parent),
                                              "normalize": True}))
    with open_dict(cfg):
        cfg.optimization.max_update = 10
        cfg.task, cfg.model = task.cfg, OmegaConf.to_container(root.model, resolve=True, enum_to_str=True)
        cfg.model["_name"] = "music2vec2"
    torch.save({"cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "args": None,
                "model": model.state_dict(), "task_state": task.state_dict(), "last_optimizer_state": None,
                "optimizer_history": [{"criterion_name": "model", "optimizer_name": "none",
                                       "lr_scheduler_state": {"best": None}, "num_updates": 0}],
                "extra_state": {"train_iterator": {"epoch": 1}}}, path)
    return path


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_architecture_variants_export_with_parity(variant, tmp_path, hf_modules):
    checkpoint = save_music2vec2(tmp_path / "m2v2.pt", VARIANTS[variant])
    info = export_checkpoint(checkpoint, tmp_path / "hf", check=True)
    assert_parity(info["parity"])
    assert info["parity"]["max_abs_hidden"] > 0.1
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    encoder = HFEncoder.from_pretrained(tmp_path / "hf", device="cpu", trust_remote_code=True)  # its load check
    assert encoder.num_layers == config["num_hidden_layers"] == 2 and encoder.frame_rate == 50.0


def strict_case(tmp_path, edit):
    """(state, path) of a tiny random music2vec2 with ``edit(state)`` applied."""
    path = save_music2vec2(tmp_path / "m2v2.pt", {})
    state = read_fairseq_state(path)
    edit(state)
    return state, path


def set_key(section: str, key: str, value):
    def edit(state):
        cfg = state["cfg"].model if section == "model" else state["cfg"].model.modalities.audio
        with open_dict(cfg):
            cfg[key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (set_key("model", "new_field", 1), r"model config keys the converter does not know: \['new_field'\]"),
    (set_key("audio", "learned_alibi", True), r"learned_alibi=True: .* implements only learned_alibi=False"),
    (set_key("audio", "num_extra_tokens", 1), "num_extra_tokens=1"),
    (set_key("model", "supported_modality", "IMAGE"), "supported_modality=IMAGE"),
    (set_key("audio", "extractor_mode", "weird"), "extractor_mode=weird"),
    (lambda state: state["model"].__setitem__("blocks.0.extra.weight", torch.zeros(1)),
     r"weights with no Music2Vec2Model counterpart: \['blocks.0.extra.weight'\]"),
    (lambda state: state["model"].pop("blocks.1.mlp.fc2.bias"),
     r"missing \['encoder.layers.1.feed_forward.output_dense.bias'\]"),
])
def test_strict_conversion_raises(tmp_path, edit, message):
    state, path = strict_case(tmp_path, edit)
    with pytest.raises(ExportError, match=message) as err:
        convert_music2vec2(state, path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_config_is_read_from_the_checkpoint_not_typed(tmp_path):
    state, path = strict_case(tmp_path, lambda state: None)
    config = music2vec2_config(state["cfg"].model, path)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (48, 2, 192)
    assert (config.conv_pos_kernel_size, config.num_conv_pos_layers, config.num_alibi_heads) == (8, 2, 4)
    assert config.conv_dim == [32] * 7 and config.feat_extract_norm == "layer" and not config.layer_norm_first


@pytest.mark.gpu
def test_exported_folder_on_cuda_matches_cpu(tmp_path, hf_modules):
    """The remote-code model builds its ALiBi biases and frame padding on the input's device."""
    checkpoint = save_music2vec2(tmp_path / "m2v2.pt", VARIANTS["group_norm_prenet_pre_ln_pos_per_layer_alibi_3_heads"])
    export_checkpoint(checkpoint, tmp_path / "hf")
    audio, lengths = noise(2, 16000, seed=3), torch.tensor([16000, 11000])
    cpu, _ = HFEncoder.from_pretrained(tmp_path / "hf", device="cpu", trust_remote_code=True)(audio, lengths)
    gpu, _ = HFEncoder.from_pretrained(tmp_path / "hf", device="cuda", trust_remote_code=True)(audio.cuda(), lengths)
    assert all(torch.allclose(a, b.cpu(), atol=1e-3) for a, b in zip(cpu, gpu))
    model = load_folder(tmp_path / "hf").cuda()
    mask = (torch.arange(16000)[None] < lengths[:, None]).long()
    with torch.no_grad():
        out = model(audio.cuda(), attention_mask=mask.cuda(), output_hidden_states=True)
    assert out.hidden_states[0].device.type == "cuda" and len(out.hidden_states) == 3
