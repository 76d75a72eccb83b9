"""The feature-source interface and the pooling every source shares.

A source turns audio files into arrays with a hidden-state axis S (S = L + 1 for an encoder: the Transformer
input, then each Transformer layer's output; S = 1 for the raw CNN output, Jukebox and the hand-crafted
baselines):

* ``pooling="clip"`` / ``"window"``: (W, S, C) float32 — one mean-pooled vector per window (W = 1 when the
  window is None, i.e. the whole clip);
* ``pooling="frames"``: (T, S, C) float16 — every frame (beat tracking), at ``frame_rate`` Hz; with windows
  encoded alone (``Encoding(encode="window")``: beat training crops) one ``encoding.WindowFrames`` per file instead.
"""
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ProbeConfigError


class FrameMemo:
    """Frame-level features of the files a source extracted last, kept in memory for the run's other tasks.

    Tasks of one run often share files (clip, window and frame pooling of the same pieces): pooling is cheap,
    extraction is not. Entries are keyed by (path, size, mtime) and evicted oldest first beyond ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes, self.bytes, self.entries = max_bytes, 0, OrderedDict()

    @staticmethod
    def _key(path) -> tuple:
        stat = Path(path).stat()
        return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns

    def get(self, path) -> Optional[np.ndarray]:
        return self.entries.get(self._key(path))

    def put(self, path, array: np.ndarray) -> None:
        if array.nbytes > self.max_bytes:
            return
        self.entries[self._key(path)] = array
        self.bytes += array.nbytes
        while self.bytes > self.max_bytes:
            self.bytes -= self.entries.popitem(last=False)[1].nbytes


class FeatureSource:
    """Base class. Subclasses set ``kind`` and implement :meth:`identity` and :meth:`extract`."""
    kind = ""
    frame_rate: Optional[float] = None

    def identity(self) -> dict:
        """Everything about the source that changes its features (content hashes, parameters); JSON-able.
        Must be cheap: it is computed before deciding whether the cache can answer."""
        raise NotImplementedError

    def extract(self, paths: list, pooling: str, window: Optional[float], hop: Optional[float]) -> tuple:
        """Features of every file.

        Returns:
            (arrays, layer_names, frame_rate): one array per path as described in the module docstring,
            S names, and the frame rate in Hz (None when the source has no frames).
        """
        raise NotImplementedError


def window_bounds(num_frames: int, frame_rate: float, window: Optional[float], hop: Optional[float]) -> list:
    """Frame ranges of the pooling windows: [(start, stop), ...].

    ``window=None`` -> one window covering every frame. Otherwise windows of ``round(window * frame_rate)``
    frames every ``round(hop * frame_rate)`` frames (hop defaults to the window). A trailing window is kept
    when it misses at most one frame (conv stacks and centred STFTs give one frame less or more than
    duration x rate), otherwise dropped; a file shorter than one window is one window.
    """
    if window is None:
        return [(0, num_frames)]
    if window <= 0 or (hop is not None and hop <= 0):
        raise ProbeConfigError(f"pooling window {window} s / hop {hop} s must be positive.")
    size = max(1, int(round(window * frame_rate)))
    step = max(1, int(round((hop or window) * frame_rate)))
    if num_frames <= size:
        return [(0, num_frames)]
    return [(start, min(start + size, num_frames)) for start in range(0, num_frames - size + 2, step)]


def mean_windows(states: np.ndarray, frame_rate: float, window: Optional[float], hop: Optional[float]) -> np.ndarray:
    """states: (S, T, C) -> (W, S, C) float32 mean over each window's frames."""
    bounds = window_bounds(states.shape[1], frame_rate, window, hop)
    return np.stack([states[:, a:b].mean(1) for a, b in bounds]).astype(np.float32)

