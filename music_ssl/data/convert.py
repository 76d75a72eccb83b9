"""Conversion of any soundfile-readable track to 16 kHz mono FLAC, optionally cut into fixed-length clips.

Decoding mp3/ogg and resampling during training is slow and repeated every epoch; converting once keeps
training on plain FLAC. Tracks are streamed block by block (:func:`music_ssl.data.audio.read_audio_blocks`:
downmix → the ``soxr`` streaming resampler of :mod:`music_ssl.data.resample` → clip writer), so memory stays
bounded however long a track is, and every clip is written atomically.
This is where training audio becomes mono (the channels are averaged): the training readers refuse stereo
(only probing's permissive read downmixes, with the same averaging). A track that does not decode to the end
(a cut file) or holds NaN/Inf samples is refused, and the clips it gave are removed.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import soundfile as sf

from ..core.atomic import atomic_path
from .audio import SAMPLE_RATE, read_audio_blocks
from .errors import AudioError

MIN_SECONDS = 1.0  # default minimum clip (and whole-track) length of every manifest mode, seconds
PCM16_MAX = 1.0 - 1.0 / 32768  # largest float that PCM_16 FLAC stores without wrapping


@dataclass
class Converted:
    """What one track became: ``clips`` (path, num_samples) written and ``dropped_seconds`` of short tail."""

    clips: List[Tuple[Path, int]] = field(default_factory=list)
    dropped_seconds: float = 0.0


def write_flac(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (S,) float32 audio as 16-bit mono FLAC atomically (clipped to the 16-bit range)."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, PCM16_MAX), sample_rate, format="FLAC", subtype="PCM_16")


def clip_name(dest_stem: Path, index: Optional[int]) -> Path:
    """``STEM.flac`` for a whole track, ``STEM_0003.flac`` for its fourth clip."""
    suffix = ".flac" if index is None else f"_{index:04d}.flac"
    return dest_stem.with_name(dest_stem.name + suffix)


def convert_track(src, dest_stem, segment_seconds: Optional[float] = None, min_seconds: float = MIN_SECONDS,
                  sample_rate: int = SAMPLE_RATE) -> Converted:
    """Convert ``src`` to 16 kHz mono FLAC beside ``dest_stem`` (a path without extension).

    Args:
        src: any file soundfile decodes (wav, flac, ogg, mp3, ...).
        dest_stem: output path without extension; folders are created.
        segment_seconds: cut into clips of this many seconds (``STEM_0000.flac``, ...); None keeps one file.
        min_seconds: a whole track, or with ``segment_seconds`` a final clip, shorter than this is dropped
            (and counted; default 1 s).
        sample_rate: output rate in Hz (default 16000).

    Returns:
        :class:`Converted` listing the clips written and the seconds dropped.
    """
    src, dest_stem = Path(src), Path(dest_stem)
    min_samples = max(int(round(min_seconds * sample_rate)), 1)
    if segment_seconds is None:
        return write_whole(src, clip_name(dest_stem, None), min_samples, sample_rate)
    result = Converted()
    try:
        return write_segments(src, dest_stem, int(round(segment_seconds * sample_rate)), min_samples, sample_rate,
                              result)
    except AudioError:
        for clip, _ in result.clips:  # a track cut short gives no clips at all
            clip.unlink(missing_ok=True)
        raise


class _TooShort(Exception):
    """Raised inside the atomic write of a whole track shorter than the minimum (so nothing is renamed)."""


def write_whole(src: Path, path: Path, min_samples: int, sample_rate: int) -> Converted:
    """Stream all of ``src`` into one FLAC file at ``path`` (atomically), unless it is shorter than ``min_samples``."""
    samples = 0
    try:
        with atomic_path(path) as tmp:
            with sf.SoundFile(str(tmp), "w", sample_rate, 1, format="FLAC", subtype="PCM_16") as out:
                for block in read_audio_blocks(src, sample_rate):
                    out.write(np.clip(block, -1.0, PCM16_MAX))
                    samples += len(block)
            if samples < min_samples:
                raise _TooShort
    except _TooShort:
        path.unlink(missing_ok=True)  # an output of an earlier run with a lower minimum
        return Converted([], samples / sample_rate)
    return Converted([(path, samples)])


def write_segments(src: Path, dest_stem: Path, clip_samples: int, min_samples: int, sample_rate: int,
                   result: Converted) -> Converted:
    """Stream ``src`` into clips of ``clip_samples`` (appended to ``result`` as written); keep a final shorter clip
    if it has ``min_samples``."""
    pending, buffered = [], 0
    for block in read_audio_blocks(src, sample_rate):
        pending.append(block)
        buffered += len(block)
        while buffered >= clip_samples:
            audio = np.concatenate(pending)  # (buffered,)
            path = clip_name(dest_stem, len(result.clips))
            write_flac(path, audio[:clip_samples], sample_rate)
            result.clips.append((path, clip_samples))
            pending, buffered = [audio[clip_samples:]], buffered - clip_samples
    if buffered >= min_samples:
        path = clip_name(dest_stem, len(result.clips))
        write_flac(path, np.concatenate(pending), sample_rate)
        result.clips.append((path, buffered))
    else:
        result.dropped_seconds = buffered / sample_rate
    return result
