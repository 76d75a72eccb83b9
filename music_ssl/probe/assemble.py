"""Turn a loaded task and its features into ``ProbeData`` (arrays per split on the compute device).

* clip pooling: one vector per item = the mean of its window means -> x (S, N_items, C);
* window pooling: every window is an item; ``groups`` says which file it came from (key ensembles; with
  ``task.aggregate == "mean"`` valid/test outputs are averaged per file before scoring);
* frames: every frame is an item with a 0/1 beat target; ``files`` keeps each file's frame range and its
  reference beats for DBN decoding. With ``task.beat_training == "marble"`` the neighbour targets are set in the
  train split only, training batches are random crops (``SplitArrays.crop_frames``) and the valid split is scored
  with the DBN (``SplitArrays.dbn``), as MARBLE's GTZANBT code. MARBLE encodes each 10-s crop alone; with
  :class:`BeatCrops` ``encode="window"`` (the default) the train files come as windows of ``beat_crop_seconds``
  every ``hop_seconds``, each encoded alone (``train_windows``), every window an entry of ``files`` with its beats
  shifted by its start, and a crop is one whole window of a random file (``SplitArrays.windows``); valid and test
  stay whole files. MARBLE draws any start in [0, duration - 10 s); ours draws from that grid, and the encoder sees
  ``windows x beat_crop_seconds`` of audio per train file: (floor((D - crop) / hop) + 1) x crop / D times the
  whole file's D seconds (30-s clips, 10-s crops, hop 5 s: 5 windows, 1.67x; window / hop as D grows).
  ``encode="file"``: crops of the frames of the whole file, encoded once (the earlier behaviour).
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from .beat import beat_targets
from .data import ProbeData, SplitArrays
from .errors import ProbeConfigError, ProbeDataError
from .features.encoding import crop_encoding
from .protocols import BEAT_CROP_HOP_SECONDS
from .task_types import TASK_TYPES
from .datasets.dataset import SPLITS


def _rows(task, arrays, split_index, pooling):
    """Feature rows, labels and group ids of one split: ((rows, S, C), labels, groups)."""
    rows, labels, groups = [], [], []
    for group, i in enumerate(split_index):
        item, array = task.items[i], arrays[i]
        if pooling == "clip":
            rows.append(array.astype(np.float32).mean(0, keepdims=True))
        else:
            rows.append(array)
        labels += [item.label] * rows[-1].shape[0]
        groups += [group] * rows[-1].shape[0]
    return np.concatenate(rows), labels, np.array(groups, np.int64)


BEAT_CROP_ENCODES = ("window", "file")


@dataclass(frozen=True)
class BeatCrops:
    """How MARBLE-style beat training crops (``beat_training: marble``) reach the encoder: task options
    ``beat_crop_encode`` and ``beat_crop_hop_seconds`` (a protocol's beat rules or the task entry).

    Attributes:
        encode: "window" = each crop encoded alone, on a grid of starts every ``hop_seconds`` (MARBLE's
            ``GTZANBT_dataset.py`` encodes each random 10-s crop alone); "file" = crops of the frames of the
            whole file, encoded once.
        hop_seconds: the grid of crop starts, seconds (MARBLE: any start); the cost is in the module docstring.
    """
    encode: str = "window"
    hop_seconds: float = BEAT_CROP_HOP_SECONDS
    OPTIONS = ("beat_crop_encode", "beat_crop_hop_seconds")

    def __post_init__(self):
        if self.encode not in BEAT_CROP_ENCODES or not float(self.hop_seconds) > 0:
            raise ProbeConfigError(f"beat_crop_encode {self.encode!r} must be one of {BEAT_CROP_ENCODES} and "
                                   f"beat_crop_hop_seconds > 0 (got {self.hop_seconds}).")

    @classmethod
    def split_options(cls, options: dict) -> tuple:
        """(``options`` without this class's keys, the ``BeatCrops`` they set)."""
        mine = {key[len("beat_crop_"):]: options[key] for key in cls.OPTIONS if options.get(key) is not None}
        if "hop_seconds" in mine:
            mine["hop_seconds"] = float(mine["hop_seconds"])
        return {k: v for k, v in options.items() if k not in cls.OPTIONS}, cls(**mine)

    def windowed(self, task) -> bool:
        """Whether ``task``'s train files are encoded as crops alone."""
        return task.type == "beat" and task.beat_training == "marble" and self.encode == "window"

    def encoding(self, task):
        """The ``Encoding`` of ``task``'s train crops (``features.encoding.crop_encoding``)."""
        try:
            return crop_encoding(task.encoding(), task.beat_crop_seconds, self.hop_seconds)
        except ProbeConfigError as err:
            raise ProbeConfigError(f"task {task.name}: {err}") from None


def _beat_split(task, arrays, split_index, frame_rate, split="train"):
    rows, targets, files, start = [], [], [], 0
    marble = task.beat_training == "marble"
    neighbours = task.beat_neighbour_weight if split == "train" or not marble else 0.0  # MARBLE: train only
    for i in split_index:
        frames = arrays[i]
        rows.append(frames)
        targets.append(beat_targets(task.items[i].label, frames.shape[0], frame_rate, neighbours))
        files.append((start, start + frames.shape[0], np.asarray(task.items[i].label, np.float64)))
        start += frames.shape[0]
    return np.concatenate(rows), np.concatenate(targets)[:, None], files


def _beat_window_split(task, windows, split_index, frame_rate) -> tuple:
    """The train split of crops encoded alone: ``windows`` (a windowed ``FeatureSet`` of the train files, in
    ``split_index`` order) -> (rows (N, S, C), targets (N, 1), files: one (start, stop, beats) per window, beats
    relative to the window's start; window offsets (F + 1,) int64 of each file)."""
    owners, starts = windows.windows
    rows, targets, files, row = [], [], [], 0
    for array, owner, begin in zip(windows.arrays, owners, starts):
        beats = np.asarray(task.items[split_index[owner]].label, np.float64) - begin  # s from the window's start
        rows.append(array)
        targets.append(beat_targets(beats, array.shape[0], frame_rate, task.beat_neighbour_weight,
                                    outside_neighbours=True))
        inside = beats[(beats >= 0) & (np.round(beats * frame_rate) < array.shape[0])]
        files.append((row, row + array.shape[0], inside))
        row += array.shape[0]
    counts = np.bincount(owners, minlength=len(split_index))
    for owner in np.flatnonzero(counts):
        if len({windows.arrays[w].shape[0] for w in np.flatnonzero(owners == owner)}) > 1:
            raise ProbeDataError(f"{task.items[split_index[owner]].path}: its crops encoded alone differ in frame "
                                 "count; crops must be full windows of one length.")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return np.concatenate(rows), np.concatenate(targets)[:, None], files, offsets


def _beat_marble(task, files, split, frame_rate) -> dict:
    """MARBLE's beat training: train crops of ``beat_crop_seconds`` (at most the shortest train file), valid scored
    with the DBN; {} for the cheap mode."""
    if task.beat_training != "marble":
        return {}
    if split == "train":
        shortest = min(b - a for a, b, _ in files)
        return {"crop_frames": max(1, min(int(math.floor(task.beat_crop_seconds * frame_rate)), shortest))}
    if split == "valid":
        return {"dbn": (float(frame_rate), float(task.beat_tolerance), task.beat_average)}
    return {}


def assemble(task, features, device, train_windows=None) -> ProbeData:
    """Build ``ProbeData`` for ``task`` from ``features`` (a ``FeatureSet`` aligned with ``task.items``).

    ``train_windows``: beat training crops encoded alone (a windowed ``FeatureSet`` of the train items, in item
    order; ``BeatCrops``): the train split is built from them and ``features`` is read for valid and test only
    (its train entries may be None)."""
    task_type = TASK_TYPES[task.type]
    if task.type == "beat" and not features.frame_rate:
        raise ProbeDataError(f"task {task.name}: beat tracking needs frame-level features with a frame rate.")
    index = {s: [i for i, item in enumerate(task.items) if item.split == s] for s in SPLITS}
    raw, extras = {}, {}
    for split in SPLITS:
        if task.type == "beat" and split == "train" and train_windows is not None:
            x, y, files, offsets = _beat_window_split(task, train_windows, index[split], features.frame_rate)
            raw[split] = (x, y)
            extras[split] = {"files": files, "windows": torch.as_tensor(offsets, dtype=torch.int64, device=device),
                             **_beat_marble(task, files, split, features.frame_rate)}
        elif task.type == "beat":
            x, y, files = _beat_split(task, features.arrays, index[split], features.frame_rate, split)
            raw[split], extras[split] = (x, y), {"files": files, **_beat_marble(task, files, split,
                                                                                  features.frame_rate)}
        else:
            x, labels, groups = _rows(task, features.arrays, index[split], task.pooling)
            raw[split] = (x, task_type.encode(labels, task))
            extras[split] = {"groups": groups}
    targets = task_type.prepare({s: raw[s][1] for s in SPLITS})
    aggregate = task.aggregate == "mean" and task.pooling == "window" and task.type != "beat"
    splits = {}
    for split in SPLITS:
        x = torch.from_numpy(np.ascontiguousarray(raw[split][0].transpose(1, 0, 2))).to(device, torch.float32)
        groups = extras[split].get("groups")
        splits[split] = SplitArrays(x, torch.as_tensor(targets[split], device=device),
                                    None if groups is None else torch.as_tensor(groups, device=device),
                                    extras[split].get("files"), aggregate=aggregate,
                                    crop_frames=extras[split].get("crop_frames"), dbn=extras[split].get("dbn"),
                                    windows=extras[split].get("windows"))
    return ProbeData(task, task_type, splits, task_type.num_outputs(task), features.frame_rate,
                     list(features.layer_names))
