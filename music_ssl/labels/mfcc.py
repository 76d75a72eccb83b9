"""MFCC frame features for label iteration 1: kaldi MFCC + Δ + ΔΔ at 100 Hz, as fairseq's ``dump_mfcc_feature.py``.

``torchaudio.compliance.kaldi.mfcc(use_energy=False)`` (25 ms windows every 10 ms, ``snip_edges``: a file of
S samples gives ``1 + (S − 400) // 160`` frames at 16 kHz), then ``torchaudio.functional.compute_deltas`` twice.
13 coefficients give 39-d features, 20 give 60-d. Kaldi frames are independent of each other, so long files
are processed in chunks of whole frames (memory stays bounded) and the deltas are taken over the whole file:
the result equals the one-shot computation.
"""
import numpy as np
import torch
import torchaudio

from ..data.audio import SAMPLE_RATE
from ..data.errors import AudioError

WINDOW_MS, SHIFT_MS = 25.0, 10.0  # kaldi defaults
CHUNK_FRAMES = 6000  # one minute of frames per kaldi call


class MfccFeatures:
    """Kaldi MFCC + deltas + delta-deltas.

    Attributes: ``n_mfcc`` (cepstra, default 13), ``dim`` (3 × n_mfcc), ``frame_rate`` (100 Hz),
    ``sample_rate`` (Hz of the input, default 16000).
    """

    def __init__(self, n_mfcc: int = 13, sample_rate: int = SAMPLE_RATE):
        self.n_mfcc = n_mfcc
        self.sample_rate = sample_rate
        self.dim = 3 * n_mfcc
        self.window = int(sample_rate * WINDOW_MS / 1000)  # 400 samples at 16 kHz
        self.shift = int(sample_rate * SHIFT_MS / 1000)  # 160 samples at 16 kHz
        self.frame_rate = sample_rate / self.shift
        self.num_mel_bins = max(23, n_mfcc)  # kaldi's default 23, enough for up to 23 cepstra

    def config(self) -> dict:
        """What determines the features (stored with shards and the k-means model)."""
        return {"feature": "mfcc", "n_mfcc": self.n_mfcc, "sample_rate": self.sample_rate}

    def frames(self, num_samples: int) -> int:
        """Frames of a file of ``num_samples`` samples: ``1 + (S − window) // shift`` (0 if shorter than a window)."""
        return 0 if num_samples < self.window else 1 + (num_samples - self.window) // self.shift

    def kaldi_mfcc(self, wav: torch.Tensor) -> torch.Tensor:
        """(S,) → (T, n_mfcc) kaldi MFCC, computed ``CHUNK_FRAMES`` frames at a time."""
        total = self.frames(len(wav))
        chunks = []
        for first in range(0, total, CHUNK_FRAMES):
            last = min(first + CHUNK_FRAMES, total)  # frames [first, last) need samples up to (last-1)*shift+window
            piece = wav[first * self.shift: (last - 1) * self.shift + self.window]
            chunks.append(torchaudio.compliance.kaldi.mfcc(
                piece[None], sample_frequency=self.sample_rate, use_energy=False, num_ceps=self.n_mfcc,
                num_mel_bins=self.num_mel_bins, frame_length=WINDOW_MS, frame_shift=SHIFT_MS))
        return torch.cat(chunks)

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """(S,) float32 waveform in [-1, 1] at ``sample_rate`` → (T, 3 × n_mfcc) float32, T = ``frames(S)``."""
        if len(wav) < self.window:
            raise AudioError(f"audio of {len(wav)} samples is shorter than one {WINDOW_MS:g}-ms MFCC window; "
                             f"drop such rows from the manifest.")
        mfcc = self.kaldi_mfcc(torch.as_tensor(wav, dtype=torch.float32)).T  # (n_mfcc, T)
        deltas = torchaudio.functional.compute_deltas(mfcc)
        ddeltas = torchaudio.functional.compute_deltas(deltas)
        return torch.cat([mfcc, deltas, ddeltas]).T.contiguous().numpy()  # (T, 3 n_mfcc)
