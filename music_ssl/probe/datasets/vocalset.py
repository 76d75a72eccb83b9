"""VocalSet singing technique (10 classes) and singer identity (20 classes); 3-s windows are the items.

Expected layout (the official zip): ``<root>/FULL/<singer>/<context>/<technique>/<file>.wav`` (singers
f1-f9, m1-m11). Splits as Ma et al. 2023 §3.2:

* technique: the 10 techniques of Wilkins et al. 2018, split *by singer*: 5 test singers f2, f8, m3, m5, m10
  (Wilkins et al.'s, as MARBLE), 9 train and 6 valid singers among the other 15 (the paper gives the counts,
  not the names: valid = the last three female and last three male of them, ``VALID_SINGERS``);
* singer identification: every recording, split 12:8:5 train/valid/test *within each singer* (each singer's
  recordings ordered by a hash of the file name, the first 12/25 train, the next 8/25 valid, the rest test),
  so all 20 singers are in every split.

Windows (3 s) of one recording never cross splits.
"""
from pathlib import Path

from ...core.fingerprint import stable_int
from ..errors import MissingDataError
from .common import count_skip, log_skips, require
from .dataset import Item, ProbeDataset

LAYOUT = "<root>/FULL/<singer>/<context>/<technique>/<file>.wav"
TECHNIQUES = ["belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo", "vibrato",
              "vocal_fry"]
TEST_SINGERS = {"f2", "f8", "m3", "m5", "m10"}
VALID_SINGERS = {"f6", "f7", "f9", "m8", "m9", "m11"}
SINGER_RATIOS = (("train", 12), ("valid", 8), ("test", 5))
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


def load_vocalset_technique(root) -> ProbeDataset:
    items, skipped = [], {}
    for path, singer, technique in _recordings(Path(root)):
        if technique not in TECHNIQUES:
            count_skip(skipped, "technique outside the 10 of Wilkins et al.")
            continue
        split = "test" if singer in TEST_SINGERS else "valid" if singer in VALID_SINGERS else "train"
        items.append(Item(path, technique, split))
    log_skips("vocalset_technique", skipped)
    return ProbeDataset("vocalset_technique", "multiclass", items, classes=TECHNIQUES, skipped=skipped)


def within_singer_splits(names: list) -> list:
    """One singer's recording names -> their splits, 12:8:5 in hash order (cumulative rounding)."""
    order = sorted(range(len(names)), key=lambda i: (stable_int(names[i]), names[i]))
    total, bounds, seen = sum(n for _, n in SINGER_RATIOS), [], 0
    for split, n in SINGER_RATIOS:
        seen += n
        bounds.append((split, round(len(names) * seen / total)))
    out = [""] * len(names)
    for rank, i in enumerate(order):
        out[i] = next(split for split, bound in bounds if rank < bound)
    return out


def load_vocalset_singer(root) -> ProbeDataset:
    by_singer: dict = {}
    for path, singer, _ in _recordings(Path(root)):
        by_singer.setdefault(singer, []).append(path)
    items = []
    for singer, paths in sorted(by_singer.items()):
        for path, split in zip(paths, within_singer_splits([str(p.relative_to(Path(root))) for p in paths])):
            items.append(Item(path, singer, split))
    return ProbeDataset("vocalset_singer", "multiclass", items, classes=SINGERS)
