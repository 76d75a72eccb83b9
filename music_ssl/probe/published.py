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
"""
import csv
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .errors import ProbeConfigError

FOLDER = Path(__file__).with_name("published")


@lru_cache(maxsize=1)
def published_rows() -> tuple:
    """Every row of every CSV in ``published/`` as dicts (value as float)."""
    rows = []
    for path in sorted(FOLDER.glob("*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                rows.append({**row, "value": float(row["value"]), "file": path.name})
    return tuple(rows)


def references() -> list:
    """Sorted reference names (``<paper>/<model>``)."""
    return sorted({row["reference"] for row in published_rows()})


def check_reference(reference: Optional[str]) -> Optional[str]:
    """Return ``reference`` if it is published (or None), else raise naming a few known ones."""
    if reference is None or reference in references():
        return reference
    raise ProbeConfigError(f"source.reference {reference!r} is not a published model + protocol; known: "
                           f"{', '.join(references())} (see music_ssl/probe/published/).")


def lookup(reference: str, task: str, metric: str) -> Optional[dict]:
    """The paper's row for (reference, task, metric), or None. ``r2`` falls back to the mean of ``r2_*``."""
    rows = [r for r in published_rows() if r["reference"] == reference and r["task"] == task]
    for row in rows:
        if row["metric"] == metric:
            return row
    parts = [r for r in rows if r["metric"].startswith(f"{metric}_")]
    if metric == "r2" and parts:
        return {**parts[0], "metric": "r2", "value": sum(r["value"] for r in parts) / len(parts),
                "note": "mean of " + " and ".join(r["metric"] for r in parts)}
    return None


def attach_published(selected: list, reference: Optional[str]) -> None:
    """Add ``paper`` (points, or None) and ``paper_source`` to every selected row when a reference is set."""
    if reference is None:
        return
    for row in selected:
        found = lookup(reference, row["task"], row["metric"])
        row["paper"] = None if found is None else found["value"]
        row["paper_source"] = None if found is None else f"{found['paper']}, {found['table']}"
