"""JukeMIR's hand-crafted baselines, computed with librosa.

CHROMA (72-d) = ``librosa.feature.chroma_cqt`` (12 bins); MFCC (120-d) = ``librosa.feature.mfcc`` (20
coefficients). As JukeMIR: audio read at its own sample rate, mono, peak-normalised; hop = sr / (22050 / 512)
(frame rate ≈ 43.07 Hz at any sample rate); then the mean and the standard deviation over time of the
feature, of its first difference and of its second difference -> 6 x bins values, in that order
(mean f, std f, mean Δf, std Δf, mean Δ²f, std Δ²f).

Frame-level (beat) features are the per-frame [f, Δf, Δ²f] (3 x bins), first frames padded by repetition.
"""
from importlib.metadata import version

import librosa
import numpy as np

from ..audio import read_audio
from ..errors import ProbeConfigError
from .source import FeatureSource, window_bounds

FRAME_RATE = 22050 / 512
NUM_BINS = {"chroma": 12, "mfcc": 20}


def frame_features(audio: np.ndarray, sample_rate: int, feature: str) -> np.ndarray:
    """audio: (samples,) -> (bins, T) float32 chroma_cqt or mfcc at ``FRAME_RATE``."""
    peak = np.abs(audio).max()
    if peak > 0:
        audio = audio / peak
    hop = int(round(sample_rate / FRAME_RATE))
    if feature == "chroma":
        return librosa.feature.chroma_cqt(y=audio, sr=sample_rate, hop_length=hop).astype(np.float32)
    return librosa.feature.mfcc(y=audio, sr=sample_rate, hop_length=hop, n_mfcc=NUM_BINS["mfcc"]).astype(np.float32)


def moments(features: np.ndarray) -> np.ndarray:
    """features: (bins, T) -> (6 * bins,) [mean, std] of the 0th, 1st and 2nd differences over time."""
    out = []
    for order in range(3):
        diff = np.diff(features, n=order, axis=1)
        if diff.shape[1] == 0:
            diff = np.zeros((features.shape[0], 1), features.dtype)
        out += [diff.mean(1), diff.std(1)]
    return np.concatenate(out).astype(np.float32)


class HandcraftedSource(FeatureSource):
    """Args: feature: "chroma" (72-d) or "mfcc" (120-d)."""

    def __init__(self, feature: str):
        if feature not in NUM_BINS:
            raise ProbeConfigError(f"source.kind {feature!r}: hand-crafted baselines are {sorted(NUM_BINS)}.")
        self.kind = self.feature = feature
        self.frame_rate = FRAME_RATE

    def identity(self) -> dict:
        return {"kind": self.kind, "librosa": version("librosa"), "frame_rate": FRAME_RATE}

    def extract(self, paths, pooling, window, hop):
        out = []
        for path in paths:
            audio, rate = read_audio(path)
            frames = frame_features(audio, rate, self.feature)  # (bins, T)
            if pooling == "frames":
                deltas = [frames] + [np.diff(frames, n=k, axis=1, prepend=frames[:, :1].repeat(k, 1))
                                     for k in (1, 2)]
                out.append(np.concatenate(deltas).T[:, None, :].astype(np.float16))  # (T, 1, 3 * bins)
                continue
            bounds = window_bounds(frames.shape[1], FRAME_RATE, window, hop)
            out.append(np.stack([moments(frames[:, a:b]) for a, b in bounds])[:, None, :])  # (W, 1, 6 * bins)
        return out, [self.feature], FRAME_RATE
