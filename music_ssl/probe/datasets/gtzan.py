"""GTZAN genre (10 classes) on the fault-filtered split (Kereliuk et al. 2015; Sturm's fault analysis).

Expected layout: ``<root>/genres/<genre>/<genre>.000NN.(wav|au)`` (``genres_original/`` also accepted) and
the split lists ``<root>/{train,valid,test}_filtered.txt`` with lines like ``blues/blues.00029.wav``
(443 / 197 / 290 clips; as distributed with the jongpillee/music_dataset_split and MARBLE repositories).
"""
from pathlib import Path

from ...core.fingerprint import data_sha256
from ..errors import MissingDataError
from .common import read_list, require
from .dataset import Item, ProbeDataset

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
LAYOUT = ("<root>/genres/<genre>/<genre>.000NN.wav|.au and fault-filtered split lists "
          "<root>/{train,valid,test}_filtered.txt (lines like 'blues/blues.00029.wav')")
LIST_FIX = "Put the fault-filtered split lists (train/valid/test_filtered.txt) in the GTZAN root."


def gtzan_audio_dir(root: Path, audio_dir=None) -> Path:
    if audio_dir:
        return require(Path(audio_dir), "GTZAN audio folder", LAYOUT)
    for name in ("genres", "genres_original"):
        if (root / name).is_dir():
            return root / name
    raise MissingDataError(f"{root / 'genres'}: missing GTZAN audio folder. Expected layout: {LAYOUT}")


def resolve_clip(audio_dir: Path, entry: str) -> Path:
    """A split-list entry -> the existing file (lists say .wav; the original tarball has .au)."""
    path = audio_dir / entry
    if path.exists():
        return path
    for suffix in (".wav", ".au"):
        if path.with_suffix(suffix).exists():
            return path.with_suffix(suffix)
    raise MissingDataError(f"{path}: GTZAN clip listed in the split lists is missing. Expected layout: {LAYOUT}")


def gtzan_split_entries(root: Path) -> list:
    """[(split, entry)] from the three fault-filtered lists."""
    out = []
    for split in ("train", "valid", "test"):
        listing = root / f"{split}_filtered.txt"
        if not listing.exists():
            raise MissingDataError(f"{listing}: missing GTZAN fault-filtered split list. {LIST_FIX}")
        out += [(split, entry) for entry in read_list(listing)]
    return out


def jukemir_uid(entry: str) -> str:
    """JukeMIR's uid of a GTZAN clip: sha256 hex digest of its stem (``blues.00029``)."""
    return data_sha256(Path(entry).stem)


def load_gtzan(root, audio_dir=None) -> ProbeDataset:
    root = Path(root)
    folder = gtzan_audio_dir(root, audio_dir)
    items = [Item(resolve_clip(folder, entry), entry.split("/")[0] if "/" in entry else entry.split(".")[0], split,
                  jukemir_uid(entry))
             for split, entry in gtzan_split_entries(root)]
    return ProbeDataset("gtzan_genre", "multiclass", items, classes=GENRES)
