"""The label-preparation error: one line naming the file (or setting) and the fix."""
from ..core.errors import LabelError


class LabelPrepError(LabelError):
    """Features, k-means or label files cannot be made or are inconsistent (k > frames, stale shards, ...)."""
