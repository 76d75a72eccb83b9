"""Emomusic (MediaEval 2013 "1000 songs"): static arousal and valence regression.

Expected layout: ``<root>/songs_info.csv`` and ``<root>/static_annotations.csv`` (or under
``<root>/annotations/``) and the 45-s clips ``<root>/clips_45seconds/<song_id>.mp3``.
Split as JukeMIR: the MediaEval 2013 evaluation set is test; the rest is split train/valid 8:2 by artist
(sha1 of the artist name lower-cased, letters and spaces only). Targets are z-scored with train statistics.
"""
import csv
from pathlib import Path

from .common import check_audio_exists, ratio_split, require
from .dataset import Item, ProbeDataset

LAYOUT = ("<root>/songs_info.csv, <root>/static_annotations.csv (or in <root>/annotations/) and "
          "<root>/clips_45seconds/<song_id>.mp3")


def _table(root: Path, name: str) -> dict:
    path = root / name if (root / name).exists() else root / "annotations" / name
    with open(require(path, f"Emomusic {name}", LAYOUT), newline="") as f:
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
    return {str(int(row["song_id"])): row for row in rows}


def _artist_key(name: str) -> str:
    kept = "".join(c for c in name.lower() if ord(c) < 128 and (c.isalpha() or c.isspace()))
    return " ".join(kept.split())


def load_emomusic(root) -> ProbeDataset:
    root = Path(root)
    info, static = _table(root, "songs_info.csv"), _table(root, "static_annotations.csv")
    items = []
    for song, row in sorted(info.items(), key=lambda kv: int(kv[0])):
        if row.get("Mediaeval 2013 set", "").lower() == "evaluation":
            split = "test"
        else:
            split = ratio_split(_artist_key(row.get("Artist", "")), {"train": 8, "valid": 2})
        targets = [float(static[song]["mean_arousal"]), float(static[song]["mean_valence"])]
        items.append(Item(root / "clips_45seconds" / f"{song}.mp3", targets, split, song.zfill(4)))  # JukeMIR uid
    check_audio_exists(items, "emomusic", LAYOUT)
    return ProbeDataset("emomusic", "regression", items, output_names=["arousal", "valence"])
