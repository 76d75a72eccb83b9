"""Input pipeline: crop reading (``task.crop_reading=true``) against stock fairseq's datasets, same run.

Throughput. Every cell builds the real task from a shipped config (``config/pretrain/music2vec_base.yaml``,
``music_hubert_base.yaml``; the stock arm swaps in fairseq's ``audio_pretraining`` / ``hubert_pretraining``, which
decode whole files and crop in the collater) on a cached synthetic corpus (16 kHz mono music-like songs in WAV, FLAC
and MP3; 30-s clips and 4-min songs; random 50 Hz k=500 labels for MusicHuBERT), and times batches of ``--batch``
crops out of fairseq's own iterator (``task.get_batch_iterator(...).next_epoch_itr()``: a real torch DataLoader with
``--workers`` forked workers, persistent across epochs as in training). After a warm-up round (one batch per worker:
forks, first opens) whole rounds are timed until ``--budget`` seconds have passed. Rates are per core: the main
process is the core at 0 workers; with n workers the rate is divided by n. torch runs one thread (a loader core).
The loader's CPU time (main process + workers) is measured too: audio-s per loader CPU-s does not drop when other
processes share the machine, and sizes the loader cores per GPU. The two arms of a cell run back to back.

Memory. A manifest of ``--memory-rows`` rows (realistic relative paths, short label lines) is loaded by each arm's
dataset class directly, in a fresh process per arm; one forked DataLoader worker walks the whole epoch in batches of
4,096 rows, fetching each row's file name (and label offsets) as the dataset's ``__getitem__`` does, without
decoding audio, and reports its memory (``/proc/self/smaps_rollup``) after the first batch and at the epoch's end:
RSS, PSS and USS (private pages: what each extra worker costs). Python lists of strings are copied page by page into
every forked worker as it reads them (reference counts are writes); numpy arrays are not.

    python benchmarks/input_pipeline.py                 # full run (~4-5 min on 2 cores, cold cache included)
    python benchmarks/input_pipeline.py --quick         # CI: WAV + FLAC, 20-s songs, 5-s crops, workers 0 and 1
    python benchmarks/input_pipeline.py --formats flac --lengths 240 --crops 5 --tasks music_hubert --profile

Targets (issue #21): 5-s crops from 4-min FLAC >= 2,000 audio-s/s per core and >= 20x stock; MusicHuBERT with
labels >= 15x stock; 5-s crops from 4-min MP3 >= 500 audio-s/s per core; 30-s crops of 30-s clips >= 0.95x stock;
a 1,000,000-row manifest <= 200 MB private (USS) per worker with no growth over the epoch.
Prints the throughput table (audio-s/s per core, ours / stock, loader cores per GPU at 2,000 audio-s/s), the
targets, and the memory table. Logs go to stderr (``LOGLEVEL``, default INFO).
"""
import argparse
import contextlib
import cProfile
import gc
import json
import logging
import math
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import music_ssl  # noqa: E402,F401  (registers our tasks)
from music_ssl.data.label_files import write_sidecar  # noqa: E402
from music_ssl.data.manifest import read_manifest  # noqa: E402
from music_ssl.tasks import fields_beyond_stock  # noqa: E402

logger = logging.getLogger("input_pipeline")

RATE = 16000
LABEL_RATE = 50
K = 500
CORPUS_VERSION = 2  # bump when the corpus recipe changes (cached folders are rebuilt)
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
TASKS = {  # name -> (shipped config, stock fairseq task)
    "music2vec": ("music2vec_base", "audio_pretraining"),
    "music_hubert": ("music_hubert_base", "hubert_pretraining"),
}
GPU_RATE = 2000.0  # audio-s/s one GPU trains on (the sizing figure)
MEMORY_BATCH = 4096
MEMORY_CROP = 5 * RATE
MPG123 = "libmpg123"  # libmpg123 writes decoder notes to fd 2 (counted, not shown)


# ------------------------------------------------------------------------------------------------ the corpus

def synth(seconds: float, seed: int) -> np.ndarray:
    """(samples,) float32 in [-1, 1]: overlapping decaying tones with two harmonics, plus a little noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    out = 0.01 * rng.standard_normal(n).astype(np.float32)
    t = np.arange(2 * RATE, dtype=np.float32) / RATE  # one note lasts at most 2 s
    f0 = 110.0 * 2 ** (rng.integers(0, 36, 12) / 12)  # (12,) a scale of this song's pitches
    tones = np.sin(2 * np.pi * f0[:, None] * t) + 0.3 * np.sin(4 * np.pi * f0[:, None] * t)  # (12, 2 s)
    envelopes = 0.2 * np.exp(-np.array([2.0, 3.0, 4.5, 6.0])[:, None] * t)  # (4, 2 s)
    notes = (tones[:, None] * envelopes[None]).reshape(-1, len(t)).astype(np.float32)  # (48, 2 s)
    for start in range(0, n, RATE // 4):  # a note every 250 ms
        m = min(len(t), n - start)
        out[start:start + m] += notes[rng.integers(0, len(notes))][:m]
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def make_corpus(folder: Path, fmt: str, seconds: float, files: int, rows: int) -> Path:
    """``files`` songs of ``seconds`` in ``fmt`` under ``folder/audio``, ``rows`` manifest rows over them (hard
    links: distinct names, the same pages in the page cache), ``train.tsv``, 50 Hz labels ``train.km`` with its
    record ``train.km.json`` and ``dict.km.txt``. Reused when ``folder/done.json`` matches the recipe."""
    recipe = {"version": CORPUS_VERSION, "format": fmt, "seconds": seconds, "files": files, "rows": rows}
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()) == recipe:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "audio").mkdir(parents=True)
    container, subtype = FORMATS[fmt]
    frames = []
    for i in range(files):
        path = folder / "audio" / f"song{i:03d}.{fmt}"
        sf.write(path, synth(seconds, 1000 * i + int(seconds)), RATE, format=container, subtype=subtype)
        frames.append(sf.info(path).frames)
        if fmt == "mp3" and len(sf.read(path, dtype="float32")[0]) != frames[-1]:
            raise RuntimeError(f"{path}: decodes to another length than its header's {frames[-1]} frames")
    lines = [str(folder / "audio")]
    for r in range(rows):
        name = f"row{r:05d}.{fmt}"
        os.link(folder / "audio" / f"song{r % files:03d}.{fmt}", folder / "audio" / name)
        lines.append(f"{name}\t{frames[r % files]}")
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    write_labels(folder, [frames[r % files] for r in range(rows)], seed=int(seconds))
    write_sidecar(folder / "train.km", {"k": K, "label_rate": LABEL_RATE, "shards": 1,
                                        "manifest_rows": read_manifest(folder / "train.tsv").shards_sha256(1)})
    done.write_text(json.dumps(recipe))
    return folder


def write_labels(folder: Path, sizes, seed: int) -> None:
    """``train.km``: ceil(seconds x 50) random ids 0..K-1 per row; ``dict.km.txt``: ``"i 1"`` per id."""
    rng = np.random.default_rng(seed)
    with open(folder / "train.km", "w") as f:
        for size in sizes:
            f.write(" ".join(map(str, rng.integers(0, K, math.ceil(size / RATE * LABEL_RATE)))) + "\n")
    (folder / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(K)))


def corpus_folders(cache: Path, formats, lengths, files: int, rows: int) -> dict:
    """{(format, seconds): corpus folder}, generated where the cache lacks them."""
    start, folders = time.perf_counter(), {}
    for fmt in formats:
        for seconds in lengths:
            folder = cache / f"v{CORPUS_VERSION}_{fmt}_{seconds:g}s_{files}x{rows}"
            folders[fmt, seconds] = make_corpus(folder, fmt, seconds, files, rows)
    logger.info("corpus ready in %s (%.1f s)", cache, time.perf_counter() - start)
    return folders


# ------------------------------------------------------------------------------------------------ throughput

def task_config(task_name: str, stock: bool, data: Path, crop_seconds: float):
    """The shipped base config of ``task_name`` as fairseq's resolved config, pointed at ``data``: ours with
    ``task.crop_reading=true`` (the label rate read from ``train.km.json``), or stock fairseq's task."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.dataclass.initialize import add_defaults

    config, stock_task = TASKS[task_name]
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "config" / "pretrain" / f"{config}.yaml"))
    cfg.pop("hydra", None)
    cfg["common"].update(cpu=True, fp16=False, log_format="none")
    cfg["task"].update(data=str(data), crop_seconds=crop_seconds)
    if task_name == "music_hubert":
        cfg["task"]["label_dir"] = str(data)
    if stock:
        for key in fields_beyond_stock(cfg["task"]["_name"]):
            cfg["task"].pop(key, None)
        cfg["task"]["_name"] = stock_task
        cfg["task"]["max_sample_size"] = int(round(crop_seconds * RATE))
        if task_name == "music_hubert":
            cfg["task"]["label_rate"] = LABEL_RATE  # stock reads no record
    else:
        cfg["task"]["crop_reading"] = True
    cfg = OmegaConf.merge(OmegaConf.structured(FairseqConfig), cfg)
    add_defaults(cfg)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def build_task(task_name: str, stock: bool, data: Path, crop_seconds: float):
    from fairseq import tasks

    cfg = task_config(task_name, stock, data, crop_seconds)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    return task


def batches_forever(itr):
    """Batches of fairseq's epoch iterator, epoch after epoch (persistent workers are reused)."""
    while True:
        for batch in itr.next_epoch_itr(shuffle=True):
            yield batch


def shutdown_workers(itr) -> None:
    """Stop the persistent workers of fairseq's reused DataLoader now (left to the garbage collector, torch's
    shutdown can wait its 5-s status interval)."""
    iterator = getattr(getattr(itr, "dataloader", None), "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    gc.collect()


def time_cell(task, workers: int, batch_crops: int, budget: float, profiler=None) -> dict:
    """Crops/s and audio-s/s of ``task``'s train iterator with ``workers`` DataLoader workers (wall clock; per core
    is the caller's division). A warm-up round of max(1, workers) batches, then whole rounds for ``budget`` s
    (``profiler``, when given, runs over those only)."""
    dataset = task.dataset("train")
    max_tokens = batch_crops * max(int(dataset.num_tokens(i)) for i in range(len(dataset)))
    itr = task.get_batch_iterator(dataset=dataset, max_tokens=max_tokens, max_sentences=batch_crops,
                                  max_positions=task.max_positions(), ignore_invalid_inputs=True,
                                  required_batch_size_multiple=1, seed=1, num_workers=workers, epoch=1,
                                  disable_iterator_cache=True)
    stream = batches_forever(itr)
    per_round = max(1, workers)
    try:
        for _ in range(per_round):
            next(stream)
        crops = samples = count = 0
        workers_cpu = [worker_cpu_seconds(pid) for pid in worker_pids(itr)]
        if profiler is not None:
            profiler.enable()
        start, main_cpu = time.perf_counter(), time.process_time()
        while True:
            source = next(stream)["net_input"]["source"]  # (B, T): crops of one length, no padding
            crops, samples, count = crops + source.shape[0], samples + source.numel(), count + 1
            elapsed = time.perf_counter() - start
            if count % per_round == 0 and elapsed >= budget:
                break
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - main_cpu + sum(worker_cpu_seconds(pid) - before for pid, before
                                                   in zip(worker_pids(itr), workers_cpu))
    finally:
        stream.close()
        shutdown_workers(itr)
    return {"crops_per_s": crops / elapsed, "audio_s_per_s": samples / RATE / elapsed, "batches": count,
            "seconds": elapsed, "audio_s_per_cpu_s": samples / RATE / cpu}


def worker_pids(itr) -> list:
    """Process ids of the DataLoader workers of fairseq's epoch iterator ``itr`` (none at 0 workers)."""
    iterator = getattr(getattr(itr, "dataloader", None), "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", [])]


def worker_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_cell(task, batch_crops: int, budget: float, top: int) -> list:
    """cProfile of one workers=0 cell: the ``top`` functions by own time, as (µs per crop own, µs per crop
    cumulative, function)."""
    profiler = cProfile.Profile()
    result = time_cell(task, 0, batch_crops, budget, profiler)
    crops = result["crops_per_s"] * result["seconds"]
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    return [(1e6 * tt / crops, 1e6 * ct / crops, f"{Path(f).name}:{line}({name})")
            for (f, line, name), (_, _, tt, ct, _) in rows]


@contextlib.contextmanager
def counted_mpg123_notes(counter: list):
    """File descriptor 2 into a temporary file for the block (forked workers inherit it) while Python's stderr and
    the logging handlers keep writing to the terminal; afterwards the C library lines are written back, except
    libmpg123's decoder notes, which are counted into ``counter[0]``."""
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    python_stderr = sys.stderr
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and h.stream is python_stderr]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        sys.stderr = terminal
        for handler in handlers:
            handler.setStream(terminal)
        try:
            yield
        finally:
            for handler in handlers:
                handler.setStream(python_stderr)
            sys.stderr = python_stderr
            terminal.close()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines(keepends=True):
                if MPG123 in line:
                    counter[0] += 1
                else:
                    sys.stderr.write(line)
            sys.stderr.flush()


def throughput(folders: dict, formats, lengths, crops, task_names, workers, batch_crops: int, budget: float,
               profile: bool, top: int) -> tuple:
    """Every (format, length, crop, task) row x workers count x (ours, stock); returns (rows, profiles). The two arms
    of a workers count run back to back, in alternating order, so drifting load on the machine hits both alike."""
    rows, profiles = [], {}
    for fmt in formats:
        for seconds in lengths:
            for crop in crops:
                if crop > seconds:
                    logger.info("skipped: %g-s crops of %g-s songs", crop, seconds)
                    continue
                for task_name in task_names:
                    row_start = time.perf_counter()
                    row = {"format": fmt, "seconds": seconds, "crop": crop, "task": task_name, "cells": {}}
                    arms = {arm: build_task(task_name, arm == "stock", folders[fmt, seconds], crop)
                            for arm in ("stock", "ours")}
                    for k, n in enumerate(workers):
                        for arm in (("stock", "ours") if k % 2 == 0 else ("ours", "stock")):
                            cell = time_cell(arms[arm], n, batch_crops, budget)
                            cell["per_core"] = cell["audio_s_per_s"] / max(1, n)
                            row["cells"][arm, n] = cell
                            logger.info("%s %gs crop %gs %s %s workers=%d: %.1f crops/s, %.1f audio-s/s per core, "
                                        "%.1f audio-s per loader CPU-s (%d batches)", fmt, seconds, crop, task_name,
                                        arm, n, cell["crops_per_s"] / max(1, n), cell["per_core"],
                                        cell["audio_s_per_cpu_s"], cell["batches"])
                    if profile:
                        profiles[fmt, seconds, crop, task_name] = profile_cell(arms["ours"], batch_crops, budget, top)
                    del arms
                    rows.append(row)
                    logger.info("%s %gs crop %gs %s: %.1f s", fmt, seconds, crop, task_name,
                                time.perf_counter() - row_start)
    return rows, profiles


def length_name(seconds: float) -> str:
    return f"{seconds / 60:g}-min songs" if seconds >= 60 else f"{seconds:g}-s clips"


def cores_reference(workers) -> int:
    """The workers count whose CPU cost sizes the loader: 1 (one worker process, as in training) when measured."""
    return 1 if 1 in workers else workers[0]


def print_throughput(rows: list, workers, header: str) -> None:
    """The one throughput table: audio-s/s per core (wall clock / max(1, workers)) of both arms per workers count,
    then, at the reference workers count, audio-s per loader CPU-s (main + workers CPU time, so other load on the
    machine does not count) and the loader cores one GPU needs at ``GPU_RATE`` audio-s/s (GPU_RATE / that)."""
    ref = cores_reference(workers)
    print(header)
    head = ["format", "songs", "crop", "task"]
    for n in workers:
        head += [f"w{n} ours", f"w{n} stock", f"w{n} ours/stock"]
    head += [f"ours per CPU-s (w{ref})", f"stock per CPU-s (w{ref})", "cores/GPU ours", "cores/GPU stock"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["format"].upper(), length_name(row["seconds"]), f"{row['crop']:g} s", row["task"]]
        for n in workers:
            ours, stock = row["cells"]["ours", n]["per_core"], row["cells"]["stock", n]["per_core"]
            cells += [f"{ours:.0f}", f"{stock:.0f}", f"{ours / stock:.2f}x"]
        cpu = [row["cells"][arm, ref]["audio_s_per_cpu_s"] for arm in ("ours", "stock")]
        cells += [f"{c:.0f}" for c in cpu] + [f"{GPU_RATE / c:.2f}" for c in cpu]
        print("| " + " | ".join(cells) + " |")


def check_targets(rows: list, workers) -> list:
    """The issue's throughput targets in ``rows``: (target, unit, {workers: [(row, value, audio-s per loader CPU-s
    or None)]}, {workers: met}); met is judged on the table's figure (wall clock per core, or the ratio)."""
    def pick(fmt, seconds, crop, task=None):
        return [r for r in rows if (r["format"], r["seconds"], r["crop"]) == (fmt, seconds, crop)
                and task in (None, r["task"])]

    def per_core(r, n):
        return r["cells"]["ours", n]["per_core"], r["cells"]["ours", n]["audio_s_per_cpu_s"]

    def ratio(r, n):
        return r["cells"]["ours", n]["per_core"] / r["cells"]["stock", n]["per_core"], None

    checks = [("5-s crops of 4-min FLAC >= 2000 audio-s/s per core", pick("flac", 240, 5), per_core, 2000, ""),
              ("5-s crops of 4-min FLAC >= 20x stock", pick("flac", 240, 5), ratio, 20, "x"),
              ("MusicHuBERT with labels, 5-s crops of 4-min songs >= 15x stock",
               [r for fmt in FORMATS for r in pick(fmt, 240, 5, "music_hubert")], ratio, 15, "x"),
              ("5-s crops of 4-min MP3 >= 500 audio-s/s per core", pick("mp3", 240, 5), per_core, 500, "")]
    checks += [(f"30-s crops of 30-s {fmt.upper()} clips >= 0.95x stock", pick(fmt, 30, 30), ratio, 0.95, "x")
               for fmt in FORMATS]
    out = []
    for name, picked, value, goal, unit in checks:
        if picked:
            values = {n: [(f"{r['format']}/{r['task']}", *value(r, n)) for r in picked] for n in workers}
            out.append((name, unit, values, {n: all(v >= goal for _, v, _ in values[n]) for n in workers}))
    return out


def print_targets(targets: list) -> None:
    """One line per target: the verdict and figures per workers count (per-core targets also show audio-s per
    loader CPU-s, which other load on the machine does not lower)."""
    def shown(label, value, cpu, unit):
        if unit:
            return f"{label} {value:.2f}{unit}"
        return f"{label} {value:.0f}" + (f" (per CPU-s {cpu:.0f})" if cpu is not None else "")

    for name, unit, values, met in targets:
        verdicts = "; ".join(f"w{n} {'MET' if met[n] else 'NOT MET'}: " + ", ".join(
            shown(label, v, cpu, unit) for label, v, cpu in values[n]) for n in values)
        print(f"target {name}: {verdicts}")


def print_profiles(profiles: dict) -> None:
    for (fmt, seconds, crop, task), top in profiles.items():
        print(f"profile ours, workers=0, {fmt.upper()} {length_name(seconds)}, {crop:g}-s crops, {task}: "
              f"µs per crop (own, cumulative)")
        for own, cumulative, name in top:
            print(f"  {own:9.1f} {cumulative:9.1f}  {name}")


# ------------------------------------------------------------------------------------------------ memory

def memory_corpus(cache: Path, rows: int) -> Path:
    """``train.tsv`` of ``rows`` rows (``artist_NNNN/album_NN/track_NNNNNNNNN.flac``, 3-8 labels' worth of samples
    each; the files need not exist), ``train.km`` (those labels, one short line per row) and ``dict.km.txt``."""
    folder = cache / f"v{CORPUS_VERSION}_memory_{rows}"
    done = folder / "done.json"
    if done.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    counts = rng.integers(3, 9, rows)  # labels per row
    artists, albums = rng.integers(0, 10000, rows), rng.integers(0, 100, rows)
    with open(folder / "train.tsv", "w") as f:
        f.write(f"{folder / 'audio'}\n")
        f.writelines(f"artist_{a:04d}/album_{b:02d}/track_{i:09d}.flac\t{c * RATE // LABEL_RATE}\n"
                     for i, (a, b, c) in enumerate(zip(artists.tolist(), albums.tolist(), counts.tolist())))
    labels = rng.integers(0, K, int(counts.sum())).astype(str)
    with open(folder / "train.km", "w") as f:
        f.writelines(" ".join(line) + "\n" for line in np.split(labels, np.cumsum(counts)[:-1]))
    (folder / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(K)))
    done.write_text("{}")
    return folder


def memory_dataset(arm: str, folder: Path):
    """``arm`` = "{ours|stock}:{music2vec|music_hubert}": the dataset class that task builds, over ``folder``."""
    side, task_name = arm.split(":")
    tsv = str(folder / "train.tsv")
    if task_name == "music2vec":
        if side == "stock":
            from fairseq.data.audio.raw_audio_dataset import FileAudioDataset
            return FileAudioDataset(tsv, sample_rate=RATE, max_sample_size=MEMORY_CROP, min_sample_size=0)
        from music_ssl.data.crop_reading_audio_dataset import CropReadingAudioDataset
        return CropReadingAudioDataset(tsv, sample_rate=RATE, max_sample_size=MEMORY_CROP, min_sample_size=0, seed=1)
    from fairseq.data import Dictionary
    dictionary = Dictionary()
    for i in range(K):
        dictionary.add_symbol(str(i))
    common = dict(sample_rate=RATE, label_paths=[str(folder / "train.km")], label_rates=float(LABEL_RATE),
                  pad_list=[dictionary.pad()], eos_list=[dictionary.eos()], max_sample_size=MEMORY_CROP,
                  random_crop=True)
    if side == "stock":
        from fairseq.data.audio.hubert_dataset import HubertDataset
        from fairseq.tasks.hubert_pretraining import LabelEncoder
        return HubertDataset(tsv, label_processors=[LabelEncoder(dictionary)], store_labels=False, **common)
    from music_ssl.data.crop_reading_hubert_dataset import CropReadingHubertDataset
    return CropReadingHubertDataset(tsv, dictionaries=[dictionary], seed=1, **common)


def row_reader(dataset, arm: str):
    """What the arm's ``__getitem__`` reads of row ``i`` before opening any file (names, label offsets)."""
    side, task_name = arm.split(":")
    if task_name == "music2vec":
        names = dataset.fnames
        if side == "stock":  # fairseq keeps each name compressed (bytes at level none)
            return lambda i: os.path.join(dataset.root_dir, dataset.text_compressor.decompress(names[i]))
        return lambda i: os.path.join(dataset.root_dir, names[i])
    names = dataset.audio_names
    offsets = dataset.label_offsets_list[0] if side == "stock" else dataset.label_bytes[0]

    def read(i):
        start, end = offsets[i]
        return os.path.join(dataset.audio_root, names[i]), int(start), int(end)
    return read


def deep_bytes(obj, sample: int = 2000) -> int:
    """Estimated bytes held by ``obj``: numpy arrays by ``nbytes``, lists by their slots plus ``len`` x the mean
    size of up to ``sample`` elements (recursively), StringTable by its arrays, other objects by ``getsizeof``."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if hasattr(obj, "nbytes") and hasattr(obj, "offsets"):  # StringTable
        return int(obj.nbytes)
    if isinstance(obj, (list, tuple)):
        if not obj:
            return sys.getsizeof(obj)
        step = max(1, len(obj) // sample)
        picked = obj[::step]
        return sys.getsizeof(obj) + int(len(obj) * sum(deep_bytes(x, sample) for x in picked) / len(picked))
    return sys.getsizeof(obj)


def dataset_bytes(dataset) -> int:
    """Bytes of the dataset's per-row state (its attributes that grow with the manifest)."""
    return sum(deep_bytes(value) for value in vars(dataset).values()
               if isinstance(value, (np.ndarray, list, tuple, set)) or hasattr(value, "offsets"))


def smaps_rollup() -> dict:
    """This process's Rss, Pss and USS (Private_Clean + Private_Dirty) in bytes."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


class TouchRows:
    """A DataLoader ``collate_fn``: reads each index's row (``row_reader``) in the worker, returns its memory."""

    def __init__(self, read):
        self.read = read

    def __call__(self, indices):
        for i in indices:
            self.read(i)
        return smaps_rollup()


class Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def memory_arm(arm: str, folder: Path) -> dict:
    """One arm in this process: construct its dataset, walk one epoch in one forked worker; figures in bytes."""
    logging.getLogger("fairseq.data.audio.hubert_dataset").setLevel(logging.ERROR)  # no per-row warnings
    start = time.perf_counter()
    dataset = memory_dataset(arm, folder)
    construct_s = time.perf_counter() - start
    n = len(dataset.sizes)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(n)), MEMORY_BATCH, False)
    loader = torch.utils.data.DataLoader(Indices(n), batch_sampler=sampler, num_workers=1,
                                         collate_fn=TouchRows(row_reader(dataset, arm)),
                                         multiprocessing_context="fork")
    start = time.perf_counter()
    first = last = None
    for memory in loader:
        first = first or memory
        last = memory
    return {"arm": arm, "rows": n, "construct_s": construct_s, "epoch_s": time.perf_counter() - start,
            "dataset_bytes": dataset_bytes(dataset), "parent_rss": smaps_rollup()["rss"], "start": first, "end": last}


def memory(cache: Path, rows: int, task_names) -> list:
    """Each arm in a fresh interpreter (so no arm's garbage is in another's worker), as many at once as there are
    CPUs (memory figures do not depend on the CPU); returns their figures in arm order."""
    folder = memory_corpus(cache, rows)
    arms = [f"{side}:{task_name}" for task_name in task_names for side in ("ours", "stock")]
    results, running = {}, {}
    for arm in arms + [None] * (os.cpu_count() or 1):
        if arm is not None:
            running[arm] = subprocess.Popen([sys.executable, __file__, "--memory-arm", arm, "--memory-folder",
                                             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if len(running) >= (os.cpu_count() or 1) or (arm is None and running):
            done, proc = next(iter(running.items()))
            out, err = proc.communicate()
            del running[done]
            if proc.returncode:
                raise RuntimeError(f"memory arm {done} failed:\n{err[-4000:]}")
            results[done] = r = json.loads(out.strip().splitlines()[-1])
            logger.info("memory %s: %d rows, worker USS %.1f -> %.1f MB", done, r["rows"], r["start"]["uss"] / 1e6,
                        r["end"]["uss"] / 1e6)
    return [results[arm] for arm in arms]


def print_memory(results: list) -> None:
    mb = 1e6
    rows = results[0]["rows"] if results else 0
    print(f"memory: {rows} manifest rows, one forked DataLoader worker reading every row's name (and label offsets) "
          f"in batches of {MEMORY_BATCH}; MB = 1e6 bytes; USS = private to the worker")
    head = ["task", "arm", "construct s", "dataset MB", "parent RSS", "worker RSS start", "RSS end", "PSS start",
            "PSS end", "USS start", "USS end", "USS growth"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        side, task_name = r["arm"].split(":")
        s, e = r["start"], r["end"]
        cells = [task_name, side, f"{r['construct_s']:.1f}", f"{r['dataset_bytes'] / mb:.1f}",
                 f"{r['parent_rss'] / mb:.0f}", f"{s['rss'] / mb:.0f}", f"{e['rss'] / mb:.0f}", f"{s['pss'] / mb:.0f}",
                 f"{e['pss'] / mb:.0f}", f"{s['uss'] / mb:.1f}", f"{e['uss'] / mb:.1f}",
                 f"{(e['uss'] - s['uss']) / mb:+.1f}"]
        print("| " + " | ".join(cells) + " |")
    for r in results:
        if r["arm"].startswith("ours"):
            growth = (r["end"]["uss"] - r["start"]["uss"]) / mb
            met = r["end"]["uss"] / mb <= 200 and growth <= 5
            print(f"target {r['arm']} <= 200 MB private per worker, no growth (<= 5 MB): {'MET' if met else 'NOT MET'} "
                  f"(USS end {r['end']['uss'] / mb:.1f} MB, growth {growth:+.1f} MB)")


# ------------------------------------------------------------------------------------------------ main

QUICK = dict(formats=["wav", "flac"], lengths=[20.0], crops=[5.0], workers=[0, 1], budget=0.2, files=4, rows=64,
             memory_rows=100_000)
FULL = dict(formats=list(FORMATS), lengths=[30.0, 240.0], crops=[5.0, 30.0], workers=[0, 1, 2], budget=0.5, files=8,
            rows=256, memory_rows=1_000_000)


def main(quick: bool = False, cache=None, formats=None, lengths=None, crops=None, tasks=None, workers=None,
         budget=None, batch: int = 8, files=None, rows=None, memory_rows=None, skip_memory: bool = False,
         skip_throughput: bool = False, profile: bool = False, top: int = 12) -> dict:
    preset = QUICK if quick else FULL
    formats, lengths, crops = formats or preset["formats"], lengths or preset["lengths"], crops or preset["crops"]
    workers = workers if workers is not None else preset["workers"]
    tasks = tasks or list(TASKS)
    budget, files, rows = budget or preset["budget"], files or preset["files"], rows or preset["rows"]
    cache = Path(cache or Path(tempfile.gettempdir()) / "music-ssl-input-pipeline")
    torch.set_num_threads(1)  # a loader core: fairseq's workers run torch with one thread too
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # fairseq's DataLoader pins; no GPU here
    warnings.filterwarnings("ignore", message=".*non-tuple sequence for multidimensional indexing.*")  # fairseq's
    started = time.perf_counter()
    out = {}
    if not skip_throughput:
        load_before = os.getloadavg()[0]
        folders = corpus_folders(cache, formats, lengths, files, rows)
        corpus_s = time.perf_counter() - started
        notes = [0]
        with counted_mpg123_notes(notes):
            out["throughput"], out["profiles"] = throughput(folders, formats, lengths, crops, tasks, workers, batch,
                                                            budget, profile, top)
        header = (f"input pipeline: {os.cpu_count()} CPUs, load average {load_before:.1f} before / "
                  f"{os.getloadavg()[0]:.1f} after; torch threads 1; corpus {files} songs per format and length, "
                  f"{rows} manifest rows each (ready in {corpus_s:.1f} s); batches of {batch} crops, {budget:g} s "
                  f"timed per cell; wN = N DataLoader workers; audio-s/s PER CORE = wall-clock rate / max(1, N) "
                  f"(crops/s = that / crop seconds); cores/GPU = {GPU_RATE:g} / audio-s per loader CPU-s at "
                  f"w{cores_reference(workers)}; libmpg123 decoder notes on stderr (MP3 seeks): {notes[0]}")
        print_throughput(out["throughput"], workers, header)
        out["targets"] = check_targets(out["throughput"], workers)
        print_targets(out["targets"])
        print_profiles(out["profiles"])
    if not skip_memory:
        out["memory"] = memory(cache, memory_rows or preset["memory_rows"], tasks)
        print_memory(out["memory"])
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return out


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI size: WAV+FLAC 20-s songs, 5-s crops, workers 0 1")
    p.add_argument("--cache", help="corpus folder (default: <tmp>/music-ssl-input-pipeline; reused across runs)")
    p.add_argument("--formats", nargs="+", choices=list(FORMATS))
    p.add_argument("--lengths", nargs="+", type=float, help="song lengths in seconds (default 30 240)")
    p.add_argument("--crops", nargs="+", type=float, help="crop seconds (default 5 30)")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS))
    p.add_argument("--workers", nargs="+", type=int, help="DataLoader workers counts (default 0 1 2)")
    p.add_argument("--budget", type=float, help="timed seconds per cell (default 0.5; quick 0.2)")
    p.add_argument("--batch", type=int, default=8, help="crops per batch (default 8)")
    p.add_argument("--files", type=int, help="distinct songs per corpus (default 8)")
    p.add_argument("--rows", type=int, help="manifest rows per corpus, hard links over the songs (default 256)")
    p.add_argument("--memory-rows", dest="memory_rows", type=int, help="rows of the memory manifest (default 1e6)")
    p.add_argument("--skip-memory", dest="skip_memory", action="store_true")
    p.add_argument("--skip-throughput", dest="skip_throughput", action="store_true")
    p.add_argument("--profile", action="store_true", help="also cProfile ours at workers=0 on every row")
    p.add_argument("--top", type=int, default=12, help="functions listed per profile (default 12)")
    p.add_argument("--memory-arm", dest="memory_arm", help=argparse.SUPPRESS)  # internal: one memory arm
    p.add_argument("--memory-folder", dest="memory_folder", help=argparse.SUPPRESS)
    args = vars(p.parse_args())
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for name in ("fairseq", "music_ssl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    arm, folder = args.pop("memory_arm"), args.pop("memory_folder")
    if arm:
        print(json.dumps(memory_arm(arm, Path(folder))))
        return
    main(**args)


if __name__ == "__main__":
    cli()
