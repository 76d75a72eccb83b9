"""music2vec2 (data2vec 2.0 on music): both configs train 2 updates through fairseq-hydra-train on CPU, the checkpoint
loads with the safe unpickler and gives every hidden state, and the base config carries the recipe's values."""
import torch
from fairseq import checkpoint_utils

import music_ssl  # noqa: F401  (registers music2vec2)
from conftest import train_tiny
from test_pretrain import compose_pretrain

BASE_AT_TINY_WIDTH = (  # music2vec2_base on CPU: 2 blocks x 32 dims, 2-s crops, fp32, one process
    "common.cpu=true", "common.fp16=false", "distributed_training.distributed_world_size=1", "dataset.num_workers=1",
    "task.crop_seconds=2", "task.min_sample_size=8000", "model.depth=2", "model.embed_dim=32", "++model.num_heads=2",
    "++model.average_top_k_layers=2", "model.clone_batch=2",
    "model.modalities.audio.feature_encoder_spec='[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2'",
    "model.modalities.audio.conv_pos_width=16", "model.modalities.audio.conv_pos_groups=4",
    "model.modalities.audio.conv_pos_depth=1", "model.modalities.audio.decoder.decoder_dim=16",
    "model.modalities.audio.decoder.decoder_groups=4", "model.modalities.audio.decoder.decoder_layers=1",
    "lr_scheduler.warmup_updates=1",
)


def load(path):
    state = torch.load(path, weights_only=True, map_location="cpu")
    (model,), _cfg, _task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return state, model.eval()


def test_tiny_trains_two_updates_and_its_checkpoint_gives_every_hidden_state(tmp_path, audio_corpus):
    state, model = load(train_tiny("music2vec2_tiny", audio_corpus, tmp_path / "ckpt"))
    assert state["cfg"]["model"]["_name"] == "music2vec2" and state["optimizer_history"][-1]["num_updates"] == 2
    assert state["model"].get("_ema"), "the EMA teacher is saved with the student"
    assert type(model).__name__ == "Music2Vec2Model"
    audio = torch.randn(2, 32000)
    with torch.no_grad():
        hidden, frame_mask = model.extract_hidden_states(audio)
        again, _ = model.extract_hidden_states(audio[:1])
    assert len(hidden) == 4 + 1 and all(h.shape == (2, 99, 64) for h in hidden) and frame_mask is None
    torch.testing.assert_close(again[-1], hidden[-1][:1], rtol=1e-5, atol=1e-5)  # batch vs single
    with torch.no_grad():
        features = model(audio, mask=False, features_only=True)["x"]
    torch.testing.assert_close(hidden[-1], features, rtol=0, atol=0)
    assert not torch.equal(hidden[0], hidden[1]), "state 0 is the input of block 1, not its output"


def test_base_trains_two_updates_on_cpu_at_tiny_width(tmp_path, audio_corpus):
    state, model = load(train_tiny("music2vec2_base", audio_corpus, tmp_path / "ckpt", *BASE_AT_TINY_WIDTH))
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert state["cfg"]["task"]["crop_reading"] and state["cfg"]["task"]["precompute_mask_config"] is not None
    assert len(model.blocks) == 2 and model.cfg.modalities.audio.use_alibi_encoder


def test_base_has_the_recipes_and_the_papers_settings():
    cfg = compose_pretrain("music2vec2_base")
    model, audio = cfg["model"], cfg["model"]["modalities"]["audio"]
    assert model["_name"] == "music2vec2" and cfg["task"]["_name"] == "music2vec_pretraining"
    assert cfg["task"]["crop_seconds"] == 30 and cfg["task"]["precompute_mask_config"] == {}
    assert (model["depth"], model["embed_dim"], model["clone_batch"]) == (12, 768, 8)
    assert (audio["mask_prob"], audio["mask_length"], audio["inverse_mask"]) == (0.5, 5, False)
    assert audio["decoder"]["decoder_dim"] == 384 and audio["decoder"]["decoder_layers"] == 4
    assert cfg["optimization"]["max_update"] == 400000
    assert cfg["distributed_training"]["distributed_world_size"] == 8
    from music_ssl.models.music2vec2 import Music2Vec2Config

    defaults = Music2Vec2Config()
    assert defaults.average_top_k_layers == 8 and defaults.instance_norm_target_layer
    assert defaults.supported_modality.name == "AUDIO"


def test_base_has_about_95m_parameters():
    from omegaconf import OmegaConf

    from music_ssl.models.music2vec2 import Music2Vec2Config, Music2Vec2Model

    cfg = compose_pretrain("music2vec2_base")["model"]
    cfg.pop("_name")
    root = OmegaConf.create({"model": OmegaConf.merge(OmegaConf.structured(
        Music2Vec2Config(ema_anneal_end_step=1, max_update=1, seed=1)), cfg)})  # II("model.…") resolve in root
    model = Music2Vec2Model.build_model(root.model)
    encoder = sum(p.numel() for n, p in model.named_parameters() if ".decoder." not in n and not n.startswith("_ema"))
    assert 90e6 < encoder < 100e6, encoder


def test_frozen_encoder_gives_every_hidden_state_of_a_music2vec2_checkpoint(tmp_path, audio_corpus):
    """Probing and label iteration 2 load music2vec2 like the other models: FrozenEncoder reads the conv stack and
    width from data2vec 2.0's config, drops the EMA teacher and decoder, gives L + 1 states equal to the model's own
    (fairseq's ``task.normalize`` applied inside), padded batches equal items alone, and long files chunked equal
    the whole-file states."""
    from music_ssl.checkpoint import FrozenEncoder

    path = train_tiny("music2vec2_tiny", audio_corpus, tmp_path / "ckpt")
    encoder = FrozenEncoder.from_checkpoint(path, device="cpu")
    _, model = load(path)
    assert (encoder.num_layers, encoder.dim, encoder.frame_rate, encoder.num_states) == (4, 64, 50.0, 5)
    assert encoder.model.ema is None and encoder.model.audio_encoder.decoder is None
    audio = torch.rand(2, 32000) * 2 - 1
    hidden, frames = encoder(audio)
    with torch.no_grad():
        expected, _ = model.extract_hidden_states(torch.nn.functional.layer_norm(audio, (32000,)))
    assert frames.tolist() == [99, 99] and len(hidden) == 5
    for got, want in zip(hidden, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    padded, padded_frames = encoder(audio, torch.tensor([32000, 20000]))
    alone, _ = encoder(audio[1:, :20000])
    assert padded_frames.tolist() == [99, 62]
    torch.testing.assert_close(padded[-1][1, :62], alone[-1][0], rtol=1e-5, atol=1e-5)
    whole = encoder.encode_long(audio[0].numpy(), chunk_seconds=100)
    assert [w.shape for w in whole] == [(99, 64)] * 5
    random = FrozenEncoder.from_checkpoint(path, device="cpu", random_init=True)
    assert not torch.allclose(random(audio)[0][-1], hidden[-1]), "random init is not the trained model"
    cnn = FrozenEncoder.from_checkpoint(path, device="cpu", cnn=True)
    assert cnn(audio)[0][0].shape == (2, 99, 64) and cnn.num_states == 1


def test_tiny_training_is_reproducible_and_checkpoints_with_validation_do_not_change_it(tmp_path, audio_corpus):
    """Same config and seed, one run saving and validating every 2 updates and one straight through: the same weights,
    bit for bit. Fails when the collater's mask draws race the step's dropout draws on torch's global generator
    (fairseq's prefetch thread with num_workers=0), or when validation draws from the training crops' generator."""
    crops = ("task.crop_reading=true", "task.min_sample_size=4000", "dataset.max_tokens=64000")  # 2 clips per batch
    straight = train_tiny("music2vec2_tiny", audio_corpus, tmp_path / "straight", *crops, max_update=6)
    saved = train_tiny("music2vec2_tiny", audio_corpus, tmp_path / "saved", *crops,
                       "checkpoint.save_interval_updates=2", max_update=6)
    a, b = (torch.load(path, weights_only=True, map_location="cpu")["model"] for path in (straight, saved))
    assert (tmp_path / "saved" / "checkpoint_1_2.pt").exists(), "the run saved (and validated) along the way"
    differ = [name for name in a if torch.is_tensor(a[name]) and not torch.equal(a[name], b[name])]
    assert differ == []


def test_without_dataloader_workers_batches_are_collated_in_the_training_thread(audio_corpus):
    from omegaconf import OmegaConf

    from music_ssl.tasks.music2vec_pretraining import Music2VecPretrainingConfig, Music2VecPretrainingTask

    cfg = OmegaConf.structured(Music2VecPretrainingConfig(data=str(audio_corpus), tpu=False))
    task = Music2VecPretrainingTask.setup_task(cfg)
    task.load_dataset("train")
    iterators = {workers: task.get_batch_iterator(task.dataset("train"), max_tokens=64000, num_workers=workers,
                                                  data_buffer_size=10, disable_iterator_cache=True)
                 for workers in (0, 2)}
    assert iterators[0].buffer_size == 0 and iterators[2].buffer_size == 10
