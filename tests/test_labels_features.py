"""Label features: kaldi-MFCC parity and frame counts, layer features, and the bad-input errors of the features stage."""
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from conftest import SAMPLE_RATE, synth_clip, write_manifest
from music_ssl.data.errors import AudioError
from music_ssl.labels import FeatureSettings, LabelPrepError, dump_features, make_extractor
from music_ssl.labels import mfcc as mfcc_module
from music_ssl.labels.features import feature_paths, load_shard
from music_ssl.labels.mfcc import MfccFeatures


def reference_mfcc(wav: np.ndarray, n_mfcc: int = 13) -> np.ndarray:
    """fairseq's dump_mfcc_feature recipe written out with torchaudio directly: (T, 3 n_mfcc)."""
    x = torch.from_numpy(wav)[None]
    mfcc = torchaudio.compliance.kaldi.mfcc(x, sample_frequency=SAMPLE_RATE, use_energy=False, num_ceps=n_mfcc).T
    deltas = torchaudio.functional.compute_deltas(mfcc)
    return torch.cat([mfcc, deltas, torchaudio.functional.compute_deltas(deltas)]).T.numpy()


def test_mfcc_equals_torchaudio_kaldi_with_deltas_on_a_chirp():
    t = np.arange(int(1.3 * SAMPLE_RATE)) / SAMPLE_RATE
    chirp = (0.5 * np.sin(2 * np.pi * (200 + 900 * t) * t)).astype(np.float32)
    feats = MfccFeatures(13)(chirp)
    assert feats.shape == (1 + (len(chirp) - 400) // 160, 39) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, reference_mfcc(chirp), rtol=1e-5, atol=1e-4)


def test_mfcc_in_chunks_equals_one_shot(monkeypatch):
    wav = synth_clip(1.0, seed=3)
    monkeypatch.setattr(mfcc_module, "CHUNK_FRAMES", 7)  # 99 frames in 15 chunks, the last one partial
    np.testing.assert_allclose(MfccFeatures(13)(wav), reference_mfcc(wav), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("samples", [400, 401, 559, 560, 16000, 16123])
def test_mfcc_frame_count_formula_matches_the_features(samples):
    extractor = MfccFeatures(13)
    wav = synth_clip(samples / SAMPLE_RATE, seed=samples)
    assert extractor.frames(samples) == 1 + (samples - 400) // 160 == len(extractor(wav))


def test_twenty_coefficients_give_60_dims_at_100_hz():
    extractor = MfccFeatures(20)
    feats = extractor(synth_clip(0.5, seed=1))
    assert (extractor.dim, extractor.frame_rate, feats.shape) == (60, 100.0, (48, 60))
    np.testing.assert_allclose(feats, reference_mfcc(synth_clip(0.5, seed=1), 20), rtol=1e-5, atol=1e-4)


def shard_of(tmp_path, files: dict):
    """Write ``{name: (audio, rate)}`` and a manifest listing them with their true sizes; return the tsv dir."""
    audio = tmp_path / "audio"
    audio.mkdir()
    paths = []
    for name, (wav, rate) in files.items():
        sf.write(audio / name, wav, rate)
        paths.append(audio / name)
    write_manifest(tmp_path / "train.tsv", audio, paths)
    return tmp_path


def test_features_shard_rows_frames_and_lengths(tmp_path):
    tsv_dir = shard_of(tmp_path, {f"c{i}.wav": (synth_clip(0.4 + 0.3 * i, seed=i), SAMPLE_RATE) for i in range(3)})
    extractor = make_extractor(FeatureSettings())
    npy = dump_features(tsv_dir, "train", 1, 0, tmp_path / "feat", extractor)
    feats, lengths, marker = load_shard(tmp_path / "feat", "train", 1, 0)
    sizes = [sf.info(tsv_dir / "audio" / f"c{i}.wav").frames for i in range(3)]
    assert lengths.tolist() == [extractor.frames(n) for n in sizes] and feats.shape == (sum(lengths), 39)
    second = sf.read(tsv_dir / "audio" / "c1.wav", dtype="float32")[0]
    np.testing.assert_allclose(feats[lengths[0]: lengths[0] + lengths[1]], extractor(second), atol=1e-5)
    assert npy == feature_paths(tmp_path / "feat", "train", 1, 0)[0] and marker["frame_rate"] == 100.0


def bad_input_error(tmp_path, files: dict, edit=None) -> str:
    tsv_dir = shard_of(tmp_path, files)
    if edit:
        edit(tsv_dir / "audio")
    with pytest.raises(AudioError) as err:
        dump_features(tsv_dir, "train", 1, 0, tmp_path / "feat", make_extractor(FeatureSettings()))
    message = str(err.value)
    assert "\n" not in message and not (tmp_path / "feat" / "train_0_1.npy").exists()
    return message


def test_empty_file_is_named_with_the_fix(tmp_path):
    message = bad_input_error(tmp_path, {"ok.wav": (synth_clip(0.5, 0), SAMPLE_RATE),
                                         "empty.wav": (np.zeros(0, np.float32), SAMPLE_RATE)})
    assert "empty.wav" in message and "0 samples" in message and "music-ssl-manifest" in message


def test_wrong_rate_is_named_with_the_fix(tmp_path):
    message = bad_input_error(tmp_path, {"fast.wav": (synth_clip(0.5, 0, sample_rate=22050), 22050)})
    assert "fast.wav: is 22050 Hz, expected 16000 Hz" in message and "--convert-dir" in message


def test_stereo_is_named_with_the_fix(tmp_path):
    wav = synth_clip(0.5, 0)
    message = bad_input_error(tmp_path, {"two.wav": (np.stack([wav, wav], 1), SAMPLE_RATE)})
    assert "two.wav: has 2 channels" in message and "expected mono" in message and "--convert-dir" in message


def test_file_that_changed_size_after_the_manifest_is_named_with_the_fix(tmp_path):
    def shorten(audio):
        sf.write(audio / "b.wav", synth_clip(0.3, 9), SAMPLE_RATE)

    message = bad_input_error(tmp_path, {"a.wav": (synth_clip(0.5, 0), SAMPLE_RATE),
                                         "b.wav": (synth_clip(0.5, 1), SAMPLE_RATE)}, edit=shorten)
    assert "b.wav: 4800 samples but the manifest says 8000" in message and "regenerate the manifest" in message


def test_layer_feature_needs_a_checkpoint_and_layer():
    with pytest.raises(LabelPrepError, match="^feature='layer' needs checkpoint .* and layer .*; got checkpoint=None"):
        FeatureSettings(feature="layer")
    with pytest.raises(LabelPrepError, match="^feature='layer' needs .*; got checkpoint='m.pt', layer=None"):
        FeatureSettings(feature="layer", checkpoint="m.pt")
    with pytest.raises(LabelPrepError, match="^feature='chroma': unknown; choose one of mfcc, layer"):
        FeatureSettings(feature="chroma")


@pytest.mark.slow
def test_layer_features_have_the_encoder_frame_count_and_values(tmp_path, tiny_checkpoints):
    tsv_dir = shard_of(tmp_path, {f"c{i}.wav": (synth_clip(0.7 + 0.5 * i, seed=i), SAMPLE_RATE) for i in range(2)})
    extractor = make_extractor(FeatureSettings(feature="layer", checkpoint=tiny_checkpoints["music_hubert"], layer=2),
                               "cpu")
    dump_features(tsv_dir, "train", 1, 0, tmp_path / "feat", extractor)
    feats, lengths, marker = load_shard(tmp_path / "feat", "train", 1, 0)
    wav = sf.read(tsv_dir / "audio" / "c1.wav", dtype="float32")[0]
    assert lengths.tolist() == [int(extractor.encoder.frames(torch.tensor(n))) for n in (11200, 19200)]
    assert (marker["frame_rate"], feats.shape[1]) == (50.0, 64)
    hidden, _ = extractor.encoder(torch.from_numpy(wav)[None])
    np.testing.assert_allclose(feats[lengths[0]:], hidden[2][0].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="layer=9 does not exist; this model has layers 0..4"):
        make_extractor(FeatureSettings(feature="layer", checkpoint=tiny_checkpoints["music_hubert"], layer=9), "cpu")
