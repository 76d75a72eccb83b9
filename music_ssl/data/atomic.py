"""Atomic outputs: write to a temporary name beside the target, rename onto it only when complete.

A reader therefore sees either the previous complete file or the new complete file, never half of one;
an interrupted writer leaves at most a hidden ``.NAME.tmp-PID.EXT`` file, removed on the next clean exit.
"""
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_path(path: Path) -> Path:
    """Hidden temporary name beside ``path`` keeping its extension (soundfile picks the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` if the block succeeds, delete it otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
