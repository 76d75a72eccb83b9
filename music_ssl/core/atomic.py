"""Atomic outputs: write to a temporary name beside the target, rename onto it only when complete.

A reader therefore sees either the previous complete file or the new complete file, never half of one;
an interrupted writer leaves at most a hidden ``.NAME.tmp-PID.EXT`` file. The next writer of the same target
removes such leftovers of processes no longer alive (:func:`remove_stale_temporaries`); only the target's own
temporaries are touched, never a whole folder, so ranks writing other files of a shared folder from other hosts
(whose PIDs mean nothing here) are left alone.

A disk that refuses an output — full (``ENOSPC``, ``EDQUOT``), read-only (``EROFS``), not permitted (``EACCES``,
``EPERM``) — is turned here, and only here, into one :class:`~music_ssl.core.errors.DiskError` line naming the file,
the space needed and free (or "read-only" / "permission denied") and the fix (:func:`disk_error`), with the
temporary removed: by :func:`atomic_path` for every atomic output, by :func:`disk_errors` (or :func:`disk_errno` +
:func:`disk_error`) around other writes (the export's staging folder, fairseq's checkpoint saves). Where the size
is known, :func:`require_space` refuses before anything is written, and a memory-mapped output reserves its blocks
first (:func:`preallocate`): a full disk is then an ``ENOSPC`` naming the file, never a ``SIGBUS`` when a page of
the map is written.
"""
import errno
import glob
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from .errors import DiskError, MusicSSLError

logger = logging.getLogger(__name__)

DISK_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NEARLY_FULL_BYTES = 1 << 20  # a write failing without an errno (libsndfile) with less free than this: disk full
ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|\(os error (\d+)\)")  # Python's and Rust's (safetensors) wording
DEFAULT_FIX = "write to another folder"


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
def atomic_path(path, size: Optional[int] = None, fix: str = DEFAULT_FIX) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` if the block succeeds, delete it otherwise.

    Leftover temporaries of ``path`` from killed writers are removed first. ``size`` (bytes, when known) is checked
    against the free space before anything is written. A full, read-only or forbidden target raises
    :class:`~music_ssl.core.errors.DiskError` (``fix``: the alternative the message offers, e.g. "choose another
    OUT_DIR"); the temporary is gone either way.
    """
    path = Path(path)
    with disk_errors(path, size, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        if size is not None:
            require_space(path, size, fix)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:
        code = disk_errno(err, path)  # while the temporary still holds its blocks (a full disk is seen as full)
        discard(tmp)
        if code is None:
            raise
        raise disk_error(code, path, size, fix) from err
    finally:
        discard(tmp)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path, size=len(text.encode())) as tmp:
        tmp.write_text(text)


def discard(path: Path) -> None:
    """Remove the file ``path`` if it exists (on a read-only disk even a missing file's unlink fails: ignored)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        if path.exists():
            logger.warning("could not remove %s: %s", path, err)


def human_bytes(n: float) -> str:
    """``"1.5 MiB"`` (binary units; bytes as an integer)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def existing_folder(path) -> Path:
    """``path`` if it is a folder, else its nearest existing ancestor folder."""
    path = Path(os.path.abspath(path))
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def mount_point(path) -> Path:
    """The mount point of the filesystem holding ``path`` (or its nearest existing ancestor)."""
    path = existing_folder(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_bytes(path) -> int:
    """Bytes this user may still write on the filesystem of ``path`` (``shutil.disk_usage(...).free``)."""
    return shutil.disk_usage(existing_folder(path)).free


def require_space(path, needed: int, fix: str = DEFAULT_FIX) -> None:
    """Raise :class:`DiskError` (``ENOSPC``) naming ``path`` unless ``needed`` bytes are free where it goes."""
    if needed > free_bytes(Path(path).parent):
        raise disk_error(errno.ENOSPC, path, needed, fix)


def check_writable(folder, fix: str = DEFAULT_FIX) -> None:
    """Create ``folder`` and a file in it, then remove both again; :class:`DiskError` if the disk refuses. For
    outputs written only at the end of a long run (a probe's report): the refusal comes before the work, not after.
    """
    folder = Path(os.path.abspath(folder))
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    with disk_errors(folder, fix=fix):
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_path(folder / "write-check")
        probe.touch()
        probe.unlink()
    for path in made:  # nothing is left behind by a check
        try:
            path.rmdir()
        except OSError:
            break


def preallocate(path, nbytes: int) -> None:
    """Reserve the first ``nbytes`` of the file ``path`` on disk now (``os.posix_fallocate``).

    A memory map's pages get their disk blocks only when written: on a full disk that write is a ``SIGBUS`` that
    kills the process without a word. Reserved up front, a full disk is an ``ENOSPC`` here instead. Filesystems
    that cannot reserve (and systems without ``posix_fallocate``) are left as they are.
    """
    if not hasattr(os, "posix_fallocate") or nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        logger.debug("%s: cannot reserve %d bytes up front (%s)", path, nbytes, err)
    finally:
        os.close(fd)


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then its causes and contexts (a library's error raised while handling the ``OSError``)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _names_other_file(err: BaseException, path: Path) -> bool:
    """Whether ``err`` is about a file outside the folder of ``path`` (an input the block read, not the output nor
    a folder made for it)."""
    filename = getattr(err, "filename", None)
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    folder, other = os.path.abspath(path.parent), os.path.abspath(os.fsdecode(filename))
    return os.path.commonpath([folder, other]) not in (folder, other)


def disk_errno(err: BaseException, path=None) -> Optional[int]:
    """The disk refusal (``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EACCES``, ``EPERM``) behind ``err`` writing ``path``,
    else None. Found as an ``OSError`` in the error's chain (torch raises a ``RuntimeError`` from it), as
    ``[Errno N]`` / ``(os error N)`` in a message (safetensors), or — for a ``RuntimeError`` that carries none
    (libsndfile's "System error") — from the target's filesystem: read-only, not writable, or nearly full. A
    ``MusicSSLError`` is never one (it already says what is wrong); a permission error about another file (an input)
    is not either."""
    if isinstance(err, MusicSSLError) or not isinstance(err, Exception):
        return None
    path = None if path is None else Path(path)
    for e in _chain(err):
        code = e.errno if isinstance(e, OSError) else None
        if code is None:
            match = ERRNO_IN_TEXT.search(str(e))
            code = int(match.group(1) or match.group(2)) if match else None
        if code in DISK_ERRNOS:
            if path is not None and _names_other_file(e, path):
                return None
            if code in (errno.EACCES, errno.EPERM) and path is not None and getattr(e, "filename", None) is None \
                    and os.access(existing_folder(path.parent), os.W_OK):
                return None  # not about the output's folder
            return code
        if code is not None:
            return None  # another OSError (a missing input, an I/O error): not the disk refusing
    if path is None or not isinstance(err, RuntimeError):
        return None
    folder = existing_folder(path.parent)
    stat = os.statvfs(folder)
    if stat.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return errno.ENOSPC if stat.f_bavail * stat.f_frsize < NEARLY_FULL_BYTES else None


def disk_error(code: int, path, needed: Optional[int] = None, fix: str = DEFAULT_FIX) -> DiskError:
    """The one-line :class:`DiskError` of refusal ``code`` writing ``path`` (a file or a folder):

    ``PATH: no space left on device (12.0 MiB needed, 1.0 MiB free on /mnt); free space on /mnt or FIX.``
    (without ``needed``: "needs more than the 1.0 MiB free on /mnt"),
    ``PATH: read-only file system (/mnt); FIX (or remount /mnt read-write).``,
    ``PATH: permission denied (cannot write in FOLDER); FIX (or give this user write permission there).``
    """
    path = Path(path)
    folder, mount = existing_folder(path.parent), mount_point(path.parent)
    what = DISK_ERRNOS.get(code, os.strerror(code))
    if code in FULL_ERRNOS:
        free = human_bytes(free_bytes(folder))
        space = f"{human_bytes(needed)} needed, {free} free" if needed else f"needs more than the {free} free"
        message = f"{path}: {what} ({space} on {mount}); free space on {mount} or {fix}."
    elif code == errno.EROFS:
        message = f"{path}: {what} ({mount}); {fix} (or remount {mount} read-write)."
    else:
        message = f"{path}: {what} (cannot write in {folder}); {fix} (or give this user write permission there)."
    return DiskError(message, code, str(path))


@contextmanager
def disk_errors(path, needed: Optional[int] = None, fix: str = DEFAULT_FIX) -> Iterator[None]:
    """Turn a disk refusal (:func:`disk_errno`) raised in the block into :func:`disk_error` for ``path``; other
    errors pass unchanged. The block removes its own partial output (this only renames the error)."""
    try:
        yield
    except Exception as err:
        code = disk_errno(err, path)
        if code is None:
            raise
        raise disk_error(code, path, needed, fix) from err
