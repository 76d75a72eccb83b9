"""MagnaTagATune top-50 tags (multilabel).

Expected layout (the official download): ``<root>/annotations_final.csv`` (tab-separated: ``clip_id``, one
0/1 column per tag, ``mp3_path``) and the audio under ``<root>/<mp3_path>`` (folders 0-9, a-f from
mp3.zip). The 50 most frequent tags are the targets. Zero-byte mp3 files (MTT ships a few) are skipped and
counted. Splits (the ``split`` option):

* ``folders`` (default): the standard 12:1:3 split by audio folder, every clip: 0-b train, c valid, d-f test (as
  MARBLE's ``benchmark/tasks/MTT/preprocess.py`` and JukeMIR);
* ``mulap``: MuLaP's (Manco et al. 2022 footnote 2): jongpillee's filtered MTAT split (clips with at least one of
  the top-50 tags and at least 29.1 s), read as MuLaP's code reads it (ilaria-manco/mulap
  ``mulap/datasets/tagging.py`` ``MTTDataset``) from ``<root>/{train,valid,test}.npy`` (or ``split_dir``): arrays of
  ``"<index>\t<mp3_path>"`` strings (minzwon/sota-music-tagging-models ``split/mtat``); MuLaP leaves
  ``f/tilopa-turkishauch-05-schlicht_1-88-117.mp3`` out of test (counted as skipped). Labels come from
  ``annotations_final.csv``'s top-50 tags.
"""
import csv
from pathlib import Path

import numpy as np

from ..errors import MissingDataError, ProbeConfigError, ProbeDataError
from .common import check_audio_exists, count_skip, log_skips, require
from .dataset import Item, ProbeDataset

LAYOUT = "<root>/annotations_final.csv (tab-separated, clip_id, tags..., mp3_path) and <root>/<mp3_path> audio"
SPLIT_OF_FOLDER = {**{c: "train" for c in "0123456789ab"}, "c": "valid", **{c: "test" for c in "def"}}
SPLIT_CHOICES = ("folders", "mulap")
MULAP_TEST_DROPPED = "f/tilopa-turkishauch-05-schlicht_1-88-117.mp3"  # mulap/datasets/tagging.py MTTDataset


def mulap_split(folder: Path) -> dict:
    """mp3_path -> split from MuLaP's ``{train,valid,test}.npy`` (``"<index>\t<mp3_path>"`` strings)."""
    out = {}
    for split in ("train", "valid", "test"):
        listing = folder / f"{split}.npy"
        if not listing.exists():
            raise MissingDataError(
                f"{listing}: missing MuLaP's MTT split list (split=mulap, the mulap preset's default: jongpillee's "
                f"filtered MTAT split, Manco et al. 2022 footnote 2, read by ilaria-manco/mulap "
                f"mulap/datasets/tagging.py). Put train.npy, valid.npy and test.npy (arrays of '<index>\\t<mp3 "
                f"path>', e.g. from minzwon/sota-music-tagging-models split/mtat) in {folder}, or set split: "
                f"folders on the task.")
        try:
            lines = np.load(listing, allow_pickle=False)
        except ValueError as err:
            raise ProbeDataError(f"{listing}: not an array of strings ({err}); pickled lists are refused.") from None
        for number, line in enumerate(lines.tolist(), 1):
            fields = str(line).split("\t")
            if len(fields) != 2:
                raise ProbeDataError(f"{listing}: entry {number} is {line!r}, not '<index>\\t<mp3 path>'.")
            path = fields[1].strip()
            if out.setdefault(path, split) != split:
                raise ProbeDataError(f"{listing}: {path} is in the {out[path]} and the {split} list.")
    return out


def load_mtt(root, top: int = 50, audio_dir=None, split: str = "folders", split_dir=None) -> ProbeDataset:
    """``split``: "folders" (12:1:3 by folder) or "mulap" (MuLaP's lists in ``split_dir``, default ``root``)."""
    if split not in SPLIT_CHOICES:
        raise ProbeConfigError(f"MTT split {split!r} is not one of {SPLIT_CHOICES}.")
    root = Path(root)
    listed = mulap_split(Path(split_dir) if split_dir else root) if split == "mulap" else None
    table = require(root / "annotations_final.csv", "MagnaTagATune annotation table", LAYOUT)
    audio_dir = Path(audio_dir) if audio_dir else root
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    tags = [c for c in (rows[0] if rows else {}) if c not in ("clip_id", "mp3_path")]
    counts = {t: sum(row[t].strip() == "1" for row in rows) for t in tags}
    top_tags = sorted(tags, key=lambda t: (-counts[t], t))[:top]
    items, skipped = [], {}
    for row in rows:
        rel = row["mp3_path"].strip()
        path = audio_dir / rel
        if path.exists() and path.stat().st_size == 0:
            count_skip(skipped, "zero-byte mp3 (known MTT defect)")
            continue
        if listed is not None:
            split_of = listed.get(rel)
            if split_of is None:
                count_skip(skipped, "clip outside MuLaP's filtered split")
                continue
            if split_of == "test" and rel == MULAP_TEST_DROPPED:
                count_skip(skipped, "left out of test by MuLaP's code")
                continue
        else:
            split_of = SPLIT_OF_FOLDER.get(rel[:1].lower())
            if split_of is None:
                count_skip(skipped, "mp3_path outside folders 0-f")
                continue
        uid = str(int(row["clip_id"])).zfill(5) if row.get("clip_id", "").strip().isdigit() else None  # JukeMIR
        items.append(Item(path, [t for t in top_tags if row[t].strip() == "1"], split_of, uid))
    unknown = sorted(set(listed or {}) - {row["mp3_path"].strip() for row in rows})
    if unknown:
        raise ProbeDataError(f"{Path(split_dir) if split_dir else root}: {len(unknown)} clips of MuLaP's split lists "
                             f"are not in {table} (e.g. {unknown[0]}); use the lists made for this MTT download.")
    check_audio_exists(items, "mtt_top50", LAYOUT)
    log_skips("mtt_top50", skipped)
    return ProbeDataset("mtt_top50", "multilabel", items, classes=top_tags, skipped=skipped)
