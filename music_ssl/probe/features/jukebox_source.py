"""Precomputed Jukebox features in JukeMIR's layout: one ``<audio stem>.npy`` per clip, (4800,) float32
(layer 36 of Jukebox-5B, mean-pooled over the clip). For window-item tasks (Giantsteps) JukeMIR's clip files
``<stem>-<window index>.npy`` are read in order.
"""
from pathlib import Path

import numpy as np

from ..errors import MissingDataError, ProbeConfigError, ProbeDataError
from .source import FeatureSource

JUKEBOX_DIM = 4800


class JukeboxSource(FeatureSource):
    """Args: folder: the folder of .npy files; dim: expected feature size (4800)."""
    kind = "jukebox"

    def __init__(self, folder, dim: int = JUKEBOX_DIM):
        self.folder, self.dim = Path(folder), int(dim)
        if not self.folder.is_dir():
            raise MissingDataError(f"{self.folder}: Jukebox feature folder not found (set source.path to the "
                                   "folder holding one <audio stem>.npy per clip, JukeMIR's layout).")

    def identity(self) -> dict:
        listing = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.folder.glob("*.npy"))
        return {"kind": self.kind, "folder": str(self.folder.resolve()), "dim": self.dim, "files": listing}

    def _files(self, path: Path, pooling: str) -> list:
        single = self.folder / f"{path.stem}.npy"
        if pooling == "window" and not single.exists():
            windows = []
            while (self.folder / f"{path.stem}-{len(windows)}.npy").exists():
                windows.append(self.folder / f"{path.stem}-{len(windows)}.npy")
            if windows:
                return windows
        return [single]

    def _load(self, file: Path) -> np.ndarray:
        try:
            vector = np.load(file)
        except Exception as err:
            raise ProbeDataError(f"{file}: cannot read as .npy ({err}); re-extract this clip's features.") from None
        if vector.size != self.dim or vector.ndim > 2:
            raise ProbeDataError(f"{file}: expected a ({self.dim},) Jukebox feature vector, got shape "
                                 f"{vector.shape}; re-extract it or set source.dim.")
        return vector.reshape(1, 1, self.dim).astype(np.float32)

    def extract(self, paths, pooling, window, hop):
        if pooling == "frames":
            raise ProbeConfigError("Jukebox features are clip-level (one vector per clip): they cannot serve "
                                   "a frame-level task such as beat tracking.")
        files = [self._files(Path(p), pooling) for p in paths]
        missing = [f[0] for f in files if not f[0].exists()]
        if missing:
            raise MissingDataError(f"{missing[0]}: Jukebox feature file missing ({len(missing)} of {len(paths)} "
                                   f"clips have none in {self.folder}); extract features for every clip.")
        arrays = [np.concatenate([self._load(f) for f in group]) for group in files]
        return arrays, ["jukebox36"], None

