"""The task registry: name -> ``TaskSpec`` (type, loader of the dataset's official layout, pooling defaults).

Every loader takes the dataset root and options from the probe config's task entry and returns a
``TaskData``; missing files raise one error naming the file and the layout expected. ``csv`` is the generic
task for any user dataset (``path,label[,split]``, type chosen in the config).
"""
from dataclasses import replace
from functools import partial
from pathlib import Path

from ..errors import ProbeConfigError
from .csv_task import load_csv_task
from .emomusic import load_emomusic
from .giantsteps import load_giantsteps
from .gtzan import load_gtzan
from .gtzan_rhythm import load_gtzan_rhythm
from .mtg_jamendo import load_mtg_jamendo
from .mtt import load_mtt
from .nsynth import load_nsynth_instrument, load_nsynth_pitch
from .task import Item, TaskData, TaskSpec
from .vocalset import load_vocalset_singer, load_vocalset_technique
from . import csv_task, emomusic, giantsteps, gtzan, gtzan_rhythm, mtg_jamendo, mtt, nsynth, vocalset

TASKS = {
    "mtt_top50": TaskSpec("multilabel", load_mtt, mtt.LAYOUT),
    "gtzan_genre": TaskSpec("multiclass", load_gtzan, gtzan.LAYOUT),
    "giantsteps_key": TaskSpec("key", load_giantsteps, giantsteps.LAYOUT, "window", 30.0, 30.0),
    "emomusic": TaskSpec("regression", load_emomusic, emomusic.LAYOUT),
    "nsynth_instrument": TaskSpec("multiclass", load_nsynth_instrument, nsynth.LAYOUT),
    "nsynth_pitch": TaskSpec("multiclass", load_nsynth_pitch, nsynth.LAYOUT),
    "vocalset_technique": TaskSpec("multiclass", load_vocalset_technique, vocalset.LAYOUT, "window", 3.0, 3.0),
    "vocalset_singer": TaskSpec("multiclass", load_vocalset_singer, vocalset.LAYOUT, "window", 3.0, 3.0),
    "gtzan_beat": TaskSpec("beat", load_gtzan_rhythm, gtzan_rhythm.LAYOUT, "frames"),
    **{f"mtg_{subset}": TaskSpec("multilabel", partial(load_mtg_jamendo, subset=subset), mtg_jamendo.LAYOUT,
                                 "clip", 30.0, 30.0) for subset in mtg_jamendo.SUBSETS},
    "csv": TaskSpec("(config)", load_csv_task, csv_task.LAYOUT),
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ProbeConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}.")
    return TASKS[name]


def load_task(name: str, root=None, pooling=None, window_seconds=None, hop_seconds=None, **options) -> TaskData:
    """Load a registry task (``root`` = dataset root; for ``csv``: ``path`` and ``type``) and apply pooling
    overrides; the result is validated (three non-empty splits)."""
    spec = get_task(name)
    if name == "csv":
        if not options.get("path"):
            raise ProbeConfigError("task csv needs `path` (the CSV file) and `type` in its config entry.")
        task = spec.loader(**options)
        if task.type == "beat":
            task.pooling = "frames"
        elif task.type == "key":
            task.pooling, task.window_seconds, task.hop_seconds = "window", 30.0, 30.0
    else:
        if root is None:
            raise ProbeConfigError(f"task {name} needs `root`: the dataset folder ({spec.layout}).")
        task = spec.loader(Path(root), **options)
        task = replace(task, pooling=spec.pooling, window_seconds=spec.window_seconds, hop_seconds=spec.hop_seconds)
    if pooling is not None:
        task.pooling = pooling
    if window_seconds is not None:
        task.window_seconds = float(window_seconds)
    if hop_seconds is not None:
        task.hop_seconds = float(hop_seconds)
    task.validate()
    return task


__all__ = ["TASKS", "get_task", "load_task", "Item", "TaskData", "TaskSpec"]
