"""The toolkit's one resampler: soxr (libsoxr) at "HQ" quality, one-shot for whole arrays, streamed for blocks.

Both forms run the same libsoxr filter, so streaming a track block by block gives the samples resampling it whole
gives (a test holds them allclose). The manifest converter streams (memory stays bounded however long a track
is); probe feature extraction resamples whole clips.

Until issue #19 the probe resampled with ``torchaudio.functional.resample`` (windowed sinc) and the converter
with soxr; both are band-limited, so probe features computed before and after can differ in the last digits.
"""
from typing import Iterable, Iterator

import numpy as np
import soxr

QUALITY = "HQ"  # libsoxr's "high quality" (20-bit precision, linear phase); python-soxr's default


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole signal.

    Args:
        audio: (samples,) or (samples, channels) float32 in [-1, 1] at ``from_rate`` Hz.
        from_rate / to_rate: sample rates in Hz.

    Returns:
        (round(samples * to_rate / from_rate),) or (…, channels) float32 at ``to_rate`` Hz; ``audio`` itself
        (as float32) when the rates are equal.
    """
    audio = np.asarray(audio, np.float32)
    if int(from_rate) == int(to_rate):
        return audio
    return np.asarray(soxr.resample(audio, int(from_rate), int(to_rate), quality=QUALITY), np.float32)


def resample_blocks(blocks: Iterable[np.ndarray], from_rate: int, to_rate: int) -> Iterator[np.ndarray]:
    """Resample a mono signal given as consecutive blocks, streamed (soxr's ``ResampleStream``).

    Args:
        blocks: (n,) float32 blocks at ``from_rate`` Hz, in order (any sizes, possibly empty).
        from_rate / to_rate: sample rates in Hz.

    Yields:
        (m,) float32 blocks at ``to_rate`` Hz whose concatenation equals ``resample`` of the concatenated input
        (the filter's delay is held back and flushed after the last block); the blocks themselves when the rates
        are equal.
    """
    if int(from_rate) == int(to_rate):
        yield from blocks
        return
    stream = soxr.ResampleStream(int(from_rate), int(to_rate), 1, dtype="float32", quality=QUALITY)
    for block in blocks:
        yield stream.resample_chunk(np.ascontiguousarray(block, np.float32))
    yield stream.resample_chunk(np.zeros(0, np.float32), last=True)
