"""Feature shards on disk: ``{feat_dir}/{split}_{rank}_{nshard}.npy`` (all frames of the shard's rows,
concatenated, float32 (F, D)) and ``.len`` (frames per row, one per line), as fairseq's ``dump_*_feature.py``.

The frame count of every row is known before extraction (``extractor.frames``), so the ``.npy`` is
pre-allocated as a memory map and filled row by row: RAM holds one file's features at a time. Both files
are written atomically; a ``.npy.done`` marker keyed on the extractor settings and the shard's manifest rows
makes a re-run skip complete shards and redo partial or stale ones.
"""
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Tuple

import numpy as np
from tqdm import tqdm

from ..core.fingerprint import json_sha256
from ..core.atomic import atomic_path, preallocate, write_text_atomic
from ..data.audio import read_training_audio
from ..data.errors import AudioError, ManifestError
from ..data.manifest import moved_root, read_manifest, shard_range
from .errors import LabelPrepError
from .settings import FeatureSettings
from .shards import clear_marker, is_done, mark_done, read_marker, shard_stem

logger = logging.getLogger(__name__)

PREFETCH_FILES = 4  # files decoded ahead of the extractor by a reader thread


def make_extractor(settings: FeatureSettings, device=None):
    """The extractor of ``settings`` (:class:`music_ssl.labels.settings.FeatureSettings`, checked when made):
    ``feature="mfcc"`` → :class:`MfccFeatures`, ``feature="layer"`` → :class:`LayerFeatures` on ``device``."""
    if settings.feature == "layer":
        from .layer import LayerFeatures

        return LayerFeatures(settings.checkpoint, settings.layer, device, settings.chunk_seconds)
    from .mfcc import MfccFeatures

    return MfccFeatures(settings.n_mfcc)


def feature_paths(feat_dir, split: str, nshard: int, rank: int) -> Tuple[Path, Path]:
    """(``.npy`` frames, ``.len`` frames per row) of one shard."""
    stem = Path(feat_dir) / shard_stem(split, rank, nshard)
    return stem.with_suffix(".npy"), stem.with_suffix(".len")


def prefetch(fn: Callable, items: Iterable, depth: int = PREFETCH_FILES) -> Iterator:
    """``map(fn, items)`` computed by a background thread, at most ``depth`` results ahead."""
    with ThreadPoolExecutor(1) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def dump_features(tsv_dir, split: str, nshard: int, rank: int, feat_dir, extractor) -> Path:
    """Extract features of shard ``rank`` of ``nshard`` of ``{tsv_dir}/{split}.tsv`` into ``feat_dir``.

    Skips the shard when it is already complete for these rows and settings. Returns the ``.npy`` path.
    Raises AudioError naming the file for unreadable, empty, wrong-rate, multi-channel or changed audio.
    """
    manifest = read_manifest(Path(tsv_dir) / f"{split}.tsv")
    if moved := moved_root(manifest):  # one line for a moved corpus, not "file not found" for its first row
        raise ManifestError(moved)
    start, end = shard_range(len(manifest), nshard, rank)
    sizes = manifest.sizes[start:end]
    npy, lengths_path = feature_paths(feat_dir, split, nshard, rank)
    key = json_sha256({"features": extractor.config(), "root": str(manifest.root),
                       "rows": manifest.relpaths[start:end], "sizes": sizes.tolist()})
    if is_done(npy, key):
        logger.info("%s: complete, skipped", npy)
        return npy
    frames = np.asarray([extractor.frames(int(n)) for n in sizes], dtype=np.int64)  # (R,)
    check_frame_counts(manifest, start, frames)
    logger.info("%s: rows %d-%d of %d, %d frames x %d", npy, start, end, len(manifest), frames.sum(), extractor.dim)
    clear_marker(npy)  # from here until mark_done the shard is incomplete (a kill → redone on the next run)
    nbytes = int(frames.sum()) * extractor.dim * np.dtype(np.float32).itemsize  # checked free before extracting
    with atomic_path(npy, size=nbytes, fix="choose a FEAT_DIR (OUT_DIR of `all`) on another disk") as tmp:
        fill_features(tmp, manifest, start, frames, extractor, desc=npy.stem)
    write_text_atomic(lengths_path, "".join(f"{n}\n" for n in frames))
    mark_done(npy, key, features=extractor.config(), frame_rate=extractor.frame_rate, rows=len(frames),
              frames=int(frames.sum()), dim=extractor.dim, rows_sha256=manifest.rows_sha256(start, end))
    return npy


def check_frame_counts(manifest, start: int, frames: np.ndarray) -> None:
    """Raise AudioError for the first row too short to give a single frame (empty, or under one window)."""
    short = np.flatnonzero(frames <= 0)
    if len(short):
        row = start + int(short[0])
        raise AudioError(f"{manifest.audio_path(row)}: {manifest.sizes[row]} samples in {manifest.path} give no "
                         f"feature frame (empty or too short; {len(short)} such rows); remove these files and "
                         f"regenerate the manifest with `music-ssl-manifest`.")


def fill_features(tmp: Path, manifest, start: int, frames: np.ndarray, extractor, desc: str) -> None:
    """Write every row's features into a pre-allocated (sum(frames), D) float32 ``.npy`` memory map."""
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(int(frames.sum()), extractor.dim))
    preallocate(tmp, tmp.stat().st_size)  # a full disk: ENOSPC now, not SIGBUS when a page of the map is written
    offsets = np.concatenate([[0], np.cumsum(frames)])  # (R + 1,)

    def read(row: int) -> Tuple[int, np.ndarray]:
        return row, read_training_audio(manifest.audio_path(row), int(manifest.sizes[row]), extractor.sample_rate)

    rows = range(start, start + len(frames))
    for row, wav in tqdm(prefetch(read, rows), total=len(frames), desc=desc, unit="file"):
        i = row - start
        try:
            feats = extractor(wav)  # (T, D)
        except AudioError as err:
            raise AudioError(f"{manifest.audio_path(row)}: {err}") from None
        if feats.shape != (frames[i], extractor.dim):
            raise LabelPrepError(f"{manifest.audio_path(row)}: extractor gave {feats.shape} features, expected "
                                 f"({frames[i]}, {extractor.dim}); report this bug with the file's length.")
        check_finite_features(feats, manifest, row)
        out[offsets[i]: offsets[i + 1]] = feats
    out.flush()
    del out


def check_finite_features(feats: np.ndarray, manifest, row: int) -> None:
    """LabelPrepError naming the manifest row and its file unless every value of ``feats`` (T, D) is finite: one
    NaN frame makes the k-means inertia NaN and labels every frame of every file 0, with exit 0."""
    bad = ~np.isfinite(feats).all(axis=1)  # (T,)
    if bad.any():
        first = int(np.argmax(bad))
        raise LabelPrepError(f"{manifest.path}:{row + 2}: {manifest.audio_path(row)}: {int(bad.sum())} of its "
                             f"{len(feats)} feature frames hold NaN/Inf (the first: frame {first}) although its "
                             f"samples are finite: the extractor overflowed (float samples far beyond [-1, 1]?) or "
                             f"the checkpoint holds NaN/Inf weights; fix the file or checkpoint, or drop the row "
                             f"(`music-ssl-manifest audit {manifest.path.parent} --write-clean`).")


def load_shard(feat_dir, split: str, nshard: int, rank: int) -> Tuple[np.ndarray, np.ndarray, dict]:
    """A complete shard: (features (F, D) float32 memory map, frames per row (R,) int64, its marker)."""
    npy, lengths_path = feature_paths(feat_dir, split, nshard, rank)
    marker = read_marker(npy)
    if marker is None or not lengths_path.exists():
        raise LabelPrepError(f"{npy}: features missing or incomplete; run `music-ssl-kmeans features "
                             f"TSV_DIR {split} {nshard} {rank} {feat_dir}` (or `all`).")
    feats = np.load(npy, mmap_mode="r")
    lengths = np.asarray(lengths_path.read_text().split(), dtype=np.int64)  # (R,)
    if lengths.sum() != len(feats) or marker.get("rows") != len(lengths):
        raise LabelPrepError(f"{npy}: {len(feats)} frames but {lengths_path.name} lists {lengths.sum()} in "
                             f"{len(lengths)} rows; delete the shard and rerun the features stage.")
    return feats, lengths, marker
