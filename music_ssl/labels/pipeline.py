"""``all``: manifest → features → k-means → labels → checks, end to end, resumable.

Layout of ``out_dir`` (what ``task.label_dir`` of the MusicHuBERT configs expects, plus the working files)::

    {split}.km            one line of labels per manifest row (label_rate = the features' frame rate)
    dict.km.txt           "<id> 1" per cluster
    kmeans.safetensors    the model (music_ssl.labels.model)
    report.json           cluster-quality report per split
    feat/                 feature shards {split}_{rank}_{nshard}.npy/.len (+ .done markers); --feat-dir moves them
    shards/               label shards {split}_{rank}_{nshard}.km (+ .done markers)

Every stage skips outputs already complete for the same inputs and settings, so an interrupted run resumes.
"""
import gc
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from ..data.atomic import write_text_atomic
from ..data.audio import SAMPLE_RATE
from ..data.label_alignment import TOLERANCE_SECONDS
from ..data.manifest import read_manifest
from .apply import apply_stage, check_splits_agree, merge_stage, write_dictionary
from .check import ClusterReport, check_stage
from .features import dump_features, make_extractor
from .fit import fit_stage
from .sampling import MAX_SAMPLE_GB
from ..device import resolve_device

logger = logging.getLogger(__name__)

MODEL_NAME = "kmeans.safetensors"


def features_all(tsv_dir, splits: Sequence[str], nshard: int, feat_dir: Path, extractor_args: dict) -> None:
    """Feature shards of every split and rank (complete ones are skipped)."""
    extractor = make_extractor(**extractor_args)
    for split in splits:
        for rank in range(nshard):
            dump_features(tsv_dir, split, nshard, rank, feat_dir, extractor)
    del extractor  # free the encoder (GPU memory) before k-means
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_all(tsv_dir, out_dir, feature: str = "mfcc", n_mfcc: int = 13, checkpoint=None, layer: Optional[int] = None,
            n_clusters: int = 500, splits: Sequence[str] = ("train", "valid"), nshard: int = 1, percent: float = 0.1,
            max_frames: Optional[int] = None, backend: str = "torch", device: str = "auto", seed: int = 0,
            feat_dir=None, chunk_seconds: float = 30.0, max_iter: int = 100, tol: float = 1e-3, reference=None,
            reference_column: str = "label", tolerance: float = TOLERANCE_SECONDS,
            max_sample_gb: float = MAX_SAMPLE_GB) -> Dict[str, ClusterReport]:
    """Labels for every split of ``tsv_dir`` in ``out_dir``; k-means is fitted on the first split.

    See :func:`music_ssl.labels.features.make_extractor` (feature, n_mfcc, checkpoint, layer, chunk_seconds),
    :func:`music_ssl.labels.fit.fit_stage` (n_clusters, percent, max_frames, max_sample_gb, backend, seed,
    max_iter, tol) and
    :func:`music_ssl.labels.check.check_stage` (reference, reference_column, tolerance). Returns the reports.
    """
    out_dir = Path(out_dir)
    feat_dir = Path(feat_dir) if feat_dir else out_dir / "feat"
    for split in splits:  # fail on a missing or malformed manifest before any heavy work
        read_manifest(Path(tsv_dir) / f"{split}.tsv")
    device = str(resolve_device(device))
    features_all(tsv_dir, splits, nshard, feat_dir, dict(feature=feature, n_mfcc=n_mfcc, checkpoint=checkpoint,
                                                         layer=layer, device=device, chunk_seconds=chunk_seconds))
    model = fit_stage(feat_dir, splits[0], nshard, out_dir / MODEL_NAME, n_clusters, percent, max_frames, seed,
                      backend, device, max_iter, tol, max_sample_gb)
    for split in splits:
        for rank in range(nshard):
            apply_stage(feat_dir, split, out_dir / MODEL_NAME, nshard, rank, out_dir / "shards", device)
        merge_stage(out_dir / "shards", split, nshard, out_dir)
    write_dictionary(out_dir, model.k)
    check_splits_agree(out_dir, splits)
    reports = {split: check_stage(tsv_dir, out_dir, split, model.frame_rate, SAMPLE_RATE, tolerance, reference,
                                  reference_column) for split in splits}
    write_text_atomic(out_dir / "report.json", json.dumps({s: r.to_dict() for s, r in reports.items()}, indent=1))
    logger.info("labels ready in %s: %s, dict.km.txt (k=%d, label_rate %g Hz)", out_dir,
                ", ".join(f"{s}.km" for s in splits), model.k, model.frame_rate)
    return reports
