"""Public checkpoints beside ours: ``source.kind=hf`` on folders as they are published.

(a) transformers-native folders (``Data2VecAudioModel`` — music2vec-v1's class —, ``HubertModel``,
``Wav2Vec2Model``), tiny and random, saved here: the probe's features are every hidden state of the model called
directly, on audio read at the folder's sample rate and, with ``do_normalize``, normalised by transformers' own
``Wav2Vec2FeatureExtractor`` (the reference a MERT / music2vec-v1 model card uses).
(b) a remote-code folder shaped like MERT's (``config.json`` with ``auto_map``; ``configuration_*.py`` and
``modeling_*.py`` written by this test; ``preprocessor_config.json`` at 24 kHz with ``do_normalize``): refused
without ``trust_remote_code`` (its code never runs), probed at 24 kHz with it.
Clips are written at 16 kHz (and 22.05 kHz), so every folder here needs resampling.
"""
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synth_clip

from music_ssl.data.audio import read_audio
from music_ssl.export.hf_encoder import HFEncoder, HFModelError, RemoteCodeRefusedError
from music_ssl.probe.config import resolve_config
from music_ssl.probe.errors import ProbeConfigError
from music_ssl.probe.features import build_source

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[16] * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
NATIVE = {"data2vec_audio": (transformers.Data2VecAudioConfig, transformers.Data2VecAudioModel),
          "hubert": (transformers.HubertConfig, transformers.HubertModel),
          "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)}
MARKER_ENV = "MUSIC_SSL_TEST_REMOTE_CODE_RAN"

CONFIGURATION_PY = '''import os
from pathlib import Path

from transformers import HubertConfig

if os.environ.get("{marker}"):  # proof, for the test, that this file was executed
    Path(os.environ["{marker}"]).write_text("imported")


class TinyRemoteConfig(HubertConfig):
    model_type = "tiny_remote_hubert"
'''.replace("{marker}", MARKER_ENV)

MODELING_PY = '''from transformers import HubertModel

from .configuration_tinyremote import TinyRemoteConfig


class TinyRemoteModel(HubertModel):
    """A HubertModel that records the length of every input it is given (as MERT, a Hubert subclass)."""
    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.input_lengths = []

    def forward(self, input_values, attention_mask=None, **kwargs):
        self.input_lengths.append(int(input_values.shape[-1]))
        return super().forward(input_values, attention_mask=attention_mask, **kwargs)
'''


def write_clip(path, seconds, sample_rate, seed, gain=1.0):
    """A synthetic clip at ``sample_rate`` Hz (the conftest clip resampled by index), scaled by ``gain``."""
    clip = synth_clip(seconds, seed)
    t = np.linspace(0, len(clip) - 1, int(round(seconds * sample_rate)))
    sf.write(path, (gain * np.interp(t, np.arange(len(clip)), clip)).astype(np.float32), sample_rate)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 1-s 16-kHz clip, a quiet 1.5-s 22.05-kHz one (variance ~1e-6: eps 1e-5 vs 1e-7 shows) and a 2.5-s one."""
    folder = tmp_path_factory.mktemp("hf_public_audio")
    return [write_clip(folder / "a.wav", 1.0, 16000, 1), write_clip(folder / "quiet.wav", 1.5, 22050, 2, gain=3e-3),
            write_clip(folder / "long.wav", 2.5, 16000, 3)]


def save_native(folder, name, sample_rate=None, normalize=False, seed=0):
    """Save a tiny random ``name`` model (config.json + model.safetensors) and, with ``sample_rate``, a
    preprocessor_config.json as published folders have; returns the model (eval)."""
    config_class, model_class = NATIVE[name]
    torch.manual_seed(seed)
    model = model_class(config_class(**TINY)).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for pname, param in model.named_parameters():
            if pname.endswith("bias") or "norm" in pname:
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(folder)
    if sample_rate:
        transformers.Wav2Vec2FeatureExtractor(sampling_rate=sample_rate, do_normalize=normalize).save_pretrained(folder)
    return model


def direct_states(model, path, sample_rate, normalize):
    """The reference: read at ``sample_rate``, the transformers feature extractor, model(output_hidden_states)."""
    audio = read_audio(path, sample_rate)[0]
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=sample_rate, do_normalize=normalize)
    values = extractor(audio, sampling_rate=sample_rate, return_tensors="pt").input_values  # (1, S)
    with torch.no_grad():
        out = model(values, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    return [h[0].numpy() for h in out.hidden_states], values.shape[-1]  # L + 1 x (T, C)


@pytest.mark.parametrize("name, sample_rate, normalize", [("data2vec_audio", 16000, True),
                                                          ("hubert", None, False),
                                                          ("wav2vec2", 24000, True)])
def test_native_folder_gives_every_hidden_state_of_the_model(tmp_path, clips, name, sample_rate, normalize):
    """music2vec-v1 / HuBERT / wav2vec2-style folders: L + 1 states named input, layer1..L, equal to the model
    called directly on audio at the folder's rate (16000 without a preprocessor_config.json), normalised exactly as
    transformers' feature extractor does (the quiet clip would move by ~5% with fairseq's eps)."""
    model = save_native(tmp_path / name, name, sample_rate, normalize)
    rate = sample_rate or 16000
    source = build_source("hf", tmp_path / name, chunk_seconds=10.0, device="cpu")
    pooled, names, frame_rate = source.extract(clips[:2], "clip", None, None)
    frames, _, _ = source.extract(clips[:2], "frames", None, None)
    assert names == ["input", "layer1", "layer2"] and frame_rate == rate / 320
    assert source.identity()["sample_rate"] == rate
    for path, clip, frame in zip(clips, pooled, frames):
        states, samples = direct_states(model, path, rate, normalize)
        assert samples == round(sf.info(path).duration * rate)  # the model saw resampled audio
        assert clip.shape == (1, 3, 32) and frame.shape == (len(states[0]), 3, 32)
        np.testing.assert_allclose(clip[0], np.stack([s.mean(0) for s in states]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(frame.astype(np.float32), np.stack(states, 1), rtol=2e-3, atol=2e-3)
    assert not np.allclose(pooled[0], pooled[1], atol=1e-3)


def test_native_folder_long_file_is_normalised_whole_then_chunked(tmp_path, clips):
    """A file longer than chunk_seconds is normalised once as a whole (the feature-extractor formula), then
    encoded in chunks: each chunk the model gets is a slice of the normalised file, not a re-normalised chunk."""
    save_native(tmp_path / "m", "data2vec_audio", 16000, True)
    source = build_source("hf", tmp_path / "m", chunk_seconds=1.0, device="cpu")
    seen = []
    source.encoder.model.register_forward_pre_hook(lambda module, args: seen.append(args[0][0].clone()))
    features, _, _ = source.extract(clips[2:], "frames", None, None)
    assert features[0].shape == (124, 3, 32)  # every frame of 2.5 s at 50 Hz, from 3 chunks
    audio = read_audio(clips[2], 16000)[0]
    whole = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)(audio, sampling_rate=16000,
                                                                     return_tensors="np").input_values[0]
    assert len(seen) == 3 and sum(len(c) for c in seen) > len(whole)  # chunks overlap by the receptive field
    start = 0
    for chunk in seen:
        np.testing.assert_allclose(chunk.numpy(), whole[start: start + len(chunk)], rtol=1e-5, atol=1e-6)
        start += 16000
    assert not np.allclose(seen[1].numpy(), (seen[1] - seen[1].mean()).numpy() / seen[1].std().item(), atol=1e-3)


def write_remote_folder(folder, seed=0):
    """A MERT-shaped remote-code folder: TinyRemoteModel (a HubertModel subclass) with its own .py files,
    config.json with auto_map, preprocessor_config.json at 24 kHz with do_normalize. Returns the equal
    native HubertModel (the reference)."""
    reference = save_native(folder, "hubert", 24000, True, seed)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tiny_remote_hubert", architectures=["TinyRemoteModel"],
                  auto_map={"AutoConfig": "configuration_tinyremote.TinyRemoteConfig",
                            "AutoModel": "modeling_tinyremote.TinyRemoteModel"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "configuration_tinyremote.py").write_text(CONFIGURATION_PY)
    (folder / "modeling_tinyremote.py").write_text(MODELING_PY)
    return reference


@pytest.fixture(scope="module")
def hf_modules(tmp_path_factory):
    """transformers copies remote code into HF_MODULES_CACHE, puts that on sys.path and imports it as the
    ``transformers_modules`` package: one folder in tmp for this module's tests, all undone afterwards."""
    import transformers.dynamic_module_utils as dynamic

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf_modules")))
        patch.setattr(sys, "path", list(sys.path))
        yield
        for name in [m for m in sys.modules if m.split(".")[0] == "transformers_modules"]:
            del sys.modules[name]


@pytest.fixture
def modules_cache(hf_modules, tmp_path, monkeypatch):
    """The marker file the test-written configuration module writes when it is executed."""
    marker = tmp_path / "remote_code_ran"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    return marker


def test_remote_code_folder_is_refused_without_the_switch(tmp_path, clips, modules_cache):
    """trust_remote_code is never implied: the probe, the encoder and the config default all refuse, in one
    line naming the folder and the switch, and the folder's code never runs."""
    folder = tmp_path / "mert_like"
    write_remote_folder(folder)
    with pytest.raises(ProbeConfigError, match=r"mert_like: config.json has auto_map.*source.trust_remote_code=true"):
        build_source("hf", folder, device="cpu")
    with pytest.raises(RemoteCodeRefusedError, match="modeling_tinyremote.py") as err:
        HFEncoder.from_pretrained(folder, device="cpu")
    assert "\n" not in str(err.value) and isinstance(err.value, HFModelError)
    cfg = resolve_config({"data_root": str(tmp_path), "source": {"kind": "hf", "path": str(folder)},
                          "tasks": [{"name": "csv", "path": "x.csv", "type": "multiclass"}]})
    assert cfg["source"]["trust_remote_code"] is False
    with pytest.raises(ProbeConfigError, match="trust_remote_code=true needs source.kind=hf"):
        build_source("checkpoint", clips[0], trust_remote_code=True)
    assert not modules_cache.exists()  # the configuration file was never imported


def test_remote_code_folder_probes_at_its_own_sample_rate(tmp_path, clips, modules_cache):
    """With trust_remote_code: loaded with the folder's own class, fed audio resampled to 24 kHz (the model
    records the lengths it got) and normalised; features = the equal native model's hidden states; the cache
    identity differs from the same weights at 16 kHz."""
    folder = tmp_path / "mert_like"
    reference = write_remote_folder(folder)
    source = build_source("hf", folder, trust_remote_code=True, device="cpu")
    features, names, frame_rate = source.extract(clips[:2], "clip", None, None)
    model = source.encoder.model
    assert modules_cache.read_text() == "imported" and type(model).__name__ == "TinyRemoteModel"
    assert source.encoder.remote_code and names == ["input", "layer1", "layer2"] and frame_rate == 75.0
    # the load-time check (1 s of silence), then 1 s at 16 kHz and 1.5 s at 22.05 kHz, both resampled to 24 kHz
    assert model.input_lengths == [24000, 24000, 36000]
    for path, feature in zip(clips, features):
        states, _ = direct_states(reference, path, 24000, True)
        np.testing.assert_allclose(feature[0], np.stack([s.mean(0) for s in states]), rtol=1e-4, atol=1e-5)

    native_16k = tmp_path / "native_16k"
    save_native(native_16k, "hubert", 16000, True)
    key_24k, key_16k = source.identity(), build_source("hf", native_16k, device="cpu").identity()
    assert (key_24k["sample_rate"], key_16k["sample_rate"]) == (24000, 16000)
    assert key_24k["trust_remote_code"] is True and key_16k["trust_remote_code"] is False
    same_weights = tmp_path / "same_weights_16k"  # only the preprocessor's rate differs: still another key
    save_native(same_weights, "hubert", 16000, True)
    save_native(tmp_path / "same_weights_24k", "hubert", 24000, True)
    assert (build_source("hf", same_weights, device="cpu").identity()
            != build_source("hf", tmp_path / "same_weights_24k", device="cpu").identity())


def test_remote_code_model_without_hidden_states_fails_clearly(tmp_path, modules_cache):
    """A remote-code model whose output has no hidden_states: one line naming the folder, at load time."""
    folder = tmp_path / "no_states"
    write_remote_folder(folder)
    (folder / "modeling_tinyremote.py").write_text(MODELING_PY.replace(
        "return super().forward(input_values, attention_mask=attention_mask, **kwargs)",
        "kwargs['output_hidden_states'] = False\n"
        "        return super().forward(input_values, attention_mask=attention_mask, **kwargs)"))
    with pytest.raises(HFModelError, match="returned no hidden_states"):
        HFEncoder.from_pretrained(folder, device="cpu", trust_remote_code=True)


def test_remote_code_that_fails_to_import_fails_in_one_line(tmp_path, modules_cache):
    """The folder's own code needs a package that is not installed: one line naming the folder and the package."""
    folder = tmp_path / "needs_package"
    write_remote_folder(folder)
    (folder / "modeling_tinyremote.py").write_text("import no_such_package_for_music_ssl  # noqa\n" + MODELING_PY)
    with pytest.raises(HFModelError, match=r"needs_package: the folder's own model code failed.*"
                                           r"no_such_package_for_music_ssl") as err:
        HFEncoder.from_pretrained(folder, device="cpu", trust_remote_code=True)
    assert "\n" not in str(err.value)
