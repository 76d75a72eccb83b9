"""Audit of fairseq manifests: decode every row once and list each bad row on one line.

``music-ssl-manifest audit DIR`` runs :func:`audit_dir` over every ``DIR/{split}.tsv``. Each row is checked as
training reads it (:func:`music_ssl.data.audio.inspect_audio`): the file exists, opens as audio, holds samples, is
16 kHz mono, decodes to the end (a truncated FLAC passes its header but fails here; a WAV whose data chunk is cut
short is caught from its header), is not an MP3 whose length libsndfile only estimated (no Xing/Info header:
reads stop at the estimate), holds only finite samples (no NaN/Inf), decodes to the manifest's ``num_samples``,
and is at least the model's receptive field (and ``min_seconds``) long. Rows are checked in small tasks by
``jobs`` worker processes, each decoding block by block into one buffer (memory stays bounded).

Outputs beside each manifest (written atomically):

* ``{split}.bad.tsv`` — a header line, then ``line<TAB>relpath<TAB>num_samples<TAB>problem<TAB>detail`` per bad row;
* ``{split}.clean.tsv`` (with ``write_clean``) — the manifest without its bad rows, never written in place;
* ``{split}.audit.json`` — the result, keyed by the manifest's sha256 and every file's size and mtime, so a second
  audit of an unchanged corpus (and the pretraining tasks' pre-flight, :mod:`music_ssl.data.preflight`) reuses it.

An interrupted audit resumes: finished tasks are appended to a hidden ``.{split}.audit-partial.jsonl``.
"""
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
from tqdm import tqdm

from ..core.conv import conv_geometry
from ..core.workers import ordered_map  # workers that die with the audit (SIGKILL, SIGTERM)
from ..core.fingerprint import data_sha256, file_sha256
from ..core.atomic import write_text_atomic
from .audio import CONVERT_FIX, MANIFEST_FIX, SAMPLE_RATE, inspect_audio
from .errors import ManifestError
from .manifest import Manifest, moved_root, read_manifest, write_manifest
from .mp3 import REENCODE_MP3_FIX

logger = logging.getLogger(__name__)

# the 7-layer CNN of wav2vec 2.0 / HuBERT / data2vec (music2vec and MusicHuBERT keep it): 400 samples, stride 320
CONV_FEATURE_LAYERS = Wav2Vec2Config.__dataclass_fields__["conv_feature_layers"].default
RECEPTIVE_FIELD = conv_geometry(CONV_FEATURE_LAYERS)[0]
ROWS_PER_TASK = 32  # rows one worker checks per task (and per line of the resume file)
CACHE_VERSION = 3  # bump when a row is checked for more (2: NaN/Inf, cut WAV data chunks; 3: MP3 length estimates)
BAD_HEADER = "line\trelpath\tnum_samples\tproblem\tdetail\n"


def audit_command(manifest_dir) -> str:
    return f"music-ssl-manifest audit {manifest_dir}"


def fix_for(kind: str, manifest_path: Path) -> str:
    """The fix for one kind of bad row of ``manifest_path``."""
    clean = manifest_path.with_suffix("").name + ".clean.tsv"
    drop = f"`{audit_command(manifest_path.parent)} --write-clean` writes {clean} without the row"
    if kind in ("rate", "channels"):
        return CONVERT_FIX
    if kind == "frames":
        return f"{MANIFEST_FIX} (the file changed after the manifest was made), or {drop}"
    if kind == "short":  # the verdict depends on the audit's minimum: the clean manifest must use the same one
        return drop.replace("--write-clean`", "--write-clean` (with this audit's --min-seconds)")
    if kind == "missing":
        return f"restore the file, or {drop}"
    if kind == "folder":
        return f"the row names a folder: {MANIFEST_FIX}, or {drop}"
    if kind == "length":  # the row's num_samples is the estimate too: the re-encoded file needs a new manifest
        return f"{REENCODE_MP3_FIX}, then {MANIFEST_FIX}, or {drop}"
    if kind == "non-finite":
        return f"repair or replace the file (NaN/Inf samples make every loss and k-means step NaN), or {drop}"
    return f"replace the file (re-encode it as wav/flac), or {drop}"


@dataclass(frozen=True)
class AuditSettings:
    """What a row must satisfy: ``sample_rate`` Hz, mono, at least ``min_samples`` samples (≥ the receptive field)."""

    sample_rate: int = SAMPLE_RATE
    min_samples: int = RECEPTIVE_FIELD

    @classmethod
    def from_seconds(cls, min_seconds: float = 0.0, sample_rate: int = SAMPLE_RATE) -> "AuditSettings":
        if min_seconds < 0:
            raise ManifestError(f"min_seconds={min_seconds}: must be >= 0 (seconds; 0 = the receptive field only).")
        return cls(sample_rate, max(RECEPTIVE_FIELD, int(round(min_seconds * sample_rate))))


@dataclass
class BadRow:
    """One bad manifest row: ``line`` (1-based line of the manifest file), its fields, the problem kind and detail."""

    line: int
    relpath: str
    num_samples: int
    kind: str
    detail: str

    def message(self, manifest: Manifest) -> str:
        """One line: ``MANIFEST:LINE: FILE: what is wrong; the fix``."""
        return (f"{manifest.path}:{self.line}: {manifest.root / self.relpath}: {self.detail}; "
                f"{fix_for(self.kind, manifest.path)}.")


@dataclass
class AuditResult:
    """The audit of one manifest."""

    manifest: Path
    rows: int
    bad: List[BadRow] = field(default_factory=list)
    cached: bool = False  # reused from ``{split}.audit.json``
    seconds: float = 0.0  # wall time of this audit

    def counts(self) -> Dict[str, int]:
        """Bad rows per problem kind."""
        out: Dict[str, int] = {}
        for row in self.bad:
            out[row.kind] = out.get(row.kind, 0) + 1
        return out


def check_row(root: Path, line: int, relpath: str, expected: int, settings: AuditSettings) -> Optional[BadRow]:
    """Decode one row's file and return what is wrong with it (None when it is fine)."""
    samples, problem = inspect_audio(root / relpath, settings.sample_rate)
    if problem:
        return BadRow(line, relpath, expected, problem.kind, problem.detail)
    if samples != expected:
        return BadRow(line, relpath, expected, "frames", f"decodes to {samples} samples but the manifest says {expected}")
    if samples < settings.min_samples:
        what = ("the model's receptive field" if settings.min_samples == RECEPTIVE_FIELD else "the minimum")
        return BadRow(line, relpath, expected, "short", f"{samples} samples ({samples / settings.sample_rate:.3f} s), "
                      f"shorter than {what} of {settings.min_samples} samples")
    return None


def file_stamp(path: Path) -> str:
    """``"size:mtime_ns"`` of a file, or ``"missing"``: what the audit cache is keyed on."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


Task = Tuple[int, Path, List[Tuple[int, str, int]], AuditSettings]  # (index, root, [(line, relpath, samples)], settings)


def audit_task(task: Task) -> Tuple[int, List[str], List[BadRow]]:
    """Check one task's rows (in a worker): (index, file stamps taken before decoding, bad rows)."""
    index, root, rows, settings = task
    stamps, bad = [], []
    for line, relpath, expected in rows:
        stamps.append(file_stamp(root / relpath))
        row = check_row(root, line, relpath, expected, settings)
        if row:
            bad.append(row)
    return index, stamps, bad


def stamps_key(stamps: Sequence[str]) -> str:
    """sha256 of every row's file stamp, in row order."""
    return data_sha256("\n".join(stamps))


def cache_path(manifest_path) -> Path:
    """``train.tsv`` → ``train.audit.json`` (``train.clean.tsv`` → ``train.clean.audit.json``)."""
    return Path(manifest_path).with_suffix(".audit.json")


def partial_path(manifest_path) -> Path:
    path = Path(manifest_path)
    return path.with_name(f".{path.stem}.audit-partial.jsonl")


def load_fresh_audit(manifest: Manifest, sample_rate: int = SAMPLE_RATE,
                     settings: Optional[AuditSettings] = None) -> Optional[AuditResult]:
    """The cached audit of ``manifest`` if it is still valid: same manifest bytes, same sizes and mtimes of every
    file, same ``sample_rate`` (and the same ``settings`` when given). None otherwise."""
    path = cache_path(manifest.path)
    try:
        cached = json.loads(path.read_text())
        if (cached["version"] != CACHE_VERSION or cached["manifest_sha256"] != file_sha256(manifest.path)
                or cached["settings"]["sample_rate"] != sample_rate or cached["rows"] != len(manifest)
                or (settings is not None and cached["settings"] != asdict(settings))):
            return None
        stamps = [file_stamp(manifest.root / rel) for rel in manifest.relpaths]
        if cached["files_sha256"] != stamps_key(stamps):
            return None
        return AuditResult(manifest.path, len(manifest), [BadRow(*row) for row in cached["bad"]], cached=True)
    except (OSError, ValueError, KeyError, TypeError):  # no cache, or one from another version: audit again
        return None


def write_cache(manifest: Manifest, settings: AuditSettings, stamps: Sequence[str], bad: Sequence[BadRow]) -> None:
    """``{split}.audit.json``: the result keyed by the manifest's sha256, the files' stamps and the settings."""
    record = {"version": CACHE_VERSION, "manifest_sha256": file_sha256(manifest.path),
              "files_sha256": stamps_key(stamps), "settings": asdict(settings), "rows": len(manifest),
              "bad": [list(asdict(r).values()) for r in bad]}
    write_text_atomic(cache_path(manifest.path), json.dumps(record) + "\n")


def make_tasks(manifest: Manifest, settings: AuditSettings, skip: Iterable[int] = ()) -> List[Task]:
    """The manifest's rows in tasks of ``ROWS_PER_TASK`` (line numbers are 1-based; row 0 is on line 2)."""
    skip = set(skip)
    rows = [(i + 2, rel, int(n)) for i, (rel, n) in enumerate(zip(manifest.relpaths, manifest.sizes))]
    return [(i // ROWS_PER_TASK, manifest.root, rows[i:i + ROWS_PER_TASK], settings)
            for i in range(0, len(rows), ROWS_PER_TASK) if i // ROWS_PER_TASK not in skip]


def resume_state(manifest: Manifest, header: dict) -> Dict[int, Tuple[List[str], List[BadRow]]]:
    """Finished tasks of an interrupted audit of the same manifest and settings whose files did not change since."""
    path = partial_path(manifest.path)
    done: Dict[int, Tuple[List[str], List[BadRow]]] = {}
    try:
        lines = path.read_text().splitlines()
        if not lines or json.loads(lines[0]) != header:
            return {}
        for line in lines[1:]:
            record = json.loads(line)  # a half-written last line raises: keep what came before it
            done[record["task"]] = (record["stamps"], [BadRow(*row) for row in record["bad"]])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for index, (stamps, _) in list(done.items()):
        rels = manifest.relpaths[index * ROWS_PER_TASK:(index + 1) * ROWS_PER_TASK]
        if stamps != [file_stamp(manifest.root / rel) for rel in rels]:
            del done[index]  # a file changed since: check those rows again
    return done


def run_tasks(manifest: Manifest, settings: AuditSettings, jobs: int) -> Tuple[List[str], List[BadRow]]:
    """Check every row (resuming an interrupted audit); (stamps, bad rows) in row order."""
    header = {"manifest_sha256": file_sha256(manifest.path), "settings": asdict(settings),
              "rows_per_task": ROWS_PER_TASK}
    done = resume_state(manifest, header)
    if done:
        logger.info("%s: resuming an interrupted audit, %d of %d rows already checked", manifest.path,
                    sum(len(s) for s, _ in done.values()), len(manifest))
    lines = [json.dumps(header)] + [json.dumps({"task": i, "stamps": s, "bad": [list(asdict(r).values()) for r in b]})
                                    for i, (s, b) in sorted(done.items())]
    write_text_atomic(partial_path(manifest.path), "".join(line + "\n" for line in lines))
    tasks = make_tasks(manifest, settings, skip=done)
    with partial_path(manifest.path).open("a") as log, \
            tqdm(total=len(manifest), initial=len(manifest) - sum(len(t[2]) for t in tasks), desc=manifest.path.name,
                 unit="row") as bar:
        for index, stamps, bad in ordered_map(audit_task, tasks, jobs):
            done[index] = (stamps, bad)
            log.write(json.dumps({"task": index, "stamps": stamps, "bad": [list(asdict(r).values()) for r in bad]})
                      + "\n")
            log.flush()
            bar.update(len(stamps))
    ordered = [done[i] for i in sorted(done)]
    return [s for stamps, _ in ordered for s in stamps], [r for _, bad in ordered for r in bad]


def audit_manifest(manifest_path, settings: AuditSettings = AuditSettings(), jobs: int = 1,
                   write_clean: bool = False) -> AuditResult:
    """Audit one manifest (or reuse its fresh cached audit) and write ``{split}.bad.tsv`` (and ``.clean.tsv``).

    Args:
        manifest_path: a fairseq ``{split}.tsv``.
        settings: rate and minimum length (default 16 kHz, the receptive field of 400 samples).
        jobs: worker processes decoding rows (default 1).
        write_clean: also write ``{split}.clean.tsv`` without the bad rows (the original is never changed); not
            written when every row is bad (:func:`audit_dir` then raises).

    Raises:
        ManifestError: one line, and nothing written, when the manifest's audio root (its first line) is gone or
            none of its files exists (a moved or renamed corpus), rather than one "file not found" per row.
    """
    start = time.perf_counter()
    manifest = read_manifest(manifest_path)
    if moved := moved_root(manifest):
        raise ManifestError(moved)
    result = load_fresh_audit(manifest, settings.sample_rate, settings)
    if result is None:
        stamps, bad = run_tasks(manifest, settings, jobs)
        write_cache(manifest, settings, stamps, bad)
        partial_path(manifest.path).unlink(missing_ok=True)
        result = AuditResult(manifest.path, len(manifest), bad)
    else:
        stamps = None
    if moved := moved_root(manifest, result.counts().get("missing", 0)):
        raise ManifestError(moved)
    write_outputs(manifest, result, settings, stamps, write_clean)
    result.seconds = time.perf_counter() - start
    return result


def write_outputs(manifest: Manifest, result: AuditResult, settings: AuditSettings, stamps: Optional[List[str]],
                  write_clean: bool) -> None:
    """``{split}.bad.tsv`` always; with ``write_clean`` the clean manifest and its own (all-good) audit cache."""
    stem = manifest.path.with_suffix("")
    write_text_atomic(stem.with_name(stem.name + ".bad.tsv"), BAD_HEADER + "".join(
        f"{r.line}\t{r.relpath}\t{r.num_samples}\t{r.kind}\t{r.detail}\n" for r in result.bad))
    if not write_clean:
        return
    bad_lines = {r.line for r in result.bad}
    keep = [i for i in range(len(manifest)) if i + 2 not in bad_lines]
    clean_path = stem.with_name(stem.name + ".clean.tsv")
    if not keep:  # an empty manifest is refused by every reader: none, and none left from an earlier audit
        clean_path.unlink(missing_ok=True)
        cache_path(clean_path).unlink(missing_ok=True)
        return
    write_manifest(clean_path, manifest.root, [(manifest.relpaths[i], int(manifest.sizes[i])) for i in keep])
    if stamps is None:
        stamps = [file_stamp(manifest.root / rel) for rel in manifest.relpaths]
    write_cache(read_manifest(clean_path), settings, [stamps[i] for i in keep], [])


def find_manifests(manifest_dir: Path, splits: Optional[Sequence[str]] = None) -> List[Path]:
    """``DIR/{split}.tsv`` for the given splits, or every ``*.tsv`` except the audit's own ``.bad``/``.clean``."""
    if not manifest_dir.is_dir():
        raise ManifestError(f"{manifest_dir}: manifest folder not found; pass the folder holding {{split}}.tsv "
                            f"(made by `music-ssl-manifest AUDIO_DIR --dest DIR`).")
    if splits:
        return [manifest_dir / f"{split}.tsv" for split in splits]
    found = sorted(p for p in manifest_dir.glob("*.tsv")
                   if not p.name.endswith((".bad.tsv", ".clean.tsv")) and not p.name.startswith("."))
    if not found:
        raise ManifestError(f"{manifest_dir}: no {{split}}.tsv manifests here; make them with "
                            f"`music-ssl-manifest AUDIO_DIR --dest {manifest_dir}`.")
    return found


def audit_dir(manifest_dir, min_seconds: float = 0.0, jobs: int = 1, write_clean: bool = False,
              splits: Optional[Sequence[str]] = None, sample_rate: int = SAMPLE_RATE) -> Dict[str, AuditResult]:
    """Audit every manifest of ``manifest_dir`` (see the module docstring); {split: result}. Logs each bad row."""
    settings = AuditSettings.from_seconds(min_seconds, sample_rate)
    results = {}
    for path in find_manifests(Path(manifest_dir), splits):
        result = audit_manifest(path, settings, jobs, write_clean)
        manifest = read_manifest(path)
        for row in result.bad:
            logger.warning("%s", row.message(manifest))
        results[path.name[:-len(".tsv")]] = result
    all_bad = [r for r in results.values() if write_clean and r.bad and len(r.bad) == r.rows]
    if all_bad:  # --write-clean must not end with exit 0 and an empty (unreadable) clean manifest
        first, split = all_bad[0], all_bad[0].manifest.with_suffix("").name
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(first.counts().items()))
        raise ManifestError(f"{first.manifest}: all {first.rows} rows are bad ({kinds}; each listed above and in "
                            f"{split}.bad.tsv), so no {split}.clean.tsv was written (it would be empty); fix or "
                            f"replace those files (each line gives the fix), or {MANIFEST_FIX}.")
    return results
