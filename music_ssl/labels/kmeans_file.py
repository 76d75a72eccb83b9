"""The k-means model file: ``safetensors`` holding the centroids and string metadata (never pickle).

Format (``music-ssl-kmeans/1``)::

    tensor   centroids  float32 (k, D)
    metadata format         "music-ssl-kmeans/1"
             backend        "torch" | "sklearn"
             features       JSON of the feature settings (mfcc: n_mfcc; layer: checkpoint sha256, layer, ...)
             frame_rate     labels per second (100 for MFCC, 50 for layer features)
             inertia        mean squared distance per frame on the fitted sample
             sample_frames  frames the model was fitted on
             sample_unit    "frames" | "utterances": how they were drawn (labels/sampling.py)
             sample_percent the fraction of frames / utterances asked for (before the floor and the cap)
             seed, n_iter   fit settings / iterations
             features_key   fingerprint of the feature shards it was fitted on

Read it with ``safetensors.numpy.load_file`` / ``safe_open`` in any language safetensors supports.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from ..core.atomic import atomic_path, file_mode
from .errors import LabelPrepError
from ..core.device import resolve_device
from .kmeans import nearest

FORMAT = "music-ssl-kmeans/1"


@dataclass
class KMeansModel:
    """Centroids (k, D) float32 and their metadata (str → str)."""

    centroids: np.ndarray
    metadata: Dict[str, str]

    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    @property
    def frame_rate(self) -> float:
        return float(self.metadata["frame_rate"])

    @property
    def features(self) -> dict:
        return json.loads(self.metadata["features"])

    def save(self, path) -> None:
        """Write ``path`` (.safetensors) atomically."""
        with atomic_path(Path(path)) as tmp:
            save_file({"centroids": np.ascontiguousarray(self.centroids, np.float32)}, str(tmp),
                      metadata={"format": FORMAT, **self.metadata})
            os.chmod(tmp, file_mode())  # safetensors creates the file owner-only; follow the umask

    @classmethod
    def load(cls, path) -> "KMeansModel":
        """Read a model written by :meth:`save`; LabelPrepError names the file and the fix otherwise."""
        path = Path(path)
        if not path.is_file():
            raise LabelPrepError(f"{path}: k-means model not found; make it with `music-ssl-kmeans fit`.")
        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata, centroids = f.metadata() or {}, f.get_tensor("centroids")
        except Exception as err:  # not safetensors, or no centroids tensor
            raise LabelPrepError(f"{path}: not a k-means model ({err}); "
                                 f"refit it with `music-ssl-kmeans fit`.") from None
        if metadata.get("format") != FORMAT:
            raise LabelPrepError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}; refit it with "
                                 f"`music-ssl-kmeans fit`.")
        return cls(centroids.astype(np.float32), {k: v for k, v in metadata.items() if k != "format"})

    def predictor(self, device="auto"):
        """A function (N, D) float32 array → (N,) int64 nearest-centroid labels, computed on ``device``."""
        device = resolve_device(device)
        centroids = torch.from_numpy(self.centroids).to(device)

        def predict(x: np.ndarray) -> np.ndarray:
            frames = np.require(x, np.float32, ["C", "W"])  # (N, D); copies read-only memory-map slices
            labels, _ = nearest(torch.from_numpy(frames).to(device), centroids)
            return labels.cpu().numpy()

        return predict
