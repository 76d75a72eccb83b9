"""The one fingerprint: hex SHA-256 of a file, a folder's files, bytes or text, and a JSON-serialisable object.

Every cache key, completion marker, provenance record and content identity of music-ssl is one of these, so two
places that fingerprint the same thing always agree. :func:`mix64` is the fast integer hash for per-sample draws
(crop offsets), where a SHA-256 per sample would cost more than the sample.
"""
import hashlib
import json
from pathlib import Path
from typing import Iterable, Union

BLOCK_BYTES = 1 << 20  # bytes read per step when hashing a file
MASK64 = (1 << 64) - 1


def file_sha256(path, block: int = BLOCK_BYTES) -> str:
    """Hex SHA-256 of a file's content, read in ``block``-byte steps (bounded memory for GB checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(folder, suffixes: Iterable[str]) -> str:
    """Hex SHA-256 over the names and contents of the files of ``folder`` whose suffix is in ``suffixes``
    (sorted by name; sub-folders and other files are not part of it)."""
    digest = hashlib.sha256()
    wanted = set(suffixes)
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in wanted):
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def data_sha256(data: Union[bytes, str]) -> str:
    """Hex SHA-256 of bytes, or of text encoded as UTF-8."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def stable_int(text: str) -> int:
    """A process-independent integer hash of a string (SHA-1 as an int; Python's ``hash`` changes per process),
    for deterministic splits; kept SHA-1 so the splits it drew stay the same."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)


def json_sha256(obj) -> str:
    """Hex SHA-256 of a JSON-serialisable object; key order does not matter, other values are hashed as ``str``."""
    return data_sha256(json.dumps(obj, sort_keys=True, default=str))


def mix64(*values: int) -> int:
    """A 64-bit integer hash of non-negative integers, in [0, 2**64): splitmix64's finaliser (Steele et al. 2014)
    applied after folding in each value, so ``mix64(seed, epoch, index)`` is a uniform, process-independent draw."""
    x = 0x9E3779B97F4A7C15
    for value in values:
        x = (x ^ (value & MASK64)) * 0xBF58476D1CE4E5B9 & MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK64
        x ^= x >> 31
    return x
