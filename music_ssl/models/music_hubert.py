"""MusicHuBERT (Ma et al. 2023, arXiv:2306.00107): HuBERT masked prediction of k-means pseudo-labels on music.

Iteration 1 predicts k-means clusters of MFCC frames (100 Hz labels), iteration 2 clusters of a layer of
the iteration-1 model (50 Hz). fairseq's :class:`HubertModel` does the work; the number of classes comes
from the task's ``dict.km.txt``. This subclass builds itself (the parent's ``build_model`` hard-codes the
parent class) and exposes every hidden state.
"""
from dataclasses import dataclass

from fairseq.models import register_model
from fairseq.models.hubert.hubert import HubertConfig, HubertModel

from .hidden_states import HiddenStatesMixin


@dataclass
class MusicHubertConfig(HubertConfig):
    """HuBERT's configuration; music defaults live in config/pretrain/music_hubert_*.yaml."""


@register_model("music_hubert", dataclass=MusicHubertConfig)
class MusicHubertModel(HiddenStatesMixin, HubertModel):
    """HuBERT for music (see module docstring)."""

    @classmethod
    def build_model(cls, cfg: MusicHubertConfig, task) -> "MusicHubertModel":
        return cls(cfg, task.cfg, task.dictionaries)

    def apply_mask(self, x, padding_mask, target_list):
        """The parent's masking, with ``x`` in the mask embedding's dtype (bf16 autocast makes x bf16)."""
        return super().apply_mask(x.to(self.mask_emb.dtype), padding_mask, target_list)
