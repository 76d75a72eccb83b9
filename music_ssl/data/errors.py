"""Errors for bad input data: one line naming the file, what is wrong and the fix.

CLIs (``music-ssl-manifest``, ``music-ssl-kmeans``) catch :class:`DataError`, print ``error: <message>``
and exit 1 instead of showing a traceback.
"""

from ..errors import DataError


class AudioError(DataError):
    """An audio file is unreadable, empty, or not in the expected format (rate, channels, length)."""


class ManifestError(DataError):
    """A manifest (``{split}.tsv``) is missing, malformed, or could not be built."""
