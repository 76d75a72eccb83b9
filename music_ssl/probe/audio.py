"""Audio reading for probing: any soundfile-readable file (wav, flac, ogg, mp3) -> mono float32 at a rate."""
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import MissingDataError, ProbeDataError


def audio_info(path: Path) -> tuple:
    """(sample_rate, num_frames) of an audio file, with a clear error when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: audio file not found (check the dataset root / CSV paths).")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError subclasses
        raise ProbeDataError(f"{path}: cannot read audio ({err}); re-encode it as wav/flac/mp3.") from None
    return info.samplerate, info.frames


def read_audio(path: Path, sample_rate: Optional[int] = None, offset: float = 0.0,
               duration: Optional[float] = None) -> tuple:
    """Read a file as mono float32, resampled to ``sample_rate`` (None = keep the file's rate).

    Args:
        offset / duration: seconds to skip / to read (None = to the end).
    Returns:
        (audio (samples,) float32 in [-1, 1], sample_rate).
    """
    native, frames = audio_info(path)
    start = int(round(offset * native))
    stop = frames if duration is None else min(frames, start + int(round(duration * native)))
    try:
        audio, native = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:
        raise ProbeDataError(f"{path}: cannot decode audio ({err}); re-encode it as wav/flac/mp3.") from None
    if audio.shape[0] == 0:
        raise ProbeDataError(f"{path}: the file holds no audio samples; remove it from the dataset/CSV.")
    audio = audio.mean(axis=1)
    if sample_rate is not None and native != sample_rate:
        audio = AF.resample(torch.from_numpy(audio), native, sample_rate).numpy()
        native = sample_rate
    return np.ascontiguousarray(audio, np.float32), native
