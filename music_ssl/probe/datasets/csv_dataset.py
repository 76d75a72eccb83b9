"""Generic CSV task for any user dataset: one CSV with columns ``path,label[,split]``.

``path`` is relative to the CSV's folder (absolute paths work too). ``label`` by task type:
multiclass = any string/int; multilabel = labels joined by ';'; regression = float (several outputs joined
by ';'); key = "C major" / "F# minor"; beat = path (relative to the CSV) of a text file with one beat time in
seconds per line (extra columns ignored) or a JAMS file. ``split`` is train/valid/test; without the column
each path gets a deterministic split by its hash (80/10/10).

An audio file listed in two splits is refused with one line naming both CSV rows (a leak: the probe would be
scored on a file it trained on). A multiclass label or multilabel tag that occurs in valid/test but never in train
is warned about (one line: the CSV, its first row, the labels, the cap on test accuracy), not refused: the probe can
never predict it, but rare labels outside train are what a small or hash-split corpus has (the demo at small sizes
too), and the rows stay scored as they are.
"""
import csv
import logging
from pathlib import Path

from ..beat import read_beats
from ..errors import MissingDataError, ProbeConfigError, ProbeDataError
from .common import check_audio_exists, checked_key, parse_float, ratio_split
from .dataset import Item, ProbeDataset

logger = logging.getLogger(__name__)
LAYOUT = "a CSV with header path,label[,split]; paths relative to the CSV's folder"
TYPES = ("multiclass", "multilabel", "regression", "key", "beat")


def _label(raw: str, task_type: str, folder: Path, where: str):
    raw = raw.strip()
    if task_type == "multilabel":
        return [t.strip() for t in raw.split(";") if t.strip()]
    if task_type == "regression":
        return [parse_float(v, where) for v in raw.split(";")]
    if task_type == "beat":
        path = Path(raw) if Path(raw).is_absolute() else folder / raw
        return read_beats(path)
    if task_type == "key":
        return checked_key(raw, where)
    return raw


def load_csv_dataset(path, type: str = "multiclass", task_name: str = None, classes=None,
                  output_names=None) -> ProbeDataset:
    """Load a generic CSV task.

    Args:
        path: the CSV file. type: one of ``TYPES``. task_name: name in reports (default: the CSV's stem).
        classes: label order (multiclass/multilabel; default sorted labels). output_names: regression names.
    """
    if type not in TYPES:
        raise ProbeConfigError(f"csv task {path}: type {type!r} is not one of {TYPES}.")
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: CSV task file not found (set the task's `path`). Expected: {LAYOUT}.")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    header = set(rows[0]) if rows else set()
    if not {"path", "label"} <= header:
        raise ProbeDataError(f"{path}: needs a header with columns path,label[,split]; found {sorted(header)}.")
    items, numbers = [], []
    for number, row in enumerate(rows, 2):
        where = f"{path}:{number}"
        audio = Path(row["path"]) if Path(row["path"]).is_absolute() else path.parent / row["path"]
        split = (row.get("split") or "").strip() or ratio_split(row["path"], {"train": 8, "valid": 1, "test": 1})
        items.append(Item(audio, _label(row["label"] or "", type, path.parent, where), split))
        numbers.append(number)
    if not items:
        raise ProbeDataError(f"{path}: no rows; add one row per audio file.")
    check_audio_exists(items, task_name or path.stem, LAYOUT)
    check_no_file_in_two_splits(path, items, numbers)
    if type in ("multiclass", "multilabel"):
        warn_labels_unseen_in_train(path, items, numbers, type, has_split="split" in header)
    if type in ("multiclass", "multilabel") and classes is None:
        labels = [lab for item in items for lab in (item.label if type == "multilabel" else [item.label])]
        classes = sorted(set(labels))
    if type == "regression" and output_names is None:
        output_names = [f"y{k}" for k in range(len(items[0].label))]
    return ProbeDataset(task_name or path.stem, type, items, classes=list(classes) if classes else None,
                    output_names=list(output_names) if output_names else None)


def check_no_file_in_two_splits(path: Path, items: list, numbers: list) -> None:
    """ProbeDataError naming the first audio file listed in two splits (with both rows), and how many are."""
    first = {}  # resolved audio path -> (split, CSV row) of its first row
    leaks = []
    for item, number in zip(items, numbers):
        key = Path(item.path).resolve()
        split, row = first.setdefault(key, (item.split, number))
        if split != item.split:
            leaks.append((key, item, number, split, row))
    if leaks:
        files = len({leak[0] for leak in leaks})
        _, item, number, split, row = leaks[0]
        raise ProbeDataError(
            f"{path}:{number}: {item.path} is in the {item.split} split here and in the {split} split at row {row}: "
            f"a leak (the probe would be scored on a file it trained on; {files} file(s) in two splits); list each "
            f"file in one split only.")


def warn_labels_unseen_in_train(path: Path, items: list, numbers: list, type: str, has_split: bool) -> list:
    """Log one warning naming the labels (multiclass) or tags (multilabel) of valid/test rows that no train row has,
    with the first such row; returns them (sorted)."""
    def labels(item) -> list:
        return list(item.label) if type == "multilabel" else [item.label]

    seen = {lab for item in items if item.split == "train" for lab in labels(item)}
    rows = [(item, number) for item, number in zip(items, numbers) if set(labels(item)) - seen]
    if not rows:
        return []
    unseen = sorted({lab for item, _ in rows for lab in labels(item)} - seen)
    splits = "/".join(sorted({item.split for item, _ in rows}))
    if type == "multiclass":
        test = [item for item in items if item.split == "test"]
        capped = sum(item.label in seen for item in test) / max(1, len(test))
        cost = f"the probe can never predict them: at most {100 * capped:.1f}% of the test rows can be right"
    else:
        cost = "the probe sees no positive of them: their test ROC-AUC / AP are chance"
    fix = ("move some of their files to train in the split column" if has_split else
           "add a split column (without one, rows are split by a hash of the path) with some of their files in train")
    logger.warning("%s:%d: %d %s(s) occur in %s but never in train (%s%s): %s; %s, or drop their rows.", path,
                   rows[0][1], len(unseen), "tag" if type == "multilabel" else "label", splits,
                   ", ".join(map(repr, unseen[:5])), ", ..." if len(unseen) > 5 else "", cost, fix)
    return unseen
