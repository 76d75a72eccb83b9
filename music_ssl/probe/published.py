"""Published numbers of the papers this suite reproduces, to print beside ours.

The tables live as CSV package data in ``music_ssl/probe/published/`` (one file per paper), one row per
(reference, task, metric)::

    reference,model,protocol,task,metric,value,paper,table,note
    ma2023/music2vec_base,music2vec_base,ma2023,gtzan_genre,accuracy,59.7,Ma et al. 2023,Table 1,

``reference`` = ``<paper>/<model>`` (``jukemir/jukebox``, ``li2022/music2vec_crop5``, ``ma2023/music_hubert_base``
…; ``music-ssl-probe --list-references`` lists them); ``task`` and ``metric`` use this suite's names; ``value``
is in points (x100) as printed in the paper. A probe config names its reference with ``source.reference``; the
report then adds a "paper" column. Emomusic's ``r2`` (our primary: mean over outputs) is the mean of the
paper's arousal and valence R².

Numbers we could not read from their primary source (MARBLE's MERT-v1-95M / 330M rows, Yuan et al. 2023, Tables
3-5) are not shipped: a user copies them from the paper into a CSV of the same columns and names it with
``source.reference_table``; its rows join the shipped ones for that run (a reference name may not be both).
"""
import csv
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .errors import ProbeConfigError

FOLDER = Path(__file__).with_name("published")
COLUMNS = ("reference", "model", "protocol", "task", "metric", "value", "paper", "table", "note")
TABLE_FIX = (f"use the header {','.join(COLUMNS)} (as music_ssl/probe/published/*.csv) and one value per row, a "
             "number in points (x100) as the paper prints it")


def read_table(path: Path) -> list:
    """The rows of one published-numbers CSV as dicts (value as float, ``file`` its name); raises
    ProbeConfigError naming the file (and line) when it is missing, lacks a column or has a value that is not a
    number."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ProbeConfigError(f"{path}: no column {', '.join(missing)}: {TABLE_FIX}.")
            rows = []
            for row in reader:
                try:
                    value = float(row["value"])
                except (TypeError, ValueError):
                    raise ProbeConfigError(f"{path}:{reader.line_num}: value {row['value']!r} is not a number: "
                                           f"{TABLE_FIX}.") from None
                rows.append({**row, "value": value, "file": path.name})
    except OSError as err:
        raise ProbeConfigError(f"{path}: cannot read the reference table ({err.strerror}): give "
                               "source.reference_table the path of a CSV.") from None
    return rows


@lru_cache(maxsize=1)
def shipped_rows() -> tuple:
    """Every row of every CSV in ``published/``."""
    return tuple(row for path in sorted(FOLDER.glob("*.csv")) for row in read_table(path))


@lru_cache(maxsize=8)
def published_rows(table: Optional[str] = None) -> tuple:
    """The shipped rows, and those of the user's ``table`` (``source.reference_table``) when given; raises when
    the user's table reuses a shipped reference name."""
    if table is None:
        return shipped_rows()
    user = read_table(Path(table).expanduser())
    clash = sorted({r["reference"] for r in user} & {r["reference"] for r in shipped_rows()})
    if clash:
        raise ProbeConfigError(f"{table}: reference {', '.join(clash)} is already shipped in "
                               "music_ssl/probe/published/: name your rows differently (e.g. <paper>/<model>).")
    return shipped_rows() + tuple(user)


def references(table: Optional[str] = None) -> list:
    """Sorted reference names (``<paper>/<model>``), with those of the user's ``table``."""
    return sorted({row["reference"] for row in published_rows(table)})


def check_reference(reference: Optional[str], table: Optional[str] = None) -> Optional[str]:
    """Return ``reference`` if it is published (or in the user's ``table``; or None), else raise naming the
    known ones."""
    known = references(table)
    if reference is None or reference in known:
        return reference
    raise ProbeConfigError(f"source.reference {reference!r} is not a published model + protocol; known: "
                           f"{', '.join(known)} (see music_ssl/probe/published/; numbers we do not ship go in "
                           "a CSV named by source.reference_table).")


def lookup(reference: str, task: str, metric: str, table: Optional[str] = None) -> Optional[dict]:
    """The paper's row for (reference, task, metric), or None. ``r2`` falls back to the mean of ``r2_*``."""
    rows = [r for r in published_rows(table) if r["reference"] == reference and r["task"] == task]
    for row in rows:
        if row["metric"] == metric:
            return row
    parts = [r for r in rows if r["metric"].startswith(f"{metric}_")]
    if metric == "r2" and parts:
        return {**parts[0], "metric": "r2", "value": sum(r["value"] for r in parts) / len(parts),
                "note": "mean of " + " and ".join(r["metric"] for r in parts)}
    return None


def attach_published(selected: list, reference: Optional[str], table: Optional[str] = None) -> None:
    """Add ``paper`` (points, or None) and ``paper_source`` to every selected row when a reference is set."""
    if reference is None:
        return
    for row in selected:
        found = lookup(reference, row["task"], row["metric"], table)
        row["paper"] = None if found is None else found["value"]
        row["paper_source"] = None if found is None else f"{found['paper']}, {found['table']}"
