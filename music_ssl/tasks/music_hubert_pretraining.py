"""The MusicHuBERT pretraining task: fairseq's HuBERT task with crops in seconds, label checks at load time and the
label rate read from what label prep recorded (``{split}.km.json``), not typed again."""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.criterions.hubert_criterion import HubertCriterion
from fairseq.tasks import register_task
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask
from omegaconf import II

from ..core.errors import ConfigError, LabelError
from ..data.bucketing import BUCKET_SECONDS_HELP, maybe_bucket
from ..data.crop import CROP_READING_HELP, CROP_SECONDS_HELP, crop_samples
from ..data.crop_reading_hubert_dataset import CropReadingHubertDataset
from ..data.label_alignment import TOLERANCE_SECONDS, check_label_alignment
from ..data.label_files import (MAKE_LABELS, LabelFileNotFoundError, check_label_vocabulary, check_sidecar,
                                dictionary_ids, dictionary_path, recorded_label_rate)
from ..data.manifest import read_manifest
from ..data.preflight import preflight_manifest
from .main_thread_collation import MainThreadCollationMixin
from .mixed_precision import BF16_AUTOCAST_HELP, Bf16AutocastMixin
from .seeded_masks import MaskIdsMixin

logger = logging.getLogger(__name__)


LABEL_RATE_HELP = ("labels per second (100 for MFCC labels, 50 for layer labels); -1 (default): the rate music-ssl-kmeans "
                   "recorded beside the labels ({split}.km.json). A stated rate must agree with the record")


@dataclass
class MusicHubertPretrainingConfig(HubertPretrainingConfig):
    label_rate: float = field(default=-1.0, metadata={"help": LABEL_RATE_HELP})
    crop_seconds: Optional[float] = field(default=None, metadata={"help": CROP_SECONDS_HELP})
    bf16_autocast: bool = field(default=False, metadata={"help": BF16_AUTOCAST_HELP})
    bucket_seconds: Optional[float] = field(default=None, metadata={"help": BUCKET_SECONDS_HELP})
    label_tolerance: float = field(
        default=TOLERANCE_SECONDS,
        metadata={"help": "max |audio seconds − labels / label_rate| per row before loading fails (fairseq's 0.1 s)"})
    crop_reading: bool = field(default=False, metadata={"help": CROP_READING_HELP})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of the crop offsets (task.crop_reading)"})


@register_task("music_hubert_pretraining", dataclass=MusicHubertPretrainingConfig)
class MusicHubertPretrainingTask(MaskIdsMixin, MainThreadCollationMixin, Bf16AutocastMixin, HubertPretrainingTask):
    """Audio from ``{data}/{split}.tsv`` with frame labels ``{label_dir}/{split}.{label}`` checked before use.

    Iteration 1 uses 100 Hz MFCC k-means labels, iteration 2 50 Hz layer labels: the rate label prep recorded
    beside them, kept in the task state (so a checkpoint carries it), or ``task.label_rate`` when stated (it must
    agree with the record). A label file whose lengths do not match the rate stops loading with the rate it appears
    to have.
    """

    cfg: MusicHubertPretrainingConfig

    def __init__(self, cfg: MusicHubertPretrainingConfig):
        cfg.max_sample_size = crop_samples(cfg.crop_seconds, cfg.sample_rate, cfg.max_sample_size)
        super().__init__(cfg)
        if not cfg.fine_tuning:
            self.state.add_factory("label_rate", self.resolve_label_rate)

    def resolve_label_rate(self) -> float:
        """The label rate (Hz): ``task.label_rate`` when stated, else the one recorded beside the labels; the two
        must agree. Called once (task state); a checkpoint's task state answers without the label folder."""
        stated = float(self.cfg.label_rate) if self.cfg.label_rate > 0 else None
        recorded = recorded_label_rate(self.get_label_dir(), self.cfg.labels)
        if recorded is None and stated is None:
            raise LabelError(f"{self.get_label_dir()}: no label rate recorded beside the labels ({{split}}.km.json, "
                             f"written by music-ssl-kmeans) and task.label_rate unset; set task.label_rate (100 for "
                             f"MFCC labels, 50 for layer labels) or make the labels with music-ssl-kmeans.")
        if recorded is not None and stated is not None and recorded[0] != stated:
            raise LabelError(f"{recorded[1]}: labels at {recorded[0]:g} Hz, but task.label_rate={stated:g}; drop "
                             f"task.label_rate (the recorded rate is used) or make the labels again at that rate.")
        rate = stated if stated is not None else recorded[0]
        logger.info("label rate %g Hz (%s)", rate, "task.label_rate" if stated is not None else recorded[1])
        return rate

    def use_label_rate(self, cfg=None) -> None:
        """Put the resolved label rate into the task config (and the model config ``cfg``, whose ``label_rate``
        fairseq interpolates from ``task.label_rate``) before fairseq reads it."""
        if self.cfg.fine_tuning:
            return
        rate = self.state.label_rate
        self.cfg.label_rate = rate
        if cfg is not None and getattr(cfg, "label_rate", rate) != rate:
            cfg.label_rate = rate

    def load_dictionaries(self):
        """fairseq's (called when training starts; a checkpoint carries its dictionaries), after checking that each
        ``dict.{label}.txt`` exists: fairseq's ``Dictionary.load`` raises a bare ``FileNotFoundError``."""
        label_dir = self.get_label_dir()
        for label in self.cfg.labels:
            path = dictionary_path(label_dir, label)
            if not path.is_file():
                raise LabelFileNotFoundError(f"{path}: label dictionary not found: task.label_dir={label_dir} must "
                                             f"hold {path.name} beside {{split}}.{label}; {MAKE_LABELS} (it writes "
                                             f"both).")
        return super().load_dictionaries()

    def build_model(self, cfg, from_checkpoint: bool = False):
        self.use_label_rate(cfg)
        return super().build_model(cfg, from_checkpoint)

    @staticmethod
    def logging_outputs_can_be_summed(criterion) -> bool:
        """True for the ``hubert`` criterion: its ``reduce_metrics`` only sums each key over workers, so summing
        first is exact. fairseq's default (False) routes multi-worker logging through ``all_gather_list``, which
        allocates a CUDA buffer (breaking gloo/CPU runs) and is the slower path on GPUs too."""
        return isinstance(criterion, HubertCriterion) or criterion.logging_outputs_can_be_summed()

    def load_dataset(self, split: str, **kwargs) -> None:
        preflight_manifest(f"{self.cfg.data}/{split}.tsv", self.cfg.sample_rate, self.cfg.min_sample_size)
        self.use_label_rate()
        if not self.cfg.fine_tuning:
            self.check_labels(split)
        if self.cfg.crop_reading:
            self.datasets[split] = self.crop_reading_dataset(split)
        else:
            super().load_dataset(split, **kwargs)
        self.datasets[split] = maybe_bucket(self.datasets[split], self.cfg.bucket_seconds, self.cfg.sample_rate, split)

    def crop_reading_dataset(self, split: str) -> CropReadingHubertDataset:
        """The dataset fairseq's ``load_dataset`` builds (``HubertDataset``, same arguments), reading crops only."""
        if self.cfg.fine_tuning:
            raise ConfigError("task.crop_reading is for pretraining on frame labels; set task.crop_reading=false "
                              "with task.fine_tuning=true.")
        return CropReadingHubertDataset(
            f"{self.cfg.data}/{split}.tsv", sample_rate=self.cfg.sample_rate,
            label_paths=[f"{self.get_label_dir()}/{split}.{label}" for label in self.cfg.labels],
            label_rates=self.cfg.label_rate, pad_list=[d.pad() for d in self.dictionaries],
            eos_list=[d.eos() for d in self.dictionaries], dictionaries=self.dictionaries, seed=self.cfg.seed,
            max_keep_sample_size=self.cfg.max_keep_size, min_keep_sample_size=self.cfg.min_sample_size,
            max_sample_size=self.cfg.max_sample_size, pad_audio=self.cfg.pad_audio, normalize=self.cfg.normalize,
            random_crop=self.cfg.random_crop, single_target=self.cfg.single_target)

    def check_labels(self, split: str) -> None:
        """Label lines == manifest rows, durations agree at ``label_rate``, symbols are in the dictionary."""
        manifest = read_manifest(f"{self.cfg.data}/{split}.tsv")  # read once: 100k rows are ~0.1 s
        for label, dictionary in zip(self.cfg.labels, self.dictionaries):
            path, symbols = f"{self.get_label_dir()}/{split}.{label}", dictionary.symbols[dictionary.nspecial:]
            k = dictionary_ids(symbols)  # ids 0..k-1 (label prep's): checked in the alignment's one pass
            check_sidecar(path, len(symbols), self.cfg.label_rate, manifest)
            alignment = check_label_alignment(manifest, path, self.cfg.label_rate, self.cfg.sample_rate,
                                              self.cfg.label_tolerance, k)
            if k is None:
                check_label_vocabulary(path, symbols)
            logger.info("%s: %d rows aligned at %g Hz, k=%d", path, len(alignment.num_labels), self.cfg.label_rate,
                        len(dictionary) - dictionary.nspecial)
