"""VocalSet singing technique (10 classes) and singer identity (20 classes); 3-s windows are the items.

Expected layout (the official zip): ``<root>/FULL/<singer>/<context>/<technique>/<file>.wav`` (singers
f1-f9, m1-m11). Technique: the 10 techniques of Wilkins et al. 2018; test singers f2, f8, m3, m5, m10
(as MARBLE), the other singers' recordings split train/valid 3:2 by file. Singer: every recording, split
train/valid/test 12:8:5 by file. Windows of one recording never cross splits.
"""
from pathlib import Path

from ..errors import MissingDataError
from .common import count_skip, log_skips, ratio_split, require
from .task import Item, TaskData

LAYOUT = "<root>/FULL/<singer>/<context>/<technique>/<file>.wav"
TECHNIQUES = ["belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo", "vibrato",
              "vocal_fry"]
TEST_SINGERS = {"f2", "f8", "m3", "m5", "m10"}
SINGERS = [f"f{i}" for i in range(1, 10)] + [f"m{i}" for i in range(1, 12)]


def _recordings(root: Path) -> list:
    """[(path, singer, technique)] of every wav under FULL/."""
    full = require(root / "FULL", "VocalSet FULL folder", LAYOUT)
    out = []
    for path in sorted(full.rglob("*.wav")):
        parts = path.relative_to(full).parts
        if len(parts) == 4:
            out.append((path, parts[0], parts[2]))
    if not out:
        raise MissingDataError(f"{full}: no <singer>/<context>/<technique>/<file>.wav recordings found. "
                               f"Expected layout: {LAYOUT}")
    return out


def load_vocalset_technique(root) -> TaskData:
    items, skipped = [], {}
    for path, singer, technique in _recordings(Path(root)):
        if technique not in TECHNIQUES:
            count_skip(skipped, "technique outside the 10 of Wilkins et al.")
            continue
        split = "test" if singer in TEST_SINGERS else ratio_split(path.name, {"train": 3, "valid": 2})
        items.append(Item(path, technique, split))
    log_skips("vocalset_technique", skipped)
    return TaskData("vocalset_technique", "multiclass", items, classes=TECHNIQUES, skipped=skipped)


def load_vocalset_singer(root) -> TaskData:
    items = [Item(path, singer, ratio_split(path.name, {"train": 12, "valid": 8, "test": 5}))
             for path, singer, _ in _recordings(Path(root))]
    return TaskData("vocalset_singer", "multiclass", items, classes=SINGERS)
