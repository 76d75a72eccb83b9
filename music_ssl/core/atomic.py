"""Atomic outputs: write to a temporary name beside the target, rename onto it only when complete.

A reader therefore sees either the previous complete file or the new complete file, never half of one;
an interrupted writer leaves at most a hidden ``.NAME.tmp-PID.EXT`` file. The next writer of the same target
removes such leftovers of processes no longer alive (:func:`remove_stale_temporaries`); only the target's own
temporaries are touched, never a whole folder, so ranks writing other files of a shared folder from other hosts
(whose PIDs mean nothing here) are left alone.
"""
import glob
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

logger = logging.getLogger(__name__)


def temporary_path(path: Path) -> Path:
    """Hidden temporary name beside ``path`` keeping its extension (soundfile picks the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def file_mode() -> int:
    """Permissions a new file gets under the process umask (0o644 for the usual 022): for files that libraries
    create owner-only (safetensors, transformers) and that users expect to share like any other output."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temporaries(path) -> List[Path]:
    """Delete ``.STEM.tmp-PID.EXT`` leftovers of ``path`` whose writer ``PID`` is not alive; returns them.

    ``path`` may be a file or a folder target (the export's staging folder ``.NAME.tmp-PID``).
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.stem}.tmp-") + r"(\d+)" + re.escape(path.suffix) + "$")
    removed = []
    for leftover in glob.glob(glob.escape(str(path.parent / f".{path.stem}.tmp-")) + "*"):
        match = pattern.match(Path(leftover).name)
        if not match or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        leftover = Path(leftover)
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    if removed:
        logger.info("removed %d temporary file(s) of interrupted runs: %s", len(removed), removed[0])
    return removed


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` if the block succeeds, delete it otherwise.

    Leftover temporaries of ``path`` from killed writers are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
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
