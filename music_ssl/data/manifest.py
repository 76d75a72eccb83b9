"""fairseq audio manifests: ``{split}.tsv`` = the root folder on the first line, then ``relpath<TAB>num_samples``.

This module reads and writes the format and splits rows into shards the way fairseq's
``examples/hubert/simple_kmeans`` scripts do (``nshard`` contiguous ranges, ``rank`` picks one).
Building manifests from audio folders lives in :mod:`music_ssl.data.manifest_builder`.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Tuple

import numpy as np

from ..core.atomic import write_text_atomic
from .errors import ManifestError

MAKE_FIX = "make it with `music-ssl-manifest AUDIO_DIR --dest DIR`"


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


def read_manifest(path) -> Manifest:
    """Parse a fairseq manifest; :class:`ManifestError` names the line and the fix when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; {MAKE_FIX}.")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}: empty manifest (the first line must be the audio root folder); {MAKE_FIX}.")
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
    """Write ``root`` and ``(relpath, num_samples)`` rows to ``path`` atomically; returns the row count."""
    rows = list(rows)
    text = "".join([f"{root}\n"] + [f"{rel}\t{int(n)}\n" for rel, n in rows])
    write_text_atomic(path, text)
    return len(rows)


def shard_range(total: int, nshard: int, rank: int) -> Tuple[int, int]:
    """Rows ``[start, end)`` of shard ``rank`` of ``nshard`` (fairseq's rounding; empty when total < nshard)."""
    if nshard < 1 or not 0 <= rank < nshard:
        raise ManifestError(f"rank {rank} of nshard {nshard}: need nshard >= 1 and 0 <= rank < nshard.")
    return round(total / nshard * rank), round(total / nshard * (rank + 1))
