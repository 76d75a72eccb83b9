"""HEAR 2021 API contract over a checkpoint and an exported transformers folder (tiny random models, CPU)."""
import pytest
import torch

from music_ssl.export import hear
from music_ssl.export.hf import export_checkpoint
from test_export_hf import stock_data2vec, stock_hubert  # in-process tiny fairseq checkpoints

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return stock_data2vec(tmp_path_factory.mktemp("hear"))


@pytest.fixture(scope="module")
def model(checkpoint):
    return hear.load_model(str(checkpoint), device="cpu")


def noise(n: int, seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, int(seconds * 16000), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_model_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000
    assert isinstance(model.scene_embedding_size, int) and model.scene_embedding_size == 64
    assert isinstance(model.timestamp_embedding_size, int) and model.timestamp_embedding_size == 64


def test_timestamp_embeddings_shapes_and_ms(model):
    audio = noise(3, 1.0)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    frames = int(model.encoder.frames(torch.tensor(16000)))  # 49 for 1 s
    assert emb.shape == (3, frames, 64) and emb.dtype == torch.float32
    assert ts.shape == (3, frames) and ts.dtype == torch.float32
    hop = torch.diff(ts, dim=1)
    assert torch.allclose(hop, torch.full_like(hop, 20.0), atol=1e-3)  # 320 samples at 16 kHz
    assert torch.allclose(ts[:, 0], torch.tensor(12.5))  # centre of the first 400-sample receptive field
    assert float(ts[0, -1]) < 1000.0
    assert torch.isfinite(emb).all() and emb.std() > 0


def test_batch_equals_single_and_scene_is_time_mean(model):
    audio = noise(4, 0.8, seed=1)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    for i in range(4):
        alone, _ = hear.get_timestamp_embeddings(audio[i: i + 1], model)
        assert torch.allclose(alone[0], emb[i], atol=1e-5)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)  # different sounds, different embeddings
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (4, 64) and torch.allclose(scene, emb.mean(1), atol=1e-6)


def test_layer_choice_and_short_and_long_audio(checkpoint, model):
    last = hear.load_model(str(checkpoint), layer=2, device="cpu")
    audio = noise(2, 0.5, seed=2)
    mean_emb, _ = hear.get_timestamp_embeddings(audio, model)
    hidden, _ = model.encoder(audio)
    assert torch.allclose(mean_emb, torch.stack(hidden).mean(0), atol=1e-5)
    last_emb, _ = hear.get_timestamp_embeddings(audio, last)
    assert torch.allclose(last_emb, hidden[2], atol=1e-5)
    for seconds in (0.01, 0.0):  # 160 samples < 400, and empty: zero-padded to one frame
        short, ts = hear.get_timestamp_embeddings(noise(2, seconds), model)
        assert short.shape == (2, 1, 64) and ts.shape == (2, 1) and torch.isfinite(short).all()
    model.chunk_seconds = 0.5
    try:
        long_emb, long_ts = hear.get_timestamp_embeddings(noise(2, 1.3, seed=3), model)  # chunked path
    finally:
        model.chunk_seconds = 30.0
    full, full_ts = hear.get_timestamp_embeddings(noise(2, 1.3, seed=3), model)
    assert long_emb.shape == full.shape and torch.equal(long_ts, full_ts)
    # the first chunk (0.5 s + the receptive field's extra 80 samples) is encoded on its own, after the
    # whole-clip waveform normalisation
    clip = torch.nn.functional.layer_norm(noise(2, 1.3, seed=3), (20800,))
    first, _ = model.encoder.forward(clip[:, :8080], None, normalize=False)
    assert torch.allclose(long_emb[:, :25], torch.stack(first).mean(0), atol=1e-4)
    assert not torch.allclose(long_emb[:, :25], full[:, :25], atol=1e-3)  # less context than the whole clip
    with pytest.raises(ValueError, match="layer"):
        hear.load_model(str(checkpoint), layer=7)


def test_hf_folder_gives_same_embeddings(checkpoint, model, tmp_path):
    export_checkpoint(checkpoint, tmp_path / "hf")
    hf_model = hear.load_model(str(tmp_path / "hf"), device="cpu")
    assert hf_model.timestamp_embedding_size == model.timestamp_embedding_size
    audio = noise(2, 1.0, seed=4)
    (a, ta), (b, tb) = hear.get_timestamp_embeddings(audio, model), hear.get_timestamp_embeddings(audio, hf_model)
    assert torch.equal(ta, tb) and torch.allclose(a, b, atol=1e-4)


def test_to_device_moves_encoder(model):
    model.to("cpu")
    assert model.encoder.device == torch.device("cpu")


def test_bad_inputs(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no default weights"):
        hear.load_model("")
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_timestamp_embeddings(torch.zeros(16000), model)


def test_hubert_checkpoint_loads(tmp_path):
    model = hear.load_model(str(stock_hubert(tmp_path)), device="cpu")
    emb = hear.get_scene_embeddings(noise(2, 0.5), model)
    assert emb.shape == (2, 64)


@pytest.mark.gpu
def test_cuda_model_returns_on_audio_device(checkpoint):
    model = hear.load_model(str(checkpoint), device="cpu").to("cuda")
    assert model.encoder.device.type == "cuda"
    emb, ts = hear.get_timestamp_embeddings(noise(2, 1.0).cuda(), model)
    assert emb.is_cuda and ts.is_cuda and emb.dtype == torch.float32
