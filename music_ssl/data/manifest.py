"""fairseq audio manifests: ``{split}.tsv`` = the root folder on the first line, then ``relpath<TAB>num_samples``.

This module reads and writes the format and splits rows into shards the way fairseq's
``examples/hubert/simple_kmeans`` scripts do (``nshard`` contiguous ranges, ``rank`` picks one).
Building manifests from audio folders lives in :mod:`music_ssl.data.manifest_builder`.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np

from ..core.atomic import write_text_atomic
from ..core.fingerprint import json_sha256
from .errors import ManifestError

MAKE_FIX = "make it with `music-ssl-manifest AUDIO_DIR --dest DIR`"
UNHOLDABLE = "which a fairseq manifest cannot hold"  # fairseq reads `line.strip().split("\\t")`, UTF-8 text
ROOT_FIX = ("regenerate the manifest with `music-ssl-manifest AUDIO_DIR --dest DIR`, or edit its first line to the "
            "folder's new path")


@dataclass
class Manifest:
    """One split's rows: ``root`` folder, ``relpaths`` (N,) relative to it, ``sizes`` (N,) int64 samples."""

    path: Path
    root: Path
    relpaths: List[str]
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.relpaths)

    def audio_path(self, row: int) -> Path:
        """Absolute path of row ``row`` (0-based)."""
        return self.root / self.relpaths[row]

    def rows_sha256(self, start: int = 0, end=None) -> str:
        """Fingerprint of rows ``[start, end)``: relpaths and sample counts in order. The root folder is left out,
        so a moved corpus keeps its fingerprint; any reordering, addition or removal of rows changes it."""
        end = len(self) if end is None else end
        return json_sha256([self.relpaths[start:end], self.sizes[start:end].tolist()])

    def shards_sha256(self, nshard: int) -> str:
        """Fingerprint of the rows as label prep's ``nshard`` shards saw them: what a label record holds."""
        return json_sha256([self.rows_sha256(*shard_range(len(self), nshard, rank)) for rank in range(nshard)])


def read_manifest(path) -> Manifest:
    """Parse a fairseq manifest; :class:`ManifestError` names the line and the fix when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; {MAKE_FIX}.")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text (byte {err.start}); regenerate the manifest with "
                            f"`music-ssl-manifest`.") from None
    if not lines or not lines[0].strip():
        what = "0 bytes" if not lines else "its first line is blank"
        raise ManifestError(f"{path}: empty manifest ({what}; the first line must be the audio root folder, then "
                            f"one `relpath<TAB>num_samples` row per file); {MAKE_FIX}.")
    if len(lines) == 1:
        raise ManifestError(f"{path}: empty manifest (only the root line {lines[0].strip()}, no rows); {MAKE_FIX} "
                            f"from a folder holding audio (valid.tsv needs --valid-percent > 0), or delete it if "
                            f"the split is not used.")
    relpaths, sizes = [], []
    for row, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1].isdigit():
            raise ManifestError(f"{path}:{row}: expected `relpath<TAB>num_samples`, got {line.strip()!r}; "
                                f"regenerate the manifest with `music-ssl-manifest`.")
        relpaths.append(fields[0])
        sizes.append(int(fields[1]))
    return Manifest(path, Path(lines[0].strip()), relpaths, np.asarray(sizes, dtype=np.int64))


def write_manifest(path, root, rows: Iterable[Tuple[str, int]]) -> int:
    """Write ``root`` and ``(relpath, num_samples)`` rows to ``path`` atomically; returns the row count.

    Raises :class:`ManifestError` naming the file, rather than writing a manifest no reader can parse, when the
    root or a relpath is a name a manifest cannot hold (:func:`name_problem`, :func:`root_problem`)."""
    rows = list(rows)
    problem = root_problem(str(root))
    if problem:
        raise ManifestError(f"{path}: not written: the audio root {printable(root)} {problem}, {UNHOLDABLE} on its "
                            f"first line; move the audio to a folder whose path has none.")
    for rel, _ in rows:
        problem = name_problem(str(rel))
        if problem:
            raise ManifestError(f"{path}: not written: the row {printable(Path(root) / rel)}: its name {problem}, "
                                f"{UNHOLDABLE}; rename it.")
    text = "".join([f"{root}\n"] + [f"{rel}\t{int(n)}\n" for rel, n in rows])
    write_text_atomic(path, text)
    return len(rows)


def name_problem(relpath: str) -> Optional[str]:
    """Why ``relpath`` cannot be a manifest row (None when it can): it holds a TAB (the column separator) or a line
    break, starts with whitespace (fairseq strips each line), or is not UTF-8 (bytes a file system name may hold,
    which Python carries as surrogates)."""
    if "\t" in relpath:
        return "holds a TAB"
    breaks = [c for c in relpath if len(f"a{c}b".splitlines()) > 1]  # \n, \r and the other breaks readers split on
    if breaks:
        return "holds a newline" if breaks[0] == "\n" else f"holds a line break ({ascii(breaks[0])})"
    if relpath[:1].isspace():
        return "starts with a space"
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def root_problem(root: str) -> Optional[str]:
    """Why ``root`` cannot be a manifest's first line (None when it can): a line break, whitespace at either end
    (fairseq strips the line), or bytes that are not UTF-8. A TAB is fine there."""
    problem = name_problem(root.replace("\t", " ").strip())
    if problem is None and root != root.strip():
        return "starts or ends with whitespace"
    return problem


def printable(path) -> str:
    """``path`` on one line for a message: bytes that are not UTF-8 as ``\\xNN``, TABs and line breaks escaped."""
    text = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def moved_root(manifest: Manifest, missing: Optional[int] = None) -> Optional[str]:
    """One line when the manifest's audio root (its first line) is gone, or when every row's file is (``missing``:
    rows found missing; None checks the root only): a moved or renamed corpus, which would otherwise read as
    "file not found" on every row. None when neither."""
    if not manifest.root.is_dir():
        what = "is not a folder" if manifest.root.exists() else "no longer exists"
        return (f"{manifest.path}: its audio root {manifest.root} (the manifest's first line) {what} (moved or "
                f"renamed?), so none of its {len(manifest)} rows can be read; {ROOT_FIX}.")
    if missing is not None and len(manifest) and missing == len(manifest):
        return (f"{manifest.path}: none of its {len(manifest)} rows' files exists under its audio root "
                f"{manifest.root} (the manifest's first line; moved or renamed?); {ROOT_FIX}.")
    return None


def shard_range(total: int, nshard: int, rank: int) -> Tuple[int, int]:
    """Rows ``[start, end)`` of shard ``rank`` of ``nshard`` (fairseq's rounding; empty when total < nshard)."""
    if nshard < 1 or not 0 <= rank < nshard:
        raise ManifestError(f"rank {rank} of nshard {nshard}: need nshard >= 1 and 0 <= rank < nshard.")
    return round(total / nshard * rank), round(total / nshard * (rank + 1))
