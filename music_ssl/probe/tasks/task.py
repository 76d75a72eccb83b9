"""What a loaded probing task is: labelled audio items with splits, plus how to pool their features."""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ProbeDataError

SPLITS = ("train", "valid", "test")
POOLINGS = ("clip", "window", "frames")


@dataclass
class Item:
    """One labelled audio file.

    Attributes:
        path: the audio file.
        label: multiclass: str; multilabel: list[str]; regression: list[float]; key: str like "F# minor";
            beat: list/array of beat times in seconds.
        split: "train", "valid" or "test".
    """
    path: Path
    label: Any
    split: str


@dataclass
class TaskData:
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
    skipped: dict = field(default_factory=dict)

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

    def split_checksums(self) -> dict:
        """split -> sha256 of its sorted ``path<TAB>label`` lines (to tell whether two runs used the same split)."""
        out = {}
        for split in SPLITS:
            lines = sorted(f"{item.path}\t{_label_text(item.label)}" for item in self.split_items(split))
            out[split] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return out


def _label_text(label) -> str:
    if isinstance(label, (list, tuple)):
        return ";".join(map(str, label))
    if hasattr(label, "tolist"):
        return ";".join(map(str, label.tolist()))
    return str(label)


@dataclass
class TaskSpec:
    """A registry entry: how to load one task from its dataset's official on-disk layout.

    Attributes:
        type: task type name (multiclass, multilabel, regression, key, beat).
        loader: ``loader(root: Path, **options) -> TaskData``.
        layout: one line describing the expected on-disk layout (shown in errors and ``--list-tasks``).
        pooling / window_seconds / hop_seconds: defaults (overridable per task in the probe config).
    """
    type: str
    loader: Callable
    layout: str
    pooling: str = "clip"
    window_seconds: Optional[float] = None
    hop_seconds: Optional[float] = None
