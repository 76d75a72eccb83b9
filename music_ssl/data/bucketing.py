"""Shape bucketing for pretraining on clips of mixed length (``task.bucket_seconds``).

fairseq crops every batch to its shortest clip (at most the crop length), so a corpus of 4–30 s clips gives a
new (batch, samples) shape nearly every step, and every new shape costs the GPU new kernels/plans (2.4x slower
than fixed 30-s clips on an H100). With bucketing each clip gets a crop length from a small set — the crop
length itself, or its duration rounded *down* to a multiple of ``bucket_seconds`` — and batches are drawn within
one length, so an epoch has at most as many batch shapes as there are buckets (``bucket_lengths``).

Per batch: ``B = max_tokens // L`` clips of length ``L`` (capped by ``max_sentences``, rounded down to
``required_batch_size_multiple``), so the audio per batch is within one crop of ``max_tokens`` and never above,
the same tolerance as fairseq's own ``batch_by_size``. A bucket's clips that do not fill a last batch move down to
the next shorter bucket (cropped shorter); the last bucket's remainder is filled up with clips of that bucket
already used this epoch (counted and logged; a split smaller than one batch gives one smaller batch instead). Clips shorter than the smallest bucket cannot be cropped to it
without padding: they are left out, counted and logged — never silently.

The crop itself is fairseq's (the wrapped dataset's ``collater``: random start, labels cut to match).
"""
import logging
from typing import List, Optional

import numpy as np
from fairseq.data import BaseWrapperDataset
from ..core.errors import ConfigError

logger = logging.getLogger(__name__)

BUCKET_SECONDS_HELP = ("crop clips to their duration rounded down to a multiple of this many seconds (at most the "
                       "crop length) and batch within one length: a handful of batch shapes for mixed-length "
                       "corpora; clips shorter than it are left out (counted). Default: off (fairseq's batching)")


def bucket_lengths(sizes: np.ndarray, step: int, max_size: int) -> np.ndarray:
    """(N,) crop length of each clip in samples: ``max_size`` if the clip is at least that long, else its length
    rounded down to a multiple of ``step``; 0 for clips shorter than ``step`` (no bucket)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.where(sizes >= max_size, max_size, sizes // step * step)


def clips_per_batch(length: int, max_tokens: Optional[int], max_sentences: Optional[int], multiple: int) -> int:
    """Clips of ``length`` samples per batch: ``max_tokens // length`` capped by ``max_sentences``, rounded down to
    ``multiple`` (never below 1)."""
    count = max_tokens // length if max_tokens else (max_sentences or 1)
    if max_sentences:
        count = min(count, max_sentences)
    if count >= multiple:
        count -= count % multiple
    return max(1, count)


def bucket_batches(indices: np.ndarray, lengths: np.ndarray, max_tokens: Optional[int],
                   max_sentences: Optional[int] = None, multiple: int = 1) -> List[np.ndarray]:
    """Batches of dataset indices, each of one crop length (see the module docstring).

    Args:
        indices: (M,) dataset indices in the epoch's order (clips with length 0 are ignored).
        lengths: (N,) crop length of every dataset index (``bucket_lengths``).
        max_tokens, max_sentences, multiple: fairseq's ``dataset.max_tokens``, ``dataset.batch_size``,
            ``dataset.required_batch_size_multiple``.

    Returns:
        Batches (arrays of indices); every index of a nonzero bucket appears at least once. Batches of a bucket
        may hold clips carried down from longer buckets: the crop length of a batch is the bucket length of its
        shortest clip.
    """
    indices = np.asarray(indices, dtype=np.int64)
    indices = indices[lengths[indices] > 0]
    buckets = sorted(set(lengths[indices].tolist()), reverse=True)
    batches, carry, pool = [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for length in buckets:
        pool = np.concatenate([carry, indices[lengths[indices] == length]])  # carried (longer) clips first
        size = clips_per_batch(length, max_tokens, max_sentences, multiple)
        full = len(pool) // size
        batches += np.split(pool[: full * size], full) if full else []
        carry = pool[full * size:]
    if len(carry) and len(pool) > len(carry):  # the shortest bucket's remainder (holds >= 1 clip of that bucket):
        size = clips_per_batch(buckets[-1], max_tokens, max_sentences, multiple)  # filled up with clips of its
        fill = pool[: size - len(carry)]  # full batches, so that its shape is theirs
        batches.append(np.concatenate([carry, fill]))
        logger.info("bucketing: %d clips repeated to fill the last batch of the %d-sample bucket", len(fill),
                    buckets[-1])
    elif len(carry):  # fewer clips than one batch in all: one smaller batch
        batches.append(carry)
    return batches


class BucketedAudioDataset(BaseWrapperDataset):
    """A fairseq audio dataset (``FileAudioDataset`` or ``HubertDataset``, no padding) with bucketed crops.

    Args:
        dataset: the wrapped dataset; its ``sizes`` (N,) are the clip lengths in samples.
        step: bucket step in samples (``bucket_seconds * sample_rate``).
        name: the split, for the log line; sample_rate: Hz, for the log line.
    """

    def __init__(self, dataset, step: int, name: str = "", sample_rate: int = 16000):
        super().__init__(dataset)
        if getattr(dataset, "pad", False) or getattr(dataset, "pad_audio", False):
            raise ConfigError("task.bucket_seconds crops every batch to one length: it does not work with padded "
                              "batches (enable_padding / pad_audio); turn one of them off.")
        self.max_size = int(dataset.max_sample_size)  # the crop length (sys.maxsize when none)
        self.step = int(step)
        self.lengths = bucket_lengths(dataset.sizes, self.step, self.max_size)
        self.left_out = int((self.lengths == 0).sum())
        kinds = np.unique(self.lengths[self.lengths > 0])
        logger.info("%s: %d buckets (%s s); %d of %d clips shorter than %.2f s left out", name, len(kinds),
                    ", ".join(f"{k / sample_rate:g}" for k in kinds), self.left_out, len(self.lengths), self.step / sample_rate)
        if self.left_out:
            logger.warning("%s: %d clips shorter than the smallest bucket (%d samples) are left out; lower "
                           "task.bucket_seconds to use them", name, self.left_out, self.step)

    @property
    def sizes(self) -> np.ndarray:
        return self.lengths

    def size(self, index: int) -> int:
        return int(self.lengths[index])

    def num_tokens(self, index: int) -> int:
        return int(self.lengths[index])

    def ordered_indices(self) -> np.ndarray:
        """Clips with a bucket, in random order (fairseq calls this under its seeded numpy state)."""
        indices = np.random.permutation(len(self.lengths))
        return indices[self.lengths[indices] > 0]

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1,
                      **_ignored) -> List[np.ndarray]:
        return bucket_batches(indices, self.lengths, max_tokens, max_sentences, required_batch_size_multiple)

    def collater(self, samples):
        """The wrapped collater, cropping every clip to the batch's bucket length (its shortest clip's bucket)."""
        if not samples:
            return self.dataset.collater(samples)
        shortest = min(len(s["source"]) for s in samples)
        length = int(bucket_lengths(np.array([shortest]), self.step, self.max_size)[0])
        kept = self.dataset.max_sample_size
        self.dataset.max_sample_size = length  # the wrapped collater crops to min(shortest, max_sample_size)
        try:
            return self.dataset.collater(samples)
        finally:
            self.dataset.max_sample_size = kept


def maybe_bucket(dataset, bucket_seconds: Optional[float], sample_rate: int, split: str):
    """``dataset`` wrapped in :class:`BucketedAudioDataset` when ``bucket_seconds`` is set, else unchanged."""
    if not bucket_seconds:
        return dataset
    if bucket_seconds < 0:
        raise ConfigError(f"task.bucket_seconds={bucket_seconds} must be positive (or unset for fairseq's batching).")
    return BucketedAudioDataset(dataset, round(bucket_seconds * sample_rate), split, sample_rate)
