"""VocalSet singing technique (10 classes) and singer identity (20 classes); 3-s windows are the items.

Expected layout (the official zip): ``<root>/FULL/<singer>/<context>/<technique>/<file>.wav`` (singers
f1-f9, m1-m11). Two splits (the ``split`` option):

``split="marble"`` — as MARBLE's code made the split behind Ma et al. 2023's numbers
(a43992899/MARBLE-Benchmark ``benchmark/tasks/VocalSet/preprocess.py``): technique test singers f2, f8, m3, m5,
m10 and train/valid drawn by ``GroupShuffleSplit(test_size=0.4)`` over *file indices* (the position of a file in
its technique folder) among the other 15 singers; singer identification over every recording of the 17
techniques, ``GroupShuffleSplit`` 0.2 (test) then 0.4 (valid) by the same file indices. The draw depends on the
exact folder listing after that script's renames, deletions and silence-trimmed chunk counts, so it is read from
the lists the script writes, which the user drops into ``<root>`` (or ``split_dir``): ``{train,valid,test}_t.txt``
(technique) and ``{train,valid,test}_s.txt`` (singer), one chunk per line (``belt/f1_arpeggios_belt_a_00.wav``).
Each recording takes the split of its chunks (a recording whose chunks are in two lists is refused); recordings in
no list (the script's deleted duplicates, recordings too short for one chunk) are counted as skipped. The
script's renames only add a missing singer prefix (``lip_trill_arps`` of f2 -> ``f2_lip_trill_arps``), which
:func:`marble_name` applies. Without the lists the loader stops and says how to make them.

``split="text"`` — Ma et al. 2023 §3.2's words:

* technique: the 10 techniques of Wilkins et al. 2018, split *by singer*: 5 test singers f2, f8, m3, m5, m10
  (Wilkins et al.'s, as MARBLE), 9 train and 6 valid singers among the other 15 (the paper gives the counts,
  not the names: valid = the last three female and last three male of them, ``VALID_SINGERS``);
* singer identification: every recording, split 12:8:5 train/valid/test *within each singer* (each singer's
  recordings ordered by a hash of the file name, the first 12/25 train, the next 8/25 valid, the rest test),
  so all 20 singers are in every split.

Windows (3 s) of one recording never cross splits. The ``ma2023`` and ``marble`` presets also process the audio
as MARBLE's script did (leading silence trimmed, 2.993-s chunks z-normalised, the remainder dropped: their task
rules); the loader default is ``split="text"``.
"""
import re
from pathlib import Path

from ...core.fingerprint import stable_int
from ..errors import MissingDataError, ProbeConfigError, ProbeDataError
from .common import count_skip, log_skips, read_list, require
from .dataset import Item, ProbeDataset

LAYOUT = "<root>/FULL/<singer>/<context>/<technique>/<file>.wav"
TECHNIQUES = ["belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo", "vibrato",
              "vocal_fry"]
TEST_SINGERS = {"f2", "f8", "m3", "m5", "m10"}
VALID_SINGERS = {"f6", "f7", "f9", "m8", "m9", "m11"}
SINGER_RATIOS = (("train", 12), ("valid", 8), ("test", 5))
SINGERS = [f"f{i}" for i in range(1, 10)] + [f"m{i}" for i in range(1, 12)]
SPLIT_CHOICES = ("text", "marble")
MARBLE_LISTS = {"technique": "t", "singer": "s"}  # MARBLE's list suffix: {split}_t.txt / {split}_s.txt
MARBLE_SCRIPT = "a43992899/MARBLE-Benchmark benchmark/tasks/VocalSet/preprocess.py"
_CHUNK = re.compile(r"^(?P<technique>[^/]+)/(?P<name>.+)_(?P<chunk>\d+)\.wav$")


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


def marble_name(path: Path, singer: str) -> str:
    """A recording's name in MARBLE's lists: its file stem, with the singer prefix MARBLE's script adds where the
    official file name lacks it (its ``name_correction`` table)."""
    stem = Path(path).stem
    return stem if stem.startswith(f"{singer}_") else f"{singer}_{stem}"


def marble_splits(folder: Path, task: str) -> dict:
    """(technique, recording name) -> split from MARBLE's chunk lists ``{train,valid,test}_<t|s>.txt``."""
    suffix, out = MARBLE_LISTS[task], {}
    for split in ("train", "valid", "test"):
        listing = folder / f"{split}_{suffix}.txt"
        if not listing.exists():
            raise MissingDataError(
                f"{listing}: missing MARBLE's VocalSet {task} split list (split=marble, the default of the ma2023 "
                f"and marble presets: the split behind Ma et al. 2023's numbers, drawn by GroupShuffleSplit over file "
                f"indices). Make the lists with {MARBLE_SCRIPT} (it writes data/VocalSet/{{train,valid,test}}_"
                f"{suffix}.txt) and put the three files in {folder}, or set split: text on the task (Ma et al. "
                f"§3.2's reading).")
        for number, line in enumerate(read_list(listing), 1):
            match = _CHUNK.match(line)
            if not match:
                raise ProbeDataError(f"{listing}:{number}: expected a chunk like 'belt/f1_arpeggios_belt_a_00.wav', "
                                     f"got {line!r}.")
            key = (match["technique"], match["name"])
            if out.setdefault(key, split) != split:
                raise ProbeDataError(f"{listing}:{number}: chunks of {key[0]}/{key[1]} are in the {out[key]} and the "
                                     f"{split} list; MARBLE's lists keep a recording in one split.")
    return out


def _marble_items(root: Path, task: str, split_dir, techniques=None) -> tuple:
    """Items of every recording in MARBLE's lists (label: technique or singer) and the skip counts."""
    splits = marble_splits(Path(split_dir) if split_dir else root, task)
    items, skipped = [], {}
    for path, singer, technique in _recordings(root):
        if techniques is not None and technique not in techniques:
            count_skip(skipped, "technique outside the 10 of Wilkins et al.")
            continue
        split = splits.get((technique, marble_name(path, singer)))
        if split is None:
            count_skip(skipped, "recording in none of MARBLE's split lists")
            continue
        items.append(Item(path, technique if task == "technique" else singer, split))
    return items, skipped


def _check_split(split: str) -> None:
    if split not in SPLIT_CHOICES:
        raise ProbeConfigError(f"VocalSet split {split!r} is not one of {SPLIT_CHOICES}.")


def load_vocalset_technique(root, split: str = "text", split_dir=None) -> ProbeDataset:
    """``split``: "marble" (MARBLE's lists, see the module doc) or "text" (9/6/5 singers); ``split_dir``: the
    folder of MARBLE's lists (default ``root``)."""
    _check_split(split)
    if split == "marble":
        items, skipped = _marble_items(Path(root), "technique", split_dir, TECHNIQUES)
    else:
        items, skipped = [], {}
        for path, singer, technique in _recordings(Path(root)):
            if technique not in TECHNIQUES:
                count_skip(skipped, "technique outside the 10 of Wilkins et al.")
                continue
            split_of = "test" if singer in TEST_SINGERS else "valid" if singer in VALID_SINGERS else "train"
            items.append(Item(path, technique, split_of))
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


def load_vocalset_singer(root, split: str = "text", split_dir=None) -> ProbeDataset:
    """``split``: "marble" (MARBLE's lists, see the module doc) or "text" (12:8:5 within each singer)."""
    _check_split(split)
    if split == "marble":
        items, skipped = _marble_items(Path(root), "singer", split_dir)
        log_skips("vocalset_singer", skipped)
        return ProbeDataset("vocalset_singer", "multiclass", items, classes=SINGERS, skipped=skipped)
    by_singer: dict = {}
    for path, singer, _ in _recordings(Path(root)):
        by_singer.setdefault(singer, []).append(path)
    items = []
    for singer, paths in sorted(by_singer.items()):
        for path, split in zip(paths, within_singer_splits([str(p.relative_to(Path(root))) for p in paths])):
            items.append(Item(path, singer, split))
    return ProbeDataset("vocalset_singer", "multiclass", items, classes=SINGERS)
