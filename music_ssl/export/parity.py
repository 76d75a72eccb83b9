"""Hidden-state parity between a fairseq checkpoint and its transformers export.

Both models get the same waveforms (normalised first when the task normalises) and every hidden state is
compared: L + 1 tensors, index 0 the Transformer input, index i the output of layer i (final layer norm
applied to the last one for pre-LN models), as :func:`music_ssl.models.hidden_states.extract_hidden_states`
and :func:`music_ssl.export.hf_encoder.hf_hidden_states` define them.

Padded batches: transformers marks frame t of an item padded when t >= the conv-formula frame count of its
length; fairseq data2vec-audio does the same, but fairseq HuBERT's ``forward_padding_mask`` splits the
samples into one block per frame (S // T samples, 324 for 1.5 s at the 320x stack) and marks a frame padded
only when its whole block is padding, so for some lengths it attends to one more frame than transformers
(1.5 s with a 12 320-sample item: 39 frames against 38). That is a difference of masking rules, not of
weights, so the padded comparison runs fairseq HuBERT with the conv-formula mask (same weights, same
modules) and compares valid frames only; the padded length is one where the two rules disagree.

music2vec2 (data2vec 2.0) checkpoints: the fairseq side is ``Music2Vec2Model.extract_hidden_states`` (index 0 the
input of block 1), the exported side the folder's own ``Music2Vec2Model`` (remote code, loaded only with
``trust_remote_code=True``); data2vec 2.0 masks padded frames by the conv formula already, so the padded comparison
needs no adjustment. The tolerance is the same.
"""
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F

from ..checkpoint import encoder_config, load_fairseq_model
from ..core.conv import conv_frames
from ..models.hidden_states import extract_hidden_states
from .hf_encoder import check_remote_code, hf_hidden_states

logger = logging.getLogger(__name__)

ATOL, RTOL = 1e-4, 1e-4  # |fairseq - transformers| <= ATOL + RTOL * max|fairseq|, per hidden state
PADDED_SECONDS = 0.77  # the padded item: 12 320 samples, where fairseq HuBERT's block rule keeps a frame more


def frame_padding(lengths: torch.Tensor, frames: int, conv_spec: str) -> torch.Tensor:
    """(B, frames) bool, True where frame t >= the conv-formula frame count of ``lengths`` (B,) samples."""
    valid = conv_frames(lengths, conv_spec)  # (B,)
    return torch.arange(frames)[None, :] >= valid[:, None]


@contextmanager
def conv_formula_padding(model, conv_spec: str, lengths: torch.Tensor):
    """Make a fairseq HuBERT compute its frame padding mask with the conv formula (as transformers does)."""
    if not hasattr(model, "forward_padding_mask"):  # data2vec-audio already uses the conv formula
        yield model
        return
    model.forward_padding_mask = lambda features, _mask: frame_padding(lengths, features.size(1), conv_spec).to(
        features.device)
    try:
        yield model
    finally:
        del model.forward_padding_mask  # back to the class method


def fairseq_hidden_states(model, audio: torch.Tensor, padding_mask=None) -> List[torch.Tensor]:
    """L + 1 hidden states (B, T, C) of a fairseq model: its own ``extract_hidden_states`` (ours: music2vec,
    MusicHuBERT, music2vec2) or the shared one (stock wav2vec2-family models)."""
    if hasattr(model, "extract_hidden_states"):
        return model.extract_hidden_states(audio, padding_mask=padding_mask)[0]
    return extract_hidden_states(model, audio, padding_mask=padding_mask)[0]


def max_diff(reference: List[torch.Tensor], other: List[torch.Tensor], valid: torch.Tensor) -> tuple:
    """(max |reference - other|, max |reference|) over valid frames (B, T) of every hidden state."""
    assert len(reference) == len(other), (len(reference), len(other))
    diff = scale = 0.0
    for ref, out in zip(reference, other):  # each (B, T, C)
        assert ref.shape == out.shape, (ref.shape, out.shape)
        diff = max(diff, float((ref - out).abs()[valid].max()))
        scale = max(scale, float(ref.abs()[valid].max()))
    return diff, scale


@torch.no_grad()
def parity_check(checkpoint, hf_dir, seconds: float = 1.5, padded_seconds: float = PADDED_SECONDS,
                 seed: int = 0, atol: float = ATOL, rtol: float = RTOL, trust_remote_code: bool = False) -> dict:
    """Compare a fairseq checkpoint with its exported folder on two random clips, unpadded and padded.

    Args:
        checkpoint: fairseq ``.pt``; hf_dir: the transformers folder exported from it.
        seconds: clip length; padded_seconds: the second clip's valid length in the padded batch.
        seed: seed of the Gaussian noise clips (std 0.3); atol, rtol: see ``ATOL``, ``RTOL``.
        trust_remote_code: load a folder whose config.json has ``auto_map`` (music2vec2 exports) with its own
            Python code; without it such a folder raises :class:`.hf_encoder.RemoteCodeRefusedError`.

    Returns a dict: ``unpadded_max_abs_diff``, ``padded_max_abs_diff``, ``max_abs_hidden``, ``atol``,
    ``rtol``, ``passed`` (both diffs <= atol + rtol * max_abs_hidden).
    """
    from transformers import AutoModel

    model, cfg = load_fairseq_model(Path(checkpoint))
    remote = check_remote_code(Path(hf_dir), trust_remote_code)
    hf_model = AutoModel.from_pretrained(str(hf_dir), local_files_only=True, dtype=torch.float32,
                                         trust_remote_code=remote).eval()
    samples = int(seconds * cfg.task.sample_rate)
    generator = torch.Generator().manual_seed(seed)
    audio = 0.3 * torch.randn(2, samples, generator=generator)  # (B, S)
    lengths = torch.tensor([samples, int(padded_seconds * cfg.task.sample_rate)])
    padding = torch.arange(samples)[None, :] >= lengths[:, None]  # (B, S) True = padded
    audio = audio.masked_fill(padding, 0.0)
    if cfg.task.get("normalize", False):
        for i, n in enumerate(lengths.tolist()):
            audio[i, :n] = F.layer_norm(audio[i, :n], (n,))
    spec, _ = encoder_config(cfg)

    reference = fairseq_hidden_states(model, audio)
    exported = hf_hidden_states(hf_model, audio)
    all_frames = torch.ones(reference[0].shape[:2], dtype=torch.bool)
    unpadded, scale = max_diff(reference, exported, all_frames)

    with conv_formula_padding(model, spec, lengths):
        reference = fairseq_hidden_states(model, audio, padding_mask=padding)
    exported = hf_hidden_states(hf_model, audio, attention_mask=(~padding).long())
    padded, _ = max_diff(reference, exported, ~frame_padding(lengths, reference[0].size(1), spec))

    tolerance = atol + rtol * scale
    result = {"unpadded_max_abs_diff": unpadded, "padded_max_abs_diff": padded, "max_abs_hidden": scale,
              "atol": atol, "rtol": rtol, "passed": bool(unpadded <= tolerance and padded <= tolerance)}
    logger.info("parity %s vs %s: %s", checkpoint, hf_dir, result)
    return result
