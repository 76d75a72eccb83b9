"""Probe grid throughput: JukeMIR's 216-config grid trained as one batched computation vs the sequential loop.

A GTZAN-sized synthetic task (930 clips split 443 / 197 / 290, 10 classes, 13 hidden states x 768 dims; the
label is visible more clearly in later states) is probed with the ``jukemir`` preset on every hidden state
(216 x 13 = 2808 probes). The batched trainer (``train_batched``) runs them all; the sequential reference
(``train_sequential``: ``nn.Linear`` + ``torch.optim.Adam``, one probe at a time) runs a random sample of the
same probes in the same process — the whole loop would take hours on a GPU — and its time is extrapolated to
all probes (mean seconds per probe x probes). Prints both times, their ratio and the largest per-config
difference of the test accuracy (sklearn) between the two, in points.

    python benchmarks/probe_bench.py                                   # GPU: the full grid, 64 sequential probes
    python benchmarks/probe_bench.py --configs 24 --layers 2 --dim 64 --max-epochs 20 --patience 8 \\
        --sequential 24 --device cpu                                   # CPU smoke run (about a minute)
"""
import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from music_ssl.probe.data import ProbeData, SplitArrays  # noqa: E402
from music_ssl.device import resolve_device  # noqa: E402
from music_ssl.probe.metrics import accuracy  # noqa: E402
from music_ssl.probe.protocols import expand, get_protocol  # noqa: E402
from music_ssl.probe.task_types import TASK_TYPES  # noqa: E402
from music_ssl.probe.datasets.dataset import ProbeDataset  # noqa: E402
from music_ssl.probe.trainer import train_batched, train_sequential  # noqa: E402

logger = logging.getLogger("probe_bench")
GTZAN_SPLIT = {"train": 443, "valid": 197, "test": 290}  # the fault-filtered split, 930 clips


def synthetic_task(clips: int, layers: int, dim: int, classes: int, device, seed: int = 0) -> ProbeData:
    """Features (S, N, C) whose class signal grows with the hidden-state index; GTZAN's split proportions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    strength = np.linspace(0.05, 0.4, layers, dtype=np.float32)[:, None, None]  # (S, 1, 1)
    splits = {}
    for split, share in GTZAN_SPLIT.items():
        n = max(classes, round(clips * share / sum(GTZAN_SPLIT.values())))
        y = rng.integers(0, classes, n)
        x = rng.standard_normal((layers, n, dim)).astype(np.float32) + strength * centres[y][None]
        splits[split] = SplitArrays(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
    task = ProbeDataset("synthetic_gtzan", "multiclass", [], classes=[str(k) for k in range(classes)])
    return ProbeData(task, TASK_TYPES["multiclass"], splits, classes, None, [f"state{i}" for i in range(layers)])


def pick_configs(grid: list, count: int) -> list:
    """``count`` configs spread evenly over the grid (all of it when count >= its size)."""
    if count >= len(grid):
        return list(grid)
    return [grid[i] for i in np.linspace(0, len(grid) - 1, count).round().astype(int)]


def test_accuracy(logits: np.ndarray, data: ProbeData) -> np.ndarray:
    """(P, N, K) test logits -> (P,) sklearn accuracy in points."""
    y = data.targets("test")
    return np.array([100 * accuracy(y, row) for row in logits])


def main(clips=930, layers=13, dim=768, classes=10, configs=216, max_epochs=500.0, patience=256, eval_every=8,
         sequential=64, device="auto", seed=0) -> dict:
    device = resolve_device(device)
    data = synthetic_task(clips, layers, dim, classes, device, seed)
    protocol = get_protocol("jukemir")
    settings = replace(protocol.settings, max_epochs=max_epochs, patience=patience, eval_every=eval_every)
    probes = expand(pick_configs(protocol.grid, configs), list(range(layers)), [0])
    logger.info("%d probes (%d configs x %d states) on %s; train %d x %d", len(probes), min(configs, 216), layers,
                device, data.splits["train"].num_items, dim)
    batched = train_batched(probes, data, settings)
    sample = np.sort(np.random.default_rng(seed).choice(len(probes), min(sequential, len(probes)), replace=False))
    begin = time.perf_counter()
    reference = train_sequential([probes[p] for p in sample], data, settings)
    per_probe = (time.perf_counter() - begin) / len(sample)
    sequential_seconds = per_probe * len(probes)
    diff = np.abs(test_accuracy(batched.logits["test"][sample], data) - test_accuracy(reference.logits["test"], data))
    result = {"probes": len(probes), "batched_s": batched.seconds, "sequential_s": sequential_seconds,
              "sequential_sampled": len(sample), "ratio": sequential_seconds / batched.seconds,
              "max_diff_points": float(diff.max()), "over_half_point": int((diff > 0.5).sum()),
              "same_steps": int((batched.steps[sample] == reference.steps).sum())}
    print(f"device {device}: {len(probes)} probes = {min(configs, 216)} configs x {layers} states, "
          f"{data.splits['train'].num_items} train clips x {dim} dims, {classes} classes")
    print(f"batched     {batched.seconds:9.1f} s")
    print(f"sequential  {sequential_seconds:9.1f} s  (extrapolated: {per_probe:.2f} s/probe x {len(probes)} probes, "
          f"{len(sample)} run)")
    print(f"ratio       {result['ratio']:9.1f} x")
    print(f"test accuracy, batched vs sequential: max |diff| {result['max_diff_points']:.2f} points, "
          f"{result['over_half_point']} of {len(sample)} configs beyond 0.5; same stopping step for "
          f"{result['same_steps']} of {len(sample)}")
    return result


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=930, help="clips over train/valid/test (930, GTZAN-ff)")
    p.add_argument("--layers", type=int, default=13, help="hidden states, each probed (13)")
    p.add_argument("--dim", type=int, default=768, help="feature dims (768)")
    p.add_argument("--classes", type=int, default=10, help="classes (10)")
    p.add_argument("--configs", type=int, default=216, help="configs of the jukemir grid, spread evenly (216)")
    p.add_argument("--max-epochs", dest="max_epochs", type=float, default=500.0, help="epoch cap (500)")
    p.add_argument("--patience", type=int, default=256, help="validations without improvement (256)")
    p.add_argument("--eval-every", dest="eval_every", type=int, default=8, help="steps between validations (8)")
    p.add_argument("--sequential", type=int, default=64, help="probes run by the sequential loop (64)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(**vars(p.parse_args()))


if __name__ == "__main__":
    cli()
