"""The check stage: pre-flight alignment of ``{split}.km`` with ``{split}.tsv`` and a cluster-quality report.

Alignment reuses :func:`music_ssl.data.label_alignment.check_label_alignment` — the exact check the
MusicHuBERT task runs before training: as many label lines as manifest rows, and every line within
``tolerance`` seconds (fairseq's 0.1 s) of its audio at the label rate recorded beside the labels. Files are read by
:mod:`music_ssl.data.label_files`. The quality report gives the
cluster usage histogram, its entropy (bits) and perplexity, dead (unused) clusters, and — given a
reference CSV with a class per file — cluster purity and PNMI (phone-normalised mutual information as
in the HuBERT paper, with classes instead of phones).
"""
import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..data.audio import SAMPLE_RATE
from ..data.label_alignment import TOLERANCE_SECONDS, check_label_alignment
from ..data.label_files import check_sidecar, label_lines, label_rate_of, read_dictionary
from ..data.manifest import Manifest, read_manifest
from .errors import LabelPrepError

logger = logging.getLogger(__name__)

CLIP_SUFFIX = re.compile(r"_\d{4}$")  # clips cut by music-ssl-manifest --segment-seconds: TRACK_0003.flac


@dataclass
class ClusterReport:
    """Quality of one split's labels (counts over every frame)."""

    split: str
    rows: int
    frames: int
    k: int
    usage: List[int]  # (k,) frames per cluster
    entropy_bits: float  # of the usage distribution; log2(k) is the maximum
    perplexity: float  # 2 ** entropy: the number of equally used clusters that would give this entropy
    dead_clusters: int  # clusters no frame of this split uses
    purity: Optional[float] = None  # Σ_clusters max_class count / labelled frames
    pnmi: Optional[float] = None  # I(class; cluster) / H(class)
    labelled_rows: int = 0  # rows with a reference class
    unlabelled_rows: int = 0  # rows the reference CSV does not cover (left out of purity / PNMI)
    classes: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        """Human-readable summary."""
        out = [f"{self.split}: {self.rows} rows, {self.frames} frames, k={self.k}: entropy {self.entropy_bits:.2f} bits "
               f"(max {np.log2(self.k):.2f}), perplexity {self.perplexity:.1f}, dead clusters {self.dead_clusters}"]
        if self.purity is not None:
            out.append(f"{self.split}: purity {self.purity:.3f}, PNMI {self.pnmi:.3f} against {len(self.classes)} "
                       f"classes ({self.labelled_rows} rows labelled, {self.unlabelled_rows} not in the reference)")
        return out


def reference_key(relpath: str) -> str:
    """Matching key of a file: its path without extension and without a ``_NNNN`` clip suffix."""
    return CLIP_SUFFIX.sub("", str(Path(relpath).with_suffix("")))


def load_reference(csv_path, column: str, manifest: Manifest) -> Tuple[np.ndarray, List[str]]:
    """Class of every manifest row from a CSV with a ``path`` column (relative to the manifest root, any
    extension; clips match their track) and a class ``column``.

    Returns:
        (classes (N,) int64, -1 for rows the CSV does not cover; class names).
    """
    with open(csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    if not table or "path" not in table[0] or column not in table[0]:
        raise LabelPrepError(f"{csv_path}: needs a header with `path` and `{column}` columns (one row per file); "
                             f"fix the CSV or set reference_column.")
    by_key = {reference_key(row["path"]): row[column] for row in table}
    names = sorted(set(by_key.values()))
    index = {name: i for i, name in enumerate(names)}
    classes = [index.get(by_key.get(reference_key(rel)), -1) for rel in manifest.relpaths]
    return np.asarray(classes, dtype=np.int64), names


def cluster_report(split: str, km_path, k: int, classes: Optional[np.ndarray] = None,
                   class_names: List[str] = ()) -> ClusterReport:
    """Usage histogram, entropy, dead clusters and (with per-row ``classes``) purity / PNMI of ``km_path``."""
    usage = np.zeros(k, dtype=np.int64)
    joint = np.zeros((k, max(len(class_names), 1)), dtype=np.int64)  # (k, C) frames per cluster and class
    rows = 0
    for row, labels in enumerate(label_lines(km_path, k)):
        usage += np.bincount(labels, minlength=k)
        if classes is not None and classes[row] >= 0:
            joint[:, classes[row]] += np.bincount(labels, minlength=k)
        rows += 1
    p = usage / max(usage.sum(), 1)
    entropy = float((p[p > 0] * -np.log2(p[p > 0])).sum())
    report = ClusterReport(split, rows, int(usage.sum()), k, usage.tolist(), entropy, float(2 ** entropy),
                           int((usage == 0).sum()))
    if classes is not None:
        report.purity, report.pnmi = purity_and_pnmi(joint)
        report.labelled_rows, report.unlabelled_rows = int((classes >= 0).sum()), int((classes < 0).sum())
        report.classes = list(class_names)
    return report


def purity_and_pnmi(joint: np.ndarray) -> Tuple[float, float]:
    """(purity, PNMI) of a (k, C) cluster × class count table; (nan, nan) when it is empty."""
    total = joint.sum()
    if total == 0:
        return float("nan"), float("nan")
    pxy = joint / total
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)  # (k, 1), (1, C)
    nz = pxy > 0
    mutual = float((pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum())
    h_class = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    return float(joint.max(1).sum() / total), mutual / h_class if h_class > 0 else float("nan")


def check_stage(tsv_dir, lab_dir, split: str, label_rate: Optional[float] = None, sample_rate: int = SAMPLE_RATE,
                tolerance: float = TOLERANCE_SECONDS, reference=None, reference_column: str = "label") -> ClusterReport:
    """Raise unless ``{lab_dir}/{split}.km`` aligns with ``{tsv_dir}/{split}.tsv``; return its quality report.

    ``label_rate`` (Hz) defaults to the rate recorded beside the labels (``{split}.km.json``); a stated rate must
    agree with the record.
    """
    tsv, km = Path(tsv_dir) / f"{split}.tsv", Path(lab_dir) / f"{split}.km"
    k = read_dictionary(lab_dir)
    manifest = read_manifest(tsv)
    check_sidecar(km, k, label_rate, manifest)
    label_rate = label_rate_of(km, k) if label_rate is None else label_rate
    check_label_alignment(manifest, str(km), label_rate, sample_rate, tolerance)
    classes, names = (None, [])
    if reference is not None:
        classes, names = load_reference(reference, reference_column, manifest)
    report = cluster_report(split, km, k, classes, names)
    for line in report.lines():
        logger.info(line)
    return report
