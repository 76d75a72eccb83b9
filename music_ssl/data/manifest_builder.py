"""Audio folders → fairseq manifests ``{dest}/train.tsv`` and ``{dest}/valid.tsv``.

Scans a folder tree for audio files (by extension), optionally converts every track to 16 kHz mono FLAC
cut into fixed-length clips (:mod:`music_ssl.data.convert`), and splits *tracks* (so clips of one track
never straddle train and valid) into train/valid by a percentage and a seed. Files that cannot be used
are reported one line each and counted in the summary; ``strict`` makes any of them fatal. Files whose relpath a
manifest cannot hold (a TAB, a line break, leading whitespace, bytes that are not UTF-8) are skipped so, before any
decoding, and a split without rows is not written (every reader refuses an empty manifest).

A plain scan decodes every file to the end (in ``jobs`` worker processes) and lists the decoded sample count:
a file that is cut short (whose header still looks fine), holds NaN/Inf samples, is an MP3 whose length libsndfile
only estimated (no Xing/Info header: reads would stop at the estimate), is not audio, is not 16 kHz mono (stereo is
refused; ``convert_dir`` downmixes) or is shorter than ``min_seconds`` (default 1 s, as the converter) is
skipped.
"""
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..core.workers import ordered_map
from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE, inspect_audio
from .convert import MIN_SECONDS, convert_track
from .errors import AudioError, ManifestError
from .manifest import UNHOLDABLE, name_problem, printable, root_problem, write_manifest
from .mp3 import REENCODE_MP3_FIX

logger = logging.getLogger(__name__)

Rows = List[Tuple[str, int]]  # (relpath under the manifest root, num_samples)
SHORT = "shorter than min_seconds"
NAME = "name a manifest cannot hold"  # a TAB, a line break, leading whitespace or bytes that are not UTF-8
SKIP_REASONS = {"missing": "unreadable", "unreadable": "unreadable", "not audio": "not audio", "empty": "empty",
                "truncated": "truncated", "non-finite": "non-finite samples", "rate": "not 16 kHz mono",
                "channels": "not 16 kHz mono", "folder": "unreadable", "length": "MP3 length only estimated"}
CONVERT_FIX = "set convert_dir to convert the corpus to 16 kHz mono FLAC (stereo is downmixed)"
SKIP_FIXES = {"empty": "delete it", "not audio": "remove it or rename it (files are listed by extension)",
              "non-finite": "repair or replace it (NaN/Inf samples poison training and k-means), or remove it",
              "rate": CONVERT_FIX, "channels": CONVERT_FIX, "length": REENCODE_MP3_FIX}


@dataclass
class Source:
    """One scanned track: its rows in the manifest, or why it was skipped."""

    path: Path
    rows: Rows = field(default_factory=list)
    skipped: Optional[str] = None  # reason category, e.g. "unreadable"
    message: str = ""  # one line naming the file and the fix
    dropped_seconds: float = 0.0


@dataclass
class ManifestSummary:
    """Counts of one manifest run (what the CLI prints)."""

    found: int
    rows: Dict[str, int]  # split -> rows written
    seconds: Dict[str, float]  # split -> seconds of audio
    skipped: Dict[str, int]  # reason -> files
    dropped_tail_seconds: float = 0.0
    converted: bool = False

    def lines(self) -> List[str]:
        """Human-readable summary, one fact per line."""
        out = [f"found {self.found} audio files" + (", converted to 16 kHz mono FLAC" if self.converted else "")]
        out += [f"{split}: {self.rows[split]} rows, {self.seconds[split] / 3600:.2f} h ({self.seconds[split]:.0f} s)"
                for split in self.rows]
        out += [f"skipped ({reason}): {n} files" for reason, n in sorted(self.skipped.items())]
        if self.dropped_tail_seconds:
            out.append(f"dropped {self.dropped_tail_seconds:.1f} s of audio shorter than min_seconds "
                       f"(track ends, short tracks)")
        return out


def find_audio(audio_dir: Path, extensions: Sequence[str], exclude: Sequence[Path] = ()) -> List[Path]:
    """Sorted audio files under ``audio_dir`` by extension (case-insensitive), skipping hidden files and ``exclude``."""
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    found = []
    for folder, dirs, files in os.walk(audio_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(folder, d).resolve() not in exclude)
        found += [Path(folder, f) for f in files if Path(f).suffix.lower() in wanted and not f.startswith(".")]
    return sorted(found)


def inspect_source(job: Tuple[Path, Path, float]) -> Source:
    """A track used as it is (picklable for workers): one row with its decoded sample count if it is 16 kHz mono
    audio that decodes to the end and lasts ``min_seconds``, else a skip reason."""
    path, audio_dir, min_seconds = job
    samples, problem = inspect_audio(path, SAMPLE_RATE)
    if problem:
        fix = SKIP_FIXES.get(problem.kind, "re-encode it as wav/flac or remove it")
        return Source(path, skipped=SKIP_REASONS[problem.kind], message=f"{path}: {problem.detail}; {fix}.")
    if samples < max(int(round(min_seconds * SAMPLE_RATE)), 1):
        return Source(path, skipped=SHORT, dropped_seconds=samples / SAMPLE_RATE,
                      message=f"{path}: {samples / SAMPLE_RATE:.3f} s, shorter than min_seconds={min_seconds:g}; "
                              f"lower min_seconds to keep it.")
    return Source(path, rows=[(str(path.relative_to(audio_dir)), samples)])


def convert_source(job: Tuple[Path, Path, Path, Optional[float], float]) -> Source:
    """A track converted into ``convert_dir``: its clips as rows, or a skip reason (picklable for workers)."""
    path, audio_dir, convert_dir, segment_seconds, min_seconds = job
    dest_stem = convert_dir / path.relative_to(audio_dir).with_suffix("")
    try:
        converted = convert_track(path, dest_stem, segment_seconds, min_seconds)
    except AudioError as err:
        return Source(path, skipped=SKIP_REASONS.get(err.kind, "unreadable"), message=str(err))
    rows = [(str(clip.relative_to(convert_dir)), n) for clip, n in converted.clips]
    if not rows:
        return Source(path, skipped=SHORT, dropped_seconds=converted.dropped_seconds,
                      message=f"{path}: shorter than min_seconds={min_seconds:g}; lower min_seconds to keep it.")
    return Source(path, rows=rows, dropped_seconds=converted.dropped_seconds)


def listing_problem(relpath: Path) -> Optional[str]:
    """Why a file at ``relpath`` cannot be a manifest row ("file name holds a TAB", "folder name 'a\\nb' holds a
    newline", …), None when it can."""
    problem = name_problem(str(relpath))
    if problem is None:
        return None
    if name_problem(relpath.name) == problem:
        return f"file name {problem}"
    folder = next((part for part in relpath.parts if name_problem(part) == problem), relpath.parts[0])
    return f"folder name '{printable(folder)}' {problem}"


def drop_unholdable_names(paths: List[Path], audio_dir: Path) -> Tuple[List[Path], List[Source]]:
    """Files whose relpath a manifest cannot hold (:func:`music_ssl.data.manifest.name_problem`) are skipped with
    the reason: listed, they would make the manifest unreadable for every reader (converted, their clips too)."""
    kept, skipped = [], []
    for path in paths:
        problem = listing_problem(path.relative_to(audio_dir))
        if problem:
            skipped.append(Source(path, skipped=NAME, message=f"{printable(path)}: {problem}, {UNHOLDABLE}; "
                                                              f"rename it."))
        else:
            kept.append(path)
    return kept, skipped


def drop_name_clashes(paths: List[Path], audio_dir: Path) -> Tuple[List[Path], List[Source]]:
    """Tracks whose converted name clashes with an earlier one (``a.wav`` and ``a.mp3`` → ``a.flac``) are skipped."""
    kept, clashes, seen = [], [], {}
    for path in paths:
        stem = path.relative_to(audio_dir).with_suffix("")
        if stem in seen:
            clashes.append(Source(path, skipped="name clash", message=f"{path}: converts to the same name as "
                                  f"{seen[stem]}; rename one of them."))
        else:
            seen[stem] = path
            kept.append(path)
    return kept, clashes


def valid_mask(n: int, valid_percent: float, seed: int) -> np.ndarray:
    """(n,) bool: which tracks go to valid — round(n × percent) of them, at least one when percent > 0 and n ≥ 2."""
    if not 0.0 <= valid_percent < 1.0:
        raise ManifestError(f"valid_percent={valid_percent}: must be in [0, 1) (a fraction, e.g. 0.01 for 1%).")
    n_valid = int(round(n * valid_percent))
    if valid_percent > 0 and n_valid == 0 and n >= 2:
        n_valid = 1
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_valid]] = True
    return mask


def scan_sources(paths: List[Path], audio_dir: Path, convert_dir: Optional[Path], segment_seconds: Optional[float],
                 min_seconds: float, jobs: int) -> List[Source]:
    """Decode or convert every track in ``jobs`` worker processes, with a progress bar."""
    if convert_dir is None:
        work = [(p, audio_dir, min_seconds) for p in paths]
        return list(tqdm(ordered_map(inspect_source, work, jobs), total=len(work), desc="scan", unit="file"))
    paths, clashes = drop_name_clashes(paths, audio_dir)
    work = [(p, audio_dir, convert_dir, segment_seconds, min_seconds) for p in paths]
    sources = list(tqdm(ordered_map(convert_source, work, jobs), total=len(work), desc="convert", unit="file"))
    return sources + clashes


def summarise(sources: List[Source], found: int, splits: Dict[str, Rows], converted: bool) -> ManifestSummary:
    """Counts per split and per skip reason."""
    skipped: Dict[str, int] = defaultdict(int)
    for source in sources:
        if source.skipped:
            skipped[source.skipped] += 1
    return ManifestSummary(found, {s: len(r) for s, r in splits.items()},
                           {s: sum(n for _, n in r) / SAMPLE_RATE for s, r in splits.items()}, dict(skipped),
                           sum(s.dropped_seconds for s in sources), converted)


def build_manifests(audio_dir, dest, valid_percent: float = 0.01, seed: int = 0,
                    extensions: Sequence[str] = AUDIO_EXTENSIONS, convert_dir=None,
                    segment_seconds: Optional[float] = None, min_seconds: float = MIN_SECONDS, strict: bool = False,
                    jobs: int = 1) -> ManifestSummary:
    """Write ``dest/train.tsv`` and ``dest/valid.tsv`` for the audio under ``audio_dir``.

    Args:
        audio_dir: folder scanned recursively.
        dest: output folder of the manifests.
        valid_percent: fraction of tracks (not clips) for valid, in [0, 1) (default 0.01).
        seed: seed of the train/valid draw.
        extensions: file extensions to include (default wav, flac, ogg, mp3).
        convert_dir: if set, convert every track to 16 kHz mono FLAC here and list the converted files;
            otherwise list the files as they are (tracks not 16 kHz mono are skipped and counted).
        segment_seconds: with ``convert_dir``, cut tracks into clips of this length (papers: 30 s).
        min_seconds: skip files (and, with ``segment_seconds``, final clips) shorter than this, counted (default 1 s).
        strict: raise :class:`ManifestError` if any file had to be skipped.
        jobs: worker processes decoding (plain scan) or converting tracks.
    """
    audio_dir = Path(audio_dir).resolve()
    if not audio_dir.is_dir():
        raise ManifestError(f"{audio_dir}: audio folder not found; pass the folder holding the audio files.")
    if segment_seconds is not None and (convert_dir is None or segment_seconds <= 0):
        raise ManifestError(f"segment_seconds={segment_seconds}: needs convert_dir and a positive length.")
    if min_seconds < 0 or jobs < 1:
        raise ManifestError(f"min_seconds={min_seconds} jobs={jobs}: need min_seconds >= 0 and jobs >= 1.")
    convert_dir = None if convert_dir is None else Path(convert_dir).resolve()
    root = convert_dir or audio_dir
    if root_problem(str(root)):
        raise ManifestError(f"{printable(root)}: the folder's path {root_problem(str(root))}, {UNHOLDABLE} on its "
                            f"first line; move the audio to a folder whose path has none.")
    found = find_audio(audio_dir, extensions, exclude=[convert_dir] if convert_dir else [])
    if not found:
        raise ManifestError(f"{audio_dir}: no files with extensions {','.join(extensions)}; check the folder or extensions.")
    paths, bad_names = drop_unholdable_names(found, audio_dir)
    sources = scan_sources(paths, audio_dir, convert_dir, segment_seconds, min_seconds, jobs) + bad_names
    report_skipped(sources, strict)
    splits = assign_splits([s for s in sources if s.rows], valid_percent, seed)
    for split, rows in splits.items():
        write_split(Path(dest) / f"{split}.tsv", root, rows, valid_percent)
    warn_compressed(splits, convert_dir)
    return summarise(sources, len(found), splits, convert_dir is not None)


def write_split(path: Path, root: Path, rows: Rows, valid_percent: float) -> None:
    """Write one split's manifest; a split without rows is not written (every reader refuses an empty manifest),
    and a manifest of that name from an earlier run is removed (it would pair old rows with the new split)."""
    if rows:
        write_manifest(path, root, rows)
        return
    stale = path.is_file()
    path.unlink(missing_ok=True)
    why = ("fairseq validates on valid.tsv unless dataset.disable_validation=true: raise valid_percent to make one"
           if path.stem == "valid" else "valid_percent took every track: lower it")
    logger.warning("%s: not written, no rows (valid_percent=%g)%s; %s", path, valid_percent,
                   ", and the one of an earlier run removed" if stale else "", why)


def report_skipped(sources: List[Source], strict: bool) -> None:
    """Log each skipped file; with ``strict``, raise on them; raise anyway when nothing is usable."""
    bad = [s for s in sources if s.skipped]
    for source in bad:
        logger.warning("skipped: %s", source.message)
    if bad and strict:
        raise ManifestError(f"{len(bad)} of {len(sources)} files cannot be used (first: {bad[0].message.rstrip('.')}); "
                            f"fix or remove them, or set strict=False to skip them.")
    if len(bad) == len(sources):
        raise ManifestError(f"none of the {len(sources)} files is usable (first: {bad[0].message.rstrip('.')}).")


def assign_splits(sources: List[Source], valid_percent: float, seed: int) -> Dict[str, Rows]:
    """Rows of train and valid; whole tracks go to one split, rows keep the sorted scan order."""
    mask = valid_mask(len(sources), valid_percent, seed)
    splits: Dict[str, Rows] = {"train": [], "valid": []}
    for source, is_valid in zip(sources, mask):
        splits["valid" if is_valid else "train"] += source.rows
    return splits


def warn_compressed(splits: Dict[str, Rows], convert_dir: Optional[Path]) -> None:
    """Warn when training would decode mp3/ogg on the fly (slow): conversion avoids it."""
    lossy = sum(Path(rel).suffix.lower() in (".mp3", ".ogg") for rows in splits.values() for rel, _ in rows)
    if lossy and convert_dir is None:
        logger.warning("%d rows are mp3/ogg, decoded again every epoch; convert_dir converts them once to FLAC",
                       lossy)
