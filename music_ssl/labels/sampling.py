"""The frames k-means is fitted on: a uniform random sample of a split's feature shards, gathered without
ever loading every frame.

Frame indices are drawn over the split's global frame order (shard 0 first), so the sample — and so the
model — is the same whatever ``nshard`` the features were written with. Unlike fairseq's ``learn_kmeans``
(which samples whole utterances) frames are sampled individually: the same budget covers more files.
"""
import logging
import math
from dataclasses import dataclass
from typing import List

import numpy as np

from .errors import LabelPrepError
from .features import load_shard
from .shards import fingerprint

logger = logging.getLogger(__name__)

GATHER_ROWS = 1 << 16  # indices gathered from a memory map per step


@dataclass
class FrameSample:
    """``frames`` (n, D) float32 drawn from ``total`` frames; ``key`` fingerprints the shards they came from;
    ``features`` (settings dict) and ``frame_rate`` (Hz) describe them."""

    frames: np.ndarray
    total: int
    key: str
    features: dict
    frame_rate: float


def sample_size(total: int, percent: float, min_frames: int, max_frames: int) -> int:
    """ceil(percent × total), raised to ``min_frames`` and capped at ``max_frames`` and ``total``."""
    if not 0.0 < percent <= 1.0:
        raise LabelPrepError(f"--percent={percent}: must be in (0, 1] (fraction of frames to fit on; 1 = all).")
    return min(total, max_frames, max(math.ceil(percent * total), min_frames))


def sample_frames(feat_dir, split: str, nshard: int, percent: float, max_frames: int, min_frames: int = 0,
                  seed: int = 0) -> FrameSample:
    """Uniform sample of a split's frames.

    Args:
        feat_dir, split, nshard: the feature shards (all ranks must be complete).
        percent: fraction of frames in (0, 1]; min_frames / max_frames: bounds of the sample size.
        seed: seed of the draw.

    Returns:
        :class:`FrameSample` with (n, D) float32 frames.
    """
    shards = load_split(feat_dir, split, nshard)
    total = sum(len(feats) for feats, _, _ in shards)
    n = sample_size(total, percent, min_frames, max_frames)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, n, replace=False, shuffle=False))  # (n,) global frame indices
    sample = gather(shards, chosen)
    logger.info("sampled %d of %d %s frames (%.1f%%) from %d shards", n, total, split, 100 * n / max(total, 1), nshard)
    marker = shards[0][2]
    return FrameSample(sample, total, shards_key(shards), marker["features"], marker["frame_rate"])


def load_split(feat_dir, split: str, nshard: int) -> List[tuple]:
    """Every shard of a split (:func:`load_shard` tuples); LabelPrepError if their feature settings differ."""
    shards = [load_shard(feat_dir, split, nshard, rank) for rank in range(nshard)]
    if len({fingerprint(marker["features"]) for _, _, marker in shards}) > 1:
        raise LabelPrepError(f"{feat_dir}: the {split} shards were made with different feature settings; delete "
                             f"them and rerun the features stage.")
    return shards


def shards_key(shards: List[tuple]) -> str:
    """Fingerprint of a split's shards (their markers' keys): changes whenever any shard's inputs change."""
    return fingerprint([marker["key"] for _, _, marker in shards])


def gather(shards: List[tuple], chosen: np.ndarray) -> np.ndarray:
    """Rows ``chosen`` (sorted global indices) of the shards' concatenated frames → (n, D) float32."""
    dim = shards[0][0].shape[1]
    out = np.empty((len(chosen), dim), dtype=np.float32)
    offset, filled = 0, 0
    for feats, _, _ in shards:
        local = chosen[(chosen >= offset) & (chosen < offset + len(feats))] - offset  # sorted, in this shard
        for first in range(0, len(local), GATHER_ROWS):
            part = local[first: first + GATHER_ROWS]
            out[filled: filled + len(part)] = feats[part]
            filled += len(part)
        offset += len(feats)
    return out
