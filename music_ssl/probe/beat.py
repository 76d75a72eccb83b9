"""Beat tracking pieces: annotation files -> frame targets, frame activations -> beat times (madmom's DBN).

Decoding uses ``madmom.features.beats.DBNBeatTrackingProcessor`` (installed as ``madmom-onnx``, the maintained
build for Python >= 3.11) with its defaults (55-215 BPM) at the feature frame rate; scoring uses
``mir_eval.beat.f_measure`` with a ±70 ms window (``metrics.BEAT_F_MEASURE_WINDOW``).
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import MissingDataError, ProbeDataError


def read_beats(path: Path) -> np.ndarray:
    """Beat times in seconds from a ``.beats`` text file (time first on each line; extra columns ignored)
    or a GTZAN-Rhythm JAMS file (``beat`` annotations whose sandbox says ``annotation_type: beat``).

    Returns:
        (num_beats,) float64, sorted.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: missing beat annotation file.")
    if path.suffix == ".jams":
        return _read_jams_beats(path)
    times = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            times.append(float(fields[0]))
        except ValueError:
            raise ProbeDataError(f"{path}:{number}: expected a beat time in seconds, got {line!r}.") from None
    return np.sort(np.array(times, np.float64))


def _read_jams_beats(path: Path) -> np.ndarray:
    try:
        jam = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ProbeDataError(f"{path}: not a JAMS (JSON) file: {err}.") from None
    times = []
    for annotation in jam.get("annotations", []):
        kind = (annotation.get("sandbox") or {}).get("annotation_type", "beat")
        if annotation.get("namespace") == "beat" and kind == "beat":
            data = annotation.get("data", [])
            times += [row["time"] for row in data] if isinstance(data, list) else list(data.get("time", []))
    if not times:
        raise ProbeDataError(f"{path}: no 'beat' annotations found in this JAMS file.")
    return np.sort(np.array(times, np.float64))


def beat_targets(beats: np.ndarray, num_frames: int, frame_rate: float, neighbour_weight: float = 0.5,
                 outside_neighbours: bool = False) -> np.ndarray:
    """Frame targets: 1 at the frame nearest each beat, ``neighbour_weight`` on the frames either side.

    Args:
        beats: (num_beats,) seconds. num_frames: T. frame_rate: frames per second.
        outside_neighbours: a beat just outside the frames (a crop's edge) still marks its neighbour inside, as
            MARBLE labels the whole file and then slices the crop (``GTZANBT_dataset.py``); False = beats outside
            are ignored.
    Returns:
        (T,) float32 in [0, 1].
    """
    target = np.zeros(num_frames, np.float32)
    every = np.round(np.asarray(beats) * frame_rate).astype(np.int64)
    frames = every[(every >= 0) & (every < num_frames)]
    if neighbour_weight > 0:
        for shift in (-1, 1):
            if outside_neighbours:
                near = every + shift
                near = near[(near >= 0) & (near < num_frames)]
            else:
                near = np.clip(frames + shift, 0, num_frames - 1)
            target[near] = np.maximum(target[near], neighbour_weight)
    target[frames] = 1.0
    return target


@lru_cache(maxsize=4)
def _dbn(frame_rate: float):
    from madmom.features.beats import DBNBeatTrackingProcessor

    return DBNBeatTrackingProcessor(fps=frame_rate)


def decode_beats(activation: np.ndarray, frame_rate: float) -> np.ndarray:
    """activation: (T,) beat probability per frame -> (num_beats,) beat times in seconds (madmom DBN)."""
    return np.asarray(_dbn(float(frame_rate))(np.asarray(activation, np.float32)), np.float64)
