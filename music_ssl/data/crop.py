"""Random crops measured in seconds, as the music2vec / MusicHuBERT papers configure them.

fairseq's audio datasets already crop every clip to ``max_sample_size`` samples at a random offset and
count the *cropped* length when ``max_tokens`` batches are formed, so a batch always holds about
``max_tokens`` samples of audio: halving the crop doubles the clips per batch (the papers' setup).
This module turns ``crop_seconds`` into that ``max_sample_size`` and checks the two agree, and holds what crop
reading (``task.crop_reading``) needs: seeded crop offsets and a reader that decodes only the crop.
"""
import contextlib
import logging
import os
from typing import Optional

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.fingerprint import mix64
from .audio import CONVERT_FIX, FLOAT_SUBTYPES, check_finite, seek_read
from .errors import AudioError, MissingAudioError

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


# ------------------------------------------------------------ crop reading: decode only the crop (seek + read)

CROP_READING_HELP = ("decode only each training crop (seek + read) instead of the whole file: a 5-s crop of a 4-min "
                     "FLAC song costs ~30x less. Offsets are uniform over every valid start, as fairseq's, and drawn "
                     "from (common.seed, epoch, clip index), so a run and its resume see the same crops (and the same "
                     "data2vec 2.0 block masks, task.precompute_mask_config, drawn from the same numbers). With "
                     "task.normalize each crop (not the whole song) is standardised. false: fairseq's datasets as "
                     "they are (whole files, unseeded crops)")
AUDIT_FIX = ("find every such row with `music-ssl-manifest audit MANIFEST_DIR` and leave them out with --write-clean "
             "(or re-encode them as FLAC)")


class SharedEpoch:
    """The epoch number in shared memory: fairseq reuses its DataLoader and persistent workers across epochs
    (``reuse_dataloader``), so ``dataset.set_epoch`` in the trainer must reach the workers' copies of the dataset."""

    def __init__(self, epoch: int = 1):
        self.value = torch.full((1,), epoch, dtype=torch.int64).share_memory_()
        self.view = None  # a numpy view of it, made in each process (reading through torch costs ~10 µs)

    def __getstate__(self) -> dict:
        return {"value": self.value, "view": None}

    def set(self, epoch: int) -> None:
        self.value[0] = int(epoch)

    def get(self) -> int:
        if self.view is None:
            self.view = self.value.numpy()
        return int(self.view[0])


def crop_start(seed: int, epoch: int, index: int, slack: int) -> int:
    """A crop's first sample: uniform over ``0..slack`` (``slack`` = clip samples − crop samples, fairseq's
    ``np.random.randint(0, diff + 1)``), a hash of ``(seed, epoch, index)`` — the same clip gets the same crop in a
    run, its resume and any number of DataLoader workers or GPUs. (The modulo's bias is below slack / 2**64.)"""
    if slack <= 0:
        return 0
    return mix64(seed, epoch, index) % (slack + 1)


MASK_STREAM = 1  # mix64(seed, epoch, index, MASK_STREAM): a clip's mask draws, apart from its crop offset


@contextlib.contextmanager
def seeded_torch_rng(seed: int, epoch: int, index: int):
    """torch's global CPU generator seeded from ``(seed, epoch, index)`` inside the block and restored after it, for
    fairseq code that draws from it (``compute_block_mask_1d``): a clip's draws are the same in a run, its resume and
    any number of DataLoader workers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix64(seed, epoch, index, MASK_STREAM) >> 1)  # torch seeds are < 2**63
        yield


def batch_buffer(rows: int, length: int) -> torch.Tensor:
    """An uninitialised (rows, length) float32 batch; in shared memory inside a DataLoader worker (as torch's
    ``default_collate`` allocates), so handing it to the trainer copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty((rows, length))
    storage = torch.empty(0)._typed_storage()._new_shared(rows * length, device="cpu")
    return torch.empty(0).new(storage).view(rows, length)


class PendingAudio:
    """Dataset item ``index``'s file, not yet read: ``len()`` is its manifest ``num_samples``, what fairseq's
    collaters size batches by."""

    __slots__ = ("path", "samples", "index")

    def __init__(self, path: str, samples: int, index: int):
        self.path, self.samples, self.index = path, int(samples), int(index)

    def __len__(self) -> int:
        return self.samples


def read_crop(path: str, start: int, length: int, listed: int, out: np.ndarray, sample_rate: float) -> None:
    """Decode samples ``start : start + length`` of a manifest row's file, and only those (seek + read), into
    ``out`` (length,) float32 in [-1, 1] (channels averaged).

    Args:
        path: the audio file; start, length: samples; listed: the manifest's ``num_samples``; sample_rate: the
            rate training reads (Hz), which the file must have.

    Raises:
        MissingAudioError / AudioError: the file is gone, has another sample rate (kind ``rate``) or cannot be
        decoded; kind ``truncated`` when the crop comes back short (the file decodes fewer samples than its
        manifest row lists: never padded or shortened silently); kind ``non-finite`` for NaN/Inf samples.
    """
    try:
        with sf.SoundFile(path) as f, quiet_mp3_decoder(f):
            rate, can_hold_nan = f.samplerate, f.subtype in FLOAT_SUBTYPES  # integer PCM, FLAC, mp3 cannot
            if rate != sample_rate:
                raise AudioError(f"{path}: {rate} Hz audio, but training reads {sample_rate:g} Hz; {CONVERT_FIX}.",
                                 "rate")
            if f.channels == 1:
                got = len(seek_read(f, start, length, out=out))  # an MP3 from a little earlier (its first frame)
            else:
                audio = seek_read(f, start, length, always_2d=True)  # (n, channels)
                got = len(audio)
                out[:got] = audio.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        if not os.path.isfile(path):
            raise MissingAudioError(f"{path}: audio file not found (moved or deleted since the manifest was made); "
                                    f"{AUDIT_FIX}.") from None
        raise AudioError(f"{path}: cannot decode samples {start}-{start + length} ({err}); {AUDIT_FIX}.",
                         "truncated") from None
    if got < length:
        raise AudioError(f"{path}: decodes to {start + got} samples, not the {listed} its manifest row lists "
                         f"(a crop of samples {start}-{start + length} came back short); {AUDIT_FIX}.", "truncated")
    if can_hold_nan:
        check_finite(path, out, rate, start, AUDIT_FIX)


def decode_into(pending: PendingAudio, start: int, window: torch.Tensor, sample_rate: float, normalize: bool) -> None:
    """Decode ``len(window)`` samples of ``pending``'s file from sample ``start`` into ``window`` (samples,) float32
    (:func:`read_crop`), standardised when ``normalize`` (fairseq's ``postprocess``: ``layer_norm`` of the clip)."""
    read_crop(pending.path, start, len(window), len(pending), window.numpy(), sample_rate)
    if normalize:
        with torch.no_grad():
            window.copy_(F.layer_norm(window, window.shape))


@contextlib.contextmanager
def quiet_mp3_decoder(f: sf.SoundFile):
    """Inside a DataLoader worker, silence file descriptor 2 while an MP3 is sought and read: libmpg123 writes a
    "part2_3_length … too large" line to stderr after about every second seek (its bit reservoir starts empty;
    :func:`~music_ssl.data.audio.seek_read` decodes from earlier, so the crop is exact), which would flood a
    training log. A worker is one thread, so nothing else is lost; the main process is left as it is."""
    if f.format != "MP3" or torch.utils.data.get_worker_info() is None:
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
