"""Conversion of any soundfile-readable track to 16 kHz mono FLAC, optionally cut into fixed-length clips.

Decoding mp3/ogg and resampling during training is slow and repeated every epoch; converting once keeps
training on plain FLAC. Tracks are streamed block by block (downmix → ``soxr`` streaming resampler →
clip writer), so memory stays bounded however long a track is, and every clip is written atomically.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import soundfile as sf
import soxr

from .atomic import atomic_path
from .audio import SAMPLE_RATE, audio_info
from .errors import AudioError

BLOCK_SECONDS = 10.0  # seconds of source audio decoded per block
PCM16_MAX = 1.0 - 1.0 / 32768  # largest float that PCM_16 FLAC stores without wrapping


@dataclass
class Converted:
    """What one track became: ``clips`` (path, num_samples) written and ``dropped_seconds`` of short tail."""

    clips: List[Tuple[Path, int]] = field(default_factory=list)
    dropped_seconds: float = 0.0


def resampled_blocks(path: Path, sample_rate: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks (n,) of ``path`` at ``sample_rate`` Hz, streamed (downmix, then soxr HQ resampling)."""
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path}: holds no audio samples; delete it or leave it out of the corpus.")
    resampler = None if info.samplerate == sample_rate else soxr.ResampleStream(
        info.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=int(BLOCK_SECONDS * info.samplerate), dtype="float32", always_2d=True):
                mono = block.mean(axis=1)  # (n,)
                yield mono if resampler is None else resampler.resample_chunk(mono)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    except sf.LibsndfileError as err:
        raise AudioError(f"{path}: cannot decode audio ({str(err).strip()}); re-encode it or remove it.") from None


def write_flac(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (S,) float32 audio as 16-bit mono FLAC atomically (clipped to the 16-bit range)."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, PCM16_MAX), sample_rate, format="FLAC", subtype="PCM_16")


def clip_name(dest_stem: Path, index: Optional[int]) -> Path:
    """``STEM.flac`` for a whole track, ``STEM_0003.flac`` for its fourth clip."""
    suffix = ".flac" if index is None else f"_{index:04d}.flac"
    return dest_stem.with_name(dest_stem.name + suffix)


def convert_track(src, dest_stem, segment_seconds: Optional[float] = None, min_seconds: float = 2.0,
                  sample_rate: int = SAMPLE_RATE) -> Converted:
    """Convert ``src`` to 16 kHz mono FLAC beside ``dest_stem`` (a path without extension).

    Args:
        src: any file soundfile decodes (wav, flac, ogg, mp3, ...).
        dest_stem: output path without extension; folders are created.
        segment_seconds: cut into clips of this many seconds (``STEM_0000.flac``, ...); None keeps one file.
        min_seconds: with ``segment_seconds``, a final clip shorter than this is dropped (and counted).
        sample_rate: output rate in Hz (default 16000).

    Returns:
        :class:`Converted` listing the clips written and the seconds dropped.
    """
    src, dest_stem = Path(src), Path(dest_stem)
    if segment_seconds is None:
        return write_whole(src, clip_name(dest_stem, None), sample_rate)
    return write_segments(src, dest_stem, int(round(segment_seconds * sample_rate)),
                          int(round(min_seconds * sample_rate)), sample_rate)


def write_whole(src: Path, path: Path, sample_rate: int) -> Converted:
    """Stream all of ``src`` into one FLAC file at ``path`` (atomically)."""
    samples = 0
    with atomic_path(path) as tmp:
        with sf.SoundFile(str(tmp), "w", sample_rate, 1, format="FLAC", subtype="PCM_16") as out:
            for block in resampled_blocks(src, sample_rate):
                out.write(np.clip(block, -1.0, PCM16_MAX))
                samples += len(block)
    return Converted([(path, samples)])


def write_segments(src: Path, dest_stem: Path, clip_samples: int, min_samples: int, sample_rate: int) -> Converted:
    """Stream ``src`` into clips of ``clip_samples``; keep a final shorter clip if it has ``min_samples``."""
    result, pending, buffered = Converted(), [], 0
    for block in resampled_blocks(src, sample_rate):
        pending.append(block)
        buffered += len(block)
        while buffered >= clip_samples:
            audio = np.concatenate(pending)  # (buffered,)
            path = clip_name(dest_stem, len(result.clips))
            write_flac(path, audio[:clip_samples], sample_rate)
            result.clips.append((path, clip_samples))
            pending, buffered = [audio[clip_samples:]], buffered - clip_samples
    if buffered >= max(min_samples, 1):
        path = clip_name(dest_stem, len(result.clips))
        write_flac(path, np.concatenate(pending), sample_rate)
        result.clips.append((path, buffered))
    else:
        result.dropped_seconds = buffered / sample_rate
    return result
