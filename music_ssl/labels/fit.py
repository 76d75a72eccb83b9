"""The fit stage: sample frames of a split's feature shards, run k-means, save the model (resumable)."""
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..core.fingerprint import json_sha256
from .errors import LabelPrepError
from .kmeans import fit_torch
from .kmeans_file import KMeansModel
from .sampling import FRAMES_PER_CLUSTER, load_split, sample_cap, sample_frames, shards_key
from .settings import FitSettings

logger = logging.getLogger(__name__)
CHECK_ROWS = 1 << 16  # sampled frames checked for NaN/Inf per step


def check_finite_sample(frames: np.ndarray, feat_dir, split: str) -> None:
    """LabelPrepError unless every sampled frame (n, D) is finite: shards written before the features stage refused
    NaN/Inf would make the inertia NaN and every label 0."""
    bad = sum(int(np.count_nonzero(~np.isfinite(frames[i:i + CHECK_ROWS]).all(axis=1)))  # bounded temporaries
              for i in range(0, len(frames), CHECK_ROWS))
    if bad:
        raise LabelPrepError(f"{feat_dir}: {bad} of the {len(frames)} {split} frames sampled for k-means hold NaN/Inf "
                             f"(feature shards made before NaN/Inf were refused); delete the {split}_*.npy shards "
                             f"and rerun the features stage: it names the file whose features are not finite.")


def fit_stage(feat_dir, split: str, nshard: int, km_path, settings: FitSettings, device="auto") -> KMeansModel:
    """Fit k-means on a sample of ``{feat_dir}/{split}_*_{nshard}.npy`` and save it to ``km_path``.

    Args:
        settings: k (``n_clusters``), the sample (``percent``, ``sample_unit``, ``max_frames``, ``max_sample_gb``:
            the rules of :mod:`music_ssl.labels.sampling`), ``backend``, ``seed``, ``max_iter``, ``tol``
            (:class:`music_ssl.labels.settings.FitSettings`, which states the defaults).
        device: for the torch backend: ``auto``, ``cuda``, ``cpu``.

    Skips the fit when ``km_path`` was already fitted with these settings on these shards.
    """
    s = settings
    shards = load_split(feat_dir, split, nshard)
    key = json_sha256({"features": shards_key(shards), **asdict(s)})
    if Path(km_path).is_file():
        previous = KMeansModel.load(km_path)
        if previous.metadata.get("fit_key") == key:
            logger.info("%s: fitted with these settings on these features, skipped", km_path)
            return previous
    dim = shards[0][0].shape[1]
    cap = sample_cap(dim, s.max_frames, s.max_sample_gb)  # >= n_clusters unless the memory budget is too small
    if cap < s.n_clusters:
        raise LabelPrepError(f"max_sample_gb={s.max_sample_gb}: holds only {cap} frames of {dim}-d features for "
                             f"k={s.n_clusters}; raise it.")
    if cap < FRAMES_PER_CLUSTER * s.n_clusters:
        logger.warning("sample capped at %d frames (max_frames / max_sample_gb): fewer than %d per cluster",
                       cap, FRAMES_PER_CLUSTER)
    del shards
    sample = sample_frames(feat_dir, split, nshard, s.percent, cap, FRAMES_PER_CLUSTER * s.n_clusters, s.seed,
                           s.sample_unit)
    if len(sample.frames) < s.n_clusters:
        raise LabelPrepError(f"{feat_dir}: {split} has only {sample.total} frames for k={s.n_clusters} clusters; "
                             f"lower n_clusters or add audio.")
    check_finite_sample(sample.frames, feat_dir, split)
    if s.backend == "sklearn":
        from .kmeans_sklearn import fit_sklearn

        result = fit_sklearn(sample.frames, s.n_clusters, s.seed)
    else:
        result = fit_torch(sample.frames, s.n_clusters, s.seed, device, s.max_iter, s.tol)
    if not (np.isfinite(result.inertia) and np.isfinite(result.centroids).all()):
        raise LabelPrepError(f"{km_path}: the {s.backend} k-means fit on {feat_dir} ({split}) gave a non-finite "
                             f"inertia ({result.inertia}) or centroids although every sampled frame is finite: "
                             f"squared distances overflow (largest |feature| {np.abs(sample.frames).max():.3g}); "
                             f"nothing was saved. Features this large come from float audio far beyond [-1, 1] "
                             f"or a broken checkpoint: fix the source and rerun the features stage.")
    metadata = {"backend": s.backend, "features": json.dumps(sample.features, sort_keys=True),
                "frame_rate": repr(float(sample.frame_rate)), "inertia": repr(result.inertia),
                "sample_frames": str(len(sample.frames)), "sample_unit": s.sample_unit,
                "sample_percent": repr(float(s.percent)), "seed": str(s.seed), "n_iter": str(result.n_iter),
                "features_key": sample.key, "fit_key": key}
    model = KMeansModel(result.centroids, metadata)
    model.save(km_path)
    logger.info("%s: k=%d x %d, inertia %.5f on %d frames", km_path, model.k, model.dim, result.inertia,
                len(sample.frames))
    return model
