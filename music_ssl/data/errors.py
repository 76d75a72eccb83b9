"""Errors for bad input data: one line naming the file, what is wrong and the fix.

CLIs (``tools/manifest.py``, ``tools/kmeans_labels.py``) catch :class:`DataError`, print ``error: <message>``
and exit 1 instead of showing a traceback.
"""


class DataError(ValueError):
    """Base class of user-facing data errors; the message names the file and the fix."""


class AudioError(DataError):
    """An audio file is unreadable, empty, or not in the expected format (rate, channels, length)."""


class ManifestError(DataError):
    """A manifest (``{split}.tsv``) is missing, malformed, or could not be built."""
