"""The demo corpus: a small labelled music corpus generated offline, deterministically from a seed.

Two kinds of clips, rendered from MIDI with FluidSynth and a General MIDI soundfont (16 kHz mono 16-bit WAV):

* **pieces** (``piece_seconds`` each): lead melody + chords + bass + drums in one of 24 keys, at 80-160 BPM, the lead
  played by one of 8 instrument families (``midi.FAMILY_PROGRAMS``). Labels: key, lead family, tempo, beat times.
* **notes** (``note_seconds`` each, NSynth-like): one held note of MIDI pitch 48-72 by one of the same 8 families.

Layout of ``out_dir`` (CSV paths are relative to ``out_dir``; task CSVs follow the probing contract ``path,label,split``)::

    audio/{train,valid,test}/{pieces,notes}/*.wav   the audio (scan audio/ or audio/train for pretraining)
    key.csv          pieces, label "C major" ... "B minor" (mir_eval key strings)
    instrument.csv   pieces, label = lead instrument family
    tempo.csv        pieces, label = tempo in BPM (float, regression)
    beat.csv         pieces, label = beats/<name>.beats: one "time<TAB>bar position" line per beat, seconds
    pitch.csv        notes, label = MIDI note number (int)
    note_instrument.csv  notes, label = instrument family
    pieces.csv, notes.csv   all metadata per clip (programs, velocity, first beat, ...)
    midi/*.mid       the rendered MIDI files
    corpus.json      written last: the arguments, their hash, counts; a corpus with the same hash is reused

Splits (train/valid/test ≈ 70/15/15) are fixed per clip and stratified: pieces by key (then families are balanced
within each split), notes by pitch (families balanced within each split). Labels are assigned in balanced cycles so
every class has about the same number of clips.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from music_ssl.core.atomic import atomic_path, write_text_atomic
from music_ssl.core.fingerprint import json_sha256
from music_ssl.demo import midi
from music_ssl.core.errors import DemoError
from music_ssl.demo.render import (check_soundfont, default_soundfont, finish_audio, fluidsynth_program,
                                   fluidsynth_version, render_midi, write_wav_atomic)

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1  # bump when the generated content changes: invalidates reuse of older corpora
MARKER = "corpus.json"
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
TEMPO_RANGE = (80, 160)      # BPM, inclusive
NOTE_PITCHES = tuple(range(48, 73))
NOTE_HOLD_FRACTION = 0.75    # a note is held for this fraction of its clip, then released
TASK_CSVS = {  # task name -> file; pieces tasks first, then notes tasks
    "key": "key.csv", "instrument": "instrument.csv", "tempo": "tempo.csv", "beat": "beat.csv",
    "pitch": "pitch.csv", "note_instrument": "note_instrument.csv",
}
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


class CorpusError(DemoError):
    """Bad corpus arguments, or an output folder that is not a corpus made by this generator."""


@dataclass(frozen=True)
class PieceSpec:
    """What to render for piece ``index`` (all fixed by the plan, before composition)."""
    index: int
    split: str
    key: str
    family: str
    program: int
    bpm: int

    @property
    def name(self) -> str:
        return f"piece_{self.index:05d}"


@dataclass(frozen=True)
class NoteSpec:
    """What to render for single note ``index``."""
    index: int
    split: str
    pitch: int
    family: str
    program: int
    velocity: int

    @property
    def name(self) -> str:
        return f"note_{self.index:05d}"


@dataclass(frozen=True)
class CorpusSettings:
    """The arguments that determine the corpus content (hashed into the marker)."""
    n_pieces: int = 120
    n_notes: int = 200
    piece_seconds: float = 6.0
    note_seconds: float = 1.5
    seed: int = 0
    sample_rate: int = 16000
    soundfont: str = ""
    soundfont_bytes: int = 0
    version: int = CORPUS_VERSION

    def digest(self) -> str:
        return json_sha256(asdict(self))[:16]


@dataclass
class Corpus:
    """A finished corpus on disk. ``task_csvs`` maps task name -> CSV path (only tasks with clips are listed)."""
    root: Path
    audio_dir: Path
    task_csvs: dict[str, Path]
    settings: CorpusSettings
    reused: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def balanced_cycle(rng: np.random.Generator, values, n: int) -> list:
    """``n`` values taking every value once per cycle, each cycle in a random order."""
    out = []
    while len(out) < n:
        out += [values[i] for i in rng.permutation(len(values))]
    return out[:n]


def stratified_splits(rng: np.random.Generator, labels: list) -> list[str]:
    """A split per item, ≈ SPLIT_FRACTIONS within every label: items sorted by label (random order inside a label)
    take splits from a golden-ratio low-discrepancy sequence, so every run of consecutive items is split evenly."""
    tiebreak = rng.permutation(len(labels))
    order = sorted(range(len(labels)), key=lambda i: (str(labels[i]), tiebreak[i]))
    phase, bounds = rng.random(), np.cumsum(SPLIT_FRACTIONS)
    splits = [""] * len(labels)
    for pos, i in enumerate(order):
        u = (phase + pos * GOLDEN) % 1.0
        splits[i] = SPLITS[int(np.searchsorted(bounds, u, side="right"))]
    return splits


def families_within_splits(rng: np.random.Generator, splits: list[str]) -> list[str]:
    """A family per item, balanced inside each split."""
    families = [""] * len(splits)
    for split in SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        for i, fam in zip(idx, balanced_cycle(rng, midi.FAMILIES, len(idx))):
            families[i] = fam
    return families


def plan_pieces(n: int, seed: int) -> list[PieceSpec]:
    """Labels and split of every piece: keys balanced over the 24 classes, split stratified by key."""
    rng = np.random.default_rng([seed, 0])
    keys = balanced_cycle(rng, midi.KEYS, n)
    splits = stratified_splits(rng, keys)
    families = families_within_splits(rng, splits)
    bpms = rng.integers(TEMPO_RANGE[0], TEMPO_RANGE[1] + 1, n)
    programs = [int(rng.choice(midi.FAMILY_PROGRAMS[f])) for f in families]
    return [PieceSpec(i, splits[i], keys[i], families[i], programs[i], int(bpms[i])) for i in range(n)]


def plan_notes(n: int, seed: int) -> list[NoteSpec]:
    """Labels and split of every single note: pitches balanced over NOTE_PITCHES, split stratified by pitch."""
    rng = np.random.default_rng([seed, 1])
    pitches = balanced_cycle(rng, NOTE_PITCHES, n)
    splits = stratified_splits(rng, pitches)
    families = families_within_splits(rng, splits)
    programs = [int(rng.choice(midi.FAMILY_PROGRAMS[f])) for f in families]
    velocities = rng.integers(80, 121, n)
    return [NoteSpec(i, splits[i], int(pitches[i]), families[i], programs[i], int(velocities[i])) for i in range(n)]


def write_midi_atomic(score: midi.Score, path: Path) -> None:
    with atomic_path(path) as tmp:
        midi.to_midi(score).save(tmp)


def render_score(score: midi.Score, midi_path: Path, wav_path: Path, seconds: float, settings: CorpusSettings) -> None:
    """Score -> MIDI file -> FluidSynth -> cropped, normalised 16-bit WAV (both files written atomically)."""
    write_midi_atomic(score, midi_path)
    audio = render_midi(midi_path, Path(settings.soundfont), settings.sample_rate)
    n_samples = int(round(seconds * settings.sample_rate))
    write_wav_atomic(wav_path, finish_audio(audio, n_samples, settings.sample_rate, midi_path), settings.sample_rate)


def build_piece(spec: PieceSpec, root: Path, settings: CorpusSettings) -> dict:
    """Compose, render and annotate one piece; returns its metadata row (paths relative to ``root``)."""
    rng = np.random.default_rng([settings.seed, 2, spec.index])
    score, beat_ticks = midi.compose_piece(rng, spec.key, spec.bpm, spec.program, settings.piece_seconds)
    wav = Path("audio", spec.split, "pieces", f"{spec.name}.wav")
    mid, beats = Path("midi", f"{spec.name}.mid"), Path("beats", f"{spec.name}.beats")
    render_score(score, root / mid, root / wav, settings.piece_seconds, settings)
    lines = [f"{score.seconds(t):.6f}\t{b % 4 + 1}\n" for b, t in enumerate(beat_ticks)]
    write_text_atomic(root / beats, "".join(lines))
    return {"path": wav.as_posix(), "split": spec.split, "key": spec.key, "family": spec.family,
            "program": spec.program, "tempo": f"{60e6 / score.tempo_us:.4f}", "beats": beats.as_posix(),
            "first_beat": f"{score.seconds(beat_ticks[0]):.6f}", "n_beats": len(beat_ticks),
            "chords_program": score.programs[1], "bass_program": score.programs[2], "midi": mid.as_posix()}


def build_note(spec: NoteSpec, root: Path, settings: CorpusSettings) -> dict:
    """Render one held note; returns its metadata row."""
    score = midi.compose_note(spec.program, spec.pitch, spec.velocity, NOTE_HOLD_FRACTION * settings.note_seconds)
    wav = Path("audio", spec.split, "notes", f"{spec.name}.wav")
    mid = Path("midi", f"{spec.name}.mid")
    render_score(score, root / mid, root / wav, settings.note_seconds, settings)
    return {"path": wav.as_posix(), "split": spec.split, "pitch": spec.pitch, "family": spec.family,
            "program": spec.program, "velocity": spec.velocity, "midi": mid.as_posix()}


def write_csv_atomic(path: Path, rows: list[dict], columns: list[str]) -> None:
    """CSV with a header line; ``rows`` are dicts with at least ``columns``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def render_all(pieces: list[PieceSpec], notes: list[NoteSpec], root: Path, settings: CorpusSettings,
               jobs: int) -> tuple[list[dict], list[dict]]:
    """Build every clip with ``jobs`` concurrent FluidSynth processes; returns metadata rows in index order."""
    work = [(build_piece, s) for s in pieces] + [(build_note, s) for s in notes]
    rows: dict[tuple[str, int], dict] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(fn, spec, root, settings): (fn.__name__, spec.index) for fn, spec in work}
        try:
            for fut in tqdm(as_completed(futures), total=len(futures), desc="rendering corpus", unit="clip"):
                rows[futures[fut]] = fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return ([rows[("build_piece", s.index)] for s in pieces], [rows[("build_note", s.index)] for s in notes])


def write_tables(root: Path, piece_rows: list[dict], note_rows: list[dict]) -> dict[str, Path]:
    """Metadata tables and one ``path,label,split`` CSV per task that has clips; returns task -> CSV path."""
    write_csv_atomic(root / "pieces.csv", piece_rows, list(piece_rows[0]) if piece_rows else ["path", "split"])
    write_csv_atomic(root / "notes.csv", note_rows, list(note_rows[0]) if note_rows else ["path", "split"])
    label_column = {"key": "key", "instrument": "family", "tempo": "tempo", "beat": "beats",
                    "pitch": "pitch", "note_instrument": "family"}
    tables = {}
    for task, filename in TASK_CSVS.items():
        source = note_rows if task in ("pitch", "note_instrument") else piece_rows
        if not source:
            continue
        rows = [{"path": r["path"], "label": r[label_column[task]], "split": r["split"]} for r in source]
        write_csv_atomic(root / filename, rows, ["path", "label", "split"])
        tables[task] = root / filename
    return tables


def check_settings(settings: CorpusSettings, jobs: int) -> None:
    """Raise CorpusError naming the bad argument and its valid range."""
    problems = []
    if settings.n_pieces < 0 or settings.n_notes < 0 or settings.n_pieces + settings.n_notes == 0:
        problems.append(f"n_pieces={settings.n_pieces}, n_notes={settings.n_notes}: need >= 0 each and one > 0")
    if settings.n_pieces and not 2.0 <= settings.piece_seconds <= 600:
        problems.append(f"piece_seconds={settings.piece_seconds}: need 2..600 (room for at least two beats)")
    if settings.n_notes and not 0.25 <= settings.note_seconds <= 60:
        problems.append(f"note_seconds={settings.note_seconds}: need 0.25..60")
    if not 8000 <= settings.sample_rate <= 96000:
        problems.append(f"sample_rate={settings.sample_rate}: FluidSynth renders 8000..96000 Hz")
    if jobs < 1:
        problems.append(f"jobs={jobs}: need >= 1")
    if problems:
        raise CorpusError("bad corpus arguments: " + "; ".join(problems))


def default_jobs() -> int:
    """Concurrent FluidSynth processes: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def load_corpus(out_dir: str | os.PathLike, settings: CorpusSettings | None = None) -> Corpus:
    """The finished corpus in ``out_dir``: its marker is readable, every file it lists has the recorded size, and
    (when ``settings`` is given) it was made with the same settings.

    Raises:
        CorpusError: no complete corpus there (or one made with other settings); the message says how to make it.
    """
    root = Path(out_dir)
    hint = f"make it with: music-ssl-make-corpus {root}"
    try:
        info = json.loads((root / MARKER).read_text())
        stored = CorpusSettings(**info["settings"])
        files, tasks = info["files"], info["tasks"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorpusError(f"{root} is not a complete demo corpus ({root / MARKER} missing or unreadable: "
                          f"{err.__class__.__name__}): {hint}") from None
    if settings is not None and stored.digest() != settings.digest():
        raise CorpusError(f"{root} holds a corpus made with other settings ({stored}): {hint}")
    for rel, size in files.items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != size:
            raise CorpusError(f"{root} is incomplete: {rel} is missing or changed: {hint}")
    return Corpus(root=root, audio_dir=root / "audio", task_csvs={t: root / f for t, f in tasks.items()},
                  settings=stored, reused=True, counts=info.get("counts", {}))


def check_replaceable(root: Path) -> None:
    """Refuse to overwrite a folder that is neither empty nor a corpus made here (it has a marker)."""
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / MARKER).is_file())):
        raise CorpusError(f"{root} exists and is not a demo corpus (no {MARKER}): "
                          "give a new or empty folder, or delete it first")


def swap_in(partial: Path, root: Path) -> None:
    """Move the finished ``partial`` folder to ``root``, replacing an older corpus there."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if not root.exists():
        os.replace(partial, root)
        return
    old = root.parent / f".{root.name}.old"
    if old.exists():
        shutil.rmtree(old)
    os.replace(root, old)
    os.replace(partial, root)
    shutil.rmtree(old)


def make_corpus(out_dir: str | os.PathLike, n_pieces: int = 120, n_notes: int = 200, piece_seconds: float = 6.0,
                note_seconds: float = 1.5, seed: int = 0, soundfont: str | os.PathLike | None = None,
                jobs: int | None = None, sample_rate: int = 16000) -> Corpus:
    """Generate the demo corpus into ``out_dir`` (see the module docstring for its layout), or reuse it.

    Args:
        out_dir: output folder; must be new, empty, or a corpus made by this function (then it is replaced).
        n_pieces / n_notes: number of multi-instrument pieces / single notes.
        piece_seconds / note_seconds: clip durations in seconds (defaults 6.0 / 1.5).
        seed: everything (labels, splits, composition) follows from it; same args -> same audio bytes.
        soundfont: General MIDI .sf2 (default: the first installed of ``render.SOUNDFONT_CANDIDATES``).
        jobs: concurrent FluidSynth processes (default: one per core, at most 8).
        sample_rate: Hz of the written audio (default 16000).

    Returns:
        The Corpus; ``reused`` is True when a complete corpus with the same settings was already there. The corpus
        is built in ``.<name>.partial`` beside ``out_dir`` and moved in when complete, so an interrupted run leaves
        no half corpus behind; the next run removes the partial folder and starts again.
    """
    root = Path(out_dir).expanduser().absolute()
    font = check_soundfont(soundfont) if soundfont else check_soundfont(default_soundfont())
    settings = CorpusSettings(n_pieces, n_notes, float(piece_seconds), float(note_seconds), seed, sample_rate,
                              str(font), font.stat().st_size)
    jobs = jobs or default_jobs()
    check_settings(settings, jobs)
    try:
        corpus = load_corpus(root, settings)
        logger.info("reusing the demo corpus in %s (%s)", root, corpus.counts)
        return corpus
    except CorpusError:
        pass
    check_replaceable(root)
    fluidsynth_program()  # fail before planning when FluidSynth is missing
    return build_corpus(root, settings, jobs)


def build_corpus(root: Path, settings: CorpusSettings, jobs: int) -> Corpus:
    """Render everything into ``.<name>.partial``, write tables and the marker last, then move it to ``root``."""
    partial = root.parent / f".{root.name}.partial"
    if partial.exists():
        logger.info("removing the unfinished corpus %s", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    start = time.perf_counter()
    pieces, notes = plan_pieces(settings.n_pieces, settings.seed), plan_notes(settings.n_notes, settings.seed)
    logger.info("rendering %d pieces of %.1f s and %d notes of %.1f s with %s (%d jobs)", len(pieces),
                settings.piece_seconds, len(notes), settings.note_seconds, settings.soundfont, jobs)
    piece_rows, note_rows = render_all(pieces, notes, partial, settings, jobs)
    tables = write_tables(partial, piece_rows, note_rows)
    files = {p.relative_to(partial).as_posix(): p.stat().st_size for p in sorted(partial.rglob("*")) if p.is_file()}
    counts = {f"{kind}_{split}": sum(r["split"] == split for r in rows)
              for kind, rows in (("pieces", piece_rows), ("notes", note_rows)) for split in SPLITS}
    seconds = time.perf_counter() - start
    marker = {"settings": asdict(settings), "digest": settings.digest(), "fluidsynth": fluidsynth_version(),
              "tasks": {t: p.name for t, p in tables.items()}, "counts": counts,
              "render_seconds": round(seconds, 1), "jobs": jobs, "files": files}
    write_text_atomic(partial / MARKER, json.dumps(marker, indent=1) + "\n")
    swap_in(partial, root)
    logger.info("demo corpus ready in %s: %d pieces + %d notes in %.1f s", root, len(pieces), len(notes), seconds)
    return Corpus(root=root, audio_dir=root / "audio", task_csvs={t: root / p.name for t, p in tables.items()},
                  settings=settings, reused=False, counts=counts)
