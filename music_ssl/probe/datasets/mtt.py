"""MagnaTagATune top-50 tags (multilabel), the standard 12:1:3 split by audio folder.

Expected layout (the official download): ``<root>/annotations_final.csv`` (tab-separated: ``clip_id``, one
0/1 column per tag, ``mp3_path``) and the audio under ``<root>/<mp3_path>`` (folders 0-9, a-f from
mp3.zip). Folders 0-b are train, c valid, d-f test. The 50 most frequent tags are the targets. Zero-byte mp3
files (MTT ships a few) are skipped and counted.
"""
import csv
from pathlib import Path

from .common import check_audio_exists, count_skip, log_skips, require
from .dataset import Item, ProbeDataset

LAYOUT = "<root>/annotations_final.csv (tab-separated, clip_id, tags..., mp3_path) and <root>/<mp3_path> audio"
SPLIT_OF_FOLDER = {**{c: "train" for c in "0123456789ab"}, "c": "valid", **{c: "test" for c in "def"}}


def load_mtt(root, top: int = 50, audio_dir=None) -> ProbeDataset:
    root = Path(root)
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
        split = SPLIT_OF_FOLDER.get(rel[:1].lower())
        if split is None:
            count_skip(skipped, "mp3_path outside folders 0-f")
            continue
        uid = str(int(row["clip_id"])).zfill(5) if row.get("clip_id", "").strip().isdigit() else None  # JukeMIR
        items.append(Item(path, [t for t in top_tags if row[t].strip() == "1"], split, uid))
    check_audio_exists(items, "mtt_top50", LAYOUT)
    log_skips("mtt_top50", skipped)
    return ProbeDataset("mtt_top50", "multilabel", items, classes=top_tags, skipped=skipped)
