"""MTG-Jamendo auto-tagging (multilabel): top-50 tags, genre, instrument, mood/theme on split-0.

Expected layout: the mtg-jamendo-dataset repository at ``<root>`` (``data/splits/split-0/
autotagging_<subset>-{train,validation,test}.tsv``: TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, then one
tag per column) and the audio under ``audio_dir`` (default ``<root>/audio``) at each row's PATH (e.g.
``00/7400.mp3``; ``audio_suffix: .low.mp3`` for the low-quality download).
"""
from pathlib import Path

from .common import check_audio_exists, require
from .dataset import Item, ProbeDataset

LAYOUT = ("<root>/data/splits/split-0/autotagging_<subset>-{train,validation,test}.tsv and audio at "
          "<audio_dir>/<PATH>")
SUBSETS = {"top50": "top50tags", "genre": "genre", "instrument": "instrument", "moodtheme": "moodtheme"}


def _rows(path: Path) -> list:
    lines = require(path, "MTG-Jamendo split file", LAYOUT).read_text().splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def load_mtg_jamendo(root, subset: str = "top50", audio_dir=None, audio_suffix=None,
                     split_index: int = 0) -> ProbeDataset:
    root = Path(root)
    audio_dir = Path(audio_dir) if audio_dir else root / "audio"
    folder = root / "data" / "splits" / f"split-{split_index}"
    items = []
    for split, tag in (("train", "train"), ("valid", "validation"), ("test", "test")):
        for row in _rows(folder / f"autotagging_{SUBSETS[subset]}-{tag}.tsv"):
            rel = row[3]
            if audio_suffix:
                rel = rel[: -len(".mp3")] + audio_suffix if rel.endswith(".mp3") else rel + audio_suffix
            items.append(Item(audio_dir / rel, [t.strip() for t in row[5:] if t.strip()], split))
    check_audio_exists(items, f"mtg_{subset}", LAYOUT)
    classes = sorted({t for item in items if item.split == "train" for t in item.label})
    name = f"mtg_{subset}"
    extra = sorted({t for item in items for t in item.label} - set(classes))
    for item in items:
        item.label = [t for t in item.label if t in classes]
    skipped = {"tags absent from train (dropped from labels)": len(extra)} if extra else {}
    return ProbeDataset(name, "multilabel", items, classes=classes, skipped=skipped)
