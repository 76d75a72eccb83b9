"""The probing suite's ``hf`` feature source (a transformers model folder) against its ``checkpoint`` source.

A tiny trained checkpoint of each kind is exported, and ``build_source("hf", folder)`` must give the features
``build_source("checkpoint", ckpt)`` gives — every hidden state, clip-pooled (float32, |diff| <= 1e-4),
windowed, frame-level (float16 storage, |diff| <= 1e-2 + 1e-3 |x|) and for a file encoded in chunks.
"""
import numpy as np
import pytest

from conftest import write_clips

from music_ssl.export.hf import export_checkpoint
from music_ssl.probe.errors import MissingDataError
from music_ssl.probe.features import build_source

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two 1-s clips (batched together) and one 2.5-s clip (encoded in 1-s chunks by chunk_seconds=1)."""
    folder = tmp_path_factory.mktemp("probe_hf_audio")
    return write_clips(folder / "short", 2, 1.0, seed=5) + write_clips(folder / "long", 1, 2.5, seed=7)


def sources(checkpoint, out_dir):
    export_checkpoint(checkpoint, out_dir)
    return [build_source(kind, path, chunk_seconds=1.0, device="cpu")
            for kind, path in (("checkpoint", checkpoint), ("hf", out_dir))]


@pytest.mark.slow  # trains the session's tiny checkpoints when no other test did
@pytest.mark.parametrize("name", ["music2vec", "music_hubert"])
def test_hf_source_features_equal_checkpoint_source(tiny_checkpoints, clips, tmp_path, name):
    reference, exported = sources(tiny_checkpoints[name], tmp_path / "hf")
    assert exported.identity()["kind"] == "hf" and exported.identity() != reference.identity()
    cases = (("clip", None, 1e-4, 0), ("window", 0.5, 1e-4, 0), ("frames", None, 1e-2, 1e-3))  # frames: float16
    for pooling, window, atol, rtol in cases:
        ref, ref_names, ref_rate = reference.extract(clips, pooling, window, None)
        out, names, rate = exported.extract(clips, pooling, window, None)
        assert names == ref_names == ["input", "layer1", "layer2", "layer3", "layer4"] and rate == ref_rate == 50.0
        for a, b in zip(ref, out):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), atol=atol, rtol=rtol)
    assert out[2].shape == (124, 5, 64)  # frames of the 2.5-s file, encoded in chunks
    assert not np.allclose(out[0], out[1], atol=1e-2)  # different clips, different features


def test_hf_source_selected_layers_and_missing_folder(tmp_path, clips):
    from test_export_hf import stock_hubert

    export_checkpoint(stock_hubert(tmp_path), tmp_path / "hf")
    source = build_source("hf", tmp_path / "hf", layers=[0, 2], device="cpu")
    features, names, _ = source.extract(clips[:2], "clip", None, None)
    assert names == ["input", "layer2"] and [f.shape for f in features] == [(1, 2, 64)] * 2
    with pytest.raises(MissingDataError, match="transformers model folder not found"):
        build_source("hf", tmp_path / "nowhere")
