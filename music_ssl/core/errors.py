"""The one error tree of music-ssl: expected bad input, one line naming the file (row, line) and the fix.

Every area raises its own root (or a subclass of it); all roots derive from :class:`MusicSSLError`, which
``music_ssl.cli.common.run_main`` turns into the CLI's one ``error: …`` line (and ``music_ssl.run_errors`` into
the same line in every process of a training run, :func:`exit_with_error_line`). Anything else is a bug and keeps
its traceback. The roots also derive from the builtin a caller would expect (``ValueError``), so
``except ValueError`` keeps working.
"""
import re
import sys
from typing import NoReturn


class MusicSSLError(Exception):
    """Root of every user-facing error: bad input, missing files, impossible settings."""


class DataError(MusicSSLError, ValueError):
    """Audio files and manifests (``music_ssl.data``): unreadable, empty, wrong rate/channels, malformed rows."""


class LabelError(MusicSSLError, ValueError):
    """Features, k-means models and label files (``music_ssl.labels``, label checks of the tasks)."""


class CheckpointError(MusicSSLError, ValueError):
    """A checkpoint that cannot serve as an encoder (``music_ssl.checkpoint``)."""


class ProbeError(MusicSSLError, ValueError):
    """Probing (``music_ssl.probe``): bad config, dataset layout, features."""


class ExportError(MusicSSLError, ValueError):
    """Export (``music_ssl.export``): a checkpoint or folder that cannot be exported or loaded."""


class DemoError(MusicSSLError, RuntimeError):
    """The demo (``music_ssl.demo``): corpus, rendering, a failed stage."""


class ConfigError(MusicSSLError, ValueError):
    """A setting that is malformed or impossible (model and task configs, a conv-stack spec, crop/bucket sizes)."""


class DeviceError(MusicSSLError, ValueError):
    """A device string that is unknown or not present on this machine."""


class DiskError(MusicSSLError, OSError):
    """An output the disk refused: full (``ENOSPC``, ``EDQUOT``), read-only (``EROFS``) or not permitted
    (``EACCES``, ``EPERM``). Made by ``music_ssl.core.atomic`` (:func:`~music_ssl.core.atomic.disk_error`): the
    message names the file, the space needed and free (or "read-only" / "permission denied") and the fix; nothing
    half-written is left. ``errno`` is the refusal's; ``path`` the output. Also an ``OSError``, so
    ``except OSError`` keeps working."""

    def __init__(self, message: str, errno=None, path=None):
        super().__init__(message)
        self.errno, self.path = errno, path

    def __reduce__(self):  # one message through pickling (worker processes) like the other errors
        return type(self), (str(self), self.errno, self.path)


def one_line(err: BaseException, limit: int = 600) -> str:
    """``"Type: message"`` of a caught third-party error on one line, for wrapping into a music-ssl error's line.

    Every line is kept (joined with " / ", terminal colour codes removed); only a message longer than ``limit``
    is shortened: to its ``… error: …`` lines when it has some (torch's weights-only refusal puts the reason
    there, after paragraphs of advice), then cut at ``limit``.
    """
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    text = " / ".join(lines)
    reasons = [line for line in lines if re.search(r"\berror: ", line, re.IGNORECASE)]
    if len(text) > limit and reasons:
        text = " / ".join(reasons)
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exit_with_error_line(message: str) -> NoReturn:
    """End the process as every music-ssl entry point ends on an expected error: ``error: <message>`` as one line on
    stderr, exit status 1 (``SystemExit``, so ``finally`` blocks and ``atexit`` run)."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)
