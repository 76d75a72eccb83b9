"""Giantsteps key (24 keys): train/valid from GiantSteps-MTG-Key, test on GiantSteps Key; 30-s windows are
the training items and are ensembled to songs for scoring (strategy chosen on valid).

Expected layout: ``<root>/giantsteps-mtg-key-dataset/`` with ``annotations/annotations.txt`` (tab-separated:
ID, MANUAL KEY, C, ...), ``annotations/beatport_metadata.txt`` (ID, ARTIST, ...) and ``audio/<ID>.LOFI.mp3``;
``<root>/giantsteps-key-dataset/`` with ``annotations/key/<ID>.LOFI.key`` and ``audio/<ID>.LOFI.mp3``.
As JukeMIR (after Korzeniowski & Widmer 2018): MTG tracks with confidence C != 2 or several keys are skipped
(counted); the MTG train/valid split is by artist (sha1 of the lower-cased name, 100:16), collaborators of a
valid artist are valid (two hops).
"""
import csv
from pathlib import Path

from ...core.fingerprint import stable_int
from .common import check_audio_exists, checked_key, count_skip, log_skips, require
from .dataset import Item, ProbeDataset

LAYOUT = ("<root>/giantsteps-mtg-key-dataset/{annotations/annotations.txt, annotations/beatport_metadata.txt, "
          "audio/<ID>.LOFI.mp3} and <root>/giantsteps-key-dataset/{annotations/key/<ID>.LOFI.key, "
          "audio/<ID>.LOFI.mp3}")


def _tsv(path: Path) -> dict:
    """ID -> row (stripped), with ``_where`` = ``<file>:<line>`` for error messages."""
    with open(require(path, "GiantSteps annotation table", LAYOUT), newline="") as f:
        return {row["ID"].strip(): {**{k.strip(): (v or "").strip() for k, v in row.items() if k},
                                    "_where": f"{path}:{line}"}
                for line, row in enumerate(csv.DictReader(f, delimiter="\t"), 2)}


def _artists(text: str) -> list:
    return [a.strip() for a in text.split(",") if a.strip()]


def artist_splits(metadata: dict) -> dict:
    """artist -> "train"/"valid" (hash 100:16, then valid spreads to collaborators, two hops)."""
    table = ["train"] * 100 + ["valid"] * 16
    split = {a: table[stable_int(a.lower()) % len(table)] for row in metadata.values() for a in _artists(row["ARTIST"])}
    for _ in range(2):
        for row in metadata.values():
            names = _artists(row["ARTIST"])
            if any(split[a] == "valid" for a in names):
                split.update({a: "valid" for a in names})
    return split


def _mtg_items(folder: Path, skipped: dict) -> list:
    annotations = _tsv(folder / "annotations" / "annotations.txt")
    metadata = _tsv(folder / "annotations" / "beatport_metadata.txt")
    by_artist = artist_splits(metadata)
    items = []
    for track, row in sorted(annotations.items()):
        if row.get("C") != "2":
            count_skip(skipped, "GS-MTG key confidence C != 2")
            continue
        if "/" in row["MANUAL KEY"] or row["MANUAL KEY"] in ("", "-"):
            count_skip(skipped, "GS-MTG several or no keys")
            continue
        splits = {by_artist[a] for a in _artists(metadata.get(track, {}).get("ARTIST", ""))} or {"train"}
        split = "valid" if "valid" in splits else "train"
        key = checked_key(row["MANUAL KEY"], row["_where"])
        items.append(Item(folder / "audio" / f"{track}.LOFI.mp3", key, split, jukemir_uid(track)))
    return items


def _test_items(folder: Path) -> list:
    key_dir = require(folder / "annotations" / "key", "GiantSteps Key annotation folder", LAYOUT)
    items = []
    for path in sorted(key_dir.glob("*.LOFI.key")):
        track = path.name[:-len(".LOFI.key")]
        key = checked_key(path.read_text().strip(), f"{path}:1")
        items.append(Item(folder / "audio" / f"{track}.LOFI.mp3", key, "test", jukemir_uid(track)))
    return items


def jukemir_uid(track: str) -> str:
    """JukeMIR's uid of a Giantsteps track: its numeric ID zero-padded to 7 digits (windows add -<index>)."""
    return track.zfill(7) if track.isdigit() else track


def load_giantsteps(root, mtg_dir=None, test_dir=None) -> ProbeDataset:
    root = Path(root)
    skipped: dict = {}
    items = _mtg_items(Path(mtg_dir or root / "giantsteps-mtg-key-dataset"), skipped)
    items += _test_items(Path(test_dir or root / "giantsteps-key-dataset"))
    check_audio_exists(items, "giantsteps_key", LAYOUT)
    log_skips("giantsteps_key", skipped)
    return ProbeDataset("giantsteps_key", "key", items, skipped=skipped)
