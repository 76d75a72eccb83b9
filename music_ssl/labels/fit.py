"""The fit stage: sample frames of a split's feature shards, run k-means, save the model (resumable)."""
import json
import logging
from pathlib import Path
from typing import Optional

from .errors import LabelPrepError
from .kmeans import fit_torch
from .model import KMeansModel
from .sampling import FRAMES_PER_CLUSTER, MAX_SAMPLE_GB, load_split, sample_cap, sample_frames, shards_key
from .shards import fingerprint

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "sklearn")


def fit_stage(feat_dir, split: str, nshard: int, km_path, n_clusters: int, percent: float = 0.1,
              max_frames: Optional[int] = None, seed: int = 0, backend: str = "torch", device="auto",
              max_iter: int = 100, tol: float = 1e-3, max_sample_gb: float = MAX_SAMPLE_GB) -> KMeansModel:
    """Fit k-means on a sample of ``{feat_dir}/{split}_*_{nshard}.npy`` and save it to ``km_path``.

    Args:
        n_clusters: k.
        percent: fraction of the split's frames to fit on, in (0, 1] (default 0.1, fairseq's recipe); the sample
            holds at least ``FRAMES_PER_CLUSTER`` (256) × k frames (or all), at most ``max_frames`` (default: no
            fixed cap) and at most what fits in ``max_sample_gb`` GiB of float32 (default 8) — the rule of
            :mod:`music_ssl.labels.sampling`.
        backend: ``torch`` (k-means++ then Lloyd, GPU when present) or ``sklearn`` (fairseq's MiniBatchKMeans).
        device: for the torch backend: ``auto``, ``cuda``, ``cpu``.
        max_iter, tol: torch backend's Lloyd iterations and relative-inertia stopping threshold.

    Skips the fit when ``km_path`` was already fitted with these settings on these shards.
    """
    if backend not in BACKENDS:
        raise LabelPrepError(f"--backend {backend!r}: unknown; choose {' or '.join(BACKENDS)}.")
    if n_clusters < 1 or (max_frames is not None and max_frames < n_clusters) or max_sample_gb <= 0:
        raise LabelPrepError(f"--n-clusters {n_clusters} with --max-frames {max_frames} and --max-sample-gb "
                             f"{max_sample_gb}: need 1 <= k <= max-frames and a positive memory budget.")
    settings = {"n_clusters": n_clusters, "percent": percent, "max_frames": max_frames, "seed": seed,
                "backend": backend, "max_iter": max_iter, "tol": tol, "max_sample_gb": max_sample_gb}
    shards = load_split(feat_dir, split, nshard)
    key = fingerprint({"features": shards_key(shards), **settings})
    if Path(km_path).is_file():
        previous = KMeansModel.load(km_path)
        if previous.metadata.get("fit_key") == key:
            logger.info("%s: fitted with these settings on these features, skipped", km_path)
            return previous
    cap = sample_cap(shards[0][0].shape[1], max_frames, max_sample_gb)
    if cap < n_clusters:
        raise LabelPrepError(f"--max-sample-gb {max_sample_gb}: holds only {cap} frames of "
                             f"{shards[0][0].shape[1]}-d features for k={n_clusters}; raise it.")
    if cap < FRAMES_PER_CLUSTER * n_clusters:
        logger.warning("sample capped at %d frames (--max-frames / --max-sample-gb): fewer than %d per cluster",
                       cap, FRAMES_PER_CLUSTER)
    del shards
    sample = sample_frames(feat_dir, split, nshard, percent, cap, FRAMES_PER_CLUSTER * n_clusters, seed)
    if len(sample.frames) < n_clusters:
        raise LabelPrepError(f"{feat_dir}: {split} has only {sample.total} frames for k={n_clusters} clusters; lower "
                             f"--n-clusters or add audio.")
    if backend == "sklearn":
        from .kmeans_sklearn import fit_sklearn

        result = fit_sklearn(sample.frames, n_clusters, seed)
    else:
        result = fit_torch(sample.frames, n_clusters, seed, device, max_iter, tol)
    metadata = {"backend": backend, "features": json.dumps(sample.features, sort_keys=True),
                "frame_rate": repr(float(sample.frame_rate)), "inertia": repr(result.inertia),
                "sample_frames": str(len(sample.frames)), "seed": str(seed), "n_iter": str(result.n_iter),
                "features_key": sample.key, "fit_key": key}
    model = KMeansModel(result.centroids, metadata)
    model.save(km_path)
    logger.info("%s: k=%d x %d, inertia %.5f on %d frames", km_path, model.k, model.dim, result.inertia,
                len(sample.frames))
    return model
