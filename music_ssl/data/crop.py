"""Random crops measured in seconds, as the music2vec / MusicHuBERT papers configure them.

fairseq's audio datasets already crop every clip to ``max_sample_size`` samples at a random offset and
count the *cropped* length when ``max_tokens`` batches are formed, so a batch always holds about
``max_tokens`` samples of audio: halving the crop doubles the clips per batch (the papers' setup).
This module turns ``crop_seconds`` into that ``max_sample_size`` and checks the two agree.
"""
import logging
from typing import Optional
from ..core.errors import ConfigError

logger = logging.getLogger(__name__)

CROP_SECONDS_HELP = ("random crop length in seconds (music2vec ablations: 5/10/15/30); sets max_sample_size = "
                     "crop_seconds × sample_rate. Batches hold max_tokens samples of cropped audio, so shorter "
                     "crops mean more clips per batch. null keeps max_sample_size as given")


def crop_samples(crop_seconds: Optional[float], sample_rate: int, max_sample_size: Optional[int]) -> Optional[int]:
    """The ``max_sample_size`` (samples) implied by ``crop_seconds`` at ``sample_rate`` Hz.

    Returns ``max_sample_size`` unchanged when ``crop_seconds`` is None; raises ValueError when both are set
    and disagree (the fix: set only one of them).
    """
    if crop_seconds is None:
        return max_sample_size
    if crop_seconds <= 0:
        raise ConfigError(f"task.crop_seconds={crop_seconds} must be positive (seconds of audio per training crop).")
    samples = int(round(crop_seconds * sample_rate))
    if max_sample_size is not None and max_sample_size != samples:
        raise ConfigError(f"task.crop_seconds={crop_seconds} ({samples} samples at {sample_rate} Hz) disagrees with "
                          f"task.max_sample_size={max_sample_size}: set only one of them.")
    logger.info("random crops of %.3g s = %d samples", crop_seconds, samples)
    return samples
