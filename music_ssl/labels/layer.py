"""Layer features for label iteration 2: one hidden state of a music2vec / MusicHuBERT checkpoint (50 Hz).

Wraps :class:`music_ssl.checkpoint.FrozenEncoder`; files of any length are encoded in chunks
(``FrozenEncoder.encode_long``) so memory stays bounded, on GPU when present.
"""
import numpy as np
import torch

from ..checkpoint import FrozenEncoder
from ..data.errors import AudioError
from .errors import LabelPrepError


class LayerFeatures:
    """Hidden state ``layer`` (0 = Transformer input, i = output of layer i) of a fairseq checkpoint.

    Attributes: ``dim`` (C), ``frame_rate`` (Hz, 50 for the standard conv stack), ``sample_rate`` (Hz).
    """

    def __init__(self, checkpoint, layer: int, device=None, chunk_seconds: float = 30.0):
        self.encoder = FrozenEncoder.from_checkpoint(checkpoint, device=device)
        if not 0 <= layer <= self.encoder.num_layers:
            raise LabelPrepError(f"{checkpoint}: layer={layer} does not exist; this model has layers "
                                 f"0..{self.encoder.num_layers} (0 = Transformer input).")
        self.checkpoint, self.layer, self.chunk_seconds = str(checkpoint), layer, chunk_seconds
        self.dim, self.frame_rate, self.sample_rate = self.encoder.dim, self.encoder.frame_rate, self.encoder.sample_rate

    def config(self) -> dict:
        """What determines the features (stored with shards and the k-means model)."""
        return {"feature": "layer", "checkpoint_sha256": self.encoder.sha256, "layer": self.layer,
                "chunk_seconds": self.chunk_seconds, "sample_rate": self.sample_rate}

    def frames(self, num_samples: int) -> int:
        """Frames the checkpoint's conv stack gives for a file of ``num_samples`` samples."""
        return int(self.encoder.frames(torch.tensor(num_samples)))

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """(S,) float32 waveform at ``sample_rate`` → (T, C) float32, T = ``frames(S)``."""
        if len(wav) < self.encoder.receptive_field:
            raise AudioError(f"audio of {len(wav)} samples is shorter than the encoder's receptive field "
                             f"({self.encoder.receptive_field} samples); drop such rows from the manifest.")
        return self.encoder.encode_long(wav, self.chunk_seconds, layers=[self.layer])[0]
