"""Errors for bad input data: one line naming the file, what is wrong and the fix.

CLIs (``music-ssl-manifest``, ``music-ssl-kmeans``) catch :class:`DataError`, print ``error: <message>``
and exit 1 instead of showing a traceback.
"""

from ..core.errors import DataError


class AudioError(DataError):
    """An audio file is unreadable, empty, or not in the expected format (rate, channels, length).

    ``kind`` names the class of problem (``missing``, ``not audio``, ``unreadable``, ``empty``, ``truncated``,
    ``non-finite``, ``rate``, ``channels``, ``frames``, ``length``: an MP3 whose length libsndfile only estimated) so
    callers count skipped files by reason without parsing the message.
    """

    def __init__(self, message: str, kind: str = "unreadable"):
        super().__init__(message)
        self.kind = kind


class MissingAudioError(AudioError, FileNotFoundError):
    """An audio file does not exist (``kind`` ``missing``); also a ``FileNotFoundError`` for callers that catch that."""

    def __init__(self, message: str, kind: str = "missing"):
        super().__init__(message, kind)


class ManifestError(DataError):
    """A manifest (``{split}.tsv``) is missing, malformed, or could not be built."""
