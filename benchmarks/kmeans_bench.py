"""k-means fit and apply: our torch backend against scikit-learn MiniBatchKMeans with fairseq's settings, same run.

Both fit the same N×D synthetic frames (a Gaussian mixture with 2k centres and per-dimension scales falling
like cepstra); inertia is the mean squared distance per frame, measured the same way for both. Apply labels
all N frames from host memory (ours: ``KMeansModel.predictor``, chunked on the device; sklearn: ``predict``).

    python benchmarks/kmeans_bench.py                                   # GPU targets: 1M×39 k=500, 1M×768 k=2000
    python benchmarks/kmeans_bench.py --case 200000,39,500 --case 50000,768,2000 --device cpu --threads 2

Targets (GPU): fit 1M×39 k=500 ≥ 50× faster than sklearn with inertia ≤ 1.01×; apply ≥ 100M frames/min.
Prints one row per (case, backend) and the ratios ours / sklearn.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_ssl.labels.kmeans import fit_torch, nearest, resolve_device  # noqa: E402
from music_ssl.labels.kmeans_sklearn import FAIRSEQ_SETTINGS  # noqa: E402
from music_ssl.labels.model import KMeansModel  # noqa: E402

DEFAULT_CASES = ["1000000,39,500", "1000000,768,2000"]


def synthetic_frames(n: int, dim: int, k: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32: 2k Gaussian centres, unit noise, every dimension scaled by linspace(3, 0.3)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2 * k, dim)).astype(np.float32) * 2.0
    scale = np.linspace(3.0, 0.3, dim, dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for first in range(0, n, 1 << 16):  # chunks keep temporaries small for 768-d
        m = min(1 << 16, n - first)
        out[first: first + m] = (centres[rng.integers(0, 2 * k, m)] + rng.standard_normal((m, dim), np.float32)) * scale
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mean_inertia(x: np.ndarray, centroids: np.ndarray, device: torch.device) -> float:
    """Mean squared distance of every frame to its nearest centroid (computed on ``device``)."""
    _, dists = nearest(torch.from_numpy(x).to(device), torch.from_numpy(centroids).to(device))
    return float(dists.double().mean())


def run_ours(x: np.ndarray, k: int, device: torch.device, seed: int) -> dict:
    sync(device)
    start = time.perf_counter()
    fit = fit_torch(x, k, seed=seed, device=device)
    sync(device)
    fit_s = time.perf_counter() - start
    predict = KMeansModel(fit.centroids, {}).predictor(device)
    start = time.perf_counter()
    predict(x)
    sync(device)
    return {"fit_s": fit_s, "apply_s": time.perf_counter() - start, "centroids": fit.centroids,
            "iters": fit.n_iter}


def run_sklearn(x: np.ndarray, k: int, seed: int) -> dict:
    from sklearn.cluster import MiniBatchKMeans

    start = time.perf_counter()
    model = MiniBatchKMeans(n_clusters=k, random_state=seed, verbose=0, **FAIRSEQ_SETTINGS).fit(x)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(x)
    return {"fit_s": fit_s, "apply_s": time.perf_counter() - start,
            "centroids": model.cluster_centers_.astype(np.float32), "iters": model.n_iter_}


def report(case: str, name: str, n: int, result: dict) -> None:
    rate = n / result["apply_s"] * 60 / 1e6
    print(f"{case:>20s}  {name:>8s}  fit {result['fit_s']:9.2f} s  inertia {result['inertia']:12.5f}  "
          f"iters {result['iters']:>5}  apply {result['apply_s']:8.3f} s  ({rate:9.1f} M frames/min)", flush=True)


def bench_case(spec: str, device: torch.device, seed: int, skip_sklearn: bool) -> None:
    n, dim, k = (int(v) for v in spec.split(","))
    case = f"{n}x{dim} k={k}"
    x = synthetic_frames(n, dim, k, seed)
    ours = run_ours(x, k, device, seed)
    ours["inertia"] = mean_inertia(x, ours["centroids"], device)
    report(case, "ours", n, ours)
    if skip_sklearn:
        return
    ref = run_sklearn(x, k, seed)
    ref["inertia"] = mean_inertia(x, ref["centroids"], device)
    report(case, "sklearn", n, ref)
    print(f"{case:>20s}  ratio     fit speed-up {ref['fit_s'] / ours['fit_s']:7.1f}x  inertia ours/sklearn "
          f"{ours['inertia'] / ref['inertia']:.4f}  apply speed-up {ref['apply_s'] / ours['apply_s']:7.1f}x", flush=True)


def main(case=None, device: str = "auto", threads: int = None, seed: int = 0, skip_sklearn: bool = False) -> None:
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):  # sklearn's OpenMP/BLAS get the same threads as torch
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        print(f"device: {name}; sklearn MiniBatchKMeans settings: {FAIRSEQ_SETTINGS}", flush=True)
        for spec in case or DEFAULT_CASES:
            bench_case(spec, device, seed, skip_sklearn)


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", help="N,D,K (repeatable; default %s)" % " ".join(DEFAULT_CASES))
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cpu")
    p.add_argument("--threads", type=int, help="CPU threads for torch and sklearn (default: library defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-sklearn", action="store_true", help="time ours only (e.g. GPU apply throughput)")
    logging.basicConfig(level=logging.WARNING, force=True)
    main(**vars(p.parse_args()))


if __name__ == "__main__":
    cli()
