"""Helpers shared by the dataset loaders: required files, deterministic splits, missing-audio checks."""
import logging
from pathlib import Path

from ...core.fingerprint import stable_int
from ..errors import MissingDataError, ProbeDataError

logger = logging.getLogger(__name__)


def require(path: Path, what: str, layout: str) -> Path:
    """Return ``path`` if it exists, else raise naming it, what it is and the layout the loader expects."""
    if not Path(path).exists():
        raise MissingDataError(f"{path}: missing {what}. Expected layout: {layout}")
    return Path(path)


def ratio_split(key: str, ratios: dict) -> str:
    """Deterministic split of ``key`` by its hash, e.g. ratios={"train": 8, "valid": 1, "test": 1}."""
    table = [name for name, count in ratios.items() for _ in range(count)]
    return table[stable_int(key) % len(table)]


def check_audio_exists(items: list, task: str, layout: str) -> None:
    """Raise one clear error if any item's audio file is missing (says how many and names the first)."""
    missing = [item.path for item in items if not Path(item.path).exists()]
    if missing:
        raise MissingDataError(f"{missing[0]}: audio missing for {len(missing)} of {len(items)} items of task "
                               f"{task}. Expected layout: {layout}")


def read_list(path: Path) -> list:
    """Non-empty, stripped lines of a text file."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def count_skip(skipped: dict, reason: str, n: int = 1) -> None:
    skipped[reason] = skipped.get(reason, 0) + n


def log_skips(task: str, skipped: dict) -> None:
    for reason, n in skipped.items():
        logger.warning("task %s: skipped %d items (%s)", task, n, reason)


def checked_key(text: str, where: str) -> str:
    """``text`` if it is a key ('F# minor', 'Gb:min'), else one ``ProbeDataError`` naming ``where`` (file:row)."""
    from ..task_types import normalize_key

    try:
        normalize_key(text)
    except ProbeDataError as err:
        raise ProbeDataError(f"{where}: {err} Fix the key label in this file.") from None
    return text


def parse_float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ProbeDataError(f"{where}: expected a number, got {text!r}.") from None
