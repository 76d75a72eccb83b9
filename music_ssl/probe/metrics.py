"""Probe metrics: the field's libraries for reported numbers, batched torch twins for early stopping.

Reported numbers come from the libraries everyone uses:

* ``sklearn.metrics``: accuracy, macro ROC-AUC, macro average precision (AP), R²;
* ``mir_eval.key.weighted_score`` (MIREX key score: 1 same key, .5 fifth, .3 relative, .2 parallel);
* ``mir_eval.beat.f_measure`` with its default ±70 ms window (``BEAT_F_MEASURE_WINDOW``), no trimming.

Early stopping evaluates hundreds of probes every few steps, so it uses batched torch versions over a leading
probe dimension P. They equal the library values when scores have no ties (tested against sklearn/mir_eval).
Macro ROC-AUC/AP skip classes without both positives and negatives in the evaluated split (sklearn would raise);
:func:`macro_roc_auc` returns how many were skipped so reports can say so.
"""
from functools import lru_cache

import mir_eval
import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, r2_score, roc_auc_score

BEAT_F_MEASURE_WINDOW = 0.07  # seconds, mir_eval's default (MIREX convention)
KEY_NAMES = tuple(f"{tonic} {mode}" for mode in ("major", "minor")
                  for tonic in ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"))
ENSEMBLE_STRATEGIES = ("vote", "max", "mean_logit", "mean_prob")


# ---------------------------------------------------------------- library metrics (numpy in, float out)

def accuracy(y_true: np.ndarray, logits: np.ndarray) -> float:
    """y_true: (N,) int class ids; logits: (N, K). Fraction of argmax predictions that are right."""
    return float(accuracy_score(y_true, logits.argmax(axis=1)))


def _scorable_classes(y_true: np.ndarray) -> np.ndarray:
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < y_true.shape[0])


def macro_roc_auc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    """y_true: (N, K) {0,1}; scores: (N, K). Returns (macro ROC-AUC over scorable classes, classes skipped)."""
    keep = _scorable_classes(y_true)
    value = roc_auc_score(y_true[:, keep], scores[:, keep], average="macro") if keep.any() else float("nan")
    return float(value), int((~keep).sum())


def macro_average_precision(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    """y_true: (N, K) {0,1}; scores: (N, K). Returns (macro AP over scorable classes, classes skipped)."""
    keep = _scorable_classes(y_true)
    value = average_precision_score(y_true[:, keep], scores[:, keep], average="macro") if keep.any() else float("nan")
    return float(value), int((~keep).sum())


def r2_per_output(y_true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """y_true, pred: (N, K) -> (K,) coefficient of determination per output (sklearn ``r2_score``)."""
    return np.array([r2_score(y_true[:, k], pred[:, k]) for k in range(y_true.shape[1])])


def key_weighted_score(reference: list[str], estimated: list[str]) -> float:
    """Mean ``mir_eval.key.weighted_score`` over pairs of key strings like "C major" / "F# minor"."""
    return float(np.mean([mir_eval.key.weighted_score(r, e) for r, e in zip(reference, estimated)]))


def beat_f_measure(reference: np.ndarray, estimated: np.ndarray, window: float = BEAT_F_MEASURE_WINDOW) -> float:
    """Beat times in seconds -> ``mir_eval.beat.f_measure`` with a ±``window`` s tolerance (no beat trimming)."""
    return float(mir_eval.beat.f_measure(np.asarray(reference, float), np.asarray(estimated, float),
                                         f_measure_threshold=window))


def beat_f_measure_files(pairs: list, window: float = BEAT_F_MEASURE_WINDOW, average: str = "pooled") -> float:
    """Beat F-measure over files: pairs = [(reference, estimated)] beat times in seconds.

    ``average="per_file"``: mean of each file's ``mir_eval.beat.f_measure``. ``"pooled"``: matches
    (``mir_eval.util.match_events`` within ±window), estimates and references summed over files, then one
    F = 2PR / (P + R) (``mir_eval.util.f_measure``), as MARBLE's GTZANBT_metric.py; 0 without estimates or
    references.
    """
    if average == "per_file":
        return float(np.mean([beat_f_measure(r, e, window) for r, e in pairs]))
    matches = sum(len(mir_eval.util.match_events(np.asarray(r, float), np.asarray(e, float), window))
                  for r, e in pairs)
    estimates, references = sum(len(e) for _, e in pairs), sum(len(r) for r, _ in pairs)
    if estimates == 0 or references == 0 or matches == 0:
        return 0.0
    return float(mir_eval.util.f_measure(matches / estimates, matches / references))


@lru_cache(maxsize=1)
def key_score_matrix() -> np.ndarray:
    """(24, 24) float32: ``mir_eval.key.weighted_score(KEY_NAMES[i], KEY_NAMES[j])`` (reference i, estimate j)."""
    return np.array([[mir_eval.key.weighted_score(r, e) for e in KEY_NAMES] for r in KEY_NAMES], np.float32)


# ---------------------------------------------------------------- batched torch metrics (leading probe dim P)

def batched_accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logits: (P, N, K); y: (N,) int64 -> (P,) accuracy."""
    return (logits.argmax(-1) == y.unsqueeze(0)).float().mean(1)


def _scorable(y: torch.Tensor) -> torch.Tensor:
    pos = y.sum(0)
    return (pos > 0) & (pos < y.shape[0])


def batched_macro_roc_auc(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """scores: (P, N, K); y: (N, K) {0,1} -> (P,) macro ROC-AUC (Mann-Whitney U over ranks; no tie averaging)."""
    y = y.float()
    ranks = scores.argsort(1).argsort(1).float() + 1  # (P, N, K), 1..N
    npos = y.sum(0)  # (K,)
    nneg = y.shape[0] - npos
    rank_sum = (ranks * y.unsqueeze(0)).sum(1)  # (P, K)
    auc = (rank_sum - npos * (npos + 1) / 2) / (npos * nneg).clamp(min=1)
    keep = _scorable(y)
    return auc[:, keep].mean(1)


def batched_macro_average_precision(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """scores: (P, N, K); y: (N, K) {0,1} -> (P,) macro AP (mean precision at each positive; no tie grouping)."""
    y = y.float()
    order = scores.argsort(1, descending=True)  # (P, N, K)
    hits = torch.gather(y.unsqueeze(0).expand_as(scores), 1, order)  # (P, N, K)
    ranks = torch.arange(1, y.shape[0] + 1, device=y.device, dtype=torch.float32).view(1, -1, 1)
    precision = hits.cumsum(1) / ranks
    ap = (precision * hits).sum(1) / y.sum(0).clamp(min=1)  # (P, K)
    keep = _scorable(y)
    return ap[:, keep].mean(1)


def batched_r2(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """pred: (P, N, K); y: (N, K) -> (P, K) coefficient of determination per output."""
    resid = ((pred - y.unsqueeze(0)) ** 2).sum(1)
    total = ((y - y.mean(0)) ** 2).sum(0).clamp(min=1e-12)
    return 1 - resid / total


def group_mean(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """values: (P, N, K); groups: (N,) int64 in [0, G) -> (P, G, K) mean of each group's rows."""
    P, N, K = values.shape
    index = groups.view(1, N, 1).expand(P, N, K)
    out = torch.zeros(P, num_groups, K, device=values.device, dtype=values.dtype)
    return out.scatter_reduce(1, index, values, reduce="mean", include_self=False)


def song_ensembles(logits: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Ensemble window predictions to songs with each of ``ENSEMBLE_STRATEGIES``.

    Args:
        logits: (P, N, K) window logits.
        groups: (N,) int64 song index of each window, in [0, num_groups).
    Returns:
        (S=4, P, G) int64 predicted class per song: vote (mode of window argmaxes, ties -> lowest class),
        max (argmax of the max logit), mean_logit (argmax of the mean logit), mean_prob (argmax of the mean
        softmax).
    """
    P, N, K = logits.shape
    index = groups.view(1, N, 1).expand(P, N, K)

    def pool(values, reduce):
        out = torch.zeros(P, num_groups, K, device=logits.device, dtype=values.dtype)
        return out.scatter_reduce(1, index, values, reduce=reduce, include_self=False)

    votes = torch.nn.functional.one_hot(logits.argmax(-1), K).float()
    preds = [pool(votes, "sum"), pool(logits, "amax"), pool(logits, "mean"), pool(logits.softmax(-1), "mean")]
    return torch.stack([p.argmax(-1) for p in preds])


def batched_key_scores(logits: torch.Tensor, y: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Song-level MIREX key score of each ensemble strategy.

    Args:
        logits: (P, N, 24) window logits over ``KEY_NAMES``; y: (N,) int64 key index; groups: (N,) song index.
    Returns:
        (P, 4) mean weighted score per strategy (order of ``ENSEMBLE_STRATEGIES``).
    """
    num_groups = int(groups.max()) + 1
    song_y = torch.zeros(num_groups, dtype=torch.int64, device=y.device).scatter(0, groups, y)
    preds = song_ensembles(logits, groups, num_groups)  # (4, P, G)
    table = torch.as_tensor(key_score_matrix(), device=logits.device)
    return table[song_y.view(1, 1, -1), preds].mean(-1).T  # (P, 4)
