"""NSynth instrument family (11 classes) and pitch (128 classes) on the official train/valid/test splits.

Expected layout (the official tarballs): ``<root>/nsynth-{train,valid,test}/examples.json`` and
``<root>/nsynth-{split}/audio/<note_str>.wav``. ``max_train_items`` keeps a deterministic subset of the
289k training notes (the rest are counted as skipped).
"""
import json
from pathlib import Path

from ...core.fingerprint import stable_int
from .common import check_audio_exists, require
from .dataset import Item, ProbeDataset

LAYOUT = "<root>/nsynth-{train,valid,test}/examples.json and <root>/nsynth-{split}/audio/<note_str>.wav"
FAMILIES = ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead",
            "vocal"]


def _load(root: Path, field: str, name: str, classes: list, max_train_items=None) -> ProbeDataset:
    items, skipped = [], {}
    for split in ("train", "valid", "test"):
        folder = root / f"nsynth-{split}"
        notes = json.loads(require(folder / "examples.json", "NSynth examples.json", LAYOUT).read_text())
        keys = sorted(notes)
        if split == "train" and max_train_items and len(keys) > max_train_items:
            keys = sorted(keys, key=stable_int)[:max_train_items]
            skipped["train notes beyond max_train_items"] = len(notes) - len(keys)
        items += [Item(folder / "audio" / f"{k}.wav", str(notes[k][field]), split) for k in keys]
    check_audio_exists(items, name, LAYOUT)
    return ProbeDataset(name, "multiclass", items, classes=classes, skipped=skipped)


def load_nsynth_instrument(root, max_train_items=None) -> ProbeDataset:
    return _load(Path(root), "instrument_family_str", "nsynth_instrument", FAMILIES, max_train_items)


def load_nsynth_pitch(root, max_train_items=None) -> ProbeDataset:
    return _load(Path(root), "pitch", "nsynth_pitch", [str(p) for p in range(128)], max_train_items)
