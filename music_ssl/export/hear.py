"""The HEAR 2021 API (https://hearbenchmark.com/hear-api.html) over a music2vec / MusicHuBERT checkpoint.

    from music_ssl.export import hear
    model = hear.load_model("checkpoints/checkpoint_best.pt")      # or a transformers folder (exported)
    emb, ts = hear.get_timestamp_embeddings(audio, model)            # audio: (n_sounds, n_samples) at 16 kHz
    scene = hear.get_scene_embeddings(audio, model)

Embeddings: every frame of the encoder (stride 320 samples = 20 ms at 16 kHz) gives one timestamp
embedding, by default the mean of all L + 1 hidden states (``layer="mean"``; ``layer=i`` picks hidden state
i). Its timestamp is the centre of the frame's receptive field, in milliseconds. The scene embedding is the
mean of the timestamp embeddings over time. Clips shorter than the receptive field (400 samples = 25 ms at
16 kHz) are zero-padded to it (documented repair: they get one frame); clips longer than ``chunk_seconds`` are
encoded in chunks (``encode_long``).

Expected bad input raises :class:`HearError` (an :class:`music_ssl.errors.ExportError`, also a ``ValueError``)
or :class:`HearModelNotFoundError` (also a ``FileNotFoundError``) with one line naming the file and the fix; a
checkpoint that is not one raises :class:`music_ssl.errors.CheckpointError`.
"""
import logging
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch

from ..core.device import resolve_device
from ..core.errors import ExportError

logger = logging.getLogger(__name__)

LayerChoice = Union[str, int]


class HearError(ExportError):
    """Bad arguments to the HEAR API (layer choice, audio shape)."""


class HearModelNotFoundError(HearError, FileNotFoundError):
    """``model_file_path`` is empty or does not exist."""


class HearModel(torch.nn.Module):
    """A frozen encoder with the HEAR model attributes.

    Attributes: ``sample_rate`` (Hz), ``scene_embedding_size`` and ``timestamp_embedding_size`` (= C),
    ``encoder`` (FrozenEncoder / HFEncoder), ``layer`` ("mean" or a hidden-state index), ``chunk_seconds``,
    ``batch_size``. ``.to(device)`` moves the encoder too.
    """

    def __init__(self, encoder, layer: LayerChoice = "mean", chunk_seconds: float = 30.0, batch_size: int = 8):
        super().__init__()
        if layer != "mean" and not (isinstance(layer, int) and 0 <= layer <= encoder.num_layers):
            raise HearError(f"layer={layer!r}: use 'mean' or a hidden-state index in 0..{encoder.num_layers}.")
        self.encoder = encoder
        self.net = encoder.model  # registered so that HEAR's model.to(device) moves the weights
        self.sample_rate = int(encoder.sample_rate)
        self.scene_embedding_size = self.timestamp_embedding_size = int(encoder.dim)
        self.layer, self.chunk_seconds, self.batch_size = layer, float(chunk_seconds), int(batch_size)

    def _apply(self, fn, *args, **kwargs):
        result = super()._apply(fn, *args, **kwargs)
        self.encoder.device = next(self.net.parameters()).device
        return result

    def pool_layers(self, hidden) -> torch.Tensor:
        """L + 1 hidden states (…, T, C) → one (…, T, C): their mean or the chosen one."""
        if self.layer == "mean":
            return torch.stack(list(hidden)).mean(0)
        return hidden[self.layer]

    def timestamps(self, frames: int) -> torch.Tensor:
        """(frames,) float32 centre of each frame's receptive field, in milliseconds."""
        starts = torch.arange(frames, dtype=torch.float64) * self.encoder.stride
        return ((starts + self.encoder.receptive_field / 2) * 1000.0 / self.sample_rate).float()


def load_model(model_file_path: str = "", layer: LayerChoice = "mean", device=None,
               trust_remote_code: bool = False) -> HearModel:
    """HEAR ``load_model``.

    Args:
        model_file_path: a fairseq checkpoint file (music2vec, MusicHuBERT, stock hubert / wav2vec2 /
            data2vec_audio; read by FrozenEncoder) or a transformers model folder (HFEncoder). Required: this
            module has no default weights.
        layer: "mean" (default) of all L + 1 hidden states, or one hidden-state index in 0..L.
        device: "auto" / None (CUDA when present, else CPU; :func:`music_ssl.device.resolve_device`), "cpu",
            "cuda", "cuda:N" (HEAR's ``model.to(device)`` also moves it).
        trust_remote_code: a folder that ships its own model code (``auto_map``: an exported music2vec2, MERT) is
            loaded only when True, which runs that code (:mod:`music_ssl.export.hf_encoder`); never implied.
    """
    path = Path(model_file_path)
    if not model_file_path or not path.exists():
        raise HearModelNotFoundError(f"{model_file_path!r}: not found; pass a fairseq checkpoint (.pt) or an "
                                     f"exported transformers folder; this module has no default weights.")
    device = resolve_device(device)
    if path.is_dir():
        from .hf_encoder import HFEncoder

        encoder = HFEncoder.from_pretrained(path, device=device, trust_remote_code=trust_remote_code)
    else:
        from ..checkpoint import FrozenEncoder

        encoder = FrozenEncoder.from_checkpoint(path, device=device)
    return HearModel(encoder, layer=layer)


def check_audio(audio: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(audio) or audio.dim() != 2:
        raise HearError(f"audio must be a (n_sounds, n_samples) tensor, got {getattr(audio, 'shape', type(audio))}; "
                        f"stack the clips (zero-padded to one length) into a 2-d float tensor.")
    if audio.size(0) == 0:
        raise HearError("audio holds no sounds (shape (0, n_samples)); pass at least one clip.")
    return audio.float()


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> Tuple[torch.Tensor, torch.Tensor]:
    """HEAR timestamp embeddings.

    Args:
        audio: (n_sounds, n_samples) float in [-1, 1] at ``model.sample_rate``.
        model: from :func:`load_model`.

    Returns:
        (embeddings (n_sounds, n_timestamps, timestamp_embedding_size) float32,
         timestamps (n_sounds, n_timestamps) float32 in ms), on ``audio``'s device.
    """
    audio = check_audio(audio)
    encoder = model.encoder
    if audio.size(1) < encoder.receptive_field:  # too short for one frame: zero-pad to one
        audio = torch.nn.functional.pad(audio, (0, encoder.receptive_field - audio.size(1)))
    if audio.size(1) > model.chunk_seconds * model.sample_rate:
        embeddings = torch.stack([encode_long(model, clip) for clip in audio])
    else:
        batches = [audio[i: i + model.batch_size] for i in range(0, len(audio), model.batch_size)]
        embeddings = torch.cat([model.pool_layers(encoder(batch)[0]).float() for batch in batches])
    timestamps = model.timestamps(embeddings.size(1)).expand(len(audio), -1)  # (n_sounds, T)
    return embeddings.to(audio.device), timestamps.contiguous().to(audio.device)


def encode_long(model: HearModel, clip: torch.Tensor) -> torch.Tensor:
    """(n_samples,) → (T, C) pooled embeddings of a long clip, encoded in ``chunk_seconds`` chunks."""
    layers = None if model.layer == "mean" else [model.layer]
    states = model.encoder.encode_long(clip.cpu().numpy().astype(np.float32), model.chunk_seconds, layers=layers)
    return torch.from_numpy(np.mean(np.stack(states), axis=0))


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """HEAR scene embeddings: (n_sounds, n_samples) → (n_sounds, scene_embedding_size) float32, the time mean
    of the timestamp embeddings."""
    embeddings, _ = get_timestamp_embeddings(audio, model)
    return embeddings.mean(dim=1)
