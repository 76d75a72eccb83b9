"""Pre-flight checks that frame labels (``{split}.km``) line up with their manifest (``{split}.tsv``).

fairseq's :class:`HubertDataset` only asserts on the line count and *warns* when a label sequence's
duration differs from its audio's; training then silently learns from misaligned targets. Here both
conditions are errors with one line naming the file, what is wrong and the fix. The tolerance is
fairseq's: ``|num_samples / sample_rate − num_labels / label_rate| ≤ 0.1 s``.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

from ..errors import LabelError
from .manifest import read_manifest

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 0.1  # fairseq.data.audio.hubert_dataset.verify_label_lengths


class LabelAlignmentError(LabelError):
    """Labels and manifest disagree; the message names the file and the fix."""


@dataclass
class LabelAlignment:
    """Per-row lengths of a label file against its manifest."""

    label_path: str
    num_samples: np.ndarray  # (N,) int64 samples per manifest row
    num_labels: np.ndarray  # (N,) int64 labels per label line

    def implied_rate(self, sample_rate: int) -> float:
        """Label rate (Hz) the files actually have: total labels ÷ total seconds."""
        return float(self.num_labels.sum() / (self.num_samples.sum() / sample_rate))


def manifest_sizes(manifest_path: str) -> np.ndarray:
    """(N,) int64 sample counts of a fairseq manifest (root line, then ``relpath<TAB>num_samples``)."""
    return read_manifest(manifest_path).sizes


def label_lengths(label_path: str) -> np.ndarray:
    """(N,) int64 number of space-separated labels on each line of ``label_path``."""
    path = Path(label_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file not found; make it with `music-ssl-kmeans all`.")
    with path.open("rb") as f:
        return np.asarray([len(line.split()) for line in f], dtype=np.int64)


def check_label_alignment(manifest_path: str, label_path: str, label_rate: float, sample_rate: int,
                          tolerance: float = TOLERANCE_SECONDS) -> LabelAlignment:
    """Raise :class:`LabelAlignmentError` unless every label line matches its manifest row's duration.

    label_rate: labels per second (100 for MFCC labels, 50 for layer labels); tolerance in seconds.
    """
    alignment = LabelAlignment(str(label_path), manifest_sizes(manifest_path), label_lengths(label_path))
    n_rows, n_lines = len(alignment.num_samples), len(alignment.num_labels)
    if n_rows != n_lines:
        raise LabelAlignmentError(f"{label_path}: {n_lines} label lines for {n_rows} rows of {manifest_path}; "
                                  f"regenerate the labels from this manifest (music-ssl-kmeans apply).")
    error = np.abs(alignment.num_samples / sample_rate - alignment.num_labels / label_rate)  # (N,) seconds
    bad = np.flatnonzero(error > tolerance)
    if len(bad):
        row = int(bad[0])
        implied = alignment.implied_rate(sample_rate)
        raise LabelAlignmentError(
            f"{label_path}: {len(bad)} of {n_rows} lines differ from their audio by more than {tolerance} s at "
            f"label_rate={label_rate:g} Hz (line {row + 1}: {alignment.num_samples[row] / sample_rate:.2f} s of audio, "
            f"{alignment.num_labels[row]} labels); the labels look like {implied:.1f} Hz: set task.label_rate to "
            f"that rate or regenerate the labels for this manifest.")
    return alignment


def check_label_vocabulary(label_path: str, symbols: List[str], max_lines: int = 200) -> None:
    """Raise unless the first ``max_lines`` lines of ``label_path`` use only ``symbols`` (the dictionary's)."""
    known = set(symbols)
    with open(label_path) as f:
        for line_no, line in enumerate(f, start=1):
            unknown = set(line.split()) - known
            if unknown:
                raise LabelAlignmentError(
                    f"{label_path}:{line_no}: labels {sorted(unknown)[:5]} are not in the dictionary; make "
                    f"dict.km.txt and the .km files in the same music-ssl-kmeans run.")
            if line_no >= max_lines:
                break
