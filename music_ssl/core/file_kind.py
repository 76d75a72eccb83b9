"""What a file is, read from its first bytes (never by unpickling), for errors that say what a wrong path holds:
a k-means model or a Jukebox ``.npy`` given where a fairseq checkpoint belongs, an audio file given as a model.

:func:`file_format` tells the formats a user of this toolkit has on disk next to their checkpoints (torch files
included); :func:`describe_file` names the non-torch ones in words, None for the rest (the caller's reader decides).
"""
import json
import struct
import zipfile
from pathlib import Path
from typing import Optional

SAFETENSORS_HEADER_LIMIT = 100 << 20  # the safetensors format's own cap on its JSON header (100 MB)
AUDIO_MAGIC = {b"RIFF": "WAV", b"RIFX": "WAV", b"RF64": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3",
               b"FORM": "AIFF", b"caff": "CAF", b"wvpk": "WavPack", b".snd": "AU"}  # the one table of audio magics


PHRASES = {
    "npy": "a NumPy .npy array (a Jukebox feature file?)",
    "npz": "a NumPy .npz archive (a probe feature cache entry?)",
    "safetensors-kmeans": "a safetensors file holding a k-means model (music-ssl-kmeans)",
    "safetensors-weights": "a safetensors file of model weights (a transformers model's model.safetensors?)",
    "safetensors": "a safetensors file (a k-means model?)",
}


def file_format(path) -> Optional[str]:
    """``path``'s format from its first bytes: "torch" (torch.save's zip, or a legacy pickle), "npy", "npz",
    "safetensors-kmeans", "safetensors-weights", "safetensors", "audio:<WAV|FLAC|Ogg|MP3|AIFF|CAF|WavPack|AU>", or None
    (another format, or unreadable)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except OSError:
        return None
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    for magic, name in AUDIO_MAGIC.items():
        if head.startswith(magic):
            return f"audio:{name}"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return "audio:MP3"
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"  # a pickle (torch's legacy format)
    if len(head) >= 9 and head[8:9] == b"{":
        return _safetensors_format(path, struct.unpack("<Q", head[:8])[0], size)
    return None


def describe_file(path) -> Optional[str]:
    """A short phrase naming what ``path`` holds when it is one of the formats a user has next to checkpoints but
    is not a torch file ("a safetensors file holding a k-means model (music-ssl-kmeans)", "a WAV audio file", ...);
    None for a torch file, another format or an unreadable file (the caller's own reader then reports it)."""
    kind = file_format(path)
    if kind is None or kind == "torch":
        return None
    if kind.startswith("audio:"):
        return f"a{'n' if kind[6] in 'AEIOU' else ''} {kind[6:]} audio file"
    return PHRASES[kind]


def _safetensors_format(path: Path, header_size: int, size: int) -> Optional[str]:
    """safetensors: 8-byte little-endian header length, then a JSON header (tensor names, ``__metadata__``)."""
    if not 2 <= header_size <= min(size - 8, SAFETENSORS_HEADER_LIMIT):
        return None
    try:
        with open(path, "rb") as f:
            f.seek(8)
            header = json.loads(f.read(header_size))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    metadata = header.get("__metadata__") or {}
    if str(metadata.get("format", "")).startswith("music-ssl-kmeans"):
        return "safetensors-kmeans"
    names = [name for name in header if name != "__metadata__"]
    if any("encoder.layers." in name or name.startswith("feature_extractor.") for name in names):
        return "safetensors-weights"
    return "safetensors"


def _zip_format(path: Path) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    if any(name.endswith("data.pkl") for name in names):
        return "torch"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    return None
