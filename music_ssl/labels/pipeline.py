"""``all``: manifest → features → k-means → labels → checks, end to end, resumable.

Layout of ``out_dir`` (what ``task.label_dir`` of the MusicHuBERT configs expects, plus the working files)::

    {split}.km            one line of labels per manifest row (label_rate = the features' frame rate)
    dict.km.txt           "<id> 1" per cluster
    kmeans.safetensors    the model (music_ssl.labels.kmeans_file)
    report.json           cluster-quality report per split
    feat/                 feature shards {split}_{rank}_{nshard}.npy/.len (+ .done markers); feat_dir moves them
    shards/               label shards {split}_{rank}_{nshard}.km (+ .done markers)

Every stage skips outputs already complete for the same inputs and settings, so an interrupted run resumes.
"""
import gc
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from ..core.atomic import write_text_atomic
from ..core.device import resolve_device
from ..data.audio import SAMPLE_RATE
from ..data.manifest import read_manifest
from .apply import apply_stage, check_splits_agree, merge_stage, write_dictionary
from .check import ClusterReport, check_stage
from .features import dump_features, make_extractor
from .fit import fit_stage
from .settings import FeatureSettings, LabelSettings

logger = logging.getLogger(__name__)

MODEL_NAME = "kmeans.safetensors"


def features_all(tsv_dir, splits: Sequence[str], nshard: int, feat_dir: Path, settings: FeatureSettings,
                 device: str) -> None:
    """Feature shards of every split and rank (complete ones are skipped)."""
    extractor = make_extractor(settings, device)
    for split in splits:
        for rank in range(nshard):
            dump_features(tsv_dir, split, nshard, rank, feat_dir, extractor)
    del extractor  # free the encoder (GPU memory) before k-means
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_all(tsv_dir, out_dir, settings: Optional[LabelSettings] = None) -> Dict[str, ClusterReport]:
    """Labels for every split of ``tsv_dir`` in ``out_dir``; k-means is fitted on the first split.

    ``settings``: :class:`music_ssl.labels.settings.LabelSettings` (default: its defaults, MFCC-39 with k=500):
    the features (:func:`music_ssl.labels.features.make_extractor`), the fit
    (:func:`music_ssl.labels.fit.fit_stage`), the checks (:func:`music_ssl.labels.check.check_stage`), the
    splits, shards, feature folder and device. Returns the reports per split.
    """
    s = settings or LabelSettings()
    out_dir = Path(out_dir)
    feat_dir = Path(s.feat_dir) if s.feat_dir else out_dir / "feat"
    for split in s.splits:  # fail on a missing or malformed manifest before any heavy work
        read_manifest(Path(tsv_dir) / f"{split}.tsv")
    device = str(resolve_device(s.device))
    features_all(tsv_dir, s.splits, s.nshard, feat_dir, s.features, device)
    model = fit_stage(feat_dir, s.splits[0], s.nshard, out_dir / MODEL_NAME, s.fit, device)
    for split in s.splits:
        for rank in range(s.nshard):
            apply_stage(feat_dir, split, out_dir / MODEL_NAME, s.nshard, rank, out_dir / "shards", device)
        merge_stage(out_dir / "shards", split, s.nshard, out_dir)
    write_dictionary(out_dir, model.k)
    check_splits_agree(out_dir, s.splits)
    c = s.check
    reports = {split: check_stage(tsv_dir, out_dir, split, model.frame_rate, SAMPLE_RATE, c.tolerance, c.reference,
                                  c.reference_column) for split in s.splits}
    write_text_atomic(out_dir / "report.json", json.dumps({split: asdict(r) for split, r in reports.items()}, indent=1))
    logger.info("labels ready in %s: %s, dict.km.txt (k=%d, label_rate %g Hz)", out_dir,
                ", ".join(f"{split}.km" for split in s.splits), model.k, model.frame_rate)
    return reports
