"""On-disk feature cache keyed by everything that affects the features.

Key = sha256 of: the source's identity (checkpoint / model-folder content hash, random init and its seed, kept
layers, chunking; Jukebox file listing and size; baseline, librosa version, sample rate and hop — an encoder's
sample rate is fixed by its checkpoint, so its hash covers it), the pooling mode, window and hop, the
``Encoding`` (windows encoded alone or from the whole file, waveform normalisation, crop, silence trimming),
``FEATURE_CODE_VERSION`` and the package version, and every audio file (path, size, mtime). Change any of them
and the key changes, so a stale entry is never read.
An entry is one ``.npz``: ``data`` (sum of rows, S, C), ``offsets`` (arrays + 1), ``layer_names``,
``frame_rate`` and, for frames of windows encoded alone, ``owners`` and ``starts`` (see :class:`FeatureSet`);
written to a temporary name and renamed when complete; an unreadable entry is recomputed.
"""
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ...core.atomic import atomic_path
from ...core.fingerprint import json_sha256
from ...core.version import __version__
from ...data.audio import audio_info
from ..errors import ProbeDataError
from .encoding import Encoding, WindowFrames

logger = logging.getLogger(__name__)
FEATURE_CODE_VERSION = 3  # bump when extraction or pooling code changes what it computes (2: soxr resampling, #19;
# 3: the Encoding in the key, windows encoded alone, waveform z-score, #22)
CACHE_FIX = "set cache_dir to a folder on another disk (or cache_dir=null: no cache)"  # a full / read-only cache


@dataclass
class FeatureSet:
    """Features of a list of files: ``arrays[i]`` is (W or T, S, C) of file i; ``layer_names``: S names.

    Frames of windows encoded alone (``Encoding(encode="window")`` with ``pooling="frames"``: beat training crops)
    are one array per window instead, (T_w, S, C), and ``windows`` = (owners (N,) int64: the index of each
    window's file in the list, in file order; starts (N,) float64: its start in that file, seconds).
    """
    arrays: list
    layer_names: list
    frame_rate: Optional[float]
    from_cache: bool
    windows: Optional[tuple] = None

    def complete(self, num_files: int) -> bool:
        """Whether every one of ``num_files`` files has its features (at least one window when windowed)."""
        if self.windows is None:
            return len(self.arrays) == num_files
        owners = np.asarray(self.windows[0])
        return len(owners) == len(self.arrays) and np.array_equal(np.unique(owners), np.arange(num_files))

    def file_of(self, index: int) -> int:
        """The file index of ``arrays[index]``."""
        return index if self.windows is None else int(self.windows[0][index])


def cache_key(source, paths: list, pooling: str, window, hop, encoding: Encoding = Encoding()) -> str:
    files = []
    for path in paths:
        audio_info(path)  # clear error for missing / unreadable files before anything else
        stat = Path(path).stat()
        files.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    blob = {"source": source.identity(), "pooling": pooling, "window": window, "hop": hop,
            "encoding": encoding.key(), "code": FEATURE_CODE_VERSION, "package": __version__, "files": files}
    return json_sha256(blob)


def _write_atomic(path: Path, **arrays) -> None:
    size = sum(np.asarray(a).nbytes for a in arrays.values())  # np.savez stores the arrays uncompressed
    with atomic_path(path, size=size, fix=CACHE_FIX) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _pack(features: FeatureSet) -> dict:
    lengths = [a.shape[0] for a in features.arrays]
    windows = {} if features.windows is None else {"owners": np.asarray(features.windows[0], np.int64),
                                                    "starts": np.asarray(features.windows[1], np.float64)}
    return {"data": np.concatenate(features.arrays), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
            "layer_names": np.array(features.layer_names), "frame_rate": np.array(features.frame_rate or np.nan),
            **windows}


def _unpack(path: Path) -> FeatureSet:
    with np.load(path) as entry:
        data, offsets = entry["data"], entry["offsets"]
        rate = float(entry["frame_rate"])
        names = [str(n) for n in entry["layer_names"]]
        windows = (entry["owners"], entry["starts"]) if "owners" in entry.files else None
    arrays = [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return FeatureSet(arrays, names, None if np.isnan(rate) else rate, from_cache=True, windows=windows)


def _flatten_windows(arrays: list) -> tuple:
    """A source's per-file ``WindowFrames`` -> (one array per window, (owners, starts)); other arrays as they are."""
    if not arrays or not isinstance(arrays[0], WindowFrames):
        return arrays, None
    flat, owners, starts = [], [], []
    for owner, frames in enumerate(arrays):
        flat += list(frames.arrays)
        owners += [owner] * len(frames.arrays)
        starts += list(frames.starts)
    return flat, (np.array(owners, np.int64), np.array(starts, np.float64))


def check_finite(features: FeatureSet, paths: list, kind: str) -> None:
    """ProbeDataError naming the first file whose features hold NaN/Inf: one such file turns the standardisation
    statistics and every probe's loss into NaN, and every layer scores at chance."""
    for index, array in enumerate(features.arrays):  # array: (W or T, S, C)
        path = paths[features.file_of(index)]
        if not array.size or (np.isfinite(array.min()) and np.isfinite(array.max())):  # NaN propagates
            continue
        bad = ~np.isfinite(array).all(axis=2)  # (W or T, S)
        layers = [features.layer_names[i] for i in np.flatnonzero(bad.any(axis=0))]
        half = (" or beyond float16's range (65504: frame features are stored as float16)"
                if array.dtype == np.float16 else "")
        raise ProbeDataError(f"{path}: its {kind} features hold NaN/Inf in {int(bad.any(axis=1).sum())} of "
                             f"{len(array)} frames/windows ({', '.join(layers[:3])}{', …' if len(layers) > 3 else ''}"
                             f"), computed from finite input (audio samples are checked when read){half}: check "
                             f"the checkpoint (NaN/Inf weights?) or drop the file.")


def takes_encoding(source) -> bool:
    """Whether ``source.extract`` accepts an ``encoding`` (sources that encode audio do; precomputed ones don't)."""
    return "encoding" in inspect.signature(source.extract).parameters


def load_features(source, paths: list, pooling: str, window=None, hop=None, cache_dir=None,
                  encoding: Encoding = None) -> FeatureSet:
    """Features of ``paths`` from ``source``: from the cache when the key matches, else extracted and stored.

    Args:
        cache_dir: folder of cache entries (None = no caching).
        encoding: how audio reaches the encoder (``features.encoding``; None = whole files, the model's own
            waveform rule). A source of precomputed features (Jukebox) ignores it, and says so.
    """
    encoding = encoding or Encoding()
    if not encoding.default and not takes_encoding(source):
        logger.warning("%s features are precomputed: the task's encoding rules %s do not apply to them",
                       source.kind, encoding.key())
        encoding = Encoding()
    key = cache_key(source, paths, pooling, window, hop, encoding) if cache_dir else None
    entry = Path(cache_dir) / key[:2] / f"{key}.npz" if key else None
    if entry is not None and entry.exists():
        try:
            features = _unpack(entry)
        except Exception as err:  # a damaged entry is recomputed, and said so
            logger.warning("feature cache entry %s unreadable (%s); recomputing", entry, err)
        else:
            if features.complete(len(paths)):
                logger.info("feature cache hit: %s", entry)
                check_finite(features, paths, source.kind)
                return features
    logger.info("extracting %s features of %d files%s", source.kind, len(paths), f" for {entry}" if entry else "")
    extra = {"encoding": encoding} if not encoding.default else {}
    arrays, names, rate = source.extract(list(paths), pooling, window, hop, **extra)
    arrays, windows = _flatten_windows(arrays)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise ProbeDataError(f"{source.kind} features of different shapes {sorted(shapes)[:3]}; one source must "
                             "give one (S, C) per frame/window.")
    features = FeatureSet(arrays, names, rate, from_cache=False, windows=windows)
    check_finite(features, paths, source.kind)
    if entry is not None:
        _write_atomic(entry, **_pack(features))
        logger.info("feature cache stored: %s", entry)
    return features
