"""Generic CSV task for any user dataset: one CSV with columns ``path,label[,split]``.

``path`` is relative to the CSV's folder (absolute paths work too). ``label`` by task type:
multiclass = any string/int; multilabel = labels joined by ';'; regression = float (several outputs joined
by ';'); key = "C major" / "F# minor"; beat = path (relative to the CSV) of a text file with one beat time in
seconds per line (extra columns ignored) or a JAMS file. ``split`` is train/valid/test; without the column
each path gets a deterministic split by its hash (80/10/10).
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
    items = []
    for number, row in enumerate(rows, 2):
        where = f"{path}:{number}"
        audio = Path(row["path"]) if Path(row["path"]).is_absolute() else path.parent / row["path"]
        split = (row.get("split") or "").strip() or ratio_split(row["path"], {"train": 8, "valid": 1, "test": 1})
        items.append(Item(audio, _label(row["label"] or "", type, path.parent, where), split))
    if not items:
        raise ProbeDataError(f"{path}: no rows; add one row per audio file.")
    check_audio_exists(items, task_name or path.stem, LAYOUT)
    if type in ("multiclass", "multilabel") and classes is None:
        labels = [lab for item in items for lab in (item.label if type == "multilabel" else [item.label])]
        classes = sorted(set(labels))
    if type == "regression" and output_names is None:
        output_names = [f"y{k}" for k in range(len(items[0].label))]
    return ProbeDataset(task_name or path.stem, type, items, classes=list(classes) if classes else None,
                    output_names=list(output_names) if output_names else None)
