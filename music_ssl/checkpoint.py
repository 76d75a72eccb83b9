"""Frozen encoders from fairseq checkpoints: every hidden state of music2vec, MusicHuBERT, music2vec2 and stock models.

:class:`FrozenEncoder` is what probing (``music_ssl.probe``) and label iteration 2 (``music_ssl.labels``)
use to turn audio into features. It loads any wav2vec2-family fairseq checkpoint — ``music2vec``,
``music_hubert`` and stock ``hubert`` / ``wav2vec2`` / ``data2vec_audio`` — and ``music2vec2`` (data2vec 2.0's
audio model: its conv stack, positional convolution and blocks; the EMA teacher and the decoder are dropped) with
``torch.load(weights_only=True)`` (``import music_ssl`` allows fairseq's ``Dictionary``), in eval mode.
"""
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .core.conv import conv_frames, conv_geometry, conv_layers
from .core.device import resolve_device
from .core.errors import CheckpointError, one_line
from .core.file_kind import describe_file
from .core.fingerprint import file_sha256
from .models.hidden_states import extract_cnn_features, extract_hidden_states

logger = logging.getLogger(__name__)

PRETRAINING_ONLY_KEYS = ("_ema",)  # data2vec's EMA teacher weights: not part of the encoder
CHECKPOINT_FIX = "pass checkpoint_best.pt / checkpoint_last.pt written by fairseq-hydra-train"


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist (also a FileNotFoundError)."""


class AudioTooShortError(CheckpointError):
    """Audio shorter than the encoder's receptive field (one frame needs ``receptive_field`` samples)."""


def load_fairseq_model(path: Path, random_init: bool = False, seed: int = 0):
    """Build the model a fairseq checkpoint describes; load its weights unless ``random_init``.

    Returns (model in eval mode on CPU, cfg). ``random_init`` gives the same architecture with fresh
    initial weights (seeded), the baseline every probing table needs.
    """
    from fairseq import tasks

    state = read_fairseq_state(path)
    cfg = state["cfg"]
    task = tasks.setup_task(cfg.task, from_checkpoint=True)
    if "task_state" in state:
        task.load_state_dict(state["task_state"])
    torch.manual_seed(seed)
    if "skip_ema" in cfg.model:  # data2vec 2.0 (music2vec2): no EMA teacher copy to build
        cfg.model.skip_ema = True
    model = task.build_model(cfg.model, from_checkpoint=True)
    if not hasattr(model, "feature_extractor") or encoder_depth(model) is None:
        raise CheckpointError(f"{path}: model '{cfg.model._name}' is not a wav2vec2-family encoder "
                              f"(music2vec, music_hubert, music2vec2, hubert, wav2vec2, data2vec_audio).")
    if not random_init:
        weights = {k: v for k, v in state["model"].items() if k not in PRETRAINING_ONLY_KEYS}
        try:
            model.load_state_dict(weights, strict=True, model_cfg=cfg.model)
        except RuntimeError as err:  # missing / unexpected keys, shape mismatches: weights and config disagree
            raise CheckpointError(f"{path}: its weights do not match its model config ({one_line(err)}); "
                                  f"{CHECKPOINT_FIX}, unedited.") from err
    if hasattr(model, "remove_pretraining_modules") and hasattr(model, "blocks"):  # data2vec 2.0: its decoders
        model.remove_pretraining_modules()
    return model.eval(), cfg


def encoder_depth(model) -> Optional[int]:
    """Transformer layers L of a wav2vec2-family model (``encoder.layers``) or of data2vec 2.0 (``blocks``); None
    for anything else."""
    if hasattr(model, "blocks"):
        return len(model.blocks)
    encoder = getattr(model, "encoder", None)
    return len(encoder.layers) if hasattr(encoder, "layers") else None


def encoder_config(cfg) -> Tuple[str, int]:
    """(conv stack spec ``[(dim, kernel, stride), …]`` as a string, model width C) of a checkpoint's model config:
    data2vec 2.0 keeps them in ``modalities.audio.feature_encoder_spec`` and ``embed_dim``."""
    if "modalities" in cfg.model:
        return cfg.model.modalities.audio.feature_encoder_spec, int(cfg.model.embed_dim)
    return cfg.model.conv_feature_layers, int(cfg.model.encoder_embed_dim)


def read_fairseq_state(path: Path) -> dict:
    """A fairseq checkpoint's state dict (``cfg`` with ``model`` and ``task``, ``model`` weights), read with the
    safe unpickler; :class:`CheckpointError` naming the file for anything that is not one (random bytes, a text
    file, a zip that is not a torch file, a torch file of something else, a config naming an unknown model)."""
    from fairseq import checkpoint_utils
    from fairseq.models import MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: checkpoint not found; train one with fairseq-hydra-train "
                                      f"(checkpoints/checkpoint_best.pt) or fix the path.")
    what = describe_file(path)  # a k-means model, .npy features, audio: say so, before torch's unpickler does
    if what:
        raise CheckpointError(f"{path}: {what}, not a fairseq checkpoint; {CHECKPOINT_FIX}.")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    except Exception as err:  # unpickling, truncation, not a checkpoint at all
        raise CheckpointError(f"{path}: cannot be read as a fairseq checkpoint ({unpickling_reason(err)}); "
                              f"{CHECKPOINT_FIX}.") from err
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or cfg.get("model") is None or cfg.get("task") is None or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: no model config or weights inside (a pre-hydra fairseq checkpoint, or "
                              f"not a checkpoint); re-save it with a current fairseq or {CHECKPOINT_FIX}.")
    for kind, name, registry in (("model", cfg.model.get("_name"), MODEL_REGISTRY),
                                 ("task", cfg.task.get("_name"), TASK_REGISTRY)):
        if name not in registry:
            raise CheckpointError(f"{path}: {kind} '{name}' is not registered; import the plugin that defines it "
                                  f"(music_ssl registers music2vec and music_hubert) or {CHECKPOINT_FIX}.")
    return state


def unpickling_reason(err: BaseException) -> str:
    """``err`` on one line; torch's weights-only refusal cut to its reason (its advice to load with
    ``weights_only=False`` is dropped: we keep the safe unpickler on purpose, as unpickling other objects runs code)."""
    text = str(err)
    if "Weights only load failed" not in text or "WeightsUnpickler error:" not in text:
        return one_line(err)
    after = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation of torch.load")[0]
    reason = " ".join(after.split()).split(" was not an allowed global")[0].rstrip(" .")
    return f"the safe unpickler (weights_only=True, kept on purpose) refused it: {reason or type(err).__name__}"


class FrozenEncoder:
    """A frozen wav2vec2-family encoder from a fairseq checkpoint, giving every hidden state.

    Attributes: ``sample_rate`` (Hz, from the task), ``normalize`` (waveform layer norm, applied inside),
    ``frame_rate`` (Hz, sample_rate / conv stride: 50 for the standard stack), ``num_layers`` (L; there are
    L + 1 hidden states), ``dim`` (C), ``sha256`` (checkpoint content; ``+random-init`` appended for a
    random-init encoder), ``device``.
    """

    def __init__(self, model, cfg, sha256: str, device: torch.device, cnn: bool = False):
        self.model = model.to(device)
        self.cnn = bool(cnn)  # True: the one state is the raw conv output (extract_cnn_features)
        self.device = device
        self.sha256 = sha256
        self.sample_rate = int(cfg.task.sample_rate)
        self.normalize = bool(cfg.task.get("normalize", False))
        self.conv_layers, self.dim = encoder_config(cfg)
        self.receptive_field, self.stride = conv_geometry(self.conv_layers)
        self.frame_rate = self.sample_rate / self.stride
        self.num_layers = encoder_depth(model)
        if self.cnn:
            self.dim = conv_layers(self.conv_layers)[-1][0]  # conv channels of the last layer, e.g. 512
        self.num_states = 1 if self.cnn else self.num_layers + 1

    @classmethod
    def from_checkpoint(cls, path, device=None, random_init: bool = False, seed: int = 0,
                        cnn: bool = False) -> "FrozenEncoder":
        """Load ``path`` (fairseq ``.pt``) on ``device`` (default: CUDA when present, else CPU); ``cnn``: give
        the raw conv feature extractor output as the one state instead of the L + 1 hidden states."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointNotFoundError(f"{path}: checkpoint not found; train one with fairseq-hydra-train "
                                          f"(checkpoints/checkpoint_best.pt) or fix the path.")
        device = resolve_device(device)
        model, cfg = load_fairseq_model(path, random_init, seed)
        sha = file_sha256(path) + (f"+random-init-{seed}" if random_init else "")
        logger.info("%s: %s, %d layers x %d, %s", path, cfg.model._name, encoder_depth(model),
                    encoder_config(cfg)[1], "random init" if random_init else "pretrained")
        return cls(model, cfg, sha, device, cnn)

    def frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames (int64) the conv stack gives for ``num_samples`` samples."""
        return conv_frames(num_samples.long(), self.conv_layers)

    def __call__(self, audio: torch.Tensor, lengths: Optional[torch.Tensor] = None
                 ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Every hidden state of a batch.

        Args:
            audio: (B, S) float32 in [-1, 1] at ``sample_rate``; samples past ``lengths`` are ignored.
            lengths: (B,) int64 valid samples per item, or None (all S).

        Returns:
            (hidden, frame_lengths): L + 1 tensors (B, T, C) on ``device`` — index 0 the Transformer input,
            index i the output of layer i — and (B,) int64 valid frames per item.
        """
        return self.forward(audio, lengths, self.normalize)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, lengths: Optional[torch.Tensor], normalize: bool):
        """``__call__`` with the waveform normalisation chosen by the caller."""
        audio = torch.as_tensor(audio, dtype=torch.float32).to(self.device)  # (B, S)
        batch, samples = audio.shape
        lengths = torch.full((batch,), samples) if lengths is None else torch.as_tensor(lengths).long().cpu()
        if int(lengths.min()) < self.receptive_field:
            item = int(lengths.argmin())
            raise AudioTooShortError(
                f"audio item {item} has {int(lengths[item])} samples, shorter than the encoder's receptive field "
                f"({self.receptive_field} samples = {1000 * self.receptive_field / self.sample_rate:g} ms at "
                f"{self.sample_rate} Hz): no frame; zero-pad it to {self.receptive_field} samples or drop it.")
        padding = torch.arange(samples)[None, :] >= lengths[:, None]  # (B, S) True = padded
        audio = self.prepare(audio, lengths, padding.to(self.device), normalize)
        frame_lengths = self.frames(lengths)  # (B,)
        if padding.any():  # padding leaks into group-norm conv stacks and stacked positional convs: run alone
            hidden = self.run_items(audio, lengths, int(frame_lengths.max()))
        else:
            hidden = self.hidden_states(audio)
        return [h[:, : int(frame_lengths.max())] for h in hidden], frame_lengths

    def hidden_states(self, audio: torch.Tensor) -> List[torch.Tensor]:
        """Every hidden state of an unpadded batch: audio (B, S) prepared → L + 1 tensors (B, T, C), or
        [the raw conv output (B, T, C_conv)] when ``cnn``."""
        if self.cnn:
            return [extract_cnn_features(self.model, audio)]
        if hasattr(self.model, "extract_hidden_states"):  # ours (music2vec2 has its own blocks)
            return self.model.extract_hidden_states(audio)[0]
        return extract_hidden_states(self.model, audio)[0]

    @staticmethod
    def prepare(audio: torch.Tensor, lengths: torch.Tensor, padding: torch.Tensor, normalize: bool) -> torch.Tensor:
        """Zero the padding and, if ``normalize``, layer-normalise each item over its valid samples."""
        audio = audio.masked_fill(padding, 0.0)
        if not normalize:
            return audio
        for i, n in enumerate(lengths.tolist()):
            audio[i, :n] = F.layer_norm(audio[i, :n], (n,))
        return audio

    def run_items(self, audio: torch.Tensor, lengths: torch.Tensor, frames: int) -> List[torch.Tensor]:
        """Item-by-item forward (each item exactly as if alone), zero-padded to ``frames``: L + 1 × (B, T, C)."""
        per_item = [self.hidden_states(audio[i: i + 1, :n]) for i, n in enumerate(lengths.tolist())]
        return [torch.cat([F.pad(item[layer], (0, 0, 0, frames - item[layer].size(1))) for item in per_item])
                for layer in range(self.num_states)]

    def encode_long(self, audio: np.ndarray, chunk_seconds: float = 30.0, layers: Optional[Sequence[int]] = None,
                    batch_chunks: int = 4) -> List[np.ndarray]:
        """Hidden states of a whole file of any length, computed in chunks so memory stays bounded.

        Chunks start on frame boundaries and carry the conv stack's extra receptive field, so every frame
        is the one the whole-file conv stack gives and the result has exactly that many frames.

        Args:
            audio: (S,) float32 waveform at ``sample_rate``.
            chunk_seconds: chunk length (the Transformer sees at most this much context).
            layers: hidden-state indices to return (default all L + 1, in order).
            batch_chunks: chunks per forward pass.

        Returns:
            one float32 array (T, C) per requested layer, T = frames of the whole file.
        """
        layers = list(range(self.num_states)) if layers is None else list(layers)
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if self.normalize:  # training normalised whole files before cropping; do the same
            wav = F.layer_norm(wav, wav.shape)
        total = int(self.frames(torch.tensor(len(wav))))
        step = max(1, int(round(chunk_seconds * self.frame_rate))) * self.stride  # samples per chunk, frame aligned
        starts = list(range(0, max(1, total * self.stride), step))
        outputs = [[] for _ in layers]
        for first in range(0, len(starts), batch_chunks):
            chunks = [wav[s: s + step + self.receptive_field - self.stride] for s in starts[first: first + batch_chunks]]
            lengths = torch.tensor([len(c) for c in chunks])
            batch = torch.stack([F.pad(c, (0, int(lengths.max()) - len(c))) for c in chunks])  # (N, chunk)
            hidden, frame_lengths = self.forward(batch, lengths, normalize=False)
            for out, layer in zip(outputs, layers):
                out += [hidden[layer][i, :n].float().cpu().numpy() for i, n in enumerate(frame_lengths.tolist())]
        result = [np.concatenate(out)[:total] for out in outputs]
        assert all(len(r) == total for r in result), (len(result[0]), total)
        return result
