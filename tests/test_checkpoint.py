"""FrozenEncoder: loads our and stock fairseq checkpoints safely and gives consistent hidden states."""
import numpy as np
import pytest
import torch

from conftest import REPO, USER_DIR, run_cli
from music_ssl.checkpoint import CheckpointError, FrozenEncoder


@pytest.fixture(scope="module", params=["music2vec", "music_hubert"])
def encoder(request, tiny_checkpoints):
    return FrozenEncoder.from_checkpoint(tiny_checkpoints[request.param], device="cpu")


def test_attributes_describe_the_tiny_model(encoder):
    assert (encoder.sample_rate, encoder.frame_rate, encoder.num_layers, encoder.dim) == (16000, 50.0, 4, 64)
    assert len(encoder.sha256) == 64 and encoder.device == torch.device("cpu")


def test_every_hidden_state_with_padding_equals_each_item_alone(encoder):
    torch.manual_seed(0)
    audio, lengths = 0.1 * torch.randn(3, 32000), torch.tensor([32000, 20000, 16100])
    hidden, frame_lengths = encoder(audio, lengths)
    assert len(hidden) == 5 and all(h.shape == (3, 99, 64) for h in hidden)
    assert frame_lengths.tolist() == [99, 62, 50]
    for i, n in enumerate(lengths.tolist()):
        alone, alone_frames = encoder(audio[i: i + 1, :n])
        assert alone_frames.item() == frame_lengths[i]
        for layer in range(5):
            torch.testing.assert_close(hidden[layer][i, : frame_lengths[i]], alone[layer][0], atol=1e-5, rtol=1e-5)


def test_encode_long_has_the_whole_file_frame_count_and_equals_one_chunk_when_short(encoder):
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 7 + 123)).astype(np.float32)
    chunked = encoder.encode_long(audio, chunk_seconds=2.0)
    whole = encoder.encode_long(audio, chunk_seconds=60.0)
    frames = int(encoder.frames(torch.tensor(len(audio))))
    assert frames == 350 and all(h.shape == (frames, 64) for h in chunked + whole)
    direct, _ = encoder(torch.from_numpy(audio)[None])
    np.testing.assert_allclose(whole[3], direct[3][0].numpy(), atol=1e-5)
    only = encoder.encode_long(audio, chunk_seconds=2.0, layers=[3])
    np.testing.assert_array_equal(only[0], chunked[3])


def test_random_init_is_the_same_architecture_with_other_weights(tiny_checkpoints):
    path = tiny_checkpoints["music_hubert"]
    trained = FrozenEncoder.from_checkpoint(path, device="cpu")
    random = FrozenEncoder.from_checkpoint(path, device="cpu", random_init=True)
    audio = 0.1 * torch.randn(1, 16000)
    assert random.sha256 == trained.sha256 + "+random-init-0"
    a, b = trained(audio)[0], random(audio)[0]
    assert [x.shape for x in a] == [x.shape for x in b] and not torch.allclose(a[-1], b[-1])


def test_stock_fairseq_hubert_checkpoint_loads(tmp_path, audio_corpus):
    save = tmp_path / "ckpt"
    run_cli(["fairseq-hydra-train", "--config-dir", str(REPO / "tests" / "configs"), "--config-name",
             "stock_hubert_tiny", f"task.data={audio_corpus}", f"task.label_dir={audio_corpus}",
             f"checkpoint.save_dir={save}", f"common.user_dir={USER_DIR}", f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=tmp_path)
    encoder = FrozenEncoder.from_checkpoint(save / "checkpoint_last.pt", device="cpu")
    hidden, frames = encoder(0.1 * torch.randn(2, 16000))
    assert len(hidden) == 3 and hidden[0].shape == (2, 49, 64) and frames.tolist() == [49, 49]


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint not found"):
        FrozenEncoder.from_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: cannot be read as a fairseq checkpoint"):
        FrozenEncoder.from_checkpoint(junk)


def test_too_short_audio_is_a_clear_error(encoder):
    with pytest.raises(ValueError, match="shorter than the encoder's receptive field"):
        encoder(torch.zeros(1, 300))
