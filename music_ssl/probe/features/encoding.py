"""How audio reaches the encoder: the waveform normalisation and, for window tasks, windows encoded on their own.

By default (``Encoding()``) a source encodes each whole file (in ``chunk_seconds`` chunks) with the model's own
waveform rule and pools its windows from the file's frames, so a window's frames saw up to ``chunk_seconds`` of
context. The papers' code encodes each window alone: MARBLE's ``extract_bert_features.py`` cuts every file into
``sliding_window_size_in_sec`` windows and runs the model on each; MuLaP's ``CNNEncoder.extract_features`` splits
tracks into 3-s chunks; VocalSet's 3-s segments are separate files (MARBLE ``tasks/VocalSet/preprocess.py``).
``Encoding(encode="window")`` does the same: the audio of each window goes through the encoder on its own and its
frames are averaged — or, for frame-level features (``pooling="frames"``: MARBLE's beat training encodes each 10-s
crop alone, ``GTZANBT_dataset.py``), kept: a source then returns a :class:`WindowFrames` per file, each window's
frames with its start in the file (:func:`window_start_seconds`), and :func:`crop_encoding` gives the encoding of
such crops.

=================== ============================================================================================
field               meaning
=================== ============================================================================================
encode              "file": whole file, windows pooled from its frames | "window": each window encoded alone
                    (frame-level features: each window's frames kept, a ``WindowFrames`` per file)
window / hop        seconds (None window: the whole file is one window)
min_window_seconds  encode="window": a last window shorter than ``window`` is kept when it has at least this many
                    seconds (MARBLE: 1 s), else dropped; None = always dropped. A file with no full window is one
                    window whatever its length (MARBLE's preprocessing would drop it: see the task's loader).
first_seconds       only the first this-many seconds of each file (MARBLE EMO_base_config: 30); None = all
waveform_norm       "model": the encoder's own rule (fairseq ``task.normalize`` / the folder's preprocessor) on the
                    whole file | "file": zero mean, unit variance (eps 1e-7: transformers'
                    ``Wav2Vec2FeatureExtractor``, which MARBLE applies to every model) of the whole file (after
                    ``first_seconds``) | "window": the same of each window (files MARBLE cut before normalising)
trim_silence        drop leading silence first (``torchaudio.functional.vad`` at the file's own rate, as MARBLE's
                    VocalSet preprocessing)
=================== ============================================================================================
"""
import contextlib
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple, Optional

import numpy as np

from ..errors import ProbeConfigError

ENCODES = ("file", "window")
WAVEFORM_NORMS = ("model", "file", "window")
FEATURE_EXTRACTOR_EPS = 1e-7  # transformers Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


@dataclass(frozen=True)
class Encoding:
    """See the module docstring. ``default`` encodings (whole file, the model's rule) change nothing."""
    encode: str = "file"
    window: Optional[float] = None
    hop: Optional[float] = None
    min_window_seconds: Optional[float] = None
    first_seconds: Optional[float] = None
    waveform_norm: str = "model"
    trim_silence: bool = False

    def __post_init__(self):
        if self.encode not in ENCODES:
            raise ProbeConfigError(f"encode {self.encode!r} is not one of {ENCODES}.")
        if self.waveform_norm not in WAVEFORM_NORMS:
            raise ProbeConfigError(f"waveform_norm {self.waveform_norm!r} is not one of {WAVEFORM_NORMS}.")
        if self.waveform_norm == "window" and self.encode != "window":
            raise ProbeConfigError("waveform_norm=window needs encode=window (each window encoded alone).")
        for name in ("window", "hop", "min_window_seconds", "first_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ProbeConfigError(f"{name} must be > 0 seconds or null, got {value}.")

    @property
    def default(self) -> bool:
        """True when nothing differs from a whole-file encoding with the model's own waveform rule."""
        return (self.encode == "file" and self.waveform_norm == "model" and self.first_seconds is None
                and not self.trim_silence)

    def key(self) -> dict:
        """JSON-able identity for the feature cache key."""
        return asdict(self)


def window_spans(num_samples: int, rate: float, window: Optional[float], hop: Optional[float],
                 min_seconds: Optional[float]) -> list:
    """Sample ranges [(start, stop)] of the windows encoded alone.

    Windows of ``round(window * rate)`` samples start every ``round(hop * rate)`` samples (hop defaults to the
    window) from 0; the last, shorter one is kept when it has at least ``min_seconds`` (None: never); a file with
    no full window is one window (the whole file). ``window=None``: the whole file.
    """
    if window is None or num_samples == 0:
        return [(0, num_samples)]
    size = max(1, int(round(window * rate)))
    step = max(1, int(round((hop or window) * rate)))
    spans = [(start, start + size) for start in range(0, num_samples - size + 1, step)]
    tail_start = spans[-1][0] + step if spans else 0
    tail = num_samples - tail_start
    if not spans or (tail > 0 and min_seconds is not None and tail >= min_seconds * rate):
        spans.append((tail_start, num_samples))
    return spans


def window_start_seconds(index: int, rate: float, window: Optional[float], hop: Optional[float]) -> float:
    """Start in seconds of window ``index`` of :func:`window_spans` (windows start every ``round(hop * rate)``
    samples; 0 for the whole-file window)."""
    if window is None:
        return 0.0
    return index * max(1, int(round((hop or window) * rate))) / rate


class WindowFrames(NamedTuple):
    """Frame-level features of one file's windows, each encoded alone (``encode="window"``, ``pooling="frames"``).

    Attributes:
        starts: (W,) float64 start of each window in the file, seconds (:func:`window_start_seconds`).
        arrays: W arrays (T_w, S, C) float16: window w's frames; frame t lies at ``starts[w] + t / frame_rate``.
    """
    starts: np.ndarray
    arrays: list


def crop_encoding(encoding: Encoding, crop_seconds: float, hop_seconds: float) -> Encoding:
    """The encoding of training crops encoded alone: windows of ``crop_seconds`` every ``hop_seconds`` (full
    windows only; a file shorter than a crop is one window), the rest of ``encoding`` kept, except that a
    whole-file z-score (``waveform_norm="file"``) becomes the crop's own (``"window"``): MARBLE's
    ``GTZANBT_dataset.py`` runs ``Wav2Vec2FeatureExtractor`` on each cropped waveform.

    Raises ProbeConfigError with ``trim_silence`` (a crop's start would no longer be its place in the file).
    """
    if encoding.trim_silence:
        raise ProbeConfigError("crops encoded alone need trim_silence=false (labels are shifted by the crop's "
                               "start in the file); set beat_crop_encode=file to crop the whole file's frames.")
    norm = "window" if encoding.waveform_norm in ("file", "window") else encoding.waveform_norm
    return replace(encoding, encode="window", window=float(crop_seconds), hop=float(hop_seconds),
                   min_window_seconds=None, waveform_norm=norm)


def zscore(audio: np.ndarray, eps: float = FEATURE_EXTRACTOR_EPS) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) in float32 (transformers' ``zero_mean_unit_var_norm``; numpy's var)."""
    audio = np.asarray(audio, np.float32)
    if audio.size == 0:
        return audio
    return ((audio - audio.mean()) / np.sqrt(audio.var() + eps)).astype(np.float32)


def trim_leading_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """``torchaudio.functional.vad`` (its defaults) of a mono (samples,) signal: the leading silence removed."""
    import torch
    import torchaudio.functional as AF

    trimmed = AF.vad(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None], int(rate))
    return trimmed[0].numpy().astype(np.float32)


def prepared_windows(audio: np.ndarray, rate: int, encoding: Encoding, model_norm=None) -> list:
    """The waveforms the encoder sees for one file: (samples,) float32 at ``rate`` -> list of windows.

    ``first_seconds`` crop, file-level normalisation (``waveform_norm="file"``: z-score; ``"model"``:
    ``model_norm(audio)`` when given, e.g. :func:`model_norm_file`), then the windows of :func:`window_spans` (one,
    the whole file, for ``encode="file"``), each z-scored with ``"window"``. ``trim_silence`` is applied by the
    reader (:func:`read_prepared`), at the file's own rate.
    """
    if encoding.first_seconds is not None:
        audio = audio[: int(round(encoding.first_seconds * rate))]
    if encoding.waveform_norm == "file":
        audio = zscore(audio)
    elif encoding.waveform_norm == "model" and model_norm is not None:
        audio = model_norm(audio)
    if encoding.encode == "file":
        return [audio]
    spans = window_spans(len(audio), rate, encoding.window, encoding.hop, encoding.min_window_seconds)
    windows = [audio[a:b] for a, b in spans]
    return [zscore(w) for w in windows] if encoding.waveform_norm == "window" else windows


def read_prepared(path, rate: int, encoding: Encoding, model_norm=None) -> list:
    """Read ``path`` at ``rate`` Hz (soxr) and return :func:`prepared_windows`; with ``trim_silence`` the file is
    read at its own rate, trimmed (VAD), then resampled."""
    from ...data.audio import read_audio
    from ...data.resample import resample

    if encoding.trim_silence:
        audio, native = read_audio(path, None)
        audio = resample(trim_leading_silence(audio, native), native, rate)
    else:
        audio = read_audio(path, rate)[0]
    return prepared_windows(audio, rate, encoding, model_norm)


@contextlib.contextmanager
def own_norm_off(encoder, encoding: Encoding):
    """The encoder's own waveform normalisation switched off for the duration unless ``encoding`` is the default:
    the audio was normalised already (:func:`prepared_windows`: z-score, or the model's own whole-file rule by
    :func:`model_norm_file` before the windows were cut)."""
    if encoding.default:
        yield
        return
    normalize, encoder.normalize = encoder.normalize, False
    try:
        yield
    finally:
        encoder.normalize = normalize


def model_norm_file(encoder, audio: np.ndarray) -> np.ndarray:
    """The encoder's own whole-file waveform rule applied here (fairseq ``F.layer_norm``, eps 1e-5; a transformers
    folder's ``norm_eps``), so windows cut afterwards are not normalised again: as fairseq normalised whole files
    before cropping in training."""
    if not getattr(encoder, "normalize", False):
        return audio
    return zscore(audio, float(getattr(encoder, "norm_eps", 1e-5)))
