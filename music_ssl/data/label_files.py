"""The one reader and writer of frame-label files: ``{split}.km``, ``dict.km.txt`` and the ``{split}.km.json`` sidecar.

* ``{split}.km`` — fairseq's format: one line per manifest row, space-separated label ids at the label rate.
  Files are streamed in blocks of ``BLOCK_BYTES`` that end at a newline and parsed with numpy (no Python per
  label), so every line of a file of many GB is checked: no control bytes, and — for the usual dictionary of ids
  ``0..k-1`` — every label one of those ids written as fairseq's dictionary writes it (no sign, no leading zero).
  :func:`label_counts` gives the labels per line, :func:`label_lines` the labels themselves; :func:`line_index`
  and :func:`read_label_slice` read part of one line (a training crop's labels).
* ``dict.km.txt`` — ``"<id> 1"`` per cluster, ids ``0..k-1`` in order (:func:`write_dictionary`,
  :func:`read_dictionary`).
* ``{split}.km.json`` — what label prep recorded about the labels it wrote (:func:`write_sidecar`): the k-means
  model's key, ``k``, the **label rate** (Hz, the features' frame rate), the feature settings. The MusicHuBERT task
  takes the label rate from here (:func:`recorded_label_rate`), so nobody types it again.
"""
import json
import logging
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from ..core.atomic import write_text_atomic
from ..core.errors import LabelError
from .manifest import Manifest

logger = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 22  # bytes of a label file parsed per numpy step (temporaries ~ 30 × this)
DICTIONARY = "dict.{label}.txt"
MAKE_LABELS = "make them with `music-ssl-kmeans all`"


class LabelFileError(LabelError):
    """A label file, dictionary or sidecar that is malformed or disagrees with another; names the file and the fix."""


class LabelFileNotFoundError(LabelFileError, FileNotFoundError):
    """A label file, dictionary or sidecar that does not exist."""


def sidecar_path(label_path) -> Path:
    """``train.km`` → ``train.km.json``."""
    return Path(label_path).with_name(Path(label_path).name + ".json")


def dictionary_path(label_dir, label: str = "km") -> Path:
    """``{label_dir}/dict.{label}.txt``."""
    return Path(label_dir) / DICTIONARY.format(label=label)


# ---------------------------------------------------------------- .km: streamed, validated, numpy per block

def line_blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of about ``BLOCK_BYTES`` that end at a newline (the last one may not)."""
    rest = b""
    with path.open("rb") as f:
        while block := f.read(BLOCK_BYTES):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut]
    if rest:
        yield rest


def token_bounds(b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Tokens (runs of bytes above space) of a (n,) uint8 block: (starts, ends) byte offsets, each (M,)."""
    edges = np.diff(np.concatenate([[0], (b > 32).view(np.int8), [0]]))  # +1 at a token start, -1 after its end
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def control_byte(b: np.ndarray) -> Optional[int]:
    """Offset of the first control byte that is not whitespace (a binary or corrupted file), or None."""
    bad = np.flatnonzero((b < 32) & ((b < 9) | (b > 13)))
    return int(bad[0]) if len(bad) else None


def token_ids(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int) -> Tuple[np.ndarray, Optional[int]]:
    """(ids (M,) int64 of the tokens, index of the first token that is not an id 0..k-1 written as ``str(id)``).

    Vectorised over tokens, one pass per digit position (at most ``len(str(k - 1))`` passes).
    """
    digits = len(str(max(k - 1, 0)))
    lengths = ends - starts  # (M,)
    bad = (lengths > digits) | ((lengths > 1) & (b[starts] == 48))
    value = np.zeros(len(starts), dtype=np.int64)
    for j in range(digits):
        inside = lengths > j
        d = b[np.minimum(starts + j, len(b) - 1)].astype(np.int64) - 48  # (M,) digit j of each token
        bad |= inside & ((d < 0) | (d > 9))
        value = np.where(inside, value * 10 + d, value)
    bad |= value >= k
    return value, (int(np.argmax(bad)) if bad.any() else None)


def parse_blocks(label_path, k: Optional[int] = None) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Per block of whole lines: (labels per line (n,) int64, the label ids (M,) int64 or None when ``k`` is None).

    Raises :class:`LabelFileError` naming the line of a control byte, and with ``k`` of the first label that is not
    one of the dictionary ids ``0..k-1``.
    """
    path = Path(label_path)
    if not path.is_file():
        raise LabelFileNotFoundError(f"{path}: label file not found; {MAKE_LABELS}.")
    first_line = 0
    for block in line_blocks(path):
        b = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(b == 10)  # (lines,)
        n_lines = len(newlines) + (block[-1:] != b"\n")
        control = control_byte(b)
        if control is not None:
            raise LabelFileError(f"{path}: line {first_line + int((b[:control] == 10).sum()) + 1} holds byte "
                                 f"{b[control]:#04x}: not a text label file; regenerate it (music-ssl-kmeans).")
        starts, ends = token_bounds(b)
        line_of = np.searchsorted(newlines, starts)  # (M,) line (in the block) of each token
        ids = None
        if k is not None:
            ids, bad = token_ids(b, starts, ends, k)
            if bad is not None:
                token = block[starts[bad]: ends[bad]].decode(errors="replace")
                raise LabelFileError(
                    f"{path}: line {first_line + int(line_of[bad]) + 1} has label {token!r}, not an id 0..{k - 1} of "
                    f"the dictionary (dict.km.txt, k={k}); make dict.km.txt and the .km files in the same "
                    f"music-ssl-kmeans run.")
        yield np.bincount(line_of, minlength=n_lines).astype(np.int64), ids
        first_line += n_lines


def label_counts(label_path, k: Optional[int] = None) -> np.ndarray:
    """(N,) int64 labels on each line of ``label_path``; with ``k``, every label is also checked to be an id < k."""
    counts = [per_line for per_line, _ in parse_blocks(label_path, k)]
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def label_lines(label_path, k: int) -> Iterator[np.ndarray]:
    """Each line of ``label_path`` as (T,) int64 ids in 0..k-1, streamed (every label checked)."""
    for per_line, ids in parse_blocks(label_path, k):
        yield from np.split(ids, np.cumsum(per_line)[:-1])


def line_index(label_path) -> Tuple[np.ndarray, np.ndarray]:
    """Where each line of ``label_path`` is, in one streamed pass: (offsets (N+1,) int64 — line ``i`` is bytes
    ``offsets[i]:offsets[i+1]``, its newline included, as fairseq's ``load_label_offset`` counts them — and labels
    per line (N,) int64). What a dataset needs to read a slice of one line without parsing the others."""
    path = Path(label_path)
    if not path.is_file():
        raise LabelFileNotFoundError(f"{path}: label file not found; {MAKE_LABELS}.")
    ends, counts, position = [np.zeros(1, np.int64)], [], 0
    for block in line_blocks(path):
        b = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(b == 10)  # (lines,)
        line_ends = newlines + 1 if block.endswith(b"\n") else np.append(newlines + 1, len(b))
        starts, _ = token_bounds(b)
        counts.append(np.bincount(np.searchsorted(newlines, starts), minlength=len(line_ends)))
        ends.append(position + line_ends.astype(np.int64))
        position += len(b)
    return np.concatenate(ends), (np.concatenate(counts).astype(np.int64) if counts else np.zeros(0, np.int64))


def read_label_slice(label_path, line: int, byte_range: Tuple[int, int], first: int, stop: int, k: int) -> np.ndarray:
    """Labels ``first:stop`` of line ``line`` (0-based; bytes ``byte_range`` of the file, from :func:`line_index`)
    as (stop − first,) int64 ids in 0..k-1. Only the line's first ``stop`` labels are read (ids written by label
    prep take at most ``len(str(k - 1)) + 1`` bytes each; the rest of the line is read only when they do not fit)
    and only ``first:stop`` parsed. :class:`LabelFileError` names the line of a label that is not a dictionary id."""
    size = byte_range[1] - byte_range[0]
    with open(label_path, "rb") as f:
        f.seek(byte_range[0])
        raw = f.read(min(size, stop * (len(str(max(k - 1, 0))) + 1)))
        b = np.frombuffer(raw, dtype=np.uint8)
        starts, ends = token_bounds(b)  # (M,) each
        if len(raw) < size and np.count_nonzero(ends < len(raw)) < stop:  # wider separators: the whole line
            raw += f.read(size - len(raw))
            b = np.frombuffer(raw, dtype=np.uint8)
            starts, ends = token_bounds(b)
    ids, bad = token_ids(b, starts[first:stop], ends[first:stop], k)
    if bad is not None:
        token = raw[starts[first + bad]: ends[first + bad]].decode(errors="replace")
        raise LabelFileError(f"{label_path}: line {line + 1} has label {token!r}, not an id 0..{k - 1} of the "
                             f"dictionary (dict.km.txt, k={k}); make dict.km.txt and the .km files in the same "
                             f"music-ssl-kmeans run.")
    return ids


def check_label_vocabulary(label_path, symbols: Sequence[str]) -> None:
    """Raise :class:`LabelFileError` unless every label of ``label_path`` is one of ``symbols`` (a dictionary's,
    specials excluded). Every line is checked: streamed with numpy for the usual ids ``"0" … "k-1"``, line by line
    for any other dictionary."""
    k = dictionary_ids(symbols)
    if k is not None:
        label_counts(label_path, k)
        return
    known = set(symbols)
    with open(label_path) as f:
        for line_no, line in enumerate(f, start=1):
            unknown = set(line.split()) - known
            if unknown:
                raise LabelFileError(
                    f"{label_path}: line {line_no} has labels {sorted(unknown)[:5]} that are not in the dictionary; "
                    f"make dict.km.txt and the .km files in the same music-ssl-kmeans run.")


# ---------------------------------------------------------------- dict.km.txt

def dictionary_ids(symbols: Sequence[str]) -> Optional[int]:
    """``k`` when ``symbols`` are the ids ``"0" … "k-1"`` in order (what label prep writes), else None."""
    return len(symbols) if list(symbols) == [str(i) for i in range(len(symbols))] else None


def write_dictionary(label_dir, k: int, label: str = "km") -> Path:
    """``{label_dir}/dict.km.txt``: ``"<id> 1"`` for ids 0..k-1 (fairseq's label dictionary), written atomically."""
    path = dictionary_path(label_dir, label)
    write_text_atomic(path, "".join(f"{i} 1\n" for i in range(k)))
    return path


def read_dictionary(label_dir, label: str = "km") -> int:
    """``k`` of ``{label_dir}/dict.km.txt``, which must be ``"<id> 1"`` lines for ids 0..k-1 in order."""
    path = dictionary_path(label_dir, label)
    if not path.is_file():
        raise LabelFileNotFoundError(f"{path}: label dictionary not found; {MAKE_LABELS}.")
    k = dictionary_ids([line.split()[0] for line in path.read_text().splitlines() if line.strip()])
    if not k:
        raise LabelFileError(f"{path}: expected lines `0 1`, `1 1`, ... in order; regenerate it with the labels.")
    return k


# ---------------------------------------------------------------- {split}.km.json: what label prep recorded

def write_sidecar(label_path, record: dict) -> Path:
    """Record beside ``label_path`` what it was made with (``k``, ``label_rate`` in Hz, model key, feature settings).

    Call it after the label file is complete: the sidecar vouches for the file beside it.
    """
    path = sidecar_path(label_path)
    write_text_atomic(path, json.dumps(record, sort_keys=True, indent=1) + "\n")
    return path


def read_sidecar(label_path) -> Optional[dict]:
    """The record beside ``label_path``, or None when there is none (labels made by other tools)."""
    path = sidecar_path(label_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LabelFileError(f"{path}: not a label record ({err}); delete it and rerun `music-ssl-kmeans all` "
                             f"(it rewrites the labels and their record).") from None
    if not isinstance(record, dict):
        raise LabelFileError(f"{path}: not a label record; delete it and rerun `music-ssl-kmeans all`.")
    return record


def check_sidecar(label_path, k: Optional[int] = None, label_rate: Optional[float] = None,
                  manifest: Optional[Manifest] = None) -> Optional[dict]:
    """The record of ``label_path`` (None if absent); raise if it names another ``k``, another ``label_rate`` or
    other rows than ``manifest``'s (labels bound to the manifest they were made from)."""
    record = read_sidecar(label_path)
    if record is None:
        return None
    name = sidecar_path(label_path).name
    if manifest is not None:
        check_manifest_binding(label_path, record, manifest)
    if k is not None and record.get("k") not in (None, k):
        raise LabelFileError(f"{label_path}: made by a k={record['k']} model ({name}) but the dictionary (dict.km.txt) "
                             f"has {k} ids; write dict.km.txt with these labels (music-ssl-kmeans apply).")
    if label_rate is not None and record.get("label_rate") not in (None, label_rate):
        raise LabelFileError(f"{label_path}: labels at {record['label_rate']:g} Hz ({name}), read at "
                             f"{label_rate:g} Hz; leave label_rate unset (the recorded rate is used) or make the "
                             f"labels again.")
    return record


def check_manifest_binding(label_path, record: dict, manifest: Manifest) -> None:
    """Raise unless the labels were made from ``manifest``'s rows, in its order (record's ``manifest_rows``)."""
    made_from = record.get("manifest_rows")
    if made_from is None:
        logger.warning("%s: its record (%s) predates manifest fingerprints: cannot tell which manifest the labels "
                       "were made from; make them again to bind them to %s", label_path,
                       sidecar_path(label_path).name, manifest.path)
    elif made_from != manifest.shards_sha256(int(record.get("shards", 1))):
        raise LabelFileError(f"{label_path}: made from other rows than {manifest.path} (the manifest was remade or "
                             f"edited since: rows moved, added or removed, so line i would label another clip); "
                             f"make the labels again from this manifest (music-ssl-kmeans all).")


def label_rate_of(label_path, k: Optional[int] = None) -> float:
    """The label rate (Hz) recorded beside ``label_path`` (checked against ``k`` when given); LabelFileError when
    nothing was recorded (labels made by other tools: their rate must be stated)."""
    record = check_sidecar(label_path, k)
    if record is None or record.get("label_rate") is None:
        raise LabelFileError(f"{label_path}: no label rate recorded beside it ({sidecar_path(label_path).name}, "
                             f"written by music-ssl-kmeans); state label_rate (100 for MFCC labels, 50 for layer "
                             f"labels) or make the labels with music-ssl-kmeans.")
    return float(record["label_rate"])


def recorded_label_rate(label_dir, labels: Sequence[str] = ("km",)) -> Optional[Tuple[float, Path]]:
    """(label rate in Hz, the record that states it) from the ``*.{label}.json`` records of ``label_dir``; None when
    there is no record. Records that disagree (two label preps mixed in one folder) raise :class:`LabelFileError`."""
    records = sorted(p for label in labels for p in Path(label_dir).glob(f"*.{label}.json"))
    rates = []
    for path in records:
        rate = read_sidecar(path.with_suffix("")).get("label_rate")
        if rate is not None:
            rates.append((float(rate), path))
    for rate, path in rates[1:]:
        if rate != rates[0][0]:
            raise LabelFileError(f"{path}: labels at {rate:g} Hz but {rates[0][1].name} records {rates[0][0]:g} Hz: "
                                 f"two label preps share {label_dir}; give each its own folder.")
    return rates[0] if rates else None
