"""Span-mask time per batch: our seeded torch ``span_mask`` against fairseq's numpy ``compute_mask_indices``, same run.

fairseq's time includes moving the mask to the batch's device (``torch.from_numpy(...).to(device)``), as its
models do; ours is computed on the device. Batches are 30-s crops at 50 Hz (1499 frames; 3 and 12 clips, i.e.
max_tokens 1.4M and 5.6M) and 5-s crops (249 frames, 64 clips), with the music2vec and MusicHuBERT settings.

    python benchmarks/mask_bench.py                    # CPU, 1 thread
    python benchmarks/mask_bench.py --device cuda      # the GPU (fairseq's numpy still runs on the host)

Prints one row per case: ms per batch for both and the speed-up fairseq / ours.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from fairseq.data.data_utils import compute_mask_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_ssl.device import resolve_device  # noqa: E402
from music_ssl.models.masking import span_mask  # noqa: E402

CASES = [(3, 1499), (12, 1499), (64, 249)]  # (clips, frames)
SETTINGS = {"music2vec": dict(mask_prob=0.65, mask_length=10, min_masks=1),
            "music_hubert": dict(mask_prob=0.8, mask_length=10, min_masks=2)}


def seconds_per_call(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def bench(device: torch.device, repeats: int) -> list:
    rows = []
    for name, settings in SETTINGS.items():
        for clips, frames in CASES:
            padding = torch.zeros(clips, frames, dtype=torch.bool, device=device)
            ids = torch.arange(clips, device=device)
            stock = seconds_per_call(lambda: torch.from_numpy(compute_mask_indices(
                (clips, frames), padding, **settings)).to(device), device, repeats)
            update = iter(range(10 ** 9))
            ours = seconds_per_call(lambda: span_mask((clips, frames), padding, **settings, seed=1,
                                                      update=next(update), ids=ids), device, repeats)
            rows.append({"model": name, "clips": clips, "frames": frames, "fairseq_ms": 1000 * stock,
                         "ours_ms": 1000 * ours, "speedup": stock / ours})
            print(f"{name:>13s}  {clips:3d} x {frames:4d}  fairseq {1000 * stock:8.3f} ms  ours {1000 * ours:8.3f} ms"
                  f"  speed-up {stock / ours:6.2f}x", flush=True)
    return rows


def main(device="cpu", threads=1, repeats=50, json_out=None) -> list:
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    print(f"device {device}, {torch.get_num_threads()} torch threads, {repeats} batches per case", flush=True)
    rows = bench(device, repeats)
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=1))
    return rows


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = library default)")
    p.add_argument("--repeats", type=int, default=50, help="timed batches per case (default 50)")
    p.add_argument("--json", dest="json_out", help="also write the rows as JSON here")
    main(**vars(p.parse_args()))


if __name__ == "__main__":
    cli()
