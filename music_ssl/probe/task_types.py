"""One base definition per task type: targets, loss, the batched early-stopping metric and reported metrics.

==========  ===================  =====================  ============================================
type        targets              loss                   primary metric (reported with)
==========  ===================  =====================  ============================================
multiclass  (N,) class id        cross-entropy          accuracy (sklearn)
multilabel  (N, K) {0, 1}        binary cross-entropy   macro ROC-AUC (sklearn); also macro AP
regression  (N, K) z-scored      mean squared error     mean R² over outputs (sklearn); R² per output
key         (N,) of 24 keys      cross-entropy          song-level MIREX score (mir_eval), ensemble
                                                        strategy chosen on valid
beat        (frames, 1) {0, 1}   binary cross-entropy   beat F-measure (mir_eval, ±70 ms by default,
                                                        pooled over files by default) after madmom's
                                                        DBN on frame activations
==========  ===================  =====================  ============================================

Every type's ``loss`` works on a leading probe dimension: logits (P, B, K) -> (P, B). Window → song: when a
split's ``aggregate`` is set (``ProbeDataset.aggregate == "mean"``), multiclass / multilabel / regression outputs
(logits, or values) of a file's windows are averaged and the file is scored (:meth:`TaskType.songs`), in the
early-stopping metric and in the reported one alike.
"""
import logging
import re

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .errors import ProbeDataError

logger = logging.getLogger(__name__)


class TaskType:
    """Base definition; subclasses set ``name`` and ``primary`` and override what differs."""
    name = ""
    primary = ""
    higher_is_better = True
    select_on_library = False  # True: configs are chosen on the library metric on valid, not the batched one

    def num_outputs(self, task) -> int:
        return len(task.classes)

    def encode(self, labels: list, task) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, targets_by_split: dict) -> dict:
        """Split-aware target post-processing (e.g. z-scoring on train); identity by default."""
        return targets_by_split

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """logits: (P, B, K); y: (P, B, ...) -> (P, B) per-item loss."""
        raise NotImplementedError

    def batched_primary(self, logits: torch.Tensor, split) -> torch.Tensor:
        """logits: (P, N, K); split: a ``data.SplitArrays`` (y on the logits' device) -> (P,) early-stopping
        metric (higher is better)."""
        raise NotImplementedError

    @staticmethod
    def songs(logits: torch.Tensor, split) -> tuple:
        """(P, N, K) outputs -> ((P, G, K) per-file means, (G, ...) targets) when ``split.aggregate``; else
        (logits, split.y) unchanged."""
        if not split.aggregate:
            return logits, split.y
        return metrics.group_mean(logits, split.groups, split.num_groups), split.group_targets()

    def songs_numpy(self, logits: np.ndarray, data, split: str) -> tuple:
        """(N, K) numpy outputs of ``split`` -> (outputs, targets) per file when aggregated, else per item."""
        arrays = data.splits[split]
        pooled, y = self.songs(torch.as_tensor(logits, device=arrays.y.device).unsqueeze(0), arrays)
        return pooled[0].cpu().numpy(), y.cpu().numpy()

    def evaluate(self, logits: dict, data) -> dict:
        """logits: split -> (N, K) numpy; data: ``data.ProbeData``.

        Returns split -> {metric: value, ..., 'primary': value}, computed with the field's libraries.
        """
        raise NotImplementedError


class MulticlassType(TaskType):
    name, primary = "multiclass", "accuracy"

    def encode(self, labels, task):
        index = {str(c): i for i, c in enumerate(task.classes)}
        unknown = sorted({str(lab) for lab in labels} - set(index))
        if unknown:
            raise ProbeDataError(f"task {task.name}: labels {unknown[:5]} are not in its class list.")
        return np.array([index[str(lab)] for lab in labels], np.int64)

    def loss(self, logits, y):
        P, B, K = logits.shape
        return F.cross_entropy(logits.reshape(P * B, K), y.reshape(P * B), reduction="none").view(P, B)

    def batched_primary(self, logits, split):
        return metrics.batched_accuracy(*self.songs(logits, split))

    def evaluate(self, logits, data):
        out = {}
        for s in logits:
            outputs, y = self.songs_numpy(logits[s], data, s)
            acc = metrics.accuracy(y, outputs)
            out[s] = {"accuracy": acc, "primary": acc}
        return out


class MultilabelType(TaskType):
    name, primary = "multilabel", "roc_auc"

    def encode(self, labels, task):
        index = {str(c): i for i, c in enumerate(task.classes)}
        out = np.zeros((len(labels), len(index)), np.float32)
        for row, tags in enumerate(labels):
            for tag in tags:
                if str(tag) not in index:
                    raise ProbeDataError(f"task {task.name}: tag {tag!r} is not in its tag list.")
                out[row, index[str(tag)]] = 1
        return out

    def loss(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1)

    def batched_primary(self, logits, split):
        logits, y = self.songs(logits, split)
        return metrics.batched_macro_roc_auc(logits, y)

    def evaluate(self, logits, data):
        out = {}
        for s in logits:
            outputs, y = self.songs_numpy(logits[s], data, s)
            auc, skipped = metrics.macro_roc_auc(y, outputs)
            ap, _ = metrics.macro_average_precision(y, outputs)
            out[s] = {"roc_auc": auc, "ap": ap, "classes_skipped": skipped, "primary": auc}
        return out


class RegressionType(TaskType):
    name, primary = "regression", "r2"

    def num_outputs(self, task):
        return len(task.output_names)

    def encode(self, labels, task):
        out = np.array([np.atleast_1d(np.asarray(lab, np.float64)) for lab in labels], np.float32)
        if out.ndim != 2 or out.shape[1] != len(task.output_names):
            raise ProbeDataError(f"task {task.name}: each label needs {len(task.output_names)} numbers "
                                 f"({task.output_names}).")
        return out

    def prepare(self, targets_by_split):
        """Z-score every split with the train split's mean and standard deviation (per output)."""
        train = targets_by_split["train"]
        mean, std = train.mean(0), train.std(0)
        std = np.where(std > 0, std, 1.0)
        return {s: ((t - mean) / std).astype(np.float32) for s, t in targets_by_split.items()}

    def loss(self, logits, y):
        return ((logits - y) ** 2).mean(-1)

    def batched_primary(self, logits, split):
        return metrics.batched_r2(*self.songs(logits, split)).mean(-1)

    def evaluate(self, logits, data):
        out = {}
        for s in logits:
            outputs, y = self.songs_numpy(logits[s], data, s)
            per = metrics.r2_per_output(y, outputs)
            row = {"r2": float(per.mean()), "primary": float(per.mean())}
            for name, value in zip(data.task.output_names, per):
                row[f"r2_{name}"] = float(value)
            out[s] = row
        return out


_ENHARMONIC = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb", "Cb": "B", "Fb": "E",
               "E#": "F", "B#": "C"}


def normalize_key(text: str) -> str:
    """'f# minor' / 'F#:min' / 'Gb minor' -> the canonical name in ``metrics.KEY_NAMES`` ('Gb minor')."""
    parts = re.split(r"[\s:]+", str(text).strip())
    if len(parts) != 2:
        raise ProbeDataError(f"key {text!r} is not '<tonic> <major|minor>' (e.g. 'F# minor').")
    tonic = parts[0][:1].upper() + parts[0][1:].lower()
    mode = {"maj": "major", "min": "minor"}.get(parts[1].lower(), parts[1].lower())
    tonic = _ENHARMONIC.get(tonic, tonic)
    name = f"{tonic} {mode}"
    if name not in metrics.KEY_NAMES:
        raise ProbeDataError(f"key {text!r} is not '<tonic> <major|minor>' (e.g. 'F# minor').")
    return name


class KeyType(MulticlassType):
    """24-way key classification on windows; songs are scored after ensembling their windows."""
    name, primary = "key", "score"

    def num_outputs(self, task):
        return len(metrics.KEY_NAMES)

    def encode(self, labels, task):
        index = {k: i for i, k in enumerate(metrics.KEY_NAMES)}
        return np.array([index[normalize_key(lab)] for lab in labels], np.int64)

    def batched_primary(self, logits, split):
        return metrics.batched_key_scores(logits, split.y, split.groups).max(1).values

    def evaluate(self, logits, data):
        """Strategy with the best valid song score is applied to every split (as JukeMIR did)."""
        by_split = {s: self._song_metrics(logits[s], data.targets(s), data.splits[s].groups.cpu()) for s in logits}
        valid = by_split.get("valid", next(iter(by_split.values())))
        best = max(metrics.ENSEMBLE_STRATEGIES, key=lambda k: valid[f"score_{k}"])
        for row in by_split.values():
            row.update(strategy=best, score=row[f"score_{best}"], accuracy=row[f"accuracy_{best}"])
            row["primary"] = row["score"]
        return by_split

    @staticmethod
    def _song_metrics(logits: np.ndarray, y: np.ndarray, groups: torch.Tensor) -> dict:
        """logits: (N, 24) window logits; y: (N,) key ids; groups: (N,) song index -> window and song metrics."""
        num = int(groups.max()) + 1
        preds = metrics.song_ensembles(torch.as_tensor(logits).unsqueeze(0), groups, num)[:, 0].numpy()  # (4, G)
        song_y = np.zeros(num, np.int64)
        song_y[groups.numpy()] = y
        names = np.array(metrics.KEY_NAMES)
        row = {"clip_accuracy": float((logits.argmax(1) == y).mean()),
               "clip_score": metrics.key_weighted_score(names[y], names[logits.argmax(1)])}
        for name, pred in zip(metrics.ENSEMBLE_STRATEGIES, preds):
            row[f"score_{name}"] = metrics.key_weighted_score(names[song_y], names[pred])
            row[f"accuracy_{name}"] = float((pred == song_y).mean())
        return row


class BeatType(MultilabelType):
    """Frame-level beat activation (one sigmoid output per frame).

    Targets are 1 on the frame nearest each beat and ``task.beat_neighbour_weight`` on its neighbours
    (``beat.beat_targets``). Early stopping uses the average precision of beat frames on valid (a DBN per
    probe per validation costs seconds to minutes), or, when the valid split says so (``SplitArrays.dbn``: beat
    training as MARBLE), the beat F-measure after madmom's DBN itself; configs are selected on the validation
    beat F-measure after madmom's DBN (``select_on_library``), and reported with it: ``mir_eval`` with
    ±``task.beat_tolerance`` s, averaged as ``task.beat_average`` says (pooled over files by default, as MARBLE's
    code).
    """
    name, primary = "beat", "f_measure"
    select_on_library = True

    def num_outputs(self, task):
        return 1

    def batched_primary(self, logits, split):
        if split.dbn is not None:  # MARBLE: validation on the beat F after the DBN, probe by probe
            rate, tolerance, average = split.dbn
            scores = [self.dbn_f_measure(p.float().cpu().numpy(), split.files, rate, tolerance, average)
                      for p in logits]
            return torch.tensor(scores, dtype=torch.float32, device=logits.device)
        return metrics.batched_macro_average_precision(logits, (split.y >= 1).float())  # beat frames only

    @staticmethod
    def dbn_f_measure(logits: np.ndarray, files: list, frame_rate: float, tolerance: float, average: str) -> float:
        """logits: (N, 1) frame logits of a split; files: its (start, stop, reference beats) -> beat F-measure of
        madmom's DBN decoding (``metrics.beat_f_measure_files``)."""
        from .beat import decode_beats

        pairs = []
        for start, stop, reference in files:
            activation = 1 / (1 + np.exp(-logits[start:stop, 0].astype(np.float64)))
            pairs.append((reference, decode_beats(activation, frame_rate)))
        return metrics.beat_f_measure_files(pairs, tolerance, average)

    def evaluate(self, logits, data):
        out = {}
        task = data.task
        for s in logits:
            score = self.dbn_f_measure(logits[s], data.splits[s].files, data.frame_rate, task.beat_tolerance,
                                       task.beat_average)
            out[s] = {"f_measure": score, "primary": score}
        return out


TASK_TYPES = {t.name: t for t in (MulticlassType(), MultilabelType(), RegressionType(), KeyType(), BeatType())}
