"""Rendering MIDI to 16 kHz mono audio with the FluidSynth command-line synthesizer and a General MIDI soundfont.

FluidSynth renders faster than real time (``-F``, no audio device) and deterministically: the same MIDI file and
soundfont give the same samples. It exits 0 even when the soundfont is missing or invalid (it then renders silence),
so the soundfont is validated before rendering and silent output is an error here.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from music_ssl.core.atomic import atomic_path
from music_ssl.core.errors import DemoError

logger = logging.getLogger(__name__)

SOUNDFONT_CANDIDATES = (  # Debian/Ubuntu package fluid-soundfont-gm
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = "install it with: apt-get install fluidsynth fluid-soundfont-gm"
PEAK = 0.9         # peak amplitude after normalisation
FADE_SECONDS = 0.02  # fade-out at the cropped end (no click)


class SoundfontNotFoundError(DemoError, FileNotFoundError):
    """The soundfont file does not exist."""


class FluidSynthNotFoundError(DemoError, FileNotFoundError):
    """The ``fluidsynth`` program is not on PATH."""


class RenderError(DemoError):
    """FluidSynth failed, or produced silence / unreadable output, or the soundfont file is not a SoundFont."""


def default_soundfont() -> Path:
    """The first installed General MIDI soundfont of ``SOUNDFONT_CANDIDATES``; raises if none is installed."""
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SoundfontNotFoundError(f"no General MIDI soundfont found (looked for {SOUNDFONT_CANDIDATES[0]}): "
                                 f"{INSTALL_HINT}, or pass --soundfont PATH")


def check_soundfont(path: str | os.PathLike) -> Path:
    """Return ``path`` resolved if it is a readable SoundFont 2 file (RIFF/sfbk header); raise a clear error if not."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SoundfontNotFoundError(f"soundfont {path} not found: {INSTALL_HINT}, or pass --soundfont PATH")
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise RenderError(f"{path} is not a SoundFont 2 (.sf2) file: pass a General MIDI .sf2 with --soundfont")
    return path.resolve()


def fluidsynth_program() -> str:
    """Path of the ``fluidsynth`` executable; raises FluidSynthNotFoundError with the install command."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise FluidSynthNotFoundError(f"fluidsynth not found on PATH: {INSTALL_HINT}")
    return exe


def fluidsynth_version() -> str:
    """The ``fluidsynth --version`` first line (recorded in the corpus marker)."""
    proc = subprocess.run([fluidsynth_program(), "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.splitlines()[0].strip() if proc.stdout else "unknown"


def render_midi(midi_path: Path, soundfont: Path, sample_rate: int) -> np.ndarray:
    """Render ``midi_path`` with FluidSynth; returns (samples,) float32 mono at ``sample_rate``, release tail included.

    Raises:
        RenderError: FluidSynth exited non-zero or wrote no readable audio.
    """
    with tempfile.TemporaryDirectory(prefix="render-") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = [fluidsynth_program(), "-ni", "-q", "-g", "0.5", "-r", str(sample_rate),
               "-o", "audio.file.format=float", "-o", "synth.cpu-cores=1",
               "-F", str(wav), str(soundfont), str(midi_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not wav.is_file() or wav.stat().st_size == 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RenderError(f"fluidsynth could not render {midi_path} with {soundfont} "
                              f"(exit {proc.returncode}): {tail[0]}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RenderError(f"fluidsynth rendered {midi_path} at {sr} Hz instead of {sample_rate} Hz")
    return audio.mean(axis=1)  # (samples, channels) -> (samples,)


def finish_audio(audio: np.ndarray, n_samples: int, sample_rate: int, source: Path) -> np.ndarray:
    """Crop/pad (samples,) audio to ``n_samples``, fade out the last ``FADE_SECONDS``, peak-normalise to ``PEAK``.

    Raises:
        RenderError: the result is silent (e.g. the soundfont has no preset for the program).
    """
    out = np.zeros(n_samples, dtype=np.float32)
    n = min(n_samples, len(audio))
    out[:n] = audio[:n]
    fade = min(int(FADE_SECONDS * sample_rate), n_samples)
    out[n_samples - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(out))) if n_samples else 0.0
    if not peak > 1e-4:
        raise RenderError(f"rendering {source} gave silence: check that the soundfont is a General MIDI soundfont")
    return (out * (PEAK / peak)).astype(np.float32)


def write_wav_atomic(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV through a temporary name in the same folder, then rename."""
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")
