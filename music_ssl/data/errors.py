"""Errors for bad input data: one line naming the file, what is wrong and the fix.

CLIs (``music-ssl-manifest``, ``music-ssl-kmeans``) catch :class:`DataError`, print ``error: <message>``
and exit 1 instead of showing a traceback.
"""

from ..errors import DataError


class AudioError(DataError):
    """An audio file is unreadable, empty, or not in the expected format (rate, channels, length).

    ``kind`` names the class of problem (``missing``, ``not audio``, ``unreadable``, ``empty``, ``truncated``,
    ``rate``, ``channels``, ``frames``) so callers count skipped files by reason without parsing the message.
    """

    def __init__(self, message: str, kind: str = "unreadable"):
        super().__init__(message)
        self.kind = kind


class ManifestError(DataError):
    """A manifest (``{split}.tsv``) is missing, malformed, or could not be built."""
