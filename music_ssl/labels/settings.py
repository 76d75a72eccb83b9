"""Label-preparation settings: one typed object per stage; defaults, help and value checks stated once, here.

:class:`LabelSettings` (what :func:`music_ssl.labels.run_all` / ``music-ssl-kmeans all`` takes) holds
:class:`FeatureSettings` (what the frames are: :func:`music_ssl.labels.make_extractor`), :class:`FitSettings`
(k-means and its frame sample: :func:`music_ssl.labels.fit_stage`) and :class:`CheckSettings` (the checks of the
written labels), plus the splits, shards, feature folder and device. Every field's ``help`` is also the help of
its ``music-ssl-kmeans`` flag: the flag is the field name with dashes (``max_sample_gb`` ↔ ``--max-sample-gb``).

Values are checked when a settings object is made (``__post_init__``; the objects are frozen, so they stay
checked): a bad one raises :class:`LabelPrepError` naming the setting, e.g. ``percent=2: must be in (0, 1] …``.
What depends on the data (k against the frames a split has, a layer against the checkpoint's depth, the memory
budget against the feature size) is checked by the stage that reads the data.
"""
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Optional, Tuple

from fairseq.dataclass import ChoiceEnum

from ..data.label_alignment import TOLERANCE_SECONDS
from .errors import LabelPrepError

FEATURE_CHOICES = ChoiceEnum(["mfcc", "layer"])
BACKEND_CHOICES = ChoiceEnum(["torch", "sklearn"])
SAMPLE_UNIT_CHOICES = ChoiceEnum(["frames", "utterances"])
MAX_SAMPLE_GB = 8.0  # default memory budget of the fitted sample (float32 frames); see labels/sampling.py


def choices(enum) -> list:
    """The allowed values of a ``ChoiceEnum`` field type, as strings."""
    return [member.value for member in enum]


def check_settings(settings) -> None:
    """Normalise ``ChoiceEnum`` fields to their string value; LabelPrepError naming a field whose value is not
    one of its choices."""
    for f in fields(settings):
        if isinstance(f.type, type) and issubclass(f.type, Enum):
            value = getattr(settings, f.name)
            value = value.value if isinstance(value, Enum) else value
            if value not in choices(f.type):
                raise LabelPrepError(f"{f.name}={value!r}: unknown; choose one of {', '.join(choices(f.type))}.")
            object.__setattr__(settings, f.name, value)


def require(ok: bool, name: str, value, why: str) -> None:
    """LabelPrepError ``"{name}={value!r}: {why}"`` unless ``ok``."""
    if not ok:
        raise LabelPrepError(f"{name}={value!r}: {why}")


@dataclass(frozen=True)
class FeatureSettings:
    """What the frames are: MFCC (label iteration 1, 100 Hz) or a checkpoint's hidden state (iteration 2, 50 Hz)."""

    feature: FEATURE_CHOICES = field(default="mfcc", metadata={
        "help": "mfcc: kaldi MFCC + deltas + delta-deltas (100 Hz, label iteration 1); layer: hidden state `layer` "
                "of `checkpoint` (50 Hz, iteration 2)"})
    n_mfcc: int = field(default=13, metadata={"help": "MFCC coefficients: 13 → 39-d features, 20 → 60-d"})
    checkpoint: Optional[str] = field(default=None, metadata={
        "help": "music2vec / MusicHuBERT checkpoint (.pt) whose hidden states are clustered (feature=layer)"})
    layer: Optional[int] = field(default=None, metadata={
        "help": "hidden state of `checkpoint` (feature=layer): 0 = the Transformer input, i = output of layer i"})
    chunk_seconds: float = field(default=30.0, metadata={
        "help": "feature=layer: long files are encoded in chunks of this many seconds (memory stays bounded)"})

    def __post_init__(self):
        check_settings(self)
        require(self.n_mfcc >= 1, "n_mfcc", self.n_mfcc, "must be at least 1 (13 gives 39-d features).")
        require(self.chunk_seconds > 0, "chunk_seconds", self.chunk_seconds, "must be positive.")
        require(self.layer is None or self.layer >= 0, "layer", self.layer,
                "must be 0 (the Transformer input) or more.")
        if self.feature == "layer" and (self.checkpoint is None or self.layer is None):
            raise LabelPrepError(f"feature='layer' needs checkpoint (a music2vec / MusicHuBERT .pt) and layer (the "
                                 f"hidden state to cluster); got checkpoint={self.checkpoint!r}, layer={self.layer!r}.")


@dataclass(frozen=True)
class FitSettings:
    """k-means and the frame sample it is fitted on (the sample-size rule: :mod:`music_ssl.labels.sampling`)."""

    n_clusters: int = field(default=500, metadata={"help": "k: clusters, the size of the label vocabulary"})
    percent: float = field(default=0.1, metadata={
        "help": "fraction of the split's frames (sample_unit=frames) or utterances (sample_unit=utterances) to fit "
                "on, in (0, 1] (fairseq's recipe: 0.1 of the utterances); the sample holds at least 256 frames per "
                "cluster (or all frames)"})
    sample_unit: SAMPLE_UNIT_CHOICES = field(default="frames", metadata={
        "help": "frames: frames drawn one by one from the whole split (ours); utterances: whole manifest rows, "
                "as fairseq's learn_kmeans (but drawn over the split, not per shard); both keep the 256 frames per "
                "cluster floor and the max_frames / max_sample_gb cap (rule: music_ssl/labels/sampling.py)"})
    max_frames: Optional[int] = field(default=None, metadata={
        "help": "fixed cap of the fitted sample in frames (none by default: max_sample_gb caps it)"})
    max_sample_gb: float = field(default=MAX_SAMPLE_GB, metadata={
        "help": "memory budget of the fitted sample in GiB, frames × dim × 4 bytes"})
    backend: BACKEND_CHOICES = field(default="torch", metadata={
        "help": "torch: k-means++ then Lloyd, on the GPU when present; sklearn: fairseq's MiniBatchKMeans (parity)"})
    seed: int = field(default=0, metadata={"help": "seed of the frame sample and of the k-means initialisation"})
    max_iter: int = field(default=100, metadata={"help": "torch backend: Lloyd iterations at most"})
    tol: float = field(default=1e-3, metadata={
        "help": "torch backend: stop when the inertia improves by less than this fraction"})

    def __post_init__(self):
        check_settings(self)
        require(self.n_clusters >= 1, "n_clusters", self.n_clusters, "must be at least 1.")
        require(0.0 < self.percent <= 1.0, "percent", self.percent,
                "must be in (0, 1] (the fraction of frames or utterances to fit on; 1 = all).")
        require(self.max_frames is None or self.max_frames >= self.n_clusters, "max_frames", self.max_frames,
                f"must be at least n_clusters={self.n_clusters} (k-means needs a frame per cluster).")
        require(self.max_sample_gb > 0, "max_sample_gb", self.max_sample_gb, "must be positive.")
        require(self.max_iter >= 1, "max_iter", self.max_iter, "must be at least 1.")
        require(self.tol >= 0, "tol", self.tol, "must be 0 or more.")


@dataclass(frozen=True)
class CheckSettings:
    """The checks of the written labels (alignment with the manifest, cluster-quality report)."""

    reference: Optional[str] = field(default=None, metadata={
        "help": "CSV with a `path` column and a class column: purity / PNMI of the clusters (none: no reference)"})
    reference_column: str = field(default="label", metadata={"help": "class column of the reference CSV"})
    tolerance: float = field(default=TOLERANCE_SECONDS, metadata={
        "help": "largest |audio seconds − labels / label_rate| of a row, in seconds (fairseq's value)"})

    def __post_init__(self):
        require(self.tolerance >= 0, "tolerance", self.tolerance, "must be 0 or more seconds.")
        require(bool(self.reference_column), "reference_column", self.reference_column, "must name a column.")


@dataclass(frozen=True)
class LabelSettings:
    """Everything label prep (``run_all``) needs besides the manifest folder and the output folder."""

    features: FeatureSettings = field(default_factory=FeatureSettings, metadata={"help": "the frame features"})
    fit: FitSettings = field(default_factory=FitSettings, metadata={"help": "k-means and its sample"})
    check: CheckSettings = field(default_factory=CheckSettings, metadata={"help": "the checks of the labels"})
    splits: Tuple[str, ...] = field(default=("train", "valid"), metadata={
        "help": "splits to label (TSV_DIR/{split}.tsv); k-means is fitted on the first"})
    nshard: int = field(default=1, metadata={"help": "feature / label shards per split"})
    feat_dir: Optional[str] = field(default=None, metadata={
        "help": "folder of the feature shards (none: OUT_DIR/feat)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cuda, cuda:1 or cpu"})

    def __post_init__(self):
        splits = (self.splits,) if isinstance(self.splits, str) else tuple(self.splits)
        require(len(splits) > 0 and len(set(splits)) == len(splits), "splits", list(splits),
                "must name at least one split, each once.")
        object.__setattr__(self, "splits", splits)
        require(self.nshard >= 1, "nshard", self.nshard, "must be at least 1.")

    @classmethod
    def from_flat(cls, **values) -> "LabelSettings":
        """Settings from flat names (``n_clusters=8, percent=1.0, device="cpu"``: what a command line parses),
        each given to the part that has it; a name no part has is a TypeError."""
        parts = {f.name: f.type for f in fields(cls) if f.name in ("features", "fit", "check")}
        nested = {name: part(**{f.name: values.pop(f.name) for f in fields(part) if f.name in values})
                  for name, part in parts.items()}
        return cls(**nested, **values)
