"""Validated audio reading in the training format (16 kHz mono) and file inspection.

Training reads manifest rows as they are, so label preparation insists on the same format and on the
sample count the manifest recorded; anything else is an :class:`~music_ssl.data.errors.AudioError` whose
message names the file and the fix (usually: rebuild the manifest, converting with ``--convert-dir``).
"""
import os
import stat
import threading
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import numpy as np
import soundfile as sf

from .errors import AudioError

SAMPLE_RATE = 16000  # Hz of every manifest the pretraining configs read
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
CONVERT_FIX = ("convert the corpus with `music-ssl-manifest AUDIO_DIR --dest DIR --convert-dir DIR` "
               "(16 kHz mono FLAC; stereo is downmixed to mono)")
MANIFEST_FIX = "regenerate the manifest with `music-ssl-manifest AUDIO_DIR --dest DIR`"
DECODE_BLOCK = 1 << 18  # samples decoded per read when a whole file is checked (1 MiB of float32)
# first bytes of the containers soundfile reads (RIFF/RF64 wav, FLAC, Ogg, AIFF, CAF, WavPack, AU, mp3 with ID3)
AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b"caff", b"wvpk", b".snd", b"ID3")
_local = threading.local()  # one reused decode buffer per thread


class Problem(NamedTuple):
    """Why a file cannot be used: ``kind`` (missing, empty, not audio, unreadable, truncated, rate, channels) and
    ``detail``, a phrase to follow the file name (no fix)."""

    kind: str
    detail: str


def describe_unopenable(path, err: Exception) -> Problem:
    """What a file soundfile cannot open is: missing, empty, text or other non-audio bytes, or damaged audio."""
    reason = str(getattr(err, "error_string", "") or err).strip().rstrip(".")  # libsndfile's words, without the path
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        return Problem("missing", "file not found")
    except OSError as os_err:
        return Problem("unreadable", f"cannot be opened ({os_err.strerror or os_err})")
    if not head:
        return Problem("empty", "an empty file (0 bytes), not audio")
    if head.startswith(AUDIO_MAGIC) or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa"):
        return Problem("unreadable", f"damaged audio, cannot be opened (soundfile: {reason})")
    return Problem("not audio", f"not an audio file (soundfile: {reason}); it holds {describe_bytes(head)}")


def describe_bytes(head: bytes) -> str:
    """A few words on what ``head`` (a file's first bytes) looks like: text and how it starts, or binary bytes."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        return f"text starting {text[:24]!r}"
    return f"other data starting {head[:8]!r}"


def audio_info(path) -> sf._SoundFileInfo:
    """soundfile's header info (samplerate, channels, frames) or :class:`AudioError` if unreadable."""
    try:
        return sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError subclasses
        problem = describe_unopenable(path, err)
        raise AudioError(f"{path}: {problem.detail}; re-encode it as wav/flac or remove it.", problem.kind) from None


def format_problem(info: sf._SoundFileInfo, sample_rate: int = SAMPLE_RATE) -> Optional[str]:
    """Why a file cannot be used as training audio as it is (None when it can): empty, rate, channels."""
    problem = header_problem(info.frames, info.samplerate, info.channels, sample_rate)
    return problem.detail if problem else None


def inspect_audio(path, sample_rate: int = SAMPLE_RATE, decode: bool = True) -> Tuple[int, Optional[Problem]]:
    """Check one file as training audio: exists, opens, non-empty, ``sample_rate`` Hz, mono, decodes to the end.

    Args:
        path: audio file.
        sample_rate: required rate in Hz (default 16000).
        decode: decode every sample (default; catches truncated files whose header looks fine) or stop at the header.

    Returns:
        (samples, problem): the decoded sample count (the header's when ``decode`` is False or a problem is found
        before decoding) and the first :class:`Problem`, or None when the file is fine.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return 0, Problem("unreadable", "is not a regular file (a folder?)")
        f = sf.SoundFile(str(path))
    except FileNotFoundError:
        return 0, Problem("missing", "file not found")
    except Exception as err:  # LibsndfileError, RuntimeError, TypeError: soundfile cannot open it
        return 0, describe_unopenable(path, err)
    with f:
        problem = header_problem(f.frames, f.samplerate, f.channels, sample_rate)
        if problem or not decode:
            return f.frames, problem
        return decode_to_end(f)


def header_problem(frames: int, rate: int, channels: int, sample_rate: int = SAMPLE_RATE) -> Optional[Problem]:
    """The first format problem of a header (empty, rate, channels) or None."""
    if frames <= 0:
        return Problem("empty", "holds no audio samples")
    if rate != sample_rate:
        return Problem("rate", f"is {rate} Hz, expected {sample_rate} Hz")
    if channels != 1:
        return Problem("channels", f"has {channels} channels, expected mono")
    return None


def decode_to_end(f: sf.SoundFile) -> Tuple[int, Optional[Problem]]:
    """Decode an open mono file block by block into one reused buffer; (samples, None) or (samples, truncated)."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = np.empty(DECODE_BLOCK, np.float32)  # (DECODE_BLOCK,)
    samples = 0
    try:
        while True:
            got = len(f.read(DECODE_BLOCK, dtype="float32", out=buffer))
            samples += got
            if got < DECODE_BLOCK:
                break
    except Exception as err:  # libsndfile reports a damaged stream (e.g. "flac decoder lost sync") mid-file
        reason = str(getattr(err, "error_string", "") or err).strip().rstrip(".")
        return samples, Problem("truncated", f"truncated or damaged: decoding fails after {samples} of the "
                                             f"{f.frames} samples its header declares (soundfile: {reason})")
    if samples < f.frames:
        return samples, Problem("truncated", f"truncated: decodes to {samples} of the {f.frames} samples its "
                                             f"header declares")
    return samples, None


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
