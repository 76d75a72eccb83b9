"""The label-preparation error: one line naming the file (or setting) and the fix."""
from ..data.errors import DataError


class LabelPrepError(DataError):
    """Features, k-means or label files cannot be made or are inconsistent (k > frames, stale shards, ...)."""
