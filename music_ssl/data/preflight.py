"""Pre-flight check of a manifest before pretraining: every row, from headers, in seconds.

fairseq's loaders find a deleted, unreadable or wrong-rate row only when a batch hits it, hours into a run, and
train on stereo rows without a word (the channels are averaged). Before a task loads a split,
:func:`preflight_manifest` checks every row of ``{split}.tsv`` from its file header (exists, opens as audio,
``sample_rate`` Hz, mono, the manifest's sample count, at least the receptive field when fairseq would keep it)
and stops with one :class:`~music_ssl.errors.DataError` line: the count, the first few bad rows, the fix and the
audit command. A fresh full audit (``music-ssl-manifest audit DIR``, cached in ``{split}.audit.json``) is used
instead when one exists for the manifest as it is, for its verdicts that do not depend on its settings (its
``short`` rows follow its ``--min-seconds``; here they follow the task's ``min_sample_size``). A manifest whose audio
root (first line) is gone, or none of whose files exists, stops with one line saying so (a moved corpus).

Stereo policy (the whole toolkit): stereo rows are refused; the converter (``--convert-dir``) downmixes on request.

Headers of plain WAV (integer PCM) and FLAC files are parsed directly (a 64-byte read; ~10× faster than opening the
file with libsndfile, which primes a FLAC decoder); any other file, or any header the parser does not fully
understand, goes through ``soundfile``. Threads overlap the file reads. Two checks go beyond headers, because
their failure would train on wrong data or die unnamed in fairseq's NaN detector: a WAV whose data chunk declares
more bytes than the file holds is ``truncated`` (libsndfile would read the bytes present as a complete, shorter
file), and rows of float samples (WAV/AIFF/… ``FLOAT``/``DOUBLE``, the only formats that can hold NaN/Inf) are
decoded and refused as ``non-finite`` if any sample is NaN/Inf; a fresh audit spares that decode. An MP3 without a
Xing/Info header, whose length libsndfile only estimates from its bitrate (reads stop there), is ``length``: its
frame headers are walked (a few ms; an MP3 whose Xing/Info header covers the file is cleared from its first KB).
"""
import logging
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..core.errors import DataError
from .audio import SAMPLE_RATE, WAV_PCM, Problem, header_problem, inspect_audio, wav_chunks
from .audit import RECEPTIVE_FIELD, BadRow, audit_command, fix_for, load_fresh_audit
from .manifest import Manifest, moved_root, read_manifest

logger = logging.getLogger(__name__)

HEADER_BYTES = 4096  # enough for a WAV's fmt/data chunk headers after the usual LIST/fact chunks
ROWS_PER_CHUNK = 512  # rows one thread checks per task
MAX_LISTED = 3  # bad rows named in the error line


class PreflightError(DataError):
    """Rows of a manifest that training cannot read as they are."""


def flac_header(head: bytes) -> Optional[Tuple[int, int, int]]:
    """(rate, channels, frames) from a FLAC STREAMINFO block (RFC 9639 §8.2), None if absent or frames unknown."""
    if len(head) < 26 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    (bits,) = struct.unpack(">Q", head[18:26])  # rate:20 | channels-1:3 | bits-1:5 | total samples:36
    rate, channels, frames = bits >> 44, ((bits >> 41) & 0x7) + 1, bits & ((1 << 36) - 1)
    return (rate, channels, frames) if frames else None


def wav_header(head: bytes, file_size: int) -> Optional[Tuple[int, int, int]]:
    """(rate, channels, frames) of a complete RIFF WAVE file of integer PCM samples; None for anything else
    (float samples, whose values must be decoded; a data chunk cut short; compressed formats, odd or missing
    chunks): those go through ``soundfile`` and :func:`~music_ssl.data.audio.inspect_audio`."""
    fmt, data = wav_chunks(head)
    if data is None or fmt is None:
        return None
    body, size = data
    if fmt[0] != WAV_PCM or fmt[4] == 0 or size == 0 or size > file_size - body:
        return None
    return fmt[2], fmt[1], size // fmt[4]


def header_info(path: Path) -> Tuple[int, int, int]:
    """(rate, channels, frames) of ``path`` from its header; raises OSError/ValueError when it is not plain WAV/FLAC."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        size = os.fstat(f.fileno()).st_size
    found = flac_header(head) or wav_header(head, size)
    if found is None:
        raise ValueError("not plain WAV/FLAC")
    return found


def row_problem(path: Path, expected: int, sample_rate: int, min_kept: int) -> Optional[Problem]:
    """The first problem of one manifest row from its header (None when training can read it)."""
    try:
        rate, channels, frames = header_info(path)
        problem = header_problem(frames, rate, channels, sample_rate)
    except (OSError, ValueError):  # missing, unreadable, float samples, cut, or a format for libsndfile: let it tell
        frames, problem = inspect_audio(path, sample_rate, decode=False, decode_float=True)
    if problem:
        return problem
    if frames != expected:
        return Problem("frames", f"has {frames} samples but the manifest says {expected}")
    return short_problem(expected, min_kept)


def short_problem(expected: int, min_kept: int) -> Optional[Problem]:
    """A row shorter than the receptive field that fairseq keeps (``min_kept``: task.min_sample_size), else None."""
    if min_kept <= expected < RECEPTIVE_FIELD:
        return Problem("short", f"{expected} samples, shorter than the model's receptive field of {RECEPTIVE_FIELD} "
                                f"samples (fairseq keeps it: task.min_sample_size={min_kept})")
    return None


def audit_verdicts(manifest: Manifest, audit_bad: List[BadRow], min_kept: int) -> List[BadRow]:
    """A fresh audit's bad rows that do not depend on its settings, plus the short rows by this run's own rule.

    The audit's ``short`` verdicts follow its ``--min-seconds`` (an exploratory ``--min-seconds 5`` flags every
    3-s row); which rows are too short to train on is fairseq's ``min_sample_size`` business, so they are left out
    and the receptive-field rule of :func:`short_problem` is applied to the manifest's sample counts instead."""
    bad = {row.line: row for row in audit_bad if row.kind != "short"}
    sizes = manifest.sizes
    for i in map(int, np.flatnonzero((sizes >= min_kept) & (sizes < RECEPTIVE_FIELD))):
        if i + 2 not in bad:
            n = int(sizes[i])
            bad[i + 2] = BadRow(i + 2, manifest.relpaths[i], n, *short_problem(n, min_kept))
    return [bad[line] for line in sorted(bad)]


def check_rows(manifest: Manifest, sample_rate: int, min_kept: int, threads: int) -> List[BadRow]:
    """Header check of every row with ``threads`` threads; bad rows in row order."""
    def check(start: int) -> List[BadRow]:
        bad = []
        for i in range(start, min(start + ROWS_PER_CHUNK, len(manifest))):
            problem = row_problem(manifest.audio_path(i), int(manifest.sizes[i]), sample_rate, min_kept)
            if problem:
                bad.append(BadRow(i + 2, manifest.relpaths[i], int(manifest.sizes[i]), *problem))
        return bad

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return [row for chunk in pool.map(check, range(0, len(manifest), ROWS_PER_CHUNK)) for row in chunk]


def preflight_manifest(manifest_path, sample_rate: int = SAMPLE_RATE, min_sample_size: Optional[int] = None,
                       threads: int = 8) -> Manifest:
    """Check every row of a manifest before training reads it; raise one :class:`PreflightError` line if any is bad.

    Args:
        manifest_path: the task's ``{data}/{split}.tsv``.
        sample_rate: the task's ``sample_rate`` (Hz).
        min_sample_size: the task's ``min_sample_size``: fairseq drops (and counts) shorter rows itself, so a row
            shorter than the receptive field is an error only when fairseq would keep it.
        threads: threads reading headers (default 8).

    Returns:
        The parsed manifest (rows as fairseq will read them).
    """
    start = time.perf_counter()
    manifest = read_manifest(manifest_path)
    if moved := moved_root(manifest):  # one line, not "file not found" per row
        raise PreflightError(moved)
    audit = load_fresh_audit(manifest, sample_rate)
    if audit is not None:
        bad = audit_verdicts(manifest, audit.bad, min_sample_size or 0)
        source = f"audit {Path(manifest.path).with_suffix('.audit.json').name}"
    else:
        bad, source = check_rows(manifest, sample_rate, min_sample_size or 0, threads), "file headers"
    if moved := moved_root(manifest, sum(row.kind == "missing" for row in bad)):
        raise PreflightError(moved)
    if bad:
        raise PreflightError(preflight_message(manifest, bad, source))
    logger.info("%s: pre-flight OK, %d rows (%s, %.1f s)", manifest.path, len(manifest), source,
                time.perf_counter() - start)
    return manifest


def preflight_message(manifest: Manifest, bad: List[BadRow], source: str) -> str:
    """One line: how many rows are bad, the first few (line, file, what), the fix of the first, the audit command."""
    counts = {}
    for row in bad:
        counts[row.kind] = counts.get(row.kind, 0) + 1
    listed = " | ".join(f"line {r.line}: {manifest.root / r.relpath}: {r.detail}" for r in bad[:MAX_LISTED])
    more = f" | and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    return (f"{manifest.path}: {len(bad)} of {len(manifest)} rows cannot be trained on ({kinds}; from {source}): "
            f"{listed}{more}. Fix: {fix_for(bad[0].kind, manifest.path)}; "
            f"`{audit_command(manifest.path.parent)}` lists every bad row in "
            f"{manifest.path.with_suffix('').name}.bad.tsv.")
