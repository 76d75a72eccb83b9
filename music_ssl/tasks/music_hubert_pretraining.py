"""The MusicHuBERT pretraining task: fairseq's HuBERT task with crops in seconds and label checks at load time."""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.criterions.hubert_criterion import HubertCriterion
from fairseq.tasks import register_task
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask

from ..data.bucketing import BUCKET_SECONDS_HELP, maybe_bucket
from ..data.crop import CROP_SECONDS_HELP, crop_samples
from ..data.label_alignment import TOLERANCE_SECONDS, check_label_alignment, check_label_vocabulary
from ..data.preflight import preflight_manifest
from .mixed_precision import BF16_AUTOCAST_HELP, Bf16AutocastMixin
from .seeded_masks import MaskIdsMixin

logger = logging.getLogger(__name__)


@dataclass
class MusicHubertPretrainingConfig(HubertPretrainingConfig):
    crop_seconds: Optional[float] = field(default=None, metadata={"help": CROP_SECONDS_HELP})
    bf16_autocast: bool = field(default=False, metadata={"help": BF16_AUTOCAST_HELP})
    bucket_seconds: Optional[float] = field(default=None, metadata={"help": BUCKET_SECONDS_HELP})
    label_tolerance: float = field(
        default=TOLERANCE_SECONDS,
        metadata={"help": "max |audio seconds − labels / label_rate| per row before loading fails (fairseq's 0.1 s)"})


@register_task("music_hubert_pretraining", dataclass=MusicHubertPretrainingConfig)
class MusicHubertPretrainingTask(MaskIdsMixin, Bf16AutocastMixin, HubertPretrainingTask):
    """Audio from ``{data}/{split}.tsv`` with frame labels ``{label_dir}/{split}.{label}`` checked before use.

    Iteration 1 uses 100 Hz MFCC k-means labels, iteration 2 50 Hz layer labels (``task.label_rate``);
    a label file whose lengths do not match ``label_rate`` stops loading with the rate it appears to have.
    """

    cfg: MusicHubertPretrainingConfig

    def __init__(self, cfg: MusicHubertPretrainingConfig):
        cfg.max_sample_size = crop_samples(cfg.crop_seconds, cfg.sample_rate, cfg.max_sample_size)
        super().__init__(cfg)

    @staticmethod
    def logging_outputs_can_be_summed(criterion) -> bool:
        """True for the ``hubert`` criterion: its ``reduce_metrics`` only sums each key over workers, so summing
        first is exact. fairseq's default (False) routes multi-worker logging through ``all_gather_list``, which
        allocates a CUDA buffer (breaking gloo/CPU runs) and is the slower path on GPUs too."""
        return isinstance(criterion, HubertCriterion) or criterion.logging_outputs_can_be_summed()

    def load_dataset(self, split: str, **kwargs) -> None:
        preflight_manifest(f"{self.cfg.data}/{split}.tsv", self.cfg.sample_rate, self.cfg.min_sample_size)
        if not self.cfg.fine_tuning:
            self.check_labels(split)
        super().load_dataset(split, **kwargs)
        self.datasets[split] = maybe_bucket(self.datasets[split], self.cfg.bucket_seconds, self.cfg.sample_rate, split)

    def check_labels(self, split: str) -> None:
        """Label lines == manifest rows, durations agree at ``label_rate``, symbols are in the dictionary."""
        manifest = f"{self.cfg.data}/{split}.tsv"
        for label, dictionary in zip(self.cfg.labels, self.dictionaries):
            path = f"{self.get_label_dir()}/{split}.{label}"
            alignment = check_label_alignment(manifest, path, self.cfg.label_rate, self.cfg.sample_rate,
                                              self.cfg.label_tolerance)
            check_label_vocabulary(path, dictionary.symbols[dictionary.nspecial:])
            logger.info("%s: %d rows aligned at %g Hz, k=%d", path, len(alignment.num_labels), self.cfg.label_rate,
                        len(dictionary) - dictionary.nspecial)
