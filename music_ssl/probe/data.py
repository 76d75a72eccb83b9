"""Arrays a probe run trains on: features and targets per split, on the compute device."""
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch


@dataclass
class SplitArrays:
    """One split.

    Attributes:
        x: (S, N, C) float32 features: S hidden states, N items (clips, windows or frames), C dims.
        y: targets on the same device: (N,) int64 or (N, K) float32.
        groups: (N,) int64 numpy group index (song of each window, key task) or None.
        files: beat task: list of (start, stop, reference beat times) frame ranges of each file, else None.
    """
    x: torch.Tensor
    y: torch.Tensor
    groups: Optional[np.ndarray] = None
    files: Optional[list] = None
    groups_t: Optional[torch.Tensor] = field(default=None, repr=False)

    def __post_init__(self):
        if self.groups is not None and self.groups_t is None:
            self.groups_t = torch.as_tensor(self.groups, dtype=torch.int64, device=self.y.device)

    @property
    def num_items(self) -> int:
        return self.x.shape[1]


@dataclass
class ProbeData:
    """Everything a probe run needs about one task.

    Attributes:
        task: the ``TaskData``; type: its ``TaskType``; splits: "train"/"valid"/"test" -> SplitArrays;
        num_outputs: K; frame_rate: feature frames per second (beat decoding); layer_names: S names.
    """
    task: object
    type: object
    splits: dict
    num_outputs: int
    frame_rate: Optional[float] = None
    layer_names: list = field(default_factory=list)

    @property
    def num_states(self) -> int:
        return self.splits["train"].x.shape[0]

    @property
    def dim(self) -> int:
        return self.splits["train"].x.shape[2]

    def targets(self, split: str) -> np.ndarray:
        return self.splits[split].y.cpu().numpy()

    def standardization(self) -> tuple:
        """Train-split mean and 1/std per hidden state: two (S, C) float32 tensors."""
        x = self.splits["train"].x
        mean = x.mean(1)
        std = x.std(1, unbiased=False)
        return mean, 1.0 / torch.where(std > 0, std, torch.ones_like(std))
