"""GTZAN-Rhythm beat tracking (frame-level), on the GTZAN fault-filtered split.

Expected layout: GTZAN audio and split lists as for ``gtzan_genre`` and the GTZAN-Rhythm beat annotations in
``<root>/annotations/`` (or ``annotations_dir``), one file per clip named ``<stem>.beats`` (time per line,
extra columns ignored), ``<stem>.wav.jams`` or ``<stem>.jams`` (JAMS from GTZAN-Rhythm).
"""
from pathlib import Path

from ..beat import read_beats
from ..errors import MissingDataError
from .gtzan import gtzan_audio_dir, gtzan_split_entries, resolve_clip
from .dataset import Item, ProbeDataset

LAYOUT = ("GTZAN layout (see gtzan_genre) plus <root>/annotations/<stem>.beats | <stem>.wav.jams | <stem>.jams")


def _annotation(folder: Path, clip: Path) -> Path:
    for name in (f"{clip.stem}.beats", f"{clip.name}.jams", f"{clip.stem}.wav.jams", f"{clip.stem}.jams"):
        if (folder / name).exists():
            return folder / name
    raise MissingDataError(f"{folder / (clip.stem + '.beats')}: missing GTZAN-Rhythm beat annotation for "
                           f"{clip.name}. Expected layout: {LAYOUT}")


def load_gtzan_rhythm(root, annotations_dir=None, audio_dir=None) -> ProbeDataset:
    root = Path(root)
    folder = Path(annotations_dir) if annotations_dir else root / "annotations"
    if not folder.is_dir():
        raise MissingDataError(f"{folder}: missing GTZAN-Rhythm annotation folder. Expected layout: {LAYOUT}")
    audio = gtzan_audio_dir(root, audio_dir)
    items = []
    for split, entry in gtzan_split_entries(root):
        clip = resolve_clip(audio, entry)
        items.append(Item(clip, read_beats(_annotation(folder, clip)), split))
    return ProbeDataset("gtzan_beat", "beat", items)
