"""The registry of MIR probing datasets: name -> ``DatasetSpec`` (task type, loader of the dataset's official layout,
pooling defaults). The probe config calls each entry a *task* (the MIR word: tagging, genre, key, …); the code calls
what is loaded a dataset, keeping "task" for fairseq's pretraining tasks (``music_ssl/tasks/``).

Every loader takes the dataset root and options from the probe config's task entry and returns a
``ProbeDataset``; missing files raise one error naming the file and the layout expected. ``csv`` is the generic
task for any user dataset (``path,label[,split]``, type chosen in the config). Pooling defaults: clip tasks
average the whole clip (MTG-Jamendo: the mean of 30-s window means), Giantsteps and CSV key tasks make every
30-s window an item (ensembled to songs), VocalSet every 3-s window, beat tasks use frames.
"""
import inspect
from dataclasses import replace
from functools import partial
from pathlib import Path

from ..errors import ProbeConfigError
from . import csv_dataset, emomusic, giantsteps, gtzan, gtzan_rhythm, mtg_jamendo, mtt, nsynth, vocalset
from .dataset import RULE_KEYS, Item, ProbeDataset, DatasetSpec

DATASETS = {
    "mtt_top50": DatasetSpec("multilabel", mtt.load_mtt, mtt.LAYOUT),
    "gtzan_genre": DatasetSpec("multiclass", gtzan.load_gtzan, gtzan.LAYOUT),
    "giantsteps_key": DatasetSpec("key", giantsteps.load_giantsteps, giantsteps.LAYOUT, "window", 30.0, 30.0),
    "emomusic": DatasetSpec("regression", emomusic.load_emomusic, emomusic.LAYOUT),
    "nsynth_instrument": DatasetSpec("multiclass", nsynth.load_nsynth_instrument, nsynth.LAYOUT),
    "nsynth_pitch": DatasetSpec("multiclass", nsynth.load_nsynth_pitch, nsynth.LAYOUT),
    "vocalset_technique": DatasetSpec("multiclass", vocalset.load_vocalset_technique, vocalset.LAYOUT, "window", 3.0,
                                   3.0),
    "vocalset_singer": DatasetSpec("multiclass", vocalset.load_vocalset_singer, vocalset.LAYOUT, "window", 3.0, 3.0),
    "gtzan_beat": DatasetSpec("beat", gtzan_rhythm.load_gtzan_rhythm, gtzan_rhythm.LAYOUT, "frames"),
    **{f"mtg_{subset}": DatasetSpec("multilabel", partial(mtg_jamendo.load_mtg_jamendo, subset=subset),
                                 mtg_jamendo.LAYOUT, "clip", 30.0, 30.0) for subset in mtg_jamendo.SUBSETS},
    "csv": DatasetSpec("(config)", csv_dataset.load_csv_dataset, csv_dataset.LAYOUT),
}
CSV_POOLING = {  # CSV task type -> (pooling, window s, hop s); other types: clip pooling of the whole file
    "key": ("window", 30.0, 30.0),
    "beat": ("frames", None, None),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ProbeConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]


def _check_options(name: str, loader, options: dict) -> None:
    """Raise naming the unknown options of a task entry (a typo must not fall back to a default silently)."""
    known = [p for p in inspect.signature(loader).parameters if p != "root"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        known += list(RULE_KEYS) + ([] if name == "csv" else ["root"])
        raise ProbeConfigError(f"task {name}: unknown option(s) {unknown}; known: {sorted(known)}.")


NOT_SET = object()  # a rule value that was not given (None is a value for min_window_seconds / first_seconds)


def load_probe_dataset(name: str, root=None, pooling=None, window_seconds=None, hop_seconds=None, aggregate=None,
                       beat_tolerance=None, beat_average=None, beat_neighbour_weight=None, beat_training=None,
                       beat_crop_seconds=None, encode=None,
                       min_window_seconds=NOT_SET, first_seconds=NOT_SET, waveform_norm=None, trim_silence=None,
                       **options) -> ProbeDataset:
    """Load a registry task and apply pooling / scoring overrides; the result is validated (three non-empty
    splits).

    Args:
        name: registry name. root: the dataset folder (registry tasks). options: loader options (``csv``:
            ``path``, ``type``, optional ``task_name``, ``classes``, ``output_names``).
        pooling / window_seconds / hop_seconds / aggregate / beat_tolerance / beat_average /
            beat_neighbour_weight / beat_training / beat_crop_seconds / encode / min_window_seconds /
            first_seconds / waveform_norm / trim_silence:
            override the task's defaults (see ``ProbeDataset``).
    """
    spec = dataset_spec(name)
    _check_options(name, spec.loader, options)
    if name == "csv":
        if not options.get("path"):
            raise ProbeConfigError("task csv needs `path` (the CSV file) and `type` in its config entry.")
        task = spec.loader(**options)
        task.pooling, task.window_seconds, task.hop_seconds = CSV_POOLING.get(task.type, ("clip", None, None))
    else:
        if root is None:
            raise ProbeConfigError(f"task {name} needs `root`: the dataset folder ({spec.layout}).")
        task = replace(spec.loader(Path(root), **options), pooling=spec.pooling, window_seconds=spec.window_seconds,
                       hop_seconds=spec.hop_seconds)
    if pooling is not None:
        task.pooling = pooling
    if window_seconds is not None:
        task.window_seconds = float(window_seconds)
    if hop_seconds is not None:
        task.hop_seconds = float(hop_seconds)
    if aggregate is not None:
        task.aggregate = None if aggregate in ("none", "None") else aggregate
    for key, value in (("beat_tolerance", beat_tolerance), ("beat_neighbour_weight", beat_neighbour_weight),
                       ("beat_crop_seconds", beat_crop_seconds)):
        if value is not None:
            setattr(task, key, float(value))
    if beat_average is not None:
        task.beat_average = beat_average
    if beat_training is not None:
        task.beat_training = beat_training
    for key, value in (("min_window_seconds", min_window_seconds), ("first_seconds", first_seconds)):
        if value is not NOT_SET:
            setattr(task, key, None if value in (None, "none", "None") else float(value))
    if encode is not None:
        task.encode = encode
    if waveform_norm is not None:
        task.waveform_norm = waveform_norm
    if trim_silence is not None:
        task.trim_silence = bool(trim_silence)
    task.validate()
    return task


def task_type_of(entry: dict) -> str:
    """The task type a config entry will load (``csv``: its ``type`` option), before loading it."""
    return entry.get("type", "multiclass") if entry["name"] == "csv" else dataset_spec(entry["name"]).type


__all__ = ["DATASETS", "dataset_spec", "load_probe_dataset", "task_type_of", "Item", "ProbeDataset", "DatasetSpec", "RULE_KEYS"]
