"""Shape bucketing: a mixed 4–30 s corpus gives at most one batch shape per bucket, every clip is used, short clips
are counted, and the crop is fairseq's own (audio and labels)."""
import logging

import numpy as np
import pytest
from fairseq.data.audio.raw_audio_dataset import FileAudioDataset
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig, AudioPretrainingTask
from omegaconf import OmegaConf

import music_ssl  # noqa: F401
from conftest import write_clips, write_manifest, write_random_labels
from music_ssl.data.bucketing import BucketedAudioDataset, bucket_batches, bucket_lengths
from music_ssl.tasks.music_hubert_pretraining import MusicHubertPretrainingConfig, MusicHubertPretrainingTask

SR = 16000


def mixed_manifest(tmp_path, clips: int = 300, seed: int = 0):
    """A manifest of ``clips`` rows of 4–30 s (sizes only: the batching never opens the files) + 3 clips of 1 s."""
    rng = np.random.default_rng(seed)
    sizes = list((rng.uniform(4, 30, clips) * SR).astype(int)) + [SR] * 3
    (tmp_path / "train.tsv").write_text(f"{tmp_path}\n" + "".join(f"c{i}.wav\t{n}\n" for i, n in enumerate(sizes)))
    return tmp_path / "train.tsv", np.array(sizes)


def epoch_batches(dataset, max_tokens: int, seed: int = 1):
    """The batches fairseq's own get_batch_iterator makes from ``dataset`` (indices only)."""
    task = AudioPretrainingTask(OmegaConf.structured(AudioPretrainingConfig(data="", tpu=False)))
    itr = task.get_batch_iterator(dataset, max_tokens=max_tokens, seed=seed, required_batch_size_multiple=1)
    return list(itr.frozen_batches)


@pytest.mark.parametrize("max_tokens", [1_400_000, 5_600_000])
def test_mixed_corpus_gives_one_shape_per_bucket_and_uses_every_clip(tmp_path, caplog, max_tokens):
    tsv, sizes = mixed_manifest(tmp_path)
    inner = FileAudioDataset(str(tsv), sample_rate=SR, max_sample_size=30 * SR, min_sample_size=0, pad=False)
    with caplog.at_level(logging.INFO):
        dataset = BucketedAudioDataset(inner, step=2 * SR, name="train")
    assert dataset.left_out == 3 and "3 clips shorter than the smallest bucket" in caplog.text
    batches = epoch_batches(dataset, max_tokens)
    lengths = dataset.lengths
    shapes = {(len(b), int(lengths[b].min())) for b in batches}
    buckets = set(lengths[lengths > 0].tolist())
    assert len(shapes) <= len(buckets) <= 15, shapes  # 2, 4, ..., 28 s and the 30-s crop
    used = np.concatenate(batches)
    assert set(used.tolist()) == set(np.flatnonzero(sizes >= 2 * SR).tolist()), "every clip with a bucket is used"
    assert len(used) - len(set(used.tolist())) < max(len(b) for b in batches), "only the last batch repeats clips"
    audio = np.array([len(b) * int(lengths[b].min()) for b in batches])
    assert (audio <= max_tokens).all() and (audio > max_tokens - 30 * SR).all(), "within one crop of max_tokens"


def test_stock_batching_of_the_same_corpus_has_many_shapes(tmp_path):
    """The reason for bucketing: fairseq crops each batch to its shortest clip."""
    tsv, _ = mixed_manifest(tmp_path)
    inner = FileAudioDataset(str(tsv), sample_rate=SR, max_sample_size=30 * SR, min_sample_size=0, pad=False)
    shapes = {(len(b), int(inner.sizes[b].min())) for b in epoch_batches(inner, 1_400_000)}
    assert len(shapes) > 30


def test_bucket_lengths_and_the_carry_down_of_a_remainder():
    lengths = bucket_lengths(np.array([5, 10, 31, 99, 100, 250, 3]), step=10, max_size=100)
    assert lengths.tolist() == [0, 10, 30, 90, 100, 100, 0]
    lengths = np.array([100] * 3 + [50] * 5)
    batches = bucket_batches(np.arange(8), lengths, max_tokens=200)  # 2 per batch at 100, 4 at 50
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3, 4, 5], [6, 7, 2, 3]]
    assert bucket_batches(np.arange(2), np.array([50, 50]), max_tokens=200)[0].tolist() == [0, 1], "small split"


def test_collated_batches_are_cropped_to_their_bucket_with_labels_aligned(tmp_path):
    data, audio = tmp_path / "data", tmp_path / "audio"
    data.mkdir()
    paths = [p for i, s in enumerate((1.3, 1.7, 2.2, 2.9, 0.4)) for p in write_clips(audio / f"s{i}", 1, s, seed=i)]
    write_manifest(data / "train.tsv", audio, paths)
    write_random_labels(data / "train.tsv", data / "train.km", 50, 8)
    cfg = MusicHubertPretrainingConfig(data=str(data), label_dir=str(data), labels=["km"], label_rate=50.0,
                                       crop_seconds=2.5, bucket_seconds=0.5, min_sample_size=0)
    task = MusicHubertPretrainingTask.setup_task(cfg)
    task.load_dataset("train")
    dataset = task.dataset("train")
    assert isinstance(dataset, BucketedAudioDataset) and dataset.left_out == 1  # the 0.4-s clip
    assert sorted(dataset.lengths.tolist()) == [0, 16000, 24000, 32000, 40000]
    for batch in dataset.batch_by_size(dataset.ordered_indices(), max_tokens=64000):
        collated = dataset.collater([dataset[i] for i in batch])
        length = int(dataset.lengths[batch].min())
        assert collated["net_input"]["source"].shape == (len(batch), length)
        assert collated["target_list"][0].shape == (len(batch), length * 50 // SR)
