"""Many strings (a manifest's file names) stored without a Python object per string.

fairseq's audio datasets keep file names in a Python list (``FileAudioDataset`` tries pyarrow first). In a forked
DataLoader worker, reading a list element writes its reference count, so every page of the list and of the strings
the worker touches is copied: over an epoch each worker ends up with its own copy of every name (≈ 100 MB per worker
for 1,000,000 rows). Two numpy arrays hold the same names with no reference counts to write, so the workers keep
sharing the parent's pages.
"""
from typing import Iterable

import numpy as np


class StringTable:
    """Immutable strings: UTF-8 bytes concatenated in ``data`` (B,) uint8, string ``i`` at ``offsets[i]:offsets[i+1]``
    ((N+1,) int64). ``table[i]`` decodes one string."""

    def __init__(self, strings: Iterable[str]):
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.data[start:end].tobytes().decode("utf-8")

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's two arrays."""
        return self.offsets.nbytes + self.data.nbytes
