"""What a loaded probing dataset is: labelled audio items with splits, plus how to pool their features."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ...core.fingerprint import data_sha256
from ..errors import ProbeConfigError, ProbeDataError

SPLITS = ("train", "valid", "test")
POOLINGS = ("clip", "window", "frames")
AGGREGATES = (None, "mean")
BEAT_AVERAGES = ("pooled", "per_file")
BEAT_TRAININGS = ("frames", "marble")
RULE_KEYS = ("pooling", "window_seconds", "hop_seconds", "aggregate", "beat_tolerance", "beat_average",
             "beat_neighbour_weight", "beat_training", "beat_crop_seconds", "encode", "min_window_seconds",
             "first_seconds", "waveform_norm", "trim_silence",
             "beat_crop_encode", "beat_crop_hop_seconds")  # what a protocol's rules or a task entry may set
# (the last two are the runner's: assemble.BeatCrops takes them out before the dataset is loaded)


@dataclass
class Item:
    """One labelled audio file.

    Attributes:
        path: the audio file.
        label: multiclass: str; multilabel: list[str]; regression: list[float]; key: str like "F# minor";
            beat: list/array of beat times in seconds.
        split: "train", "valid" or "test".
        uid: the item's id in JukeMIR's released metadata (names its precomputed feature file), or None.
    """
    path: Path
    label: Any
    split: str
    uid: Optional[str] = None


@dataclass
class ProbeDataset:
    """A task as loaded from disk.

    Attributes:
        name: registry name (or the user's name for a CSV task).
        type: one of ``music_ssl.probe.task_types.TASK_TYPES``.
        items: every labelled item of every split.
        classes: label vocabulary (multiclass / multilabel), in output order; None = sorted labels seen.
        output_names: regression target names, e.g. ["arousal", "valence"].
        pooling: "clip" (mean of window means -> one vector per item), "window" (each window is an item,
            grouped by file), "frames" (frame-level features, beat tracking).
        window_seconds / hop_seconds: pooling window (None = the whole clip is one window).
        aggregate: window pooling only: None = every window is scored on its own (VocalSet's 3-s segments);
            "mean" = on valid/test the windows' outputs (logits / regression values) are averaged per file and
            the file is scored (Emomusic's 5-s windows in Ma et al. 2023 §3.2, MuLaP's 3-s segments §3.3,
            MARBLE's scatter_mean). Training always uses the windows as items.
        beat_tolerance: beat F-measure window in seconds (mir_eval's ``f_measure_threshold``; default 0.07,
            which MARBLE's code and mir_eval use and which produced the published numbers; Ma et al. §3.2 state
            20 ms). beat_average: "pooled" = matches, estimates and references summed over files, then one F
            (MARBLE's GTZANBT_metric.py); "per_file" = the mean of each file's F.
        beat_neighbour_weight: frame target on the frames either side of a beat (1.0 = "adjacent frames
            labelled as beat", Ma et al. §3.2; 0.5 = a softer smoothing).
        beat_training: "frames" (cheap): batches of random frames, early stopping and LR schedule on the valid
            frame average precision, neighbour targets in every split; "marble" (MARBLE's
            ``GTZANBT_base_config.yaml`` / ``GTZANBT_dataset.py`` / ``GTZANBT_prober.py``): batches of
            ``beat_crop_seconds`` random crops (one per file), epochs counted in files, early stopping, LR schedule
            and the kept point on the valid beat F after madmom's DBN, neighbour targets in training only. Configs
            are chosen on the valid beat F either way.
        encode / min_window_seconds / first_seconds / waveform_norm / trim_silence: how the audio reaches the
            encoder (``features.encoding.Encoding``): "file" = the whole file encoded, windows pooled from its
            frames; "window" = each pooling window encoded alone (MARBLE's and MuLaP's code).
        skipped: reason -> count of items the loader left out (reported, never silent).
    """
    name: str
    type: str
    items: list
    classes: Optional[list] = None
    output_names: Optional[list] = None
    pooling: str = "clip"
    window_seconds: Optional[float] = None
    hop_seconds: Optional[float] = None
    aggregate: Optional[str] = None
    beat_tolerance: float = 0.07
    beat_average: str = "pooled"
    beat_neighbour_weight: float = 0.5
    beat_training: str = "frames"
    beat_crop_seconds: float = 10.0
    encode: str = "file"
    min_window_seconds: Optional[float] = None
    first_seconds: Optional[float] = None
    waveform_norm: str = "model"
    trim_silence: bool = False
    skipped: dict = field(default_factory=dict)

    def encoding(self):
        """The ``features.encoding.Encoding`` of this task's features (checks its fields)."""
        from ..features.encoding import Encoding

        try:
            return Encoding(self.encode, self.window_seconds, self.hop_seconds, self.min_window_seconds,
                            self.first_seconds, self.waveform_norm, bool(self.trim_silence))
        except ProbeConfigError as err:
            raise ProbeConfigError(f"task {self.name}: {err}") from None

    def split_items(self, split: str) -> list:
        return [item for item in self.items if item.split == split]

    def validate(self) -> None:
        """Raise :class:`ProbeDataError` unless every split is present and every split name is known."""
        bad = sorted({item.split for item in self.items} - set(SPLITS))
        if bad:
            raise ProbeDataError(f"task {self.name}: unknown split names {bad}; use train/valid/test.")
        for split in SPLITS:
            if not self.split_items(split):
                raise ProbeDataError(f"task {self.name}: the {split} split is empty; every task needs "
                                     "train, valid and test items.")
        if self.pooling not in POOLINGS:
            raise ProbeDataError(f"task {self.name}: pooling {self.pooling!r} is not one of {POOLINGS}.")
        if self.aggregate not in AGGREGATES:
            raise ProbeDataError(f"task {self.name}: aggregate {self.aggregate!r} is not one of {AGGREGATES}.")
        if self.beat_average not in BEAT_AVERAGES:
            raise ProbeDataError(f"task {self.name}: beat_average {self.beat_average!r} is not one of "
                                 f"{BEAT_AVERAGES}.")
        if not self.beat_tolerance > 0:
            raise ProbeDataError(f"task {self.name}: beat_tolerance must be > 0 seconds, got {self.beat_tolerance}.")
        if self.beat_training not in BEAT_TRAININGS or not self.beat_crop_seconds > 0:
            raise ProbeDataError(f"task {self.name}: beat_training {self.beat_training!r} must be one of "
                                 f"{BEAT_TRAININGS} and beat_crop_seconds > 0 (got {self.beat_crop_seconds}).")
        self.encoding()

    def split_checksums(self) -> dict:
        """split -> sha256 of its sorted ``path<TAB>label`` lines (to tell whether two runs used the same split)."""
        out = {}
        for split in SPLITS:
            lines = sorted(f"{item.path}\t{_label_text(item.label)}" for item in self.split_items(split))
            out[split] = data_sha256("\n".join(lines))
        return out


def _label_text(label) -> str:
    if isinstance(label, (list, tuple)):
        return ";".join(map(str, label))
    if hasattr(label, "tolist"):
        return ";".join(map(str, label.tolist()))
    return str(label)


@dataclass
class DatasetSpec:
    """A registry entry: how to load one task from its dataset's official on-disk layout.

    Attributes:
        type: task type name (multiclass, multilabel, regression, key, beat).
        loader: ``loader(root: Path, **options) -> ProbeDataset``.
        layout: one line describing the expected on-disk layout (shown in errors and ``--list-tasks``).
        pooling / window_seconds / hop_seconds: defaults (overridable per task in the probe config).
    """
    type: str
    loader: Callable
    layout: str
    pooling: str = "clip"
    window_seconds: Optional[float] = None
    hop_seconds: Optional[float] = None
