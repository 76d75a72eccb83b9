"""The frames k-means is fitted on: a uniform random sample of a split's feature shards, gathered without
ever loading every frame.

Frame indices are drawn over the split's global frame order (shard 0 first), so the sample — and so the
model — is the same whatever ``nshard`` the features were written with. Unlike fairseq's ``learn_kmeans``
(which samples whole utterances) frames are sampled individually: the same budget covers more files.

Sample size (:func:`default_sample_size`), for ``total`` frames of ``dim``-d features and ``k`` clusters::

    n = min(total, cap, max(ceil(percent × total), FRAMES_PER_CLUSTER × k))
    cap = min(max_frames (none by default), max_sample_gb × 2^30 / (4 × dim))

* ``percent`` = 0.1: fairseq's recipe released with HuBERT (Hsu et al. 2021;
  ``examples/hubert/simple_kmeans/README.md`` runs ``learn_kmeans.py ... --percent 0.1``: 10 % of the data);
* ``FRAMES_PER_CLUSTER`` = 256 frames per cluster at least, so a small corpus or a large k still gets a
  well-populated sample: FAISS's k-means trains on at most 256 points per centroid by default
  (``ClusteringParameters.max_points_per_centroid``) and warns below 39 per centroid;
* the memory budget (default 8 GiB of float32 frames: 55M 39-d MFCC frames, 2.8M 768-d layer frames) keeps the
  sample on one GPU / in RAM. ``benchmarks/kmeans_bench.py --sample-sweep`` shows inertia and cluster usage
  against the sample size (measured on CPU, 400k synthetic 39-d frames, k=500: inertia on all frames 1.052× that
  of a fit on all of them with 39 per cluster, 1.029× with 10 % = 80 per cluster, 1.009× with 256 per cluster;
  no dead cluster in any).
"""
import logging
import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..core.fingerprint import json_sha256
from .errors import LabelPrepError
from .features import load_shard
from .settings import MAX_SAMPLE_GB

logger = logging.getLogger(__name__)

GATHER_ROWS = 1 << 16  # indices gathered from a memory map per step
FRAMES_PER_CLUSTER = 256  # FAISS ClusteringParameters.max_points_per_centroid (see the module docstring)


@dataclass
class FrameSample:
    """``frames`` (n, D) float32 drawn from ``total`` frames; ``key`` fingerprints the shards they came from;
    ``features`` (settings dict) and ``frame_rate`` (Hz) describe them."""

    frames: np.ndarray
    total: int
    key: str
    features: dict
    frame_rate: float


def sample_size(total: int, percent: float, min_frames: int, max_frames: Optional[int]) -> int:
    """ceil(percent × total), raised to ``min_frames`` and capped at ``max_frames`` (None: no cap) and ``total``.

    ``percent`` in (0, 1] (checked by :class:`music_ssl.labels.settings.FitSettings`)."""
    n = max(math.ceil(percent * total), min_frames)
    return min(total, n if max_frames is None else min(n, max_frames))


def sample_cap(dim: int, max_frames: Optional[int] = None, max_sample_gb: float = MAX_SAMPLE_GB) -> int:
    """Largest sample: ``max_frames`` (None: none) and the frames of ``dim`` float32 that fit in ``max_sample_gb``."""
    budget = int(max_sample_gb * 2 ** 30 // (4 * dim))
    return budget if max_frames is None else min(budget, max_frames)


def default_sample_size(total: int, dim: int, k: int, percent: float = 0.1, max_frames: Optional[int] = None,
                        max_sample_gb: float = MAX_SAMPLE_GB) -> int:
    """The fit's sample size (the rule of the module docstring)."""
    return sample_size(total, percent, FRAMES_PER_CLUSTER * k, sample_cap(dim, max_frames, max_sample_gb))


def sample_frames(feat_dir, split: str, nshard: int, percent: float, max_frames: Optional[int], min_frames: int = 0,
                  seed: int = 0) -> FrameSample:
    """Uniform sample of a split's frames.

    Args:
        feat_dir, split, nshard: the feature shards (all ranks must be complete).
        percent: fraction of frames in (0, 1]; min_frames / max_frames (None: none): bounds of the sample size.
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
    if len({json_sha256(marker["features"]) for _, _, marker in shards}) > 1:
        raise LabelPrepError(f"{feat_dir}: the {split} shards were made with different feature settings; delete "
                             f"them and rerun the features stage.")
    return shards


def shards_key(shards: List[tuple]) -> str:
    """Fingerprint of a split's shards (their markers' keys): changes whenever any shard's inputs change."""
    return json_sha256([marker["key"] for _, _, marker in shards])


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
