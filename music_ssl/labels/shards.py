"""Shard bookkeeping shared by every stage: names, content keys and completion markers.

Files of shard ``rank`` of ``nshard`` are named ``{split}_{rank}_{nshard}.*`` as in fairseq's
``simple_kmeans``. Each output is written atomically, then a ``NAME.done`` marker (JSON) records the key
of the inputs it was made from. A stage skips an output whose marker holds the current key and redoes it
otherwise (missing marker = interrupted, other key = stale inputs or settings). A stage removes the marker
before it rewrites an output (:func:`clear_marker`), so a run killed after replacing the output but before
writing the new marker can never leave the old marker vouching for the new file.
"""
import json
from pathlib import Path
from typing import Optional

from ..core.atomic import write_text_atomic


def shard_stem(split: str, rank: int, nshard: int) -> str:
    """``{split}_{rank}_{nshard}``, fairseq's shard naming."""
    return f"{split}_{rank}_{nshard}"


def marker_path(path: Path) -> Path:
    """The completion marker of ``path``: ``NAME.done`` beside it."""
    return path.with_name(path.name + ".done")


def read_marker(path: Path) -> Optional[dict]:
    """The marker of ``path`` (a dict with at least ``key``) if ``path`` and its marker exist, else None."""
    marker = marker_path(Path(path))
    if not (Path(path).exists() and marker.exists()):
        return None
    try:
        return json.loads(marker.read_text())
    except json.JSONDecodeError:  # a damaged marker: treat the output as incomplete (it is redone)
        return None


def is_done(path: Path, key: str) -> bool:
    """Whether ``path`` is complete and was made from inputs with ``key``."""
    marker = read_marker(path)
    return marker is not None and marker.get("key") == key


def clear_marker(path: Path) -> None:
    """Remove the marker of ``path`` (before rewriting it): until the new marker exists, ``path`` is incomplete."""
    marker_path(Path(path)).unlink(missing_ok=True)


def mark_done(path: Path, key: str, **info) -> None:
    """Record that ``path`` is complete, made from inputs with ``key`` (plus any JSON ``info``)."""
    write_text_atomic(marker_path(Path(path)), json.dumps({"key": key, **info}, sort_keys=True) + "\n")
