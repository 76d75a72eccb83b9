"""k-means fit and apply: our torch backend against scikit-learn MiniBatchKMeans with fairseq's settings, same run.

Both fit the same N×D synthetic frames (a Gaussian mixture with 2k centres and per-dimension scales falling
like cepstra); inertia is the mean squared distance per frame, measured the same way for both. Apply labels
all N frames from host memory (ours: ``KMeansModel.predictor``, chunked on the device; sklearn: ``predict``).

    python benchmarks/kmeans_bench.py                                   # GPU targets: 1M×39 k=500, 1M×768 k=2000
    python benchmarks/kmeans_bench.py --case 200000,39,500 --case 50000,768,2000 --device cpu --threads 2
    python benchmarks/kmeans_bench.py --case 200000,39,500 --device cpu --threads 1 --apply-only   # apply only

    python benchmarks/kmeans_bench.py --sample-sweep 400000,39,500 --device cpu --threads 2   # sample size effect
    # the memory cap at the papers' scale (1000 h at 50 Hz = 180M frames of 768-d, k=2000), as the same frames per
    # cluster at k=32 (results: music_ssl/labels/sampling.py)
    python benchmarks/kmeans_bench.py --sample-sweep 300000,768,32 --scale 180000000,2000 --mixture 16,0.5 \
        --repeats 3 --device cpu --threads 2

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


DEFAULT_MIXTURE = "2,2.0"
SCALE_FRACTIONS = (0.05, 0.1)  # --scale: fractions of the real corpus compared with the memory cap's


def synthetic_frames(n: int, dim: int, k: int, seed: int = 0, centres_per_cluster: int = 2,
                     spread: float = 2.0) -> np.ndarray:
    """(n, dim) float32: ``centres_per_cluster`` × k Gaussian centres of std ``spread``, unit noise, every
    dimension scaled by linspace(3, 0.3). The defaults (2, 2.0) give well-separated blobs; many overlapping centres
    (e.g. 16, 0.5) give a density closer to continuous, where k-means has many near-equal optima."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((centres_per_cluster * k, dim)).astype(np.float32) * spread
    scale = np.linspace(3.0, 0.3, dim, dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for first in range(0, n, 1 << 16):  # chunks keep temporaries small for 768-d
        m = min(1 << 16, n - first)
        ids = rng.integers(0, len(centres), m)
        out[first: first + m] = (centres[ids] + rng.standard_normal((m, dim), np.float32)) * scale
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


def sweep_sizes(n: int, dim: int, k: int, scale=None) -> dict:
    """Sample sizes of the sweep, by name. Without ``scale``: 8, 32, 100 and 256 (our floor) frames per cluster,
    10 % of the N frames (fairseq's recipe), our default rule on N frames, all N. With ``scale`` = (TOTAL, K), a
    real fit of TOTAL frames and K clusters: the frames per cluster that our default rule (the memory cap, at
    TOTAL frames of ``dim``-d) and 5 % / 10 % of TOTAL give there, times k here; plus 256 per cluster and all N."""
    if scale is None:
        sizes = {f"{m} per cluster": m * k for m in (8, 32, 100, FRAMES_PER_CLUSTER)}
        sizes["10% (fairseq)"] = int(np.ceil(0.1 * n))
        sizes["default rule"] = default_sample_size(n, dim, k)
    else:
        total, real_k = scale
        real = {"default rule": default_sample_size(total, dim, real_k)}
        sizes = {f"{FRAMES_PER_CLUSTER} per cluster": FRAMES_PER_CLUSTER * k}
        for name, frames in [*real.items(), *(("", int(np.ceil(f * total))) for f in SCALE_FRACTIONS)]:
            sizes[f"{100 * frames / total:.2f}% of {total} {name}".rstrip()] = round(frames / real_k * k)
    sizes["all frames"] = n
    return {name: min(size, n) for name, size in sizes.items()}


def sample_sweep(spec: str, device: torch.device, seed: int, scale=None, mixture: str = DEFAULT_MIXTURE,
                 repeats: int = 1, fit_args: dict = None) -> list:
    """Fit on samples of growing size (:func:`sweep_sizes`) and measure each fit on ALL N frames: inertia relative
    to the all-frames fit, dead clusters and usage perplexity. Each size is fitted ``repeats`` times (seeds
    ``seed``, ``seed + 1``, …: another sample and k-means++ draw); the ratio is mean over mean, ± half the range
    of the per-repeat ratios (each against the all-frames fit of the same seed), which shows the seed-to-seed noise
    a difference must exceed. Shows what ``music_ssl.labels.sampling``'s rule buys over a smaller or a larger
    sample. ``fit_args``: ``max_iter`` / ``tol`` for :func:`fit_torch` (absent: the fit's defaults)."""
    fit_args = {name: value for name, value in (fit_args or {}).items() if value is not None}
    n, dim, k = (int(v) for v in spec.split(","))
    per_cluster, spread = mixture.split(",")
    start = time.perf_counter()
    x = synthetic_frames(n, dim, k, seed, int(per_cluster), float(spread))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; {n}x{dim} k={k}, mixture {mixture} (centres per cluster, spread); scale {scale}; "
          f"repeats {repeats}; fit {fit_args or 'defaults'}; data made in {time.perf_counter() - start:.1f} s",
          flush=True)
    rows = []
    for label, size in sorted(sweep_sizes(n, dim, k, scale).items(), key=lambda item: item[1]):
        runs = []
        for r in range(repeats):
            rng = np.random.default_rng([seed, r, size])
            sample = x[np.sort(rng.choice(n, size, replace=False))] if size < n else x
            start = time.perf_counter()
            fit = fit_torch(sample, k, seed=seed + r, device=device, **fit_args)
            fit_s = time.perf_counter() - start
            del sample
            labels, dists = nearest(torch.from_numpy(x).to(device), torch.from_numpy(fit.centroids).to(device))
            dead, perplexity = usage_stats(labels.cpu().numpy(), k)
            runs.append({"inertia": float(dists.double().mean()), "dead": dead, "perplexity": perplexity,
                         "fit_s": fit_s, "iters": fit.n_iter})
        rows.append({"case": f"{n}x{dim} k={k}", "sample": label, "frames": size, "per_cluster": size / k,
                     "fit_s": float(np.mean([r["fit_s"] for r in runs])),
                     "iters": float(np.mean([r["iters"] for r in runs])),
                     "inertia": float(np.mean([r["inertia"] for r in runs])),
                     "inertias": [r["inertia"] for r in runs], "dead": max(r["dead"] for r in runs),
                     "usage_perplexity": float(np.mean([r["perplexity"] for r in runs]))})
    full = rows[-1]
    for row in rows:
        ratios = np.array(row["inertias"]) / np.array(full["inertias"])
        row["inertia_vs_all"] = row["inertia"] / full["inertia"]
        row["inertia_vs_all_halfrange"] = float(ratios.max() - ratios.min()) / 2
        print(f"{row['case']:>18s}  {row['sample']:>30s}  {row['frames']:>8d} frames ({row['per_cluster']:7.0f}/cl)  "
              f"fit {row['fit_s']:6.1f} s ({row['iters']:5.1f} it)  inertia {row['inertia']:.5g} = "
              f"{row['inertia_vs_all']:.5f}±{row['inertia_vs_all_halfrange']:.5f}x all-frames fit  "
              f"dead {row['dead']:>4d}  "
              f"usage perplexity {row['usage_perplexity']:7.1f}/{k}", flush=True)
    return rows


def main(case=None, device: str = "auto", threads: int = None, seed: int = 0, skip_sklearn: bool = False,
         apply_only: bool = False, sample_sweep_case=None, scale=None, mixture: str = DEFAULT_MIXTURE,
         repeats: int = 1, max_iter: int = None, tol: float = None) -> list:
    device = resolve_device(device)
    if sample_sweep_case:
        if threads:
            torch.set_num_threads(threads)
        scale = tuple(int(v) for v in scale.split(",")) if isinstance(scale, str) else scale
        fit_args = {"max_iter": max_iter, "tol": tol}
        return [row for spec in sample_sweep_case
                for row in sample_sweep(spec, device, seed, scale, mixture, repeats, fit_args)]
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
    p.add_argument("--scale", metavar="TOTAL,K",
                   help="--sample-sweep: compare the samples a real fit of TOTAL frames with K clusters would take "
                        "(our default rule, 5%% and 10%% of TOTAL), as the same frames per cluster at this k; e.g. "
                        "180000000,2000 (1000 h at 50 Hz, iteration 2)")
    p.add_argument("--mixture", default=DEFAULT_MIXTURE, metavar="C,S",
                   help="--sample-sweep data: C x k Gaussian centres of std S (default %(default)s: separated "
                        "blobs; e.g. 16,0.5: overlapping, nearer a continuous feature distribution)")
    p.add_argument("--repeats", type=int, default=1,
                   help="--sample-sweep: fits per sample size (other sample, other init) to show the seed noise")
    p.add_argument("--max-iter", type=int, help="--sample-sweep: Lloyd iterations at most (default: the fit's)")
    p.add_argument("--tol", type=float, help="--sample-sweep: the fit's relative-improvement stop (default: the "
                                             "fit's; 0 runs all --max-iter iterations)")
    logging.basicConfig(level=logging.WARNING, force=True)
    main(**vars(p.parse_args()))


if __name__ == "__main__":
    cli()
