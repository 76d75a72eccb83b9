"""``source.path`` against ``source.kind``: a path that suits another kind fails at once, in one line saying which kind
it looks like (a fairseq checkpoint folder given as a file, a transformers folder given as a checkpoint, a single
``.npy`` given as the Jukebox folder), instead of a loader's error about the wrong format minutes later.

What a path looks like is read from the files (names in a folder, a file's first bytes: ``core.file_kind``), never by
loading them. Paths the check cannot place are left to the loaders, which name the file and what is wrong.
"""
from pathlib import Path
from typing import Optional, Tuple

from ...core.file_kind import describe_file, file_format
from ..errors import ProbeConfigError

NEEDS = {
    "checkpoint": "a fairseq checkpoint file (e.g. checkpoints/checkpoint_best.pt)",
    "hf": "a transformers model folder (config.json + model.safetensors)",
    "jukebox": "a folder of JukeMIR .npy feature files",
}


def looks_like(path: Path) -> Tuple[Optional[str], str]:
    """(what ``path`` suits: "checkpoint", "hf", "jukebox", "checkpoint_folder", "npy_file", "hf_weights", "other" or
    None when it cannot tell; a phrase saying what it is)."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf", "a transformers model folder (it has config.json)"
        if next(path.glob("*.npy"), None) is not None:
            return "jukebox", "a folder of .npy feature files"
        checkpoints = sorted(p.name for p in path.glob("*.pt"))
        if checkpoints:
            return "checkpoint_folder", f"a folder of fairseq checkpoints ({', '.join(checkpoints[:3])})"
        return None, "a folder"
    kind = file_format(path)
    if kind == "torch":
        return "checkpoint", "a torch file (a fairseq checkpoint?)"
    if kind == "npy":
        return "npy_file", describe_file(path)
    if kind == "safetensors-weights" and (path.parent / "config.json").is_file():
        return "hf_weights", f"the weights file of the transformers model folder {path.parent}"
    if kind is not None:
        return "other", describe_file(path)
    return None, "a file"


def fix_for(suits: str, path: Path) -> str:
    if suits in NEEDS:
        return f"set source.kind={suits}"
    if suits == "checkpoint_folder":
        best = path / "checkpoint_best.pt"
        return f"set source.kind=checkpoint source.path={best if best.is_file() else '<one of its .pt files>'}"
    if suits == "npy_file":
        return f"set source.path to the folder that holds the .npy files ({path.parent}?) with source.kind=jukebox"
    if suits == "hf_weights":
        return f"set source.path={path.parent} with source.kind=hf"
    return "fix source.path"


def check_source_path(kind: str, path) -> None:
    """Raise :class:`ProbeConfigError` when ``path`` (which exists) is a folder where ``kind`` needs a file or the
    other way round, or plainly suits another source kind (checkpoint / hf / jukebox); return quietly when it suits
    ``kind`` or the check cannot tell (the loader then reports what is wrong with it)."""
    path = Path(path)
    if kind not in NEEDS or not path.exists():
        return
    suits, what = looks_like(path)
    folder_kind = kind != "checkpoint"
    if path.is_dir() == folder_kind and suits in (kind, None):  # right shape, and nothing says another kind
        return
    raise ProbeConfigError(f"{path}: source.kind={kind} needs {NEEDS[kind]}, but this looks like {what}; "
                           f"{fix_for(suits, path)}.")
