"""The probing suite's error types: one clear line naming the file (or setting) and the fix.

CLIs catch :class:`ProbeError` subclasses, print the message without a traceback and exit 1.
"""
from ..core.errors import ProbeError


class ProbeConfigError(ProbeError, ValueError):
    """A config value is unknown or out of range (unknown task, protocol, source kind, ...)."""


class ProbeDataError(ProbeError, ValueError):
    """A data file exists but its content is wrong (bad shape, bad label, empty split, ...)."""


class MissingDataError(ProbeError, FileNotFoundError):
    """A file or folder the dataset layout requires is missing."""

