"""Probe metrics: each against a hand-computed case, and the batched torch twins against sklearn/mir_eval."""
import numpy as np
import pytest
import torch

from music_ssl.probe import metrics
from music_ssl.probe.beat import beat_targets, decode_beats, read_beats
from music_ssl.probe.report import mean_ci
from music_ssl.probe.task_types import normalize_key


def test_accuracy_hand_case():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]])
    assert metrics.accuracy(np.array([0, 1, 1]), logits) == pytest.approx(2 / 3)


def test_macro_roc_auc_and_ap_hand_case():
    y = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    scores = np.array([[0.9, 0.8], [0.8, 0.7], [0.3, 0.2], [0.1, 0.1]])
    # class 0: positives {.9, .3}, negatives {.8, .1}: 3 of 4 pairs ordered -> .75; class 1 perfectly ranked -> 1
    auc, skipped = metrics.macro_roc_auc(y, scores)
    assert auc == pytest.approx((0.75 + 1.0) / 2) and skipped == 0
    # class 0 AP: precision 1/1 at .9 and 2/3 at .3 -> 5/6; class 1 -> 1
    ap, _ = metrics.macro_average_precision(y, scores)
    assert ap == pytest.approx((5 / 6 + 1.0) / 2)


def test_macro_auc_skips_single_class_columns_and_says_so():
    y = np.array([[1, 1], [0, 1], [1, 1]])
    auc, skipped = metrics.macro_roc_auc(y, np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3]]))
    assert skipped == 1 and auc == pytest.approx(1.0)


def test_r2_hand_case():
    y = np.array([[1.0], [2.0], [3.0]])
    assert metrics.r2_per_output(y, np.array([[1.0], [2.0], [4.0]]))[0] == pytest.approx(0.5)


def test_key_weighted_score_hand_case():
    ref = ["C major"] * 5
    est = ["C major", "G major", "A minor", "C minor", "F# major"]
    # same 1, fifth .5, relative .3, parallel .2, unrelated 0
    assert metrics.key_weighted_score(ref, est) == pytest.approx((1 + 0.5 + 0.3 + 0.2 + 0) / 5)
    assert normalize_key("f# minor") == "Gb minor" and normalize_key("Bb:maj") == "Bb major"


def test_beat_f_measure_hand_case_with_70ms_window():
    # 1.05 and 3.0 are within 70 ms, 2.1 is 100 ms off: P = 2/3, R = 2/4, F = 4/7
    f = metrics.beat_f_measure(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.05, 2.1, 3.0]))
    assert f == pytest.approx(4 / 7)


def test_mean_ci_t_distribution():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)  # t(.975, 2) * s / sqrt(n), s = 1
    assert np.isnan(mean_ci([0.5])[1])


def test_batched_metrics_equal_sklearn_without_ties():
    rng = np.random.default_rng(0)
    P, N, K = 3, 50, 4
    scores = rng.standard_normal((P, N, K)).astype(np.float32)
    y_multi = (rng.random((N, K)) < 0.4).astype(np.float32)
    y_class = rng.integers(0, K, N)
    auc = metrics.batched_macro_roc_auc(torch.from_numpy(scores), torch.from_numpy(y_multi))
    ap = metrics.batched_macro_average_precision(torch.from_numpy(scores), torch.from_numpy(y_multi))
    acc = metrics.batched_accuracy(torch.from_numpy(scores), torch.from_numpy(y_class))
    r2 = metrics.batched_r2(torch.from_numpy(scores), torch.from_numpy(y_multi))
    for p in range(P):
        assert auc[p].item() == pytest.approx(metrics.macro_roc_auc(y_multi, scores[p])[0], abs=1e-5)
        assert ap[p].item() == pytest.approx(metrics.macro_average_precision(y_multi, scores[p])[0], abs=1e-5)
        assert acc[p].item() == pytest.approx(metrics.accuracy(y_class, scores[p]))
        np.testing.assert_allclose(r2[p].numpy(), metrics.r2_per_output(y_multi, scores[p]), atol=1e-5)


def test_batched_key_scores_hand_case():
    # two songs: song 0 (C major) has windows voting C major, G major, C major; song 1 (A minor) one window
    index = {k: i for i, k in enumerate(metrics.KEY_NAMES)}
    logits = torch.full((1, 4, 24), -5.0)
    for row, key in enumerate(["C major", "G major", "C major", "C major"]):
        logits[0, row, index[key]] = 5.0
    y = torch.tensor([index["C major"]] * 3 + [index["A minor"]])
    groups = torch.tensor([0, 0, 0, 1])
    scores = metrics.batched_key_scores(logits, y, groups)
    # every strategy: song 0 -> C major (1.0), song 1 -> C major, the relative of A minor (0.3)
    assert scores.shape == (1, 4)
    torch.testing.assert_close(scores, torch.full((1, 4), (1.0 + 0.3) / 2))


def test_dbn_tracks_a_120_bpm_activation(tmp_path):
    fps = 50.0
    activation = np.full(int(20 * fps), 0.02)
    reference = np.arange(0.5, 20.0, 0.5)  # beats over the whole clip: the DBN keeps tracking to both ends
    activation[np.round(reference * fps).astype(int)] = 0.95
    estimated = decode_beats(activation, fps)
    assert metrics.beat_f_measure(reference, estimated) > 0.95


def test_beat_files_and_targets(tmp_path):
    (tmp_path / "a.beats").write_text("0.5 1\n1.0 2\n1.5 3\n")
    (tmp_path / "a.jams").write_text('{"annotations": [{"namespace": "beat", "sandbox": {"annotation_type": '
                                     '"beat"}, "data": [{"time": 0.5}, {"time": 1.0}]}]}')
    np.testing.assert_allclose(read_beats(tmp_path / "a.beats"), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(read_beats(tmp_path / "a.jams"), [0.5, 1.0])
    target = beat_targets(np.array([0.5, 1.0]), 60, 50.0)
    assert target[25] == 1 and target[50] == 1 and target[24] == 0.5 and target.sum() == pytest.approx(4.0)
