"""k-means fit and apply: our torch backend against scikit-learn MiniBatchKMeans with fairseq's settings, same run.

Both fit the same N×D synthetic frames (a Gaussian mixture with 2k centres and per-dimension scales falling
like cepstra); inertia is the mean squared distance per frame, measured the same way for both. Apply labels
all N frames from host memory (ours: ``KMeansModel.predictor``, chunked on the device; sklearn: ``predict``).

    python benchmarks/kmeans_bench.py                                   # GPU targets: 1M×39 k=500, 1M×768 k=2000
    python benchmarks/kmeans_bench.py --case 200000,39,500 --case 50000,768,2000 --device cpu --threads 2
    python benchmarks/kmeans_bench.py --case 200000,39,500 --device cpu --threads 1 --apply-only   # apply only

    python benchmarks/kmeans_bench.py --sample-sweep 400000,39,500 --device cpu --threads 2   # sample size effect

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
from music_ssl.labels.kmeans_file import KMeansModel  # noqa: E402
from music_ssl.labels.sampling import FRAMES_PER_CLUSTER, default_sample_size  # noqa: E402

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


def bench_case(spec: str, device: torch.device, seed: int, skip_sklearn: bool) -> dict:
    """Fit and apply, ours and (unless skipped) sklearn, on one N,D,K case; prints and returns the figures."""
    n, dim, k = (int(v) for v in spec.split(","))
    case = f"{n}x{dim} k={k}"
    x = synthetic_frames(n, dim, k, seed)
    ours = run_ours(x, k, device, seed)
    ours["inertia"] = mean_inertia(x, ours["centroids"], device)
    report(case, "ours", n, ours)
    row = {"case": case, "device": str(device), "ours_fit_s": ours["fit_s"], "ours_apply_s": ours["apply_s"],
           "ours_inertia": ours["inertia"], "ours_apply_mframes_per_min": n / ours["apply_s"] * 60 / 1e6}
    if skip_sklearn:
        return row
    ref = run_sklearn(x, k, seed)
    ref["inertia"] = mean_inertia(x, ref["centroids"], device)
    report(case, "sklearn", n, ref)
    print(f"{case:>20s}  ratio     fit speed-up {ref['fit_s'] / ours['fit_s']:7.1f}x  inertia ours/sklearn "
          f"{ours['inertia'] / ref['inertia']:.4f}  apply speed-up {ref['apply_s'] / ours['apply_s']:7.1f}x", flush=True)
    return {**row, "sklearn_fit_s": ref["fit_s"], "sklearn_apply_s": ref["apply_s"], "sklearn_inertia": ref["inertia"],
            "fit_speedup": ref["fit_s"] / ours["fit_s"], "inertia_ratio": ours["inertia"] / ref["inertia"],
            "apply_speedup": ref["apply_s"] / ours["apply_s"]}


def apply_case(spec: str, device: torch.device, seed: int, repeats: int = 3) -> dict:
    """Apply only (no fit): label N frames with K centroids drawn from the frames, ours vs sklearn ``predict``
    (a KMeans whose centres are exactly those centroids), best of ``repeats``; checks the labels agree."""
    from sklearn.cluster import KMeans

    n, dim, k = (int(v) for v in spec.split(","))
    x = synthetic_frames(n, dim, k, seed)
    centroids = x[np.random.default_rng(seed).choice(n, k, replace=False)]
    reference = KMeans(n_clusters=k, init=centroids, n_init=1, max_iter=1).fit(centroids)  # centres == centroids
    predict = KMeansModel(centroids, {}).predictor(device)
    timings = {}
    for name, fn in (("sklearn", reference.predict), ("ours", predict)):
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            labels = fn(x)
            sync(device)
            best = min(best, time.perf_counter() - start)
        timings[name], timings[name + "_labels"] = best, labels
    agree = float((timings["ours_labels"] == timings["sklearn_labels"]).mean())
    row = {"case": f"{n}x{dim} k={k} apply", "device": str(device), "ours_apply_s": timings["ours"],
           "sklearn_apply_s": timings["sklearn"], "apply_speedup": timings["sklearn"] / timings["ours"],
           "ours_apply_mframes_per_min": n / timings["ours"] * 60 / 1e6,
           "sklearn_apply_mframes_per_min": n / timings["sklearn"] * 60 / 1e6, "label_agreement": agree}
    print(f"{row['case']:>26s}  ours {timings['ours']:.3f} s ({row['ours_apply_mframes_per_min']:.1f} M frames/min)  "
          f"sklearn {timings['sklearn']:.3f} s ({row['sklearn_apply_mframes_per_min']:.1f} M frames/min)  "
          f"speed-up {row['apply_speedup']:.2f}x  same labels {100 * agree:.3f}%", flush=True)
    return row


def usage_stats(labels: np.ndarray, k: int) -> tuple:
    """(dead clusters, usage perplexity = exp(entropy of the label histogram); k when all are used equally)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return int((counts == 0).sum()), float(np.exp(-(p * np.log(p)).sum()))


def sample_sweep(spec: str, device: torch.device, seed: int) -> list:
    """Fit on samples of growing size (frames per cluster: 8, 32, the 10% of fairseq's recipe, 100, 256 = our
    default floor, all) and measure each fit on ALL N frames: inertia relative to the all-frames fit, dead clusters
    and usage perplexity. Shows what ``music_ssl.labels.sampling``'s rule buys over a smaller sample."""
    n, dim, k = (int(v) for v in spec.split(","))
    x = synthetic_frames(n, dim, k, seed)
    rng = np.random.default_rng(seed)
    sizes = {f"{m} per cluster": m * k for m in (8, 32, 100, FRAMES_PER_CLUSTER)}
    sizes["10% (fairseq)"] = int(np.ceil(0.1 * n))
    sizes["default rule"] = default_sample_size(n, dim, k)
    sizes["all frames"] = n
    rows = []
    for name, size in sorted(sizes.items(), key=lambda item: item[1]):
        size = min(size, n)
        sample = x[np.sort(rng.choice(n, size, replace=False))] if size < n else x
        start = time.perf_counter()
        fit = fit_torch(sample, k, seed=seed, device=device)
        fit_s = time.perf_counter() - start
        labels, dists = nearest(torch.from_numpy(x).to(device), torch.from_numpy(fit.centroids).to(device))
        dead, perplexity = usage_stats(labels.cpu().numpy(), k)
        rows.append({"case": f"{n}x{dim} k={k}", "sample": name, "frames": size, "fit_s": fit_s,
                     "inertia": float(dists.double().mean()), "dead": dead, "usage_perplexity": perplexity})
    full = rows[-1]["inertia"]
    for row in rows:
        row["inertia_vs_all"] = row["inertia"] / full
        print(f"{row['case']:>20s}  {row['sample']:>16s}  {row['frames']:>9d} frames  fit {row['fit_s']:7.2f} s  "
              f"inertia {row['inertia_vs_all']:.4f}x all-frames fit  dead {row['dead']:>4d}  "
              f"usage perplexity {row['usage_perplexity']:7.1f}/{k}", flush=True)
    return rows


def main(case=None, device: str = "auto", threads: int = None, seed: int = 0, skip_sklearn: bool = False,
         apply_only: bool = False, sample_sweep_case=None) -> list:
    device = resolve_device(device)
    if sample_sweep_case:
        if threads:
            torch.set_num_threads(threads)
        return [row for spec in sample_sweep_case for row in sample_sweep(spec, device, seed)]
    if threads:
        torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):  # sklearn's OpenMP/BLAS get the same threads as torch
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        print(f"device: {name}; sklearn MiniBatchKMeans settings: {FAIRSEQ_SETTINGS}", flush=True)
        if apply_only:
            return [apply_case(spec, device, seed) for spec in case or DEFAULT_CASES]
        return [bench_case(spec, device, seed, skip_sklearn) for spec in case or DEFAULT_CASES]


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", help="N,D,K (repeatable; default %s)" % " ".join(DEFAULT_CASES))
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cpu")
    p.add_argument("--threads", type=int, help="CPU threads for torch and sklearn (default: library defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-sklearn", action="store_true", help="time ours only (e.g. GPU apply throughput)")
    p.add_argument("--apply-only", action="store_true",
                   help="time apply only (ours vs sklearn predict on the same centroids; no fit)")
    p.add_argument("--sample-sweep", dest="sample_sweep_case", action="append", metavar="N,D,K",
                   help="instead of the timing cases: inertia (on all N frames) and cluster usage against the fit's "
                        "sample size (repeatable), e.g. 400000,39,500")
    logging.basicConfig(level=logging.WARNING, force=True)
    main(**vars(p.parse_args()))


if __name__ == "__main__":
    cli()
