"""JukeMIR's hand-crafted baselines, computed with librosa.

CHROMA (72-d) = ``librosa.feature.chroma_cqt`` (12 bins); MFCC (120-d) = ``librosa.feature.mfcc`` (20
coefficients). Audio is read mono, resampled to ``sample_rate`` (default 22050 Hz, librosa's) and
peak-normalised; hop 512 samples (43.07 frames/s at 22050 Hz). Clip features are the mean and the standard
deviation over time of the feature, of its first difference and of its second difference -> 6 x bins values,
in that order (mean f, std f, mean Δf, std Δf, mean Δ²f, std Δ²f).

Frame-level (beat) features are the per-frame [f, Δf, Δ²f] (3 x bins), the first frames' differences taken
against a repeated first frame. With an ``Encoding`` of ``encode="window"`` each window's audio is analysed on its
own (peak-normalised and framed alone); its waveform rule, crop and silence trimming apply before.
"""
from importlib.metadata import version

import librosa
import numpy as np
from tqdm import tqdm

from ...data.audio import read_audio
from .encoding import Encoding, WindowFrames, read_prepared, window_start_seconds
from .source import FeatureSource, FrameMemo, window_bounds

HOP = 512  # samples
NUM_BINS = {"chroma": 12, "mfcc": 20}


def frame_features(audio: np.ndarray, sample_rate: int, feature: str) -> np.ndarray:
    """audio: (samples,) -> (bins, T) float32 chroma_cqt or mfcc, one frame per ``HOP`` samples."""
    peak = np.abs(audio).max()
    if peak > 0:
        audio = audio / peak
    if feature == "chroma":
        return librosa.feature.chroma_cqt(y=audio, sr=sample_rate, hop_length=HOP).astype(np.float32)
    return librosa.feature.mfcc(y=audio, sr=sample_rate, hop_length=HOP, n_mfcc=NUM_BINS["mfcc"]).astype(np.float32)


def moments(features: np.ndarray) -> np.ndarray:
    """features: (bins, T) -> (6 * bins,) [mean, std] over time of the 0th, 1st and 2nd differences."""
    out = []
    for order in range(3):
        diff = np.diff(features, n=order, axis=1)
        if diff.shape[1] == 0:  # fewer than 3 frames: the difference is taken as 0
            diff = np.zeros((features.shape[0], 1), features.dtype)
        out += [diff.mean(1), diff.std(1)]
    return np.concatenate(out).astype(np.float32)


def frame_deltas(features: np.ndarray) -> np.ndarray:
    """features: (bins, T) -> (T, 3 * bins) [f, Δf, Δ²f] per frame."""
    deltas = [features] + [np.diff(features, n=k, axis=1, prepend=features[:, :1].repeat(k, 1)) for k in (1, 2)]
    return np.concatenate(deltas).T


class HandcraftedSource(FeatureSource):
    """Args: feature: "chroma" (72-d) or "mfcc" (120-d); sample_rate: Hz the audio is resampled to."""

    def __init__(self, feature: str, sample_rate: int = 22050):
        self.kind = self.feature = feature
        self.sample_rate = int(sample_rate)
        self.frame_rate = self.sample_rate / HOP
        self.memo = FrameMemo()

    def identity(self) -> dict:
        return {"kind": self.kind, "librosa": version("librosa"), "sample_rate": self.sample_rate, "hop": HOP,
                "bins": NUM_BINS[self.feature]}

    def extract(self, paths, pooling, window, hop, encoding: Encoding = None):
        encoding = encoding or Encoding()
        if not encoding.default:
            return self._extract_prepared(paths, pooling, window, hop, encoding)
        out = []
        for path in tqdm(paths, desc=f"{self.kind} features", unit="file", disable=None):
            frames = self.memo.get(path)
            if frames is None:
                frames = frame_features(read_audio(path, self.sample_rate)[0], self.sample_rate, self.feature)
                self.memo.put(path, frames)  # (bins, T)
            if pooling == "frames":
                out.append(frame_deltas(frames)[:, None, :].astype(np.float16))  # (T, 1, 3 * bins)
                continue
            bounds = window_bounds(frames.shape[1], self.frame_rate, window, hop)
            out.append(np.stack([moments(frames[:, a:b]) for a, b in bounds])[:, None, :])  # (W, 1, 6 * bins)
        return out, [self.feature], self.frame_rate

    def _extract_prepared(self, paths, pooling, window, hop, encoding: Encoding) -> tuple:
        """``extract`` of the audio ``encoding`` prepares: one analysis per window (``encode="window"``; frames: a
        ``WindowFrames`` per file) or of the prepared whole file."""
        out = []
        for path in tqdm(paths, desc=f"{self.kind} features", unit="file", disable=None):
            windows = read_prepared(path, self.sample_rate, encoding)
            frames = [frame_features(w, self.sample_rate, self.feature) for w in windows]  # each (bins, T)
            if pooling == "frames" and encoding.encode == "window":
                starts = [window_start_seconds(w, self.sample_rate, encoding.window, encoding.hop)
                          for w in range(len(frames))]
                out.append(WindowFrames(np.array(starts, np.float64),
                                        [frame_deltas(f)[:, None, :].astype(np.float16) for f in frames]))
            elif pooling == "frames":
                out.append(frame_deltas(frames[0])[:, None, :].astype(np.float16))
            elif encoding.encode == "window":
                out.append(np.stack([moments(f) for f in frames])[:, None, :])  # (W, 1, 6 * bins)
            else:
                bounds = window_bounds(frames[0].shape[1], self.frame_rate, window, hop)
                out.append(np.stack([moments(frames[0][:, a:b]) for a, b in bounds])[:, None, :])
        return out, [self.feature], self.frame_rate
