"""Validated audio reading in the training format (16 kHz mono) and file inspection.

Training reads manifest rows as they are, so label preparation insists on the same format and on the
sample count the manifest recorded; anything else is an :class:`~music_ssl.data.errors.AudioError` whose
message names the file and the fix (usually: rebuild the manifest, converting with ``--convert-dir``).
"""
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from .errors import AudioError

SAMPLE_RATE = 16000  # Hz of every manifest the pretraining configs read
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
CONVERT_FIX = ("convert the corpus with `music-ssl-manifest AUDIO_DIR --dest DIR --convert-dir DIR` "
               "(16 kHz mono FLAC)")
MANIFEST_FIX = "regenerate the manifest with `music-ssl-manifest AUDIO_DIR --dest DIR`"


def audio_info(path) -> sf._SoundFileInfo:
    """soundfile's header info (samplerate, channels, frames) or :class:`AudioError` if unreadable."""
    try:
        return sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError subclasses
        raise AudioError(f"{path}: cannot read audio ({str(err).strip()}); "
                         f"re-encode it as wav/flac or remove it.") from None


def format_problem(info: sf._SoundFileInfo, sample_rate: int = SAMPLE_RATE) -> Optional[str]:
    """Why a file cannot be used as training audio as it is (None when it can): empty, rate, channels."""
    if info.frames <= 0:
        return "holds no audio samples"
    if info.samplerate != sample_rate:
        return f"is {info.samplerate} Hz, expected {sample_rate} Hz"
    if info.channels != 1:
        return f"has {info.channels} channels, expected mono"
    return None


def read_training_audio(path, expected_samples: Optional[int] = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a manifest row's audio, insisting on the training format.

    Args:
        path: audio file (any soundfile-readable format).
        expected_samples: the manifest's ``num_samples`` for this row (None: not checked).
        sample_rate: required rate in Hz (default 16000).

    Returns:
        (S,) float32 in [-1, 1].

    Raises:
        AudioError: unreadable or empty file, other rate, more than one channel, or a sample count that
            differs from the manifest (the file changed after the manifest was made).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found (moved or deleted since the manifest was made); {MANIFEST_FIX}.")
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path}: holds no audio samples; delete it and {MANIFEST_FIX}.")
    problem = format_problem(info, sample_rate)
    if problem:
        raise AudioError(f"{path}: {problem}; {CONVERT_FIX}.")
    if expected_samples is not None and info.frames != expected_samples:
        raise AudioError(f"{path}: {info.frames} samples but the manifest says {expected_samples} (the file changed "
                         f"after the manifest was made); {MANIFEST_FIX}.")
    try:
        audio, _ = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as err:
        raise AudioError(f"{path}: cannot decode audio ({str(err).strip()}); "
                         f"re-encode it as wav/flac or remove it.") from None
    if expected_samples is not None and len(audio) != expected_samples:  # headers of compressed files can lie
        raise AudioError(f"{path}: decodes to {len(audio)} samples but the manifest says {expected_samples}; "
                         f"{CONVERT_FIX}.")
    return audio
