"""Composition of the demo corpus: keys, chord progressions, melodies, drum grooves and single notes as MIDI.

Everything here is pure Python + ``mido``: given a numpy ``Generator`` it returns the same score every time, so the
corpus is reproducible from its seed. Times are in MIDI ticks (``TICKS_PER_BEAT`` per quarter note) at one constant
tempo per file, so every annotation in seconds (beat times) is exact: ``seconds = ticks * tempo_us / (TPB * 1e6)``.

General MIDI program numbers are 0-based (0 = Acoustic Grand Piano); the drum kit is channel index 9 (MIDI channel 10).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mido
import numpy as np

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # General MIDI percussion (channel 10, 1-based)

# Key names as mir_eval spells them: "<tonic> <mode>", tonic pitch class 0 = C.
TONIC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
KEYS = tuple(f"{t} {m}" for m in MODES for t in TONIC_NAMES)  # 24 classes

SCALE_STEPS = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}  # natural minor for the melody

# Chords as (root semitones above the tonic, quality); the minor progressions use the harmonic-minor V (major triad,
# raised leading tone) so that a minor key is not confused with its relative major.
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
PROGRESSIONS = {
    "major": (
        ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),    # I  IV V  I
        ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),    # I  vi IV V
        ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),    # I  V  vi IV
        ((0, "maj"), (2, "min"), (7, "maj"), (0, "maj")),    # I  ii V  I
        ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")),    # I  IV I  V
    ),
    "minor": (
        ((0, "min"), (5, "min"), (7, "maj"), (0, "min")),    # i  iv  V   i
        ((0, "min"), (8, "maj"), (5, "min"), (7, "maj")),    # i  VI  iv  V
        ((0, "min"), (10, "maj"), (8, "maj"), (7, "maj")),   # i  VII VI  V
        ((0, "min"), (5, "min"), (0, "min"), (7, "maj")),    # i  iv  i   V
        ((0, "min"), (3, "maj"), (5, "min"), (7, "maj")),    # i  III iv  V
    ),
}

# Instrument families (the instrument task's classes) -> General MIDI programs that render at written pitch with
# FluidR3_GM (checked from MIDI 48 to 72; the drawbar/percussive/rock organs 16-18 sound a sub-octave, fifths 86 a
# fifth, so they are left out).
FAMILY_PROGRAMS = {
    "piano": (0, 1, 2, 4, 5),        # acoustic/bright/electric grand, electric pianos 1-2
    "organ": (19, 20, 21, 23),       # church organ, reed organ, accordion, tango accordion
    "guitar": (24, 25, 26, 27),      # nylon, steel, jazz, clean electric
    "strings": (40, 41, 48, 49),     # violin, viola, string ensembles 1-2
    "brass": (56, 57, 60, 61),       # trumpet, trombone, french horn, brass section
    "reed": (64, 65, 68, 71),        # soprano sax, alto sax, oboe, clarinet
    "pipe": (72, 73, 74, 75),        # piccolo, flute, recorder, pan flute
    "synth_lead": (80, 81, 83, 84),  # square, sawtooth, chiff, charang leads
}
FAMILIES = tuple(FAMILY_PROGRAMS)
PROGRAM_FAMILY = {p: fam for fam, progs in FAMILY_PROGRAMS.items() for p in progs}
ACCOMPANIMENT_PROGRAMS = {0: "piano", 4: "piano", 16: "organ", 24: "guitar", 48: "strings", 89: "synth_pad"}
BASS_PROGRAMS = (32, 33, 34, 35, 38)             # acoustic, finger, pick, fretless, synth bass

MELODY_RANGE = (60, 81)   # MIDI notes of the lead line
CHORD_LOW = 55            # chord voicings lie in [CHORD_LOW, CHORD_LOW + 11]
BASS_LOW = 36             # bass roots lie in [BASS_LOW, BASS_LOW + 11]
KICK, SNARE, CLOSED_HAT, CRASH = 36, 38, 42, 49


@dataclass(frozen=True)
class Note:
    """One note event: ``start``/``length`` in ticks, ``pitch`` MIDI number, ``velocity`` 1-127."""
    channel: int
    pitch: int
    start: int
    length: int
    velocity: int


@dataclass
class Score:
    """A single-tempo multi-channel score. ``programs`` maps channel -> GM program, ``volumes`` channel -> CC7."""
    tempo_us: int                     # microseconds per quarter note (MIDI set_tempo)
    programs: dict[int, int]
    volumes: dict[int, int]
    notes: list[Note] = field(default_factory=list)

    def seconds(self, ticks: int) -> float:
        """Tick position -> seconds (exact for the single tempo)."""
        return ticks * self.tempo_us / (TICKS_PER_BEAT * 1e6)


def parse_key(key: str) -> tuple[int, str]:
    """"F# minor" -> (6, "minor")."""
    tonic, mode = key.split()
    return TONIC_NAMES.index(tonic), mode


def tempo_us(bpm: int) -> int:
    """Beats per minute -> MIDI microseconds per quarter note (rounded; beat times use the rounded value)."""
    return int(round(60e6 / bpm))


def scale_pitches(tonic: int, mode: str, low: int, high: int) -> np.ndarray:
    """All MIDI notes of the key's scale in [low, high], ascending."""
    pcs = {(tonic + s) % 12 for s in SCALE_STEPS[mode]}
    return np.array([p for p in range(low, high + 1) if p % 12 in pcs])


def chord_pitch_classes(tonic: int, chord: tuple[int, str]) -> list[int]:
    """Pitch classes of a (root offset, quality) chord in the key of ``tonic``."""
    root, quality = chord
    return [(tonic + root + i) % 12 for i in TRIADS[quality]]


def place(pc: int, low: int) -> int:
    """The MIDI note of pitch class ``pc`` in the octave [low, low + 11]."""
    return low + (pc - low) % 12


def compose_piece(rng: np.random.Generator, key: str, bpm: int, lead_program: int, seconds: float) -> tuple[Score, list[int]]:
    """A multi-instrument piece in ``key``: lead melody (ch 0), chords (ch 1), bass (ch 2), drums (ch 9).

    The first beat falls at a random phase within the first beat period; the groove is 4/4 with kick on beats 1 and 3,
    snare on 2 and 4, hi-hat eighths and a crash on the first downbeat.

    Returns:
        (score, beat_ticks): ``beat_ticks`` are the tick positions of every beat (quarter note) that starts before
        ``seconds``; the score extends at least one beat past ``seconds`` (the renderer crops).
    """
    tonic, mode = parse_key(key)
    lead_family = PROGRAM_FAMILY[lead_program]
    accompaniment = [p for p, fam in ACCOMPANIMENT_PROGRAMS.items() if fam != lead_family]
    score = Score(
        tempo_us=tempo_us(bpm),
        programs={0: lead_program, 1: int(rng.choice(accompaniment)), 2: int(rng.choice(BASS_PROGRAMS))},
        volumes={0: 112, 1: 72, 2: 92, DRUM_CHANNEL: 88},
    )
    offset = int(rng.integers(0, TICKS_PER_BEAT))
    beat_seconds = score.tempo_us / 1e6
    n_beats = int(np.ceil(seconds / beat_seconds)) + 1
    beat_ticks = [offset + b * TICKS_PER_BEAT for b in range(n_beats)]
    chord_beats = 2 if bpm < 120 else 4
    progression = PROGRESSIONS[mode][rng.integers(len(PROGRESSIONS[mode]))]
    chords = [progression[(b // chord_beats) % len(progression)] for b in range(n_beats)]
    score.notes += accompaniment_notes(rng, tonic, chords, beat_ticks, chord_beats)
    score.notes += melody_notes(rng, tonic, mode, chords, beat_ticks, chord_beats)
    score.notes += drum_notes(rng, beat_ticks)
    kept = [t for t in beat_ticks if score.seconds(t) < seconds]
    return score, kept


def accompaniment_notes(rng, tonic: int, chords: list, beat_ticks: list[int], chord_beats: int) -> list[Note]:
    """Chords on channel 1 (sustained or struck on each beat) and a bass line on channel 2 (roots, sometimes fifths)."""
    sustained = rng.random() < 0.5
    walking = rng.random() < 0.5
    notes = []
    for b, (tick, chord) in enumerate(zip(beat_ticks, chords)):
        pcs = chord_pitch_classes(tonic, chord)
        if b % chord_beats == 0 or not sustained:
            length = (chord_beats if sustained else 1) * TICKS_PER_BEAT - 20
            vel = int(rng.integers(58, 72))
            notes += [Note(1, place(pc, CHORD_LOW), tick, length, vel) for pc in pcs]
        bass_pc = pcs[2] if (walking and b % 2 == 1) else pcs[0]
        notes.append(Note(2, place(bass_pc, BASS_LOW), tick, TICKS_PER_BEAT - 30, int(rng.integers(84, 98))))
    return notes


def melody_notes(rng, tonic: int, mode: str, chords: list, beat_ticks: list[int], chord_beats: int) -> list[Note]:
    """A lead line on channel 0: a random walk over the scale landing on chord tones at chord changes.

    Each beat holds a quarter note, two eighths, a half note (on even beats) or a rest.
    """
    scale = scale_pitches(tonic, mode, *MELODY_RANGE)
    idx = int(np.argmin(np.abs(scale - place(tonic, 67))))  # start near the tonic above G4
    notes, b = [], 0
    while b < len(beat_ticks):
        pcs = chord_pitch_classes(tonic, chords[b])
        if b % chord_beats == 0:  # chord change: nearest chord tone (raised leading tone of minor V included)
            cands = np.array([p for p in range(MELODY_RANGE[0], MELODY_RANGE[1] + 1) if p % 12 in pcs])
            pitch = int(cands[np.argsort(np.abs(cands - scale[idx]))[rng.integers(2)]])
            idx = int(np.argmin(np.abs(scale - pitch)))
        else:
            idx = int(np.clip(idx + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(scale) - 1))
            pitch = int(scale[idx])
        vel = int(rng.integers(92, 116))
        kind = rng.choice(["quarter", "eighths", "half", "rest"], p=[0.45, 0.35, 0.12, 0.08])
        tick = beat_ticks[b]
        if kind == "half" and b % 2 == 0:
            notes.append(Note(0, pitch, tick, 2 * TICKS_PER_BEAT - 30, vel))
            b += 2
            continue
        if kind == "eighths":
            half = TICKS_PER_BEAT // 2
            idx2 = int(np.clip(idx + rng.choice([-1, 1]), 0, len(scale) - 1))
            notes += [Note(0, pitch, tick, half - 15, vel), Note(0, int(scale[idx2]), tick + half, half - 15, vel - 8)]
            idx = idx2
        elif kind == "quarter" or b % chord_beats == 0:
            notes.append(Note(0, pitch, tick, TICKS_PER_BEAT - 25, vel))
        b += 1
    return notes


def drum_notes(rng, beat_ticks: list[int]) -> list[Note]:
    """A 4/4 rock groove on the GM drum channel: beat ``b`` is bar position ``b % 4``."""
    notes = [Note(DRUM_CHANNEL, CRASH, beat_ticks[0], TICKS_PER_BEAT, 100)]
    half = TICKS_PER_BEAT // 2
    for b, tick in enumerate(beat_ticks):
        notes.append(Note(DRUM_CHANNEL, KICK if b % 2 == 0 else SNARE, tick, half, 110 if b % 4 == 0 else 100))
        notes.append(Note(DRUM_CHANNEL, CLOSED_HAT, tick, half // 2, int(rng.integers(70, 82))))
        notes.append(Note(DRUM_CHANNEL, CLOSED_HAT, tick + half, half // 2, int(rng.integers(50, 62))))
    return notes


def compose_note(program: int, pitch: int, velocity: int, hold_seconds: float) -> Score:
    """One sustained note (NSynth-like) at time 0 on channel 0, held ``hold_seconds`` at 120 BPM."""
    score = Score(tempo_us=500_000, programs={0: program}, volumes={0: 110})
    length = int(round(hold_seconds * 1e6 / score.tempo_us * TICKS_PER_BEAT))
    score.notes.append(Note(0, pitch, 0, length, velocity))
    return score


def to_midi(score: Score) -> mido.MidiFile:
    """Type-0 MIDI file: tempo, program and volume set at tick 0, then note on/off events (offs first at ties)."""
    events = []  # (tick, order, message): order puts note_off before note_on at the same tick
    for ch, prog in sorted(score.programs.items()):
        events.append((0, 0, mido.Message("program_change", channel=ch, program=prog)))
    for ch, vol in sorted(score.volumes.items()):
        events.append((0, 0, mido.Message("control_change", channel=ch, control=7, value=vol)))
    for n in score.notes:
        events.append((n.start, 2, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=n.velocity)))
        events.append((n.start + n.length, 1, mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=score.tempo_us, time=0)])
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    return midi
