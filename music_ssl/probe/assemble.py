"""Turn a loaded task and its features into ``ProbeData`` (arrays per split on the compute device).

* clip pooling: one vector per item = the mean of its window means -> x (S, N_items, C);
* window pooling: every window is an item; ``groups`` says which file it came from (key ensembles; with
  ``task.aggregate == "mean"`` valid/test outputs are averaged per file before scoring);
* frames: every frame is an item with a 0/1 beat target; ``files`` keeps each file's frame range and its
  reference beats for DBN decoding. With ``task.beat_training == "marble"`` the neighbour targets are set in the
  train split only, training batches are random crops (``SplitArrays.crop_frames``) and the valid split is scored
  with the DBN (``SplitArrays.dbn``), as MARBLE's GTZANBT code.
"""
import math

import numpy as np
import torch

from .beat import beat_targets
from .data import ProbeData, SplitArrays
from .errors import ProbeDataError
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


def assemble(task, features, device) -> ProbeData:
    """Build ``ProbeData`` for ``task`` from ``features`` (a ``FeatureSet`` aligned with ``task.items``)."""
    task_type = TASK_TYPES[task.type]
    if task.type == "beat" and not features.frame_rate:
        raise ProbeDataError(f"task {task.name}: beat tracking needs frame-level features with a frame rate.")
    index = {s: [i for i, item in enumerate(task.items) if item.split == s] for s in SPLITS}
    raw, extras = {}, {}
    for split in SPLITS:
        if task.type == "beat":
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
                                    crop_frames=extras[split].get("crop_frames"), dbn=extras[split].get("dbn"))
    return ProbeData(task, task_type, splits, task_type.num_outputs(task), features.frame_rate,
                     list(features.layer_names))
