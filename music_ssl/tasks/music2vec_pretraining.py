"""The music2vec pretraining task: fairseq's audio pretraining with crops in seconds and checked manifests."""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.tasks import register_task
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig, AudioPretrainingTask

from ..core.errors import ConfigError
from ..data.bucketing import BUCKET_SECONDS_HELP, maybe_bucket
from ..data.crop import CROP_READING_HELP, CROP_SECONDS_HELP, crop_samples
from ..data.crop_reading_audio_dataset import CropReadingAudioDataset
from ..data.manifest import read_manifest
from ..data.preflight import preflight_manifest
from .main_thread_collation import MainThreadCollationMixin
from .mixed_precision import BF16_AUTOCAST_HELP, Bf16AutocastMixin
from .seeded_masks import MaskIdsMixin

logger = logging.getLogger(__name__)


@dataclass
class Music2VecPretrainingConfig(AudioPretrainingConfig):
    crop_seconds: Optional[float] = field(default=None, metadata={"help": CROP_SECONDS_HELP})
    bf16_autocast: bool = field(default=False, metadata={"help": BF16_AUTOCAST_HELP})
    bucket_seconds: Optional[float] = field(default=None, metadata={"help": BUCKET_SECONDS_HELP})
    crop_reading: bool = field(default=False, metadata={"help": CROP_READING_HELP})


@register_task("music2vec_pretraining", dataclass=Music2VecPretrainingConfig)
class Music2VecPretrainingTask(MaskIdsMixin, MainThreadCollationMixin, Bf16AutocastMixin, AudioPretrainingTask):
    """Unlabelled audio from ``{data}/{split}.tsv``, randomly cropped to ``crop_seconds``."""

    cfg: Music2VecPretrainingConfig

    def __init__(self, cfg: Music2VecPretrainingConfig):
        cfg.max_sample_size = crop_samples(cfg.crop_seconds, cfg.sample_rate, cfg.max_sample_size)
        super().__init__(cfg)

    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        preflight_manifest(f"{self.cfg.data}/{split}.tsv", self.cfg.sample_rate, self.cfg.min_sample_size)
        sizes = read_manifest(f"{self.cfg.data}/{split}.tsv").sizes  # clear error for a missing or malformed manifest
        logger.info("%s: %d clips, %.2f h", split, len(sizes), sizes.sum() / self.cfg.sample_rate / 3600)
        if self.cfg.crop_reading:
            self.datasets[split] = self.crop_reading_dataset(split, task_cfg or self.cfg)
        else:
            super().load_dataset(split, task_cfg, **kwargs)
        self.datasets[split] = maybe_bucket(self.datasets[split], self.cfg.bucket_seconds, self.cfg.sample_rate, split)

    def crop_reading_dataset(self, split: str, task_cfg) -> CropReadingAudioDataset:
        """The dataset fairseq's ``load_dataset`` builds (``FileAudioDataset``, same arguments), reading crops only."""
        if getattr(task_cfg, "binarized_dataset", False) or getattr(task_cfg, "multi_corpus_keys", None):
            raise ConfigError("task.crop_reading reads {split}.tsv manifests: it does not work with "
                              "task.binarized_dataset or task.multi_corpus_keys; set task.crop_reading=false.")
        mask_args = getattr(task_cfg, "precompute_mask_config", None)
        return CropReadingAudioDataset(
            f"{self.cfg.data}/{split}.tsv", sample_rate=task_cfg.get("sample_rate", self.cfg.sample_rate),
            max_sample_size=self.cfg.max_sample_size, min_sample_size=self.cfg.min_sample_size,
            pad=task_cfg.labels is not None or task_cfg.enable_padding, normalize=task_cfg.normalize,
            num_buckets=self.cfg.num_batch_buckets or int(self.cfg.tpu), compute_mask=mask_args is not None,
            seed=self.cfg.seed, **(mask_args or {}))
