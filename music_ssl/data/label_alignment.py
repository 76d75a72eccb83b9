"""Pre-flight checks that frame labels (``{split}.km``) line up with their manifest (``{split}.tsv``).

fairseq's :class:`HubertDataset` only asserts on the line count and *warns* when a label sequence's
duration differs from its audio's; training then silently learns from misaligned targets. Here both
conditions are errors with one line naming the file, the lines and the fix. The tolerance is fairseq's:
``|num_samples / sample_rate − num_labels / label_rate| ≤ 0.1 s``. Label files are read by
:mod:`music_ssl.data.label_files` (streamed, every line checked).
A wrong ``label_rate`` is suggested only when most lines agree on another rate; otherwise the bad lines are
named by number.
"""
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .label_files import LabelFileError, label_counts
from .manifest import Manifest, read_manifest

TOLERANCE_SECONDS = 0.1  # fairseq.data.audio.hubert_dataset.verify_label_lengths
MOST_LINES = 0.9  # a rate is suggested only when it aligns at least this fraction of the lines
SHOWN_LINES = 3  # bad lines named in a message


class LabelAlignmentError(LabelFileError):
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


def guess_rate(seconds: np.ndarray, num_labels: np.ndarray, tolerance: float) -> Optional[float]:
    """A label rate (Hz) that aligns at least ``MOST_LINES`` of the lines (of ≥ 2), or None."""
    usable = seconds > 0
    if usable.sum() < 2:
        return None
    median = float(np.median(num_labels[usable] / seconds[usable]))
    for rate in (float(round(median)), round(median, 1)):
        if rate > 0 and np.mean(np.abs(seconds - num_labels / rate) <= tolerance) >= MOST_LINES:
            return rate
    return None


def misalignment_message(alignment: LabelAlignment, bad: np.ndarray, label_rate: float, sample_rate: int,
                         tolerance: float) -> str:
    """The error for lines ``bad`` (indices): a suggested rate when most lines agree on one, else the lines."""
    path, n = alignment.label_path, len(alignment.num_labels)
    seconds = alignment.num_samples / sample_rate  # (N,)
    guessed = guess_rate(seconds, alignment.num_labels, tolerance)
    if guessed is not None and len(bad) > n / 2:
        return (f"{path}: {len(bad)} of {n} lines differ from their audio by more than {tolerance} s at "
                f"label_rate={label_rate:g} Hz, but {MOST_LINES:.0%} or more align at {guessed:g} Hz: set "
                f"task.label_rate={guessed:g} (the features' frame rate) or regenerate the labels.")
    shown = "; ".join(
        f"line {i + 1} has {alignment.num_labels[i]} labels, expected {seconds[i] * label_rate:.0f}±"
        f"{tolerance * label_rate:.0f} for {seconds[i]:.2f} s at {label_rate:g} Hz" for i in bad[:SHOWN_LINES].tolist())
    more = f" (and {len(bad) - SHOWN_LINES} more)" if len(bad) > SHOWN_LINES else ""
    return (f"{path}: {len(bad)} of {n} lines do not match their manifest row: {shown}{more}; regenerate these "
            f"labels from this manifest (music-ssl-kmeans apply) or fix the manifest rows.")


def check_label_alignment(manifest: Union[str, Manifest], label_path: str, label_rate: float, sample_rate: int,
                          tolerance: float = TOLERANCE_SECONDS, k: Optional[int] = None) -> LabelAlignment:
    """Raise :class:`LabelAlignmentError` unless every label line matches its manifest row's duration.

    manifest: the ``{split}.tsv`` path, or the manifest already read; label_rate: labels per second (100 for MFCC
    labels, 50 for layer labels); tolerance in seconds; k: also check, in the same pass over the file, that every
    label is a dictionary id 0..k-1.
    """
    manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    manifest_path = manifest.path
    alignment = LabelAlignment(str(label_path), manifest.sizes, label_counts(label_path, k))
    n_rows, n_lines = len(alignment.num_samples), len(alignment.num_labels)
    if n_lines > n_rows and not alignment.num_labels[n_rows:].any():
        raise LabelAlignmentError(f"{label_path}: ends with {n_lines - n_rows} blank line(s) after its {n_rows} label "
                                  f"lines (one per row of {manifest_path}); delete the trailing blank line(s).")
    if n_rows != n_lines:
        raise LabelAlignmentError(f"{label_path}: {n_lines} label lines for {n_rows} rows of {manifest_path}; "
                                  f"regenerate the labels from this manifest (music-ssl-kmeans apply).")
    error = np.abs(alignment.num_samples / sample_rate - alignment.num_labels / label_rate)  # (N,) seconds
    bad = np.flatnonzero(error > tolerance)
    if len(bad):
        raise LabelAlignmentError(misalignment_message(alignment, bad, label_rate, sample_rate, tolerance))
    return alignment
