"""Precomputed Jukebox features in JukeMIR's released layout: one ``<uid>.npy`` per clip, (4800,) float32 (layer
36 of Jukebox-5B, mean-pooled over the clip), one folder per dataset (``representations/<dataset>/jukebox``).

Naming (``source.naming``):

* ``jukemir`` (default): the file is named by JukeMIR's per-dataset uid, which the task loaders set on each
  item (``Item.uid``; from JukeMIR's ``jukemir/datasets``): MTT ``clip_id`` zero-padded to 5 digits
  (``00002``); GTZAN the sha256 hex digest of ``<genre>.000NN``; Emomusic ``song_id`` zero-padded to 4 digits
  (``0002``); Giantsteps the track ID zero-padded to 7 digits, one file per full 30-s window
  ``<uid>-<window index>.npy``. Items without a uid (CSV tasks) use ``<audio stem>.npy``.
* ``stem``: always ``<audio stem>.npy`` (``<stem>-<window index>.npy`` for window tasks).

Missing files raise one error listing a few expected names.
"""
from pathlib import Path

import numpy as np

from ..config import NAMINGS
from ..errors import MissingDataError, ProbeConfigError, ProbeDataError
from .source import FeatureSource

JUKEBOX_DIM = 4800


class JukeboxSource(FeatureSource):
    """Args: folder: the folder of .npy files; dim: expected feature size (4800); naming: see the module doc."""
    kind = "jukebox"

    def __init__(self, folder, dim: int = JUKEBOX_DIM, naming: str = "jukemir"):
        if naming not in NAMINGS:
            raise ProbeConfigError(f"source.naming {naming!r} is not one of {NAMINGS}.")
        self.folder, self.dim, self.naming = Path(folder), int(dim), naming
        self.uids: dict = {}
        if not self.folder.is_dir():
            raise MissingDataError(f"{self.folder}: Jukebox feature folder not found (set source.path to the "
                                   "folder holding one <uid>.npy per clip, JukeMIR's layout).")

    def bind_items(self, items: list) -> None:
        """Remember each item's JukeMIR uid (called by the runner before extraction)."""
        if self.naming == "jukemir":
            self.uids = {str(item.path): item.uid for item in items if item.uid}

    def identity(self) -> dict:
        listing = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.folder.glob("*.npy"))
        return {"kind": self.kind, "folder": str(self.folder.resolve()), "dim": self.dim, "naming": self.naming,
                "files": listing}

    def name_of(self, path) -> str:
        """The file stem this source reads for ``path``: its uid (jukemir naming) or the audio stem."""
        return self.uids.get(str(path)) or Path(path).stem

    def _files(self, path: Path, pooling: str) -> list:
        name = self.name_of(path)
        single = self.folder / f"{name}.npy"
        if pooling == "window" and not single.exists():
            windows = []
            while (self.folder / f"{name}-{len(windows)}.npy").exists():
                windows.append(self.folder / f"{name}-{len(windows)}.npy")
            if windows:
                return windows
            return [self.folder / f"{name}-0.npy"]
        return [single]

    def _load(self, file: Path) -> np.ndarray:
        try:
            vector = np.load(file)
        except Exception as err:
            raise ProbeDataError(f"{file}: cannot read as .npy ({err}); re-extract this clip's features.") from None
        if vector.size != self.dim or vector.ndim > 2:
            raise ProbeDataError(f"{file}: expected a ({self.dim},) Jukebox feature vector, got shape "
                                 f"{vector.shape}; re-extract it or set source.dim.")
        bad = vector.size - int(np.count_nonzero(np.isfinite(vector)))
        if bad:
            raise ProbeDataError(f"{file}: {bad} of its {vector.size} feature values are NaN/Inf (one such clip "
                                 f"sends every probe to chance); re-extract this clip's features.")
        return vector.reshape(1, 1, self.dim).astype(np.float32)

    def extract(self, paths, pooling, window, hop):
        if pooling == "frames":
            raise ProbeConfigError("Jukebox features are clip-level (one vector per clip): they cannot serve "
                                   "a frame-level task such as beat tracking.")
        files = [self._files(Path(p), pooling) for p in paths]
        missing = [f[0] for f in files if not f[0].exists()]
        if missing:
            names = ", ".join(f.name for f in missing[:3])
            raise MissingDataError(f"{missing[0]}: Jukebox feature file missing ({len(missing)} of {len(paths)} clips "
                                   f"have none in {self.folder}; expected e.g. {names}; naming={self.naming}: "
                                   "JukeMIR names files by its uid, see source.naming); extract features for every "
                                   "clip or fix source.path.")
        arrays = [np.concatenate([self._load(f) for f in group]) for group in files]
        return arrays, ["jukebox36"], None
