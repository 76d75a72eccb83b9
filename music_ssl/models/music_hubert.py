"""MusicHuBERT (Ma et al. 2023, arXiv:2306.00107): HuBERT masked prediction of k-means pseudo-labels on music.

Iteration 1 predicts k-means clusters of MFCC frames (100 Hz labels), iteration 2 clusters of a layer of
the iteration-1 model (50 Hz). fairseq's :class:`HubertModel` does the work; the number of classes comes
from the task's ``dict.km.txt``. This subclass builds itself (the parent's ``build_model`` hard-codes the
parent class) and exposes every hidden state.
"""
from dataclasses import dataclass, field

from fairseq.models import register_model
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from omegaconf import II

from .fast_paths import POS_CONV_FP32_HELP, SDPA_ATTENTION_HELP, apply_fast_paths
from .hidden_states import HiddenStatesMixin
from .masking import MASK_SEED_HELP, SEEDED_MASKS_HELP, SeededMasksMixin, check_seeded_mask_settings, span_mask
from ..core.errors import ConfigError


@dataclass
class MusicHubertConfig(HubertConfig):
    """HuBERT's configuration plus our speed options; music defaults live in config/pretrain/music_hubert_*.yaml."""

    sdpa_attention: bool = field(default=False, metadata={"help": SDPA_ATTENTION_HELP})
    pos_conv_fp32: bool = field(default=True, metadata={"help": POS_CONV_FP32_HELP})
    seeded_masks: bool = field(default=False, metadata={"help": SEEDED_MASKS_HELP})
    mask_seed: int = field(default=II("common.seed"), metadata={"help": MASK_SEED_HELP})


@register_model("music_hubert", dataclass=MusicHubertConfig)
class MusicHubertModel(SeededMasksMixin, HiddenStatesMixin, HubertModel):
    """HuBERT for music (see module docstring)."""

    def __init__(self, cfg: MusicHubertConfig, task_cfg, dictionaries):
        check_seeded_mask_settings(cfg)
        if cfg.seeded_masks and cfg.mask_channel_prob > 0:
            raise ConfigError("model.seeded_masks=true does not seed HuBERT's channel masks: set "
                              "model.mask_channel_prob=0 or model.seeded_masks=false.")
        super().__init__(cfg, task_cfg, dictionaries)
        apply_fast_paths(self.encoder, cfg.sdpa_attention, cfg.pos_conv_fp32)
        self.seeded_masks = cfg.seeded_masks
        self.mask_seed = cfg.mask_seed if cfg.seeded_masks else None  # read only when used: "${common.seed}"
        self.num_updates = 0

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.num_updates = num_updates

    @classmethod
    def build_model(cls, cfg: MusicHubertConfig, task) -> "MusicHubertModel":
        return cls(cfg, task.cfg, task.dictionaries)

    def apply_mask(self, x, padding_mask, target_list):
        """The parent's masking, with ``x`` in the mask embedding's dtype (bf16 autocast makes x bf16); with
        ``seeded_masks``, time masks from :func:`span_mask` with HuBERT's settings (min_masks=2, same count per row)."""
        x = x.to(self.mask_emb.dtype)
        if not self.seeded_masks or self.mask_prob <= 0:
            return super().apply_mask(x, padding_mask, target_list)
        mask = span_mask(x.shape[:2], padding_mask, self.mask_prob, self.mask_length, min_masks=2,
                         require_same_masks=True, seed=self.mask_seed, update=self.num_updates, ids=self.mask_ids,
                         device=x.device)  # (B, T)
        x[mask] = self.mask_emb
        return x, mask
