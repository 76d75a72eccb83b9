"""Manifest audit and pre-flight speed: the audit against a bare ``soundfile.read`` loop over the same files, same run.

Audit: ``--n`` synthetic FLAC clips of ``--seconds`` (16 kHz mono, harmonic notes + noise, distinct per clip), one
manifest. After one warm-up read (so both sides read from the page cache), a bare loop
``soundfile.read(path, dtype="float32")`` (what fairseq's loader calls) and ``audit_manifest(jobs=1)`` (cache
deleted before each run: every row decoded) alternate ``--repeats`` times; the best time of each is kept. Printed:
files/s of both and the ratio audit / bare (target ≥ 0.8: the audit is decode-bound), plus the audit with
``--jobs`` processes and a second (cached) audit.

Pre-flight: a manifest of ``--preflight-rows`` rows over as many distinct small files (half WAV, half FLAC, 0.1 s
each; one encoded file's bytes copied to every name: real headers, real files), checked by ``preflight_manifest``
from headers, and again with the direct header parser switched off (every file through ``soundfile``).
Target: ≤ 30 s for 100k rows.

    python benchmarks/audit_bench.py                                  # 1,000 × 30 s clips, 100k-row pre-flight
    python benchmarks/audit_bench.py --n 100 --seconds 10 --preflight-rows 10000   # quick
"""
import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_ssl.data import preflight  # noqa: E402
from music_ssl.data.audit import audit_manifest, cache_path  # noqa: E402
from music_ssl.data.manifest import write_manifest  # noqa: E402

RATE = 16000


def synth(seconds: float, seed: int) -> np.ndarray:
    """(samples,) float32: a few harmonic notes with decaying envelopes plus noise (compresses like music)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n, dtype=np.float32) / RATE
    out = 0.02 * rng.standard_normal(n).astype(np.float32)
    note = RATE // 2
    for start in range(0, n, note):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        seg = t[start:start + note] - t[start]
        env = np.exp(-3.0 * seg)
        for h in (1, 2, 3):
            out[start:start + note] += env * np.sin(2 * np.pi * f0 * h * seg) / (2 * h)
    return 0.9 * out / np.abs(out).max()


def make_clips(folder: Path, n: int, seconds: float) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:05d}.flac"
        if not path.exists():
            sf.write(path, synth(seconds, i), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def bare_loop(paths: list) -> float:
    start = time.perf_counter()
    for path in paths:
        sf.read(str(path), dtype="float32")
    return time.perf_counter() - start


def audit_once(tsv: Path, jobs: int) -> float:
    cache_path(tsv).unlink(missing_ok=True)
    start = time.perf_counter()
    result = audit_manifest(tsv, jobs=jobs)
    assert not result.cached and not result.bad, result.bad[:3]
    return time.perf_counter() - start


def bench_audit(work: Path, n: int, seconds: float, repeats: int, jobs: int) -> None:
    t0 = time.perf_counter()
    paths = make_clips(work / "clips", n, seconds)
    logging.info("%d clips of %g s ready (%.0f s)", n, seconds, time.perf_counter() - t0)
    tsv = work / "m" / "train.tsv"
    write_manifest(tsv, work / "clips", [(p.name, int(seconds * RATE)) for p in paths])
    bare_loop(paths)  # warm-up: both sides read from the page cache
    bare, audit = [], []
    for _ in range(repeats):
        bare.append(bare_loop(paths))
        audit.append(audit_once(tsv, jobs=1))
    b, a = min(bare), min(audit)
    print(f"audit  machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {n} FLAC clips x {seconds:g} s")
    print(f"  bare soundfile.read loop : {n / b:8.1f} files/s  ({b:.2f} s, best of {repeats})")
    print(f"  audit, 1 process         : {n / a:8.1f} files/s  ({a:.2f} s, best of {repeats})")
    print(f"  ratio audit / bare       : {b / a:8.3f}   (target >= 0.8)")
    if jobs > 1:
        aj = audit_once(tsv, jobs)
        print(f"  audit, {jobs} processes      : {n / aj:8.1f} files/s  ({aj:.2f} s)")
    start = time.perf_counter()
    assert audit_manifest(tsv).cached
    print(f"  second audit (cached)    : {time.perf_counter() - start:8.3f} s")


def make_small_files(folder: Path, rows: int) -> list:
    """``rows`` distinct 0.1-s files (even rows WAV, odd FLAC), all copies of two encoded files."""
    folder.mkdir(parents=True, exist_ok=True)
    x = synth(0.1, 0)
    blobs = {}
    for ext in ("wav", "flac"):
        sf.write(folder / f"proto.{ext}", x, RATE)
        blobs[ext] = (folder / f"proto.{ext}").read_bytes()
    names = []
    for i in range(rows):
        sub, ext = f"d{i // 1000:03d}", ("wav", "flac")[i % 2]
        path = folder / sub / f"r{i:06d}.{ext}"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(blobs[ext])
        names.append(f"{sub}/{path.name}")
    return names


def bench_preflight(work: Path, rows: int, threads: int) -> None:
    t0 = time.perf_counter()
    names = make_small_files(work / "small", rows)
    logging.info("%d small files ready (%.0f s)", rows, time.perf_counter() - t0)
    tsv = work / "pm" / "train.tsv"
    write_manifest(tsv, work / "small", [(name, int(0.1 * RATE)) for name in names])
    start = time.perf_counter()
    preflight.preflight_manifest(tsv, threads=threads)
    fast = time.perf_counter() - start
    real = preflight.header_info

    def no_parser(path):
        raise ValueError("parser off")

    preflight.header_info = no_parser
    try:
        start = time.perf_counter()
        preflight.preflight_manifest(tsv, threads=threads)
        slow = time.perf_counter() - start
    finally:
        preflight.header_info = real
    print(f"pre-flight  {rows} rows over {rows} distinct files (half WAV, half FLAC, 0.1 s), warm page cache, "
          f"{threads} threads")
    print(f"  header parser + soundfile fallback : {fast:7.2f} s  ({rows / fast:9.0f} rows/s; target <= 30 s "
          f"for 100k)")
    print(f"  soundfile for every file           : {slow:7.2f} s  ({rows / slow:9.0f} rows/s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="clips for the audit benchmark (default 1000)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per clip (default 30)")
    p.add_argument("--repeats", type=int, default=2, help="alternating timed runs of each side (default 2)")
    p.add_argument("--jobs", type=int, default=2, help="processes for the parallel audit figure (default 2)")
    p.add_argument("--preflight-rows", type=int, default=100000, help="rows of the pre-flight manifest (0: skip)")
    p.add_argument("--threads", type=int, default=8, help="pre-flight threads (default 8)")
    p.add_argument("--workdir", help="keep the synthetic files here (reused by a rerun); default: a temp folder")
    args = p.parse_args()
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "WARNING").upper())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="audit_bench_"))
    try:
        if args.n:
            bench_audit(work, args.n, args.seconds, args.repeats, args.jobs)
        if args.preflight_rows:
            bench_preflight(work, args.preflight_rows, args.threads)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
