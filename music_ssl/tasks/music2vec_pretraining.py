"""The music2vec pretraining task: fairseq's audio pretraining with crops in seconds and checked manifests."""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.tasks import register_task
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig, AudioPretrainingTask

from ..data.bucketing import BUCKET_SECONDS_HELP, maybe_bucket
from ..data.crop import CROP_SECONDS_HELP, crop_samples
from ..data.manifest import read_manifest
from ..data.preflight import preflight_manifest
from .mixed_precision import BF16_AUTOCAST_HELP, Bf16AutocastMixin
from .seeded_masks import MaskIdsMixin

logger = logging.getLogger(__name__)


@dataclass
class Music2VecPretrainingConfig(AudioPretrainingConfig):
    crop_seconds: Optional[float] = field(default=None, metadata={"help": CROP_SECONDS_HELP})
    bf16_autocast: bool = field(default=False, metadata={"help": BF16_AUTOCAST_HELP})
    bucket_seconds: Optional[float] = field(default=None, metadata={"help": BUCKET_SECONDS_HELP})


@register_task("music2vec_pretraining", dataclass=Music2VecPretrainingConfig)
class Music2VecPretrainingTask(MaskIdsMixin, Bf16AutocastMixin, AudioPretrainingTask):
    """Unlabelled audio from ``{data}/{split}.tsv``, randomly cropped to ``crop_seconds``."""

    cfg: Music2VecPretrainingConfig

    def __init__(self, cfg: Music2VecPretrainingConfig):
        cfg.max_sample_size = crop_samples(cfg.crop_seconds, cfg.sample_rate, cfg.max_sample_size)
        super().__init__(cfg)

    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        preflight_manifest(f"{self.cfg.data}/{split}.tsv", self.cfg.sample_rate, self.cfg.min_sample_size)
        sizes = read_manifest(f"{self.cfg.data}/{split}.tsv").sizes  # clear error for a missing or malformed manifest
        logger.info("%s: %d clips, %.2f h", split, len(sizes), sizes.sum() / self.cfg.sample_rate / 3600)
        super().load_dataset(split, task_cfg, **kwargs)
        self.datasets[split] = maybe_bucket(self.datasets[split], self.cfg.bucket_seconds, self.cfg.sample_rate, split)
