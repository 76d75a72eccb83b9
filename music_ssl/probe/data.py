"""Arrays a probe run trains on: features and targets per split, on the compute device."""
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from . import randomness as rnd


@dataclass
class SplitArrays:
    """One split.

    Attributes:
        x: (S, N, C) float32 features: S hidden states, N items (clips, windows or frames), C dims.
        y: targets on the same device: (N,) int64 class ids or (N, K) float32.
        groups: (N,) int64 song index of each item (key task: windows of one song) or None.
        files: beat task: list of (start, stop, reference beat times in s) — each file's frame range — or None.
            In a train split of crops encoded alone (``windows``) an entry is one window, its beats relative to
            the window's start.
        aggregate: True = outputs are averaged per group (file) before scoring (``ProbeDataset.aggregate``).
        crop_frames: beat training as MARBLE (train split only): a batch is ``batch_size`` random crops of this
            many consecutive frames of distinct files, an epoch a pass over the files; None = random frames.
        windows: crops encoded alone (train split only): (F + 1,) int64 offsets into ``files``, whose entries
            ``windows[f]:windows[f + 1]`` are the windows of file f (all of one length); a crop is cut from one
            window of its file, drawn at random. None = each entry of ``files`` is a file.
        dbn: beat validation as MARBLE (valid split only): (frame_rate, tolerance s, averaging) — the batched
            early-stopping metric is the beat F-measure after madmom's DBN, not frame AP; None = frame AP.
    """
    x: torch.Tensor
    y: torch.Tensor
    groups: Optional[torch.Tensor] = None
    files: Optional[list] = None
    aggregate: bool = False
    crop_frames: Optional[int] = None
    dbn: Optional[tuple] = None
    windows: Optional[torch.Tensor] = None

    @property
    def num_files(self) -> int:
        """Files of a beat split (not their windows)."""
        return len(self.files) if self.windows is None else len(self.windows) - 1

    @property
    def num_groups(self) -> int:
        return int(self.groups.max()) + 1

    def group_targets(self) -> torch.Tensor:
        """(G, ...) the target of each group (every window of a file carries the file's target)."""
        first = torch.full((self.num_groups,), self.y.shape[0], dtype=torch.int64, device=self.y.device)
        first = first.scatter_reduce(0, self.groups, torch.arange(self.y.shape[0], device=self.y.device), "amin")
        return self.y[first]

    @property
    def num_items(self) -> int:
        return self.x.shape[1]


@dataclass
class ProbeData:
    """Everything a probe run needs about one task.

    Attributes:
        task: the ``ProbeDataset``; type: its ``TaskType``; splits: "train"/"valid"/"test" -> SplitArrays;
        num_outputs: K; frame_rate: feature frames per second (beat decoding); layer_names: S names.
    """
    task: object
    type: object
    splits: dict
    num_outputs: int
    frame_rate: Optional[float] = None
    layer_names: list = field(default_factory=list)
    _standardized: dict = field(default_factory=dict, repr=False)

    @property
    def num_states(self) -> int:
        return self.splits["train"].x.shape[0]

    @property
    def dim(self) -> int:
        return self.splits["train"].x.shape[2]

    @property
    def epoch_items(self) -> int:
        """Items per training epoch (``TrainSettings`` epochs count these): the train items, except for
        frame-level tasks, where an epoch is one frame per second of train audio — a pass over every frame
        (50 Hz) would cost ~50 times more and buys a shallow probe little, as neighbouring frames are near
        copies — or, with crops (``crop_frames``), the train files (MARBLE: an epoch of 10-s crops, one per file;
        files, not their windows, when crops are encoded alone)."""
        train = self.splits["train"]
        if train.files is None:
            return train.num_items
        if train.crop_frames:
            return train.num_files
        return max(1, math.ceil(train.num_items / self.frame_rate))

    def batch_size(self, batch_size: int) -> int:
        """A probe's items per step: its batch size, at most the train items (crops: the train files)."""
        return min(batch_size, self.epoch_items if self.splits["train"].crop_frames else self.splits["train"].num_items)

    def sample_train(self, keys: torch.Tensor, step: int, batch: int) -> torch.Tensor:
        """(P, B) train row indices of each probe's step ``step`` (``randomness``: a pure function of key and step).

        Random items without replacement, or with ``crop_frames``: ``batch`` distinct files per probe, a random
        crop of ``crop_frames`` consecutive frames in each -> (P, batch * crop_frames). With ``windows`` the crop
        is cut from one of the file's windows: one draw picks window and start among its ``count * room``
        positions (one window: the draw of a file's crop start, unchanged)."""
        train = self.splits["train"]
        stream = rnd.stream_keys(keys, step, rnd.BATCH)
        if not train.crop_frames:
            return rnd.sample_batches(stream, train.num_items, batch)
        starts, lengths, first_window, count = self._file_bounds(train)
        files = rnd.sample_batches(stream, train.num_files, batch)  # (P, B)
        window = first_window[files]  # (P, B) the file's first window (the file itself without windows)
        room = lengths[window] - train.crop_frames + 1  # (P, B) possible crop starts in a window (>= 1)
        position = rnd.random_bits(rnd.stream_keys(keys, step, rnd.CROP), files.shape[1]) % (count[files] * room)
        first = starts[window + torch.div(position, room, rounding_mode="floor")] + position % room  # (P, B)
        frames = torch.arange(train.crop_frames, device=first.device)
        return (first.unsqueeze(-1) + frames).flatten(1)  # (P, B * crop_frames)

    def _file_bounds(self, train) -> tuple:
        """(first row, frames) of each ``files`` entry and (first entry, entries) of each file: 4 int64 tensors."""
        if "bounds" not in self._standardized:  # cached with the other derived arrays
            device = train.y.device
            windows = (train.windows if train.windows is not None
                       else torch.arange(len(train.files) + 1)).to(device=device, dtype=torch.int64)
            self._standardized["bounds"] = (torch.tensor([a for a, _, _ in train.files], device=device),
                                            torch.tensor([b - a for a, b, _ in train.files], device=device),
                                            windows[:-1], windows.diff())
        return self._standardized["bounds"]

    def targets(self, split: str) -> np.ndarray:
        return self.splits[split].y.cpu().numpy()

    def inputs(self, split: str, standardized: bool) -> torch.Tensor:
        """(S, N, C) features of ``split``, z-scored per hidden state and dim with train statistics if asked
        (computed once; dims constant on train are only centred)."""
        x = self.splits[split].x
        if not standardized:
            return x
        if split not in self._standardized:  # (keys "train" / "valid" / "test"; "bounds": crop bounds)
            train = self.splits["train"].x
            mean, std = train.mean(1, keepdim=True), train.std(1, unbiased=False, keepdim=True)  # (S, 1, C)
            self._standardized[split] = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
        return self._standardized[split]
