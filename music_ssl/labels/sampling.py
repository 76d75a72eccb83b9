"""The frames k-means is fitted on: a random sample of a split's feature shards, gathered without ever loading
every frame. Two units (``FitSettings.sample_unit``); both draw over the split's global row / frame order (shard
0 first), so the sample — and so the model — is the same whatever ``nshard`` the features were written with.

``frames`` (default; ours): frames drawn individually, uniformly without replacement, from all the split's
frames. The same budget covers more files than whole utterances would, and the sample size is exact.

``utterances`` (fairseq's unit): whole manifest rows. fairseq's ``learn_kmeans.py`` (``load_feature_shard``)
draws, in every shard, ceil(percent × rows of the shard) rows uniformly without replacement
(``np.random.choice`` after one ``np.random.seed(seed)``) and concatenates all their frames in the drawn order;
its ``--percent`` defaults to -1 (every frame) and its recipe (``examples/hubert/simple_kmeans/README.md``)
passes 0.1. Here: ceil(percent × rows of the split) rows, drawn once over the whole split — fairseq's count
and draw depend on ``nshard``, ours do not — taken as the first rows of one seeded random permutation and
gathered in row order; then, as for frames, more rows of that permutation are added until the floor below is
met, and rows are dropped from its end until the frames fit the cap (a row is never cut, so the sample is at
most the cap; a cap smaller than the first row drawn is an error naming the setting).

Sample size (:func:`default_sample_size`; for ``utterances`` the frames of the rows above), for ``total``
frames of ``dim``-d features and ``k`` clusters::

    n = min(total, cap, max(ceil(percent × total), FRAMES_PER_CLUSTER × k))
    cap = min(max_frames (none by default), max_sample_gb × 2^30 / (4 × dim))

* ``percent`` = 0.1: the fraction fairseq's recipe released with HuBERT passes (Hsu et al. 2021; there it is
  0.1 of the utterances, here by default 0.1 of the frames);
* the floor ``FRAMES_PER_CLUSTER × k`` = 256 frames per cluster is ours (neither fairseq nor the papers have
  one), so a small corpus or a large k still gets a well-populated sample: FAISS's k-means trains on at most 256
  points per centroid by default (``ClusteringParameters.max_points_per_centroid``) and warns below 39;
* the cap — by default an 8 GiB budget of float32 frames (55M 39-d MFCC frames, 2.8M 768-d layer frames) — is
  ours too: it keeps the sample, the fit's copy of it on the device and the host RAM of the gather bounded.

What the sample size costs, ``benchmarks/kmeans_bench.py --sample-sweep`` (inertia of each fit on ALL frames
relative to a fit on all of them; measured on CPU, 2 threads, synthetic Gaussian mixtures, torch backend with
its defaults):

* 400k 39-d frames, k=500: 1.052× with 39 frames per cluster, 1.029× with 10 % = 80 per cluster, 1.009× with 256
  per cluster; no dead cluster in any.
* The cap at the papers' scale: iteration 2 of MusicHuBERT clusters 768-d features of 1000 h of music at 50 Hz
  (180M frames) into k=2000 (Ma et al. 2023, §3.1 and §4.3.1 / Table 2); the 8 GiB cap holds 2.80M of them,
  1.55 % = 1398 frames per cluster, where 5 % would be 4500 and 10 % 9000 per cluster. What decides the fit's
  error is the frames per cluster, so the sweep keeps those and scales k down (``--scale 180000000,2000``): on
  300k 768-d frames with k=32 (16 overlapping centres per cluster, ``--mixture 16,0.5 --repeats 3``; 106 s),
  1.0013× (±0.0003 over 3 seeds) at the cap, 1.0003× at 5 %, 1.0000× at 10 %, 1.0054× at 256 per cluster; on
  600k frames with k=64 (1 seed; 92 s) 1.0014×, 1.0003×, 1.0000×, 1.0049×; no dead cluster in any. Lloyd run
  for 40 iterations (``--max-iter 40 --tol 0 --repeats 2``, k=32; 238 s) instead of stopping at the default tol
  (5 iterations here) gives the same gap — 1.0015× (±0.0003) at the cap, 1.0003× at 5 %, 1.0001× at 10 % — and
  lowers every fit's inertia by ≈ 0.3 % (same data and seeds), twice what the cap costs. (On well-separated blobs,
  ``--mixture 2,2.0``, the seed decides which blobs merge: ±1 % between seeds hides any sample-size effect.)
  So the cap costs ≈ 0.15 % of inertia against 10 % of the frames, which at that scale would be a 51 GiB sample
  (host RAM for the gather, device memory for the fit): we keep 8 GiB; raise ``max_sample_gb`` where the machine
  holds more. These are synthetic features (no iteration-1 checkpoint at the papers' scale here): real layer
  features may be less kind.
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
                  seed: int = 0, unit: str = "frames") -> FrameSample:
    """Random sample of a split's frames (the rules of the module docstring).

    Args:
        feat_dir, split, nshard: the feature shards (all ranks must be complete).
        percent: fraction in (0, 1] of the frames (``unit="frames"``) or of the rows (``"utterances"``);
            min_frames / max_frames (None: none): bounds of the sample size in frames.
        seed: seed of the draw.
        unit: ``"frames"`` (frames drawn individually) or ``"utterances"`` (whole rows, fairseq's unit).

    Returns:
        :class:`FrameSample` with (n, D) float32 frames, in the split's frame order.
    """
    shards = load_split(feat_dir, split, nshard)
    lengths = np.concatenate([rows for _, rows, _ in shards])  # (R,) frames per row of the split
    total = int(lengths.sum())
    rng = np.random.default_rng(seed)
    if unit == "utterances":
        rows = sample_rows(lengths, percent, min_frames, max_frames, rng)  # (m,) sorted row indices
        sample = gather_rows(shards, lengths, rows)
        logger.info("sampled %d of %d %s utterances (%.1f%%): %d of %d frames (%.1f%%) from %d shards", len(rows),
                    len(lengths), split, 100 * len(rows) / len(lengths), len(sample), total,
                    100 * len(sample) / max(total, 1), nshard)
    else:
        n = sample_size(total, percent, min_frames, max_frames)
        chosen = np.sort(rng.choice(total, n, replace=False, shuffle=False))  # (n,) global frame indices
        sample = gather(shards, chosen)
        logger.info("sampled %d of %d %s frames (%.1f%%) from %d shards", n, total, split, 100 * n / max(total, 1),
                    nshard)
    marker = shards[0][2]
    return FrameSample(sample, total, shards_key(shards), marker["features"], marker["frame_rate"])


def sample_rows(lengths: np.ndarray, percent: float, min_frames: int, max_frames: Optional[int],
                rng: np.random.Generator) -> np.ndarray:
    """Whole rows (utterances) of a split whose frames per row are ``lengths`` (R,): the first ceil(percent × R)
    rows of a random permutation, more of them until they hold ``min_frames`` frames (or all rows), fewer until
    they hold at most ``max_frames`` (None: no cap). Returns the chosen row indices (m,), sorted."""
    order = rng.permutation(len(lengths))  # (R,)
    held = np.cumsum(lengths[order])  # (R,) frames of the first i + 1 rows of the permutation
    m = max(math.ceil(percent * len(lengths)), int(np.searchsorted(held, min_frames)) + 1)
    m = min(m, len(lengths))
    if max_frames is not None and held[m - 1] > max_frames:
        m = int(np.searchsorted(held, max_frames, side="right"))  # rows whose frames fit the cap
        if m == 0:
            raise LabelPrepError(f"max_frames / max_sample_gb: the sample cap of {max_frames} frames is smaller than "
                                 f"the first utterance drawn ({held[0]} frames); raise it, or use "
                                 f"sample_unit='frames'.")
    return np.sort(order[:m])


def gather_rows(shards: List[tuple], lengths: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """All frames of rows ``rows`` (sorted global row indices; ``lengths`` (R,) frames per row of the split) of the
    shards' concatenated frames → (sum(lengths[rows]), D) float32, in row order."""
    starts = np.concatenate([[0], np.cumsum(lengths)])  # (R + 1,) global frame offset of every row
    dim = shards[0][0].shape[1]
    out = np.empty((int(lengths[rows].sum()), dim), dtype=np.float32)
    first_row, filled = 0, 0
    for feats, shard_lengths, _ in shards:
        base = starts[first_row]  # global offset of this shard's first frame
        for row in rows[(rows >= first_row) & (rows < first_row + len(shard_lengths))]:
            begin, end = starts[row] - base, starts[row + 1] - base
            out[filled: filled + end - begin] = feats[begin:end]
            filled += end - begin
        first_row += len(shard_lengths)
    return out


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
