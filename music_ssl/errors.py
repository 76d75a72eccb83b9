"""The one error tree of music-ssl: expected bad input, one line naming the file (row, line) and the fix.

Every area raises its own root (or a subclass of it); all roots derive from :class:`MusicSSLError`, which
``music_ssl.cli.common.run_main`` turns into the CLI's one ``error: …`` line. Anything else is a bug and keeps
its traceback. The roots also derive from the builtin a caller would expect (``ValueError``), so
``except ValueError`` keeps working.
"""


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


class DeviceError(MusicSSLError, ValueError):
    """A device string that is unknown or not present on this machine."""
