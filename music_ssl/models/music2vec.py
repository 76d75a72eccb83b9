"""music2vec (Li et al. 2022, arXiv:2212.02508): data2vec-audio pretraining on music.

The student sees masked audio and regresses the average of the top-K layers of an EMA teacher that sees
the whole clip. fairseq's :class:`Data2VecAudioModel` already implements the student, the EMA teacher
(:class:`fairseq.modules.EMAModule`, decay annealed linearly from ``ema_decay`` to ``ema_end_decay`` over
``ema_anneal_end_step`` updates), the top-K average and the instance-normalised targets; this subclass
only sets the music2vec defaults, validates them, works on CPU process groups too, and exposes every
hidden state for probing and label iteration 2.
"""
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from fairseq.examples.data2vec.models.data2vec_audio import Data2VecAudioConfig, Data2VecAudioModel
from fairseq.models import register_model
from omegaconf import II

from .fast_paths import POS_CONV_FP32_HELP, SDPA_ATTENTION_HELP, apply_fast_paths
from .hidden_states import HiddenStatesMixin
from .masking import MASK_SEED_HELP, SEEDED_MASKS_HELP, SeededMasksMixin, check_seeded_mask_settings, span_mask
from ..core.errors import ConfigError


@dataclass
class Music2VecConfig(Data2VecAudioConfig):
    """data2vec-audio with the music2vec paper's target defaults (top-8 layers, instance norm per layer)."""

    average_top_k_layers: int = field(
        default=8, metadata={"help": "teacher layers averaged into the target (music2vec: 8 base, 12 ablation)"})
    instance_norm_target_layer: bool = field(
        default=True, metadata={"help": "instance-normalise each teacher layer over time before averaging"})
    sdpa_attention: bool = field(default=False, metadata={"help": SDPA_ATTENTION_HELP})
    pos_conv_fp32: bool = field(default=True, metadata={"help": POS_CONV_FP32_HELP})
    seeded_masks: bool = field(default=False, metadata={"help": SEEDED_MASKS_HELP})
    mask_seed: int = field(default=II("common.seed"), metadata={"help": MASK_SEED_HELP})


@register_model("music2vec", dataclass=Music2VecConfig)
class Music2VecModel(SeededMasksMixin, HiddenStatesMixin, Data2VecAudioModel):
    """data2vec-audio student + EMA teacher, for music (see module docstring)."""

    def __init__(self, cfg: Music2VecConfig):
        if not 1 <= cfg.average_top_k_layers <= cfg.encoder_layers:
            raise ConfigError(f"model.average_top_k_layers={cfg.average_top_k_layers} must be in "
                              f"1..model.encoder_layers={cfg.encoder_layers}: set it to at most the number of layers.")
        check_seeded_mask_settings(cfg)
        super().__init__(cfg)
        apply_fast_paths(self.encoder, cfg.sdpa_attention, cfg.pos_conv_fp32)  # the EMA teacher copies it later
        self.seeded_masks = cfg.seeded_masks

    def apply_mask(self, x, padding_mask, mask_indices=None, mask_channel_indices=None):
        """The parent's masking, with ``x`` in the mask embedding's dtype (bf16 autocast makes x bf16) and, with
        ``seeded_masks``, time masks from :func:`span_mask` (data2vec's settings: min_masks=1, its own
        require_same_masks and mask_dropout)."""
        x = x.to(self.mask_emb.dtype)
        if self.seeded_masks and self.mask_prob > 0 and mask_indices is None:
            mask_indices = span_mask(x.shape[:2], padding_mask, self.mask_prob, self.mask_length, min_masks=1,
                                     require_same_masks=self.cfg.require_same_masks,
                                     mask_dropout=self.cfg.mask_dropout, seed=self.cfg.mask_seed,
                                     update=self.num_updates, ids=self.mask_ids, device=x.device)
        return super().apply_mask(x, padding_mask, mask_indices, mask_channel_indices)

    @staticmethod
    def compute_var(y: torch.Tensor) -> torch.Tensor:
        """Mean over channels of the std of ``y`` (N, C) across all workers; works on gloo (CPU) as well.

        The parent moves the count to CUDA unconditionally, which breaks CPU process groups.
        """
        y = y.view(-1, y.size(-1))
        if not (dist.is_available() and dist.is_initialized()):
            return torch.sqrt(y.var(dim=0) + 1e-6).mean()
        count = torch.tensor(float(y.size(0)), device=y.device)
        total, total_sq = y.sum(dim=0), (y ** 2).sum(dim=0)
        for value in (count, total, total_sq):
            dist.all_reduce(value)
        var = total_sq / (count - 1) - total ** 2 / (count * (count - 1))
        return torch.sqrt(var + 1e-6).mean()
