"""Model-level properties of music2vec and MusicHuBERT: EMA teacher, targets, crops, label alignment, hidden states."""
import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from fairseq.data.data_utils import compute_mask_indices
from fairseq.examples.data2vec.models.data2vec_audio import get_annealed_rate

import music_ssl  # noqa: F401
from conftest import synth_clip
from music_ssl.models.music2vec import Music2VecConfig, Music2VecModel
from music_ssl.tasks.music2vec_pretraining import Music2VecPretrainingConfig, Music2VecPretrainingTask
from music_ssl.tasks.music_hubert_pretraining import MusicHubertPretrainingConfig, MusicHubertPretrainingTask

TINY_CONV = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"


def tiny_music2vec(**overrides) -> Music2VecModel:
    settings = dict(conv_feature_layers=TINY_CONV, extractor_mode="layer_norm", encoder_layers=3, encoder_embed_dim=32,
                    encoder_ffn_embed_dim=64, encoder_attention_heads=2, average_top_k_layers=2, conv_pos=16,
                    conv_pos_groups=4, pos_conv_depth=2, mask_prob=0.5, mask_length=3, encoder_layerdrop=0.0,
                    ema_anneal_end_step=10, max_update=10)
    torch.manual_seed(0)
    return Music2VecModel(Music2VecConfig(**{**settings, **overrides}))


def test_ema_teacher_gets_no_gradients_and_moves_by_the_scheduled_decay():
    model = tiny_music2vec().train()
    model.set_num_updates(0)  # builds the teacher
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = model(torch.randn(2, 16000))
    result["losses"]["regression"].backward()
    teacher = model.ema.model
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    optimizer.step()

    name = "layers.0.fc1.weight"  # an encoder layer weight (the teacher copies only the Transformer)
    before = model.ema.fp32_params[name].clone()
    student = dict(model.encoder.named_parameters())[name].detach()
    model.set_num_updates(3)
    decay = get_annealed_rate(0.999, 0.9999, 3, 10)
    assert model.ema.get_decay() == pytest.approx(decay)
    expected = decay * before + (1 - decay) * student
    torch.testing.assert_close(model.ema.fp32_params[name], expected)
    assert not torch.equal(model.ema.fp32_params[name], before)
    model.set_num_updates(10)
    assert model.ema.get_decay() == pytest.approx(0.9999)


def teacher_target(model, audio, min_layer):
    """Average of the teacher's FFN outputs from ``min_layer`` up (no normalisation): (B, T, C)."""
    features = model.post_extract_proj(model.layer_norm(model.feature_extractor(audio).transpose(1, 2)))
    _, layers = model.ema.model.extract_features(features, padding_mask=None, min_layer=min_layer)
    return (sum(ffn for _x, _attn, ffn in layers) / len(layers)).transpose(0, 1)


def test_loss_regresses_the_average_of_the_top_k_teacher_layers():
    model = tiny_music2vec(average_top_k_layers=2, instance_norm_target_layer=False).eval()
    model.set_num_updates(0)
    audio = torch.randn(1, 16000)
    masked = torch.zeros(1, 49, dtype=torch.bool)
    masked[0, 10:25] = True
    with torch.no_grad():
        loss = model(audio, mask_indices=masked)["losses"]["regression"]
        prediction = model.final_proj(model(audio, mask_indices=masked, features_only=True)["x"][masked])
        top2, top3 = teacher_target(model, audio, 1)[masked], teacher_target(model, audio, 0)[masked]
    scale = 1 / np.sqrt(32)  # data2vec's default loss scale 1/sqrt(C)
    torch.testing.assert_close(loss, ((prediction - top2) ** 2).sum() * scale)
    assert not torch.isclose(loss, ((prediction - top3) ** 2).sum() * scale)


def test_top_k_larger_than_depth_is_a_clear_error():
    with pytest.raises(ValueError, match="average_top_k_layers=5 must be in 1..model.encoder_layers=3"):
        tiny_music2vec(average_top_k_layers=5)


def test_hidden_states_are_input_plus_every_layer_and_match_the_encoder_output():
    model = tiny_music2vec().eval()
    audio = torch.randn(2, 16000)
    hidden, padding = model.extract_hidden_states(audio)
    assert len(hidden) == 4 and padding is None
    assert all(h.shape == (2, 49, 32) for h in hidden)
    with torch.no_grad():
        x = model(audio, mask=False, features_only=True)["x"]
    torch.testing.assert_close(hidden[-1], x)
    assert not torch.allclose(hidden[0], hidden[1])


def write_ramp_corpus(root, n_clips=4, seconds=2.0, rate=16000, k=100):
    """Clips whose samples encode their own position, and 50 Hz labels that encode the frame index."""
    audio_dir, rows = root / "audio", []
    audio_dir.mkdir(parents=True)
    for i in range(n_clips):
        n = int(seconds * rate)
        sf.write(audio_dir / f"{i}.wav", (np.arange(n) / n * 0.9).astype(np.float32), rate, subtype="FLOAT")
        rows.append(f"{i}.wav\t{n}")
    (root / "train.tsv").write_text(f"{audio_dir}\n" + "\n".join(rows) + "\n")
    frames = int(seconds * 50)
    (root / "train.km").write_text("".join(" ".join(str(f % k) for f in range(frames)) + "\n" for _ in rows))
    (root / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))


def test_random_crop_keeps_labels_aligned_with_the_audio(tmp_path):
    write_ramp_corpus(tmp_path)
    cfg = MusicHubertPretrainingConfig(data=str(tmp_path), labels=["km"], label_rate=50.0, crop_seconds=1.0,
                                       random_crop=True)
    task = MusicHubertPretrainingTask.setup_task(cfg)
    task.load_dataset("train")
    dataset, dictionary = task.dataset("train"), task.dictionaries[0]
    np.random.seed(0)
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    source, targets = batch["net_input"]["source"], batch["target_list"][0]
    assert source.shape == (4, 16000) and targets.shape == (4, 50)
    n = 32000
    for audio, labels in zip(source, targets):
        start = int(round(audio[0].item() / 0.9 * n))  # the ramp tells where the crop began
        first_frame = int(round(start * 50 / 16000))
        expected = [dictionary.index(str((first_frame + j) % 100)) for j in range(50)]
        assert labels.tolist() == expected


def test_label_rate_mismatch_names_the_file_and_the_rate_it_found(tmp_path):
    write_ramp_corpus(tmp_path)
    cfg = MusicHubertPretrainingConfig(data=str(tmp_path), labels=["km"], label_rate=100.0)
    task = MusicHubertPretrainingTask.setup_task(cfg)
    with pytest.raises(ValueError, match=r"train\.km: 4 of 4 lines .*(look like 50\.0 Hz|align at 50 Hz)"):
        task.load_dataset("train")


def test_extra_label_line_is_an_error(tmp_path):
    write_ramp_corpus(tmp_path)
    with open(tmp_path / "train.km", "a") as f:
        f.write("1 2 3\n")
    task = MusicHubertPretrainingTask.setup_task(MusicHubertPretrainingConfig(data=str(tmp_path), labels=["km"],
                                                                               label_rate=50.0))
    with pytest.raises(ValueError, match=r"5 label lines for 4 rows"):
        task.load_dataset("train")


@pytest.mark.parametrize("crop_seconds,clips_per_batch", [(2.0, 2), (1.0, 4), (0.5, 8)])
def test_shorter_crops_put_more_clips_in_a_batch_of_the_same_audio(tmp_path, crop_seconds, clips_per_batch):
    write_ramp_corpus(tmp_path, n_clips=8)
    cfg = Music2VecPretrainingConfig(data=str(tmp_path), crop_seconds=crop_seconds, tpu=False, seed=1)
    task = Music2VecPretrainingTask.setup_task(OmegaConf.structured(cfg))  # fairseq hands tasks a DictConfig
    task.load_dataset("train")
    dataset = task.dataset("train")
    batches = dataset.batch_by_size(dataset.ordered_indices(), max_tokens=64000)
    assert {len(b) for b in batches} == {clips_per_batch}
    collated = dataset.collater([dataset[i] for i in batches[0]])
    assert collated["net_input"]["source"].numel() == 64000  # the same seconds of audio per batch


def test_crop_seconds_and_max_sample_size_must_agree(tmp_path):
    with pytest.raises(ValueError, match="set only one of them"):
        Music2VecPretrainingTask.setup_task(Music2VecPretrainingConfig(data=str(tmp_path), crop_seconds=1.0,
                                                                      max_sample_size=8000))


class PlainBackward:
    """The one optimizer method a task's train_step calls."""

    @staticmethod
    def backward(loss):
        loss.backward()


def test_bf16_autocast_flag_runs_bf16_matmuls_with_fp32_weights_and_grads(tmp_path):
    from fairseq.criterions.model_criterion import ModelCriterion

    write_ramp_corpus(tmp_path, n_clips=2)
    losses, dtypes = {}, {}
    for flag in (False, True):
        cfg = Music2VecPretrainingConfig(data=str(tmp_path), crop_seconds=1.0, tpu=False, seed=1, bf16_autocast=flag)
        task = Music2VecPretrainingTask.setup_task(OmegaConf.structured(cfg))
        task.load_dataset("train")
        dataset = task.dataset("train")
        np.random.seed(0)
        sample = dataset.collater([dataset[0], dataset[1]])
        # both arms: the same audio, weights (seed 0), masks and dropout draws; only precision differs. fairseq's
        # compute_mask_indices draws from np.random.default_rng(None) unless given seed/epoch/indices, so the mask
        # is made once here and passed in (np.random.seed does not reach it).
        sample["net_input"]["source"] = torch.as_tensor(np.stack([synth_clip(1.0, seed) for seed in (0, 1)]))
        sample["net_input"]["mask_indices"] = torch.from_numpy(compute_mask_indices(
            (2, 49), None, 0.5, 3, min_masks=1, require_same_masks=True, seed=0, epoch=0, indices=torch.arange(2)))
        torch.manual_seed(1)
        # the positional convolution stays fp32 under autocast (model.pos_conv_fp32, the default): in bf16 this
        # tiny model's two stacked pos-conv layers alone moved the loss by 2.5% (196.0 vs 191.3); with it the
        # bf16 loss is within 0.01% of fp32 while every Linear still runs in bf16 (final_proj's dtype below)
        model = tiny_music2vec(instance_norm_target_layer=True, pos_conv_fp32=True)
        model.final_proj.register_forward_hook(lambda m, i, o: dtypes.update({flag: o.dtype}))
        loss, _, _ = task.train_step(sample, model, ModelCriterion(task, loss_weights={}, log_keys=[]), PlainBackward(), update_num=0)
        losses[flag] = loss.item()
        assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
                   for p in model.parameters())
    assert dtypes == {False: torch.float32, True: torch.bfloat16}
    assert losses[True] == pytest.approx(losses[False], rel=0.02), losses


def test_compute_var_on_a_cpu_process_group_equals_the_local_value():
    import torch.distributed as dist

    y = torch.randn(50, 8)
    local = Music2VecModel.compute_var(y)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29561", rank=0, world_size=1)
    try:
        torch.testing.assert_close(Music2VecModel.compute_var(y), local)
    finally:
        dist.destroy_process_group()
