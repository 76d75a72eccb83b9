"""Pre-flight checks that frame labels (``{split}.km``) line up with their manifest (``{split}.tsv``).

fairseq's :class:`HubertDataset` only asserts on the line count and *warns* when a label sequence's
duration differs from its audio's; training then silently learns from misaligned targets. Here both
conditions are errors with one line naming the file, the lines and the fix. The tolerance is fairseq's:
``|num_samples / sample_rate − num_labels / label_rate| ≤ 0.1 s``.

Label files are scanned once, streamed in blocks of ``BLOCK_BYTES`` with numpy (no Python per label), so
every line is checked even for files of many GB: labels per line, and — for the usual dictionary of ids
``0..k-1`` — that every label is one of those ids written as fairseq's dictionary writes it.
A wrong ``label_rate`` is suggested only when most lines agree on another rate; otherwise the bad lines are
named by number.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from ..errors import LabelError
from .manifest import read_manifest

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 0.1  # fairseq.data.audio.hubert_dataset.verify_label_lengths
BLOCK_BYTES = 1 << 22  # bytes of a label file scanned per numpy step (temporaries ~ 30 × this)
MOST_LINES = 0.9  # a rate is suggested only when it aligns at least this fraction of the lines
SHOWN_LINES = 3  # bad lines named in a message


class LabelAlignmentError(LabelError):
    """Labels and manifest disagree; the message names the file and the fix."""


class LabelFileNotFoundError(LabelAlignmentError, FileNotFoundError):
    """A label file that does not exist."""


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


def line_blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of about ``BLOCK_BYTES`` that end at a newline (the last one may not)."""
    rest = b""
    with path.open("rb") as f:
        while block := f.read(BLOCK_BYTES):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut]
    if rest:
        yield rest


def token_bounds(b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Tokens (runs of bytes above space) of a (n,) uint8 block: (starts, ends) byte offsets, each (M,)."""
    edges = np.diff(np.concatenate([[0], (b > 32).view(np.int8), [0]]))  # +1 at a token start, -1 after its end
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def control_byte(b: np.ndarray) -> Optional[int]:
    """Offset of the first control byte that is not whitespace (a binary or corrupted file), or None."""
    bad = np.flatnonzero((b < 32) & ((b < 9) | (b > 13)))
    return int(bad[0]) if len(bad) else None


def bad_label_token(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int) -> Optional[int]:
    """Index of the first token that is not an id 0..k-1 written as ``str(id)`` (no sign, no leading zero).

    Vectorised over tokens, one pass per digit position (at most ``len(str(k - 1))`` passes).
    """
    digits = len(str(max(k - 1, 0)))
    lengths = ends - starts  # (M,)
    bad = (lengths > digits) | ((lengths > 1) & (b[starts] == 48))
    value = np.zeros(len(starts), dtype=np.int64)
    for j in range(digits):
        inside = lengths > j
        d = b[np.minimum(starts + j, len(b) - 1)].astype(np.int64) - 48  # (M,) digit j of each token
        bad |= inside & ((d < 0) | (d > 9))
        value = np.where(inside, value * 10 + d, value)
    bad |= value >= k
    return int(np.argmax(bad)) if bad.any() else None


def scan_label_file(label_path, k: Optional[int] = None) -> np.ndarray:
    """(N,) int64 labels on each line of ``label_path``, every line read once (streamed, numpy).

    With ``k``, also raise :class:`LabelAlignmentError` naming the line of the first label that is not one of the
    dictionary ids ``0..k-1``.
    """
    path = Path(label_path)
    if not path.is_file():
        raise LabelFileNotFoundError(f"{path}: label file not found; make it with `music-ssl-kmeans all`.")
    counts, first_line = [], 0
    for block in line_blocks(path):
        b = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(b == 10)  # (lines,)
        n_lines = len(newlines) + (block[-1:] != b"\n")
        control = control_byte(b)
        if control is not None:
            raise LabelAlignmentError(f"{path}: line {first_line + int((b[:control] == 10).sum()) + 1} holds byte "
                                      f"{b[control]:#04x}: not a text label file; regenerate it (music-ssl-kmeans).")
        starts, ends = token_bounds(b)
        line_of = np.searchsorted(newlines, starts)  # (M,) line (in the block) of each token
        if k is not None:
            bad = bad_label_token(b, starts, ends, k)
            if bad is not None:
                token = block[starts[bad]: ends[bad]].decode(errors="replace")
                raise LabelAlignmentError(
                    f"{path}: line {first_line + int(line_of[bad]) + 1} has label {token!r}, not an id 0..{k - 1} of "
                    f"the dictionary (dict.km.txt, k={k}); make dict.km.txt and the .km files in the same "
                    f"music-ssl-kmeans run.")
        counts.append(np.bincount(line_of, minlength=n_lines))
        first_line += n_lines
    return np.concatenate(counts).astype(np.int64) if counts else np.zeros(0, np.int64)


def label_lengths(label_path: str) -> np.ndarray:
    """(N,) int64 number of space-separated labels on each line of ``label_path``."""
    return scan_label_file(label_path)


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
        raise LabelAlignmentError(misalignment_message(alignment, bad, label_rate, sample_rate, tolerance))
    return alignment


def check_label_vocabulary(label_path: str, symbols: Sequence[str], max_lines: Optional[int] = None) -> None:
    """Raise unless every label of ``label_path`` is one of ``symbols`` (the dictionary's, specials excluded).

    Every line is checked; for the usual symbols ``"0" … "k-1"`` with a streamed numpy scan, for any other
    dictionary line by line. ``max_lines`` (default all) limits the check for the line-by-line case only.
    """
    if list(symbols) == [str(i) for i in range(len(symbols))]:
        scan_label_file(label_path, k=len(symbols))
        return
    known: set = set(symbols)
    with open(label_path) as f:
        for line_no, line in enumerate(f, start=1):
            unknown = set(line.split()) - known
            if unknown:
                raise LabelAlignmentError(
                    f"{label_path}: line {line_no} has labels {sorted(unknown)[:5]} that are not in the dictionary; "
                    f"make dict.km.txt and the .km files in the same music-ssl-kmeans run.")
            if max_lines is not None and line_no >= max_lines:
                break
