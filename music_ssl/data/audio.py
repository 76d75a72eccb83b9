"""The toolkit's one audio reader (soundfile): header info, file inspection, strict and permissive reads, streaming.

* :func:`audio_info` -- header facts (:class:`AudioInfo`: sample rate, frames, channels) of any file.
* :func:`inspect_audio` -- is a file usable as training audio as it is (16 kHz mono, decodes to the end)?
* :func:`read_audio` -- a whole file or a window of it. Permissive (the default; probing): any rate and channel
  count, downmixed to mono and resampled. ``strict=True`` (label preparation, via :func:`read_training_audio`):
  the file must already be in the training format and hold the manifest's sample count -- training reads
  manifest rows as they are, so nothing is converted behind its back.
* :func:`read_audio_blocks` -- a long track as mono blocks at a rate, streamed (the manifest converter).

Every reader refuses what would silently give wrong results: samples that are not finite (NaN/Inf, which only
float files can hold: one poisons every feature, k-means centroid and gradient it touches) and a file that decodes
fewer samples than its header declares (truncated). libsndfile reports a cut WAV's length from the bytes present, so
a WAV whose data chunk declares more bytes than the file holds is caught from its header (:func:`wav_truncation`).
An MP3 without a Xing/Info header gets a length libsndfile *estimates* from its bitrate, and every read stops
there (half a VBR song can be lost without an error): its frames are counted (:mod:`music_ssl.data.mp3`) and a
length off by more than one frame is refused (:func:`mp3_length_problem`, kind ``length``).

Resampling is :mod:`music_ssl.data.resample` (soxr HQ) everywhere. Every failure is an
:class:`~music_ssl.data.errors.AudioError` whose ``kind`` names the problem and whose message names the file and
the fix (usually: rebuild the manifest, converting with ``--convert-dir``); a missing file is a
:class:`~music_ssl.data.errors.MissingAudioError`, also a ``FileNotFoundError``.
"""
import os
import stat
import struct
import threading
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Tuple

import numpy as np
import soundfile as sf

from ..core.file_kind import AUDIO_MAGIC
from .errors import AudioError, MissingAudioError
from .mp3 import REENCODE_MP3_FIX, length_mismatch
from .resample import resample, resample_blocks

SAMPLE_RATE = 16000  # Hz of every manifest the pretraining configs read
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
CONVERT_FIX = ("convert the corpus with `music-ssl-manifest AUDIO_DIR --dest DIR --convert-dir DIR` "
               "(16 kHz mono FLAC; stereo is downmixed to mono)")
MANIFEST_FIX = "regenerate the manifest with `music-ssl-manifest AUDIO_DIR --dest DIR`"
REENCODE_FIX = "re-encode it as wav/flac or remove it"
FOLDER = "is a folder, not an audio file (a manifest row must name a file)"
NON_FINITE_FIX = "repair or replace the file (NaN/Inf samples poison every feature they touch), or remove it"
DROP_ROW_FIX = ("replace the file, or leave its row out: `music-ssl-manifest audit MANIFEST_DIR --write-clean` writes "
                "{split}.clean.tsv without it")
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the only sample formats that can store NaN/Inf (not integer PCM, FLAC, mp3)
HEADER_BYTES = 4096  # enough for a WAV's fmt/data chunk headers after the usual LIST/fact chunks
WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data-chunk sizes of a WAV written to a pipe (length unknown when written)
WAV_PCM, WAV_FLOAT, WAV_EXTENSIBLE = 1, 3, 0xFFFE  # WAVE format tags (extensible: the sub-format's tag is used)
BLOCK_SECONDS = 10.0  # seconds of source audio decoded per block when a track is streamed
DECODE_BLOCK = 1 << 18  # samples decoded per read when a whole file is checked (1 MiB of float32)
MP3_PREROLL = 8 * 1152  # samples decoded and dropped before an MP3 window: reaches past any bit reservoir
# first bytes of the containers soundfile reads (RIFF/RF64 wav, FLAC, Ogg, AIFF, CAF, WavPack, AU, mp3 with ID3)
_local = threading.local()  # one reused decode buffer per thread


class AudioInfo(NamedTuple):
    """What a file's header declares: ``sample_rate`` (Hz), ``frames`` (samples per channel), ``channels``."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate


class Problem(NamedTuple):
    """Why a file cannot be used: ``kind`` (missing, empty, not audio, unreadable, truncated, non-finite, rate,
    channels, length: an MP3 whose length libsndfile only estimated) and ``detail``, a phrase to follow the file
    name (no fix)."""

    kind: str
    detail: str


def describe_unopenable(path, err: Exception) -> Problem:
    """What a file soundfile cannot open is: missing, empty, text or other non-audio bytes, or damaged audio."""
    reason = sndfile_reason(err)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        return Problem("missing", "file not found")
    except OSError as os_err:
        return Problem("unreadable", f"cannot be opened ({os_err.strerror or os_err})")
    if not head:
        return Problem("empty", "an empty file (0 bytes), not audio")
    if head.startswith(tuple(AUDIO_MAGIC)) or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa"):
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


def sndfile_reason(err: Exception) -> str:
    """libsndfile's words for a failure, on one line, without the path and the final full stop."""
    return " ".join(str(getattr(err, "error_string", "") or err).split()).rstrip(".")


def audio_info(path) -> AudioInfo:
    """The header facts of an audio file (any soundfile-readable format); nothing is decoded.

    Raises:
        MissingAudioError: no such file (also a ``FileNotFoundError``).
        AudioError: the file cannot be opened as audio (``kind``: ``empty``, ``not audio``, ``unreadable``).
    """
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError subclasses
        problem = describe_unopenable(path, err)
        if problem.kind == "missing":
            raise MissingAudioError(f"{path}: audio file not found; check the path (moved or deleted? the dataset "
                                    f"root, CSV or manifest paths).") from None
        raise AudioError(f"{path}: {problem.detail}; {REENCODE_FIX}.", problem.kind) from None
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def format_problem(info: AudioInfo, sample_rate: int = SAMPLE_RATE) -> Optional[str]:
    """Why a file cannot be used as training audio as it is (None when it can): empty, rate, channels."""
    problem = header_problem(info.frames, info.sample_rate, info.channels, sample_rate)
    return problem.detail if problem else None


def inspect_audio(path, sample_rate: int = SAMPLE_RATE, decode: bool = True,
                  decode_float: bool = False) -> Tuple[int, Optional[Problem]]:
    """Check one file as training audio: exists, opens, non-empty, ``sample_rate`` Hz, mono, not a WAV whose data
    chunk is cut short nor an MP3 whose length libsndfile only estimated, decodes to the end, every sample finite.

    Args:
        path: audio file.
        sample_rate: required rate in Hz (default 16000).
        decode: decode every sample (default; catches truncated files whose header looks fine and NaN/Inf samples)
            or stop at the header.
        decode_float: with ``decode`` False, still decode files of float samples (``FLOAT_SUBTYPES``, the only ones
            that can hold NaN/Inf).

    Returns:
        (samples, problem): the decoded sample count (the header's when ``decode`` is False or a problem is found
        before decoding) and the first :class:`Problem`, or None when the file is fine.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            return 0, (Problem("folder", FOLDER) if stat.S_ISDIR(mode) else
                       Problem("unreadable", "is not a regular file"))
        f = sf.SoundFile(str(path))
    except FileNotFoundError:
        return 0, Problem("missing", "file not found")
    except Exception as err:  # LibsndfileError, RuntimeError, TypeError: soundfile cannot open it
        return 0, describe_unopenable(path, err)
    with f:
        problem = (header_problem(f.frames, f.samplerate, f.channels, sample_rate)
                   or header_length_problem(path, f.frames))
        if problem or not (decode or (decode_float and f.subtype in FLOAT_SUBTYPES)):
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
    """Decode an open mono file block by block into one reused buffer; (samples, None) or (samples, the problem:
    truncated, or non-finite samples)."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = np.empty(DECODE_BLOCK, np.float32)  # (DECODE_BLOCK,)
    samples, bad, first_bad = 0, 0, -1
    try:
        while True:
            got = len(f.read(DECODE_BLOCK, dtype="float32", out=buffer))
            count = count_non_finite(buffer[:got])
            if count:
                first_bad = first_bad if bad else samples + first_non_finite(buffer[:got])
                bad += count
            samples += got
            if got < DECODE_BLOCK:
                break
    except Exception as err:  # libsndfile reports a damaged stream (e.g. "flac decoder lost sync") mid-file
        reason = sndfile_reason(err)
        return samples, Problem("truncated", f"truncated or damaged: decoding fails after {samples} of the "
                                             f"{f.frames} samples its header declares (soundfile: {reason})")
    if samples < f.frames:
        return samples, Problem("truncated", f"truncated: decodes to {samples} of the {f.frames} samples its "
                                             f"header declares")
    if bad:
        return samples, non_finite_problem(bad, first_bad, f.samplerate)
    return samples, None


def count_non_finite(samples: np.ndarray) -> int:
    """How many values of ``samples`` are NaN or ±Inf (0 after two passes without temporaries when none is)."""
    if samples.size == 0 or (np.isfinite(samples.min()) and np.isfinite(samples.max())):  # NaN propagates
        return 0
    return int(samples.size - np.count_nonzero(np.isfinite(samples)))


def first_non_finite(samples: np.ndarray) -> int:
    """Index of the first sample frame of ``samples`` ((n,) or (n, channels)) holding a NaN or ±Inf (-1: none)."""
    bad = ~np.isfinite(samples.reshape(len(samples), -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else -1


def non_finite_problem(count: int, first: int, rate: int) -> Problem:
    """The ``non-finite`` :class:`Problem`: how many NaN/Inf values, and where the first is."""
    return Problem("non-finite", f"holds {count} non-finite samples (NaN/Inf), the first at sample {first} "
                                 f"({first / rate:.3f} s)")


def check_finite(path, audio: np.ndarray, rate: int, start: int = 0, fix: str = NON_FINITE_FIX) -> None:
    """:class:`AudioError` (kind ``non-finite``) naming ``path`` unless every value of ``audio`` (decoded from
    sample ``start`` of the file at ``rate`` Hz; (n,) or (n, channels)) is finite."""
    count = count_non_finite(audio)
    if count:
        problem = non_finite_problem(count, start + first_non_finite(audio), rate)
        raise AudioError(f"{path}: {problem.detail}; {fix}.", problem.kind)


def wav_chunks(head: bytes) -> Tuple[Optional[tuple], Optional[Tuple[int, int]]]:
    """The one reader of a RIFF WAVE header: (``fmt`` fields (format tag, channels, rate, byte rate, block align,
    bits) or None, (data offset, declared data bytes) or None) from the file's first bytes ``head``; (None, None) for
    anything that is not RIFF WAVE. An extensible format reports its sub-format's tag."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None, None
    offset, fmt = 12, None
    while offset + 8 <= len(head):
        chunk, size = head[offset:offset + 4], struct.unpack("<I", head[offset + 4:offset + 8])[0]
        body = offset + 8
        if chunk == b"fmt " and body + 16 <= len(head):
            fmt = struct.unpack("<HHIIHH", head[body:body + 16])
            if fmt[0] == WAV_EXTENSIBLE and body + 26 <= len(head):
                fmt = (struct.unpack("<H", head[body + 24:body + 26])[0],) + fmt[1:]
        elif chunk == b"data":
            return fmt, (body, size)
        offset = body + size + (size & 1)  # chunks are padded to even sizes
    return fmt, None


def wav_truncation(head: bytes, file_size: int) -> Optional[Problem]:
    """The ``truncated`` :class:`Problem` of a RIFF WAVE file whose data chunk declares more bytes than the file
    holds, from its first bytes ``head`` and its size in bytes; None for a complete WAV, one whose length was left
    unknown (written to a pipe), any other file, or a header ``head`` does not cover.

    libsndfile reports (and reads) only the frames present, as if a cut WAV were complete, so no sample count
    check downstream sees it: this header check is the one place that does."""
    fmt, data = wav_chunks(head)
    if data is None:
        return None
    body, size = data
    present = max(file_size - body, 0)
    if size in WAV_UNKNOWN_SIZES or size <= present:
        return None
    if fmt is not None and fmt[0] in (WAV_PCM, WAV_FLOAT) and fmt[4]:
        return Problem("truncated", f"truncated: holds {present // fmt[4]} of the {size // fmt[4]} samples "
                                    f"its WAV header declares (cut short; soundfile would read the samples "
                                    f"present as the whole file)")
    return Problem("truncated", f"truncated: holds {present} of the {size} data bytes its WAV header "
                                f"declares (cut short)")
    return None


def file_truncation(path) -> Optional[Problem]:
    """:func:`wav_truncation` of a file (reads its first ``HEADER_BYTES``); None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return wav_truncation(f.read(HEADER_BYTES), os.fstat(f.fileno()).st_size)
    except OSError:
        return None


def mp3_length_problem(path, header_frames: int) -> Optional[Problem]:
    """The ``length`` :class:`Problem` of an MP3 whose libsndfile sample count ``header_frames`` is not what its
    frames hold (:func:`music_ssl.data.mp3.length_mismatch`: no Xing/Info header, so libsndfile estimated the
    length from the bitrate and every read stops there); None for any other file or one that cannot be read."""
    try:
        detail = length_mismatch(path, header_frames)
    except OSError:
        return None
    return Problem("length", detail) if detail else None


def header_length_problem(path, frames: int) -> Optional[Problem]:
    """A length the header states wrongly, which decoding to the end cannot see: a cut WAV (:func:`file_truncation`,
    ``truncated``) or an MP3 whose ``frames`` libsndfile only estimated (:func:`mp3_length_problem`); else None."""
    return file_truncation(path) or mp3_length_problem(path, frames)


def read_audio(path, sample_rate: Optional[int] = None, offset: float = 0.0, duration: Optional[float] = None,
               mono: bool = True, strict: bool = False,
               expected_samples: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """Read a file (or a window of it) as float32.

    Permissive (default, what probing reads): any rate and channel count; channels are averaged (``mono``) and
    the audio is resampled to ``sample_rate`` with soxr HQ (:func:`music_ssl.data.resample.resample`).
    Strict (``strict=True``, what label preparation reads): the file must already be ``sample_rate`` Hz
    (default 16000) and mono, and hold ``expected_samples`` when given; nothing is converted.
    Both refuse a file whose samples are not all finite (NaN/Inf) and one that decodes fewer samples than its
    header declares (truncated, a cut WAV included).

    Args:
        path: audio file (any soundfile-readable format: wav, flac, ogg, mp3, ...).
        sample_rate: Hz of the result; None keeps the file's rate (strict: 16000).
        offset / duration: seconds to skip / to read, at the file's rate (None = to the end); only that window
            is decoded (an MP3's from a few frames earlier: :func:`decode_window`).
        mono: average the channels (default); False keeps them (permissive only).
        strict: refuse, rather than convert, a file not in the training format.
        expected_samples: strict only: the manifest's ``num_samples`` for this file (None: not checked).

    Returns:
        (audio, sample_rate): audio (samples,) float32 in [-1, 1] -- (samples, channels) when ``mono`` is False
        -- at sample_rate Hz.

    Raises:
        MissingAudioError: no such file.
        AudioError: unreadable, empty (or an empty window), truncated (fewer samples decode than the header
            declares: kind ``truncated``), an MP3 whose length libsndfile only estimated (kind ``length``: reads
            would stop at the estimate), NaN/Inf samples in the window (kind ``non-finite``), and in strict mode
            another rate, more than one channel, or a sample count that differs from the manifest's (the file
            changed after it was made).
    """
    if offset < 0 or (duration is not None and duration < 0):
        raise ValueError(f"offset and duration must be >= 0 seconds, got {offset} and {duration}")
    if strict:
        info = check_training_format(Path(path), expected_samples, sample_rate or SAMPLE_RATE)
    else:
        info = audio_info(path)
        if info.frames <= 0:
            raise AudioError(f"{path}: holds no audio samples; remove it from the dataset, CSV or corpus.", "empty")
    fix = DROP_ROW_FIX if strict else REENCODE_FIX
    cut = header_length_problem(path, info.frames)  # a cut WAV, an mp3's estimate: reads would stop there silently
    if cut:
        mp3_fix = f"{REENCODE_MP3_FIX}, then {MANIFEST_FIX}" if strict else REENCODE_MP3_FIX
        raise AudioError(f"{path}: {cut.detail}; {mp3_fix if cut.kind == 'length' else fix}.", cut.kind)
    start = int(round(offset * info.sample_rate))
    stop = info.frames if duration is None else min(info.frames, start + int(round(duration * info.sample_rate)))
    if start >= info.frames:
        raise AudioError(f"{path}: offset {offset:g} s is past its end ({info.seconds:.3f} s); lower the offset.",
                         "empty")
    audio = decode_window(path, start, stop)  # (samples, channels)
    if len(audio) < stop - start:  # an mp3 whose Xing header declares more than its frames hold, a cut FLAC, ...
        raise AudioError(f"{path}: truncated: decodes to {len(audio)} of the {stop - start} samples its header "
                         f"declares from sample {start}; {fix}.", "truncated")
    check_finite(path, audio, info.sample_rate, start, f"repair or {DROP_ROW_FIX}" if strict else NON_FINITE_FIX)
    if strict:
        return np.ascontiguousarray(audio[:, 0]), info.sample_rate
    if len(audio) == 0:
        raise AudioError(f"{path}: decodes to no audio samples; {REENCODE_FIX}.", "empty")
    if mono:
        audio = audio[:, 0] if info.channels == 1 else audio.mean(axis=1)  # (samples,)
    rate = info.sample_rate if sample_rate is None else int(sample_rate)
    # soxr HQ; the probe resampled with torchaudio's windowed sinc before #19 (both band-limited: probe features
    # can move in the last digits; FEATURE_CODE_VERSION 2 of the feature cache keeps old entries out)
    return np.ascontiguousarray(resample(audio, info.sample_rate, rate), np.float32), rate


def check_training_format(path: Path, expected_samples: Optional[int], sample_rate: int) -> AudioInfo:
    """The header of a manifest row's file, or :class:`AudioError` unless it is ``sample_rate`` Hz mono audio with
    ``expected_samples`` samples (None: not checked)."""
    if path.is_dir():
        raise AudioError(f"{path}: {FOLDER}; {MANIFEST_FIX}.", "folder")
    if not path.is_file():
        raise MissingAudioError(f"{path}: audio file not found (moved or deleted since the manifest was made); "
                                f"{MANIFEST_FIX}.")
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path}: holds no audio samples; delete it and {MANIFEST_FIX}.", "empty")
    problem = header_problem(info.frames, info.sample_rate, info.channels, sample_rate)
    if problem:
        raise AudioError(f"{path}: {problem.detail}; {CONVERT_FIX}.", problem.kind)
    if expected_samples is not None and info.frames != expected_samples:
        raise AudioError(f"{path}: {info.frames} samples but the manifest says {expected_samples} (the file changed "
                         f"after the manifest was made); {MANIFEST_FIX}.", "frames")
    return info


def seek_read(f: sf.SoundFile, start: int, length: int, always_2d: bool = False,
              out: Optional[np.ndarray] = None) -> np.ndarray:
    """Up to ``length`` samples of an open file from sample ``start``, decoding only those -> (n,) or
    (n, channels) float32 (n < length only where the decoder stops early); with ``out`` ((length,) float32, a mono
    file), decoded into it and the filled part returned.

    An MP3 window is decoded from up to ``MP3_PREROLL`` samples earlier and that head dropped: after a seek,
    libmpg123 decodes the first frame of a low-bitrate MPEG-2 stream wrong when its bit reservoir reaches back
    beyond libmpg123's own pre-roll (measured here: up to 0.04 off in 1-70% of seeks into 16 kHz MP3s)."""
    pre = min(start, MP3_PREROLL) if f.format == "MP3" else 0
    if start - pre:
        f.seek(start - pre)
    if out is not None and not pre:
        return f.read(length, dtype="float32", out=out)
    audio = f.read(length + pre, dtype="float32", always_2d=always_2d)[pre:]
    if out is None:
        return audio
    out[:len(audio)] = audio
    return out[:len(audio)]


def decode_window(path, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of an openable file -> (samples, channels) float32 (:func:`seek_read`), or
    :class:`AudioError`."""
    try:
        with sf.SoundFile(str(path)) as f:
            audio = seek_read(f, start, stop - start, always_2d=True)
    except Exception as err:  # LibsndfileError mid-stream (a cut FLAC: "lost sync"), RuntimeError
        raise AudioError(f"{path}: truncated or damaged: cannot decode samples {start}-{stop} "
                         f"({sndfile_reason(err)}); {REENCODE_FIX}.", "truncated") from None
    return audio


def read_training_audio(path, expected_samples: Optional[int] = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a manifest row's audio, insisting on the training format (:func:`read_audio` with ``strict=True``).

    Args:
        path: audio file (any soundfile-readable format).
        expected_samples: the manifest's ``num_samples`` for this row (None: not checked).
        sample_rate: required rate in Hz (default 16000).

    Returns:
        (S,) float32 in [-1, 1].

    Raises:
        AudioError: missing, unreadable or empty file, other rate, more than one channel, a sample count that
            differs from the manifest (the file changed after the manifest was made), truncated, or NaN/Inf
            samples (kind ``non-finite``).
    """
    return read_audio(path, sample_rate, strict=True, expected_samples=expected_samples)[0]


def read_audio_blocks(path, sample_rate: Optional[int] = None,
                      block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """A whole track as mono blocks, streamed: decode ``block_seconds`` at a time, downmix, resample (soxr HQ).

    Memory stays bounded however long the track is; the concatenated blocks equal
    ``read_audio(path, sample_rate)[0]`` (the streaming and one-shot resamplers agree).

    Args:
        path: audio file (any soundfile-readable format).
        sample_rate: Hz of the blocks; None keeps the file's rate.
        block_seconds: seconds of source audio decoded per block (default 10).

    Yields:
        (n,) float32 in [-1, 1] at sample_rate Hz.

    Raises:
        AudioError: unreadable or empty, a cut WAV (kind ``truncated``), an MP3 whose length libsndfile only
            estimated (kind ``length``), or (while streaming) truncated: the file
            does not decode to the end its header declares, or non-finite: a block holds NaN/Inf samples.
    """
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path}: holds no audio samples; delete it or leave it out of the corpus.", "empty")
    cut = header_length_problem(path, info.frames)
    if cut:
        fix = REENCODE_MP3_FIX if cut.kind == "length" else "re-encode it or remove it"
        raise AudioError(f"{path}: {cut.detail}; {fix}.", cut.kind)
    rate = info.sample_rate if sample_rate is None else int(sample_rate)
    yield from resample_blocks(mono_blocks(path, info, block_seconds), info.sample_rate, rate)


def mono_blocks(path, info: AudioInfo, block_seconds: float) -> Iterator[np.ndarray]:
    """(n,) float32 downmixed blocks of ``path`` at its own rate; :class:`AudioError` if it stops short or holds
    NaN/Inf samples.

    Blocks come from ``SoundFile.read``, which returns the samples actually decoded, not ``SoundFile.blocks``:
    soundfile 0.14's ``blocks`` yields its whole buffer when the decoder returns fewer samples than asked for, so
    an mp3 whose header declares more than it holds came out at the declared length, its missing end filled with
    repeats of the last block decoded."""
    decoded, size = 0, max(int(block_seconds * info.sample_rate), 1)
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                block = f.read(size, dtype="float32", always_2d=True)  # (n, channels), n < size at the end
                if not len(block):
                    break
                check_finite(path, block, info.sample_rate, decoded)  # before the resampler smears them
                decoded += len(block)
                yield block[:, 0] if info.channels == 1 else block.mean(axis=1)
                if len(block) < size:
                    break
    except sf.LibsndfileError as err:
        raise AudioError(f"{path}: truncated or damaged: decoding fails after {decoded} of {info.frames} samples "
                         f"({sndfile_reason(err)}); re-encode it or remove it.", "truncated") from None
    if decoded < info.frames:
        raise AudioError(f"{path}: truncated: decodes to {decoded} of the {info.frames} samples its header "
                         f"declares; re-encode it or remove it.", "truncated")
