"""model_zoo.metrics against scikit-learn (test-only dependency) and hand-computed cases."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from model_zoo import metrics as M

SEEDS = range(12)


def _random_case(
    seed: int, n: int | None = None, c: int | None = None, ties: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Labels, probabilities, argmax predictions; labels correlated with the probabilities."""
    rng = np.random.default_rng(seed)
    c = c or int(rng.integers(2, 6))
    n = n or int(rng.integers(20, 200))
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    if ties:
        logits = np.round(logits)  # many exactly equal scores
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs, probs.argmax(axis=1), c


# ----------------------------------------------------------------------------- vs scikit-learn
@pytest.mark.parametrize("seed", SEEDS)
def test_label_metrics_match_sklearn(seed: int) -> None:
    y, _, pred, c = _random_case(seed)
    assert M.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    np.testing.assert_array_equal(
        M.confusion_matrix(y, pred, c), skm.confusion_matrix(y, pred, labels=list(range(c)))
    )
    kappa = skm.cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(c)))
    assert M.quadratic_weighted_kappa(y, pred, c) == pytest.approx(kappa, abs=1e-12)
    seen = np.union1d(y, pred)
    f1 = skm.f1_score(y, pred, average="macro", labels=seen)
    assert M.macro_f1(y, pred, c) == pytest.approx(f1, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_f1_with_absent_classes_matches_sklearn_on_seen_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 5
    # Classes 3 and 4 never occur in the truth; class 4 is sometimes predicted.
    y = rng.integers(0, 3, size=60)
    pred = np.where(rng.random(60) < 0.2, 4, y)
    got = M.macro_f1(y, pred, c)
    assert got == pytest.approx(skm.f1_score(y, pred, average="macro", labels=[0, 1, 2, 4]))
    # The never-seen class 3 is not averaged in as a zero.
    zero_counted = skm.f1_score(y, pred, average="macro", labels=list(range(c)), zero_division=0.0)
    assert got > zero_counted


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_ranking_metrics_match_sklearn(seed: int, ties: bool) -> None:
    y, probs, _, c = _random_case(seed, ties=ties)
    per_class = [
        skm.roc_auc_score(y == k, probs[:, k]) for k in range(c) if 0 < np.sum(y == k) < y.size
    ]
    assert M.one_vs_rest_auc(y, probs) == pytest.approx(np.mean(per_class), abs=1e-12)
    if c > 2 and len(np.unique(y)) == c:
        ovr = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
        assert M.one_vs_rest_auc(y, probs) == pytest.approx(ovr, abs=1e-12)
    binary = (y >= 1).astype(int)
    score = probs[:, 1:].sum(axis=1)
    assert M.binary_auc(binary, score) == pytest.approx(skm.roc_auc_score(binary, score), abs=1e-12)


def test_binary_auc_ties_count_one_half() -> None:
    # One positive tied with one negative, one positive above everything: U = 1 + 0.5 + 1 + 1.
    assert M.binary_auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx(3.5 / 4)
    assert M.binary_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_nll_matches_sklearn_log_loss(seed: int) -> None:
    y, probs, _, c = _random_case(seed)
    expected = skm.log_loss(y, probs, labels=list(range(c)))
    assert M.negative_log_likelihood(y, probs) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_referable_dr_matches_sklearn_recall(seed: int) -> None:
    y, probs, _, _ = _random_case(seed, c=5)
    ref_prob = probs[:, 2:].sum(axis=1)
    truth = (y >= 2).astype(int)
    pred = (ref_prob >= 0.3).astype(int)
    sens, spec = M.referable_dr_sensitivity_specificity(y, ref_prob, threshold=0.3)
    assert sens == pytest.approx(skm.recall_score(truth, pred, pos_label=1))
    assert spec == pytest.approx(skm.recall_score(truth, pred, pos_label=0))
    # A binary prediction gives the same result as the thresholded probability.
    assert M.referable_dr_sensitivity_specificity(y, pred.astype(bool)) == (sens, spec)


# ----------------------------------------------------------------------------- calibration
def _reference_ece_uniform(y: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """Plain loop over bins (lower, upper], as in Guo et al. 2017."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = [i for i in range(len(y)) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if in_bin:
            acc = sum(pred[i] == y[i] for i in in_bin) / len(in_bin)
            mean_conf = sum(conf[i] for i in in_bin) / len(in_bin)
            total += len(in_bin) / len(y) * abs(acc - mean_conf)
    return total


def _two_class(conf: list[float], correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    probs = np.array([[p, 1.0 - p] for p in conf])
    return np.array([0 if ok else 1 for ok in correct]), probs


def test_ece_hand_computed() -> None:
    y, probs = _two_class([0.55, 0.58, 0.81, 0.85, 0.99], [True, False, True, True, False])
    # Bins (0.5,0.6]: acc 1/2, conf 0.565; (0.8,0.9]: acc 1, conf 0.83; (0.9,1]: acc 0, conf 0.99.
    hand_uniform = (2 * 0.065 + 2 * 0.17 + 0.99) / 5
    assert M.expected_calibration_error(y, probs) == pytest.approx(hand_uniform, abs=1e-9)
    # Equal mass, 2 bins: {0.55, 0.58, 0.81} acc 2/3 and {0.85, 0.99} acc 1/2.
    hand_quantile = (3 * abs(2 / 3 - 1.94 / 3) + 2 * abs(0.5 - 0.92)) / 5
    got = M.expected_calibration_error(y, probs, n_bins=2, strategy="quantile")
    assert got == pytest.approx(hand_quantile, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_ece_uniform_matches_loop_and_sklearn_bins(seed: int) -> None:
    y, probs, pred, _ = _random_case(seed)
    assert M.expected_calibration_error(y, probs) == pytest.approx(
        _reference_ece_uniform(y, probs, 10), abs=1e-12
    )
    bins = M.reliability_bins(y, probs, n_bins=10)
    acc_sk, conf_sk = calibration_curve(pred == y, probs.max(axis=1), n_bins=10)
    used = bins.count > 0
    np.testing.assert_allclose(bins.accuracy[used], acc_sk, atol=1e-12)
    np.testing.assert_allclose(bins.confidence[used], conf_sk, atol=1e-12)
    assert bins.count.sum() == y.size


@pytest.mark.parametrize("seed", SEEDS)
def test_gate_ece_equal_mass_matches_sklearn_quantile_bins(seed: int) -> None:
    # With N a multiple of 15 and distinct confidences, sklearn's percentile edges give the same
    # groups as our equal-mass split.
    y, probs, pred, _ = _random_case(seed, n=150)
    bins = M.reliability_bins(y, probs, n_bins=15, strategy="quantile")
    assert bins.count.tolist() == [10] * 15
    acc_sk, conf_sk = calibration_curve(
        pred == y, probs.max(axis=1), n_bins=15, strategy="quantile"
    )
    np.testing.assert_allclose(bins.accuracy, acc_sk, atol=1e-12)
    np.testing.assert_allclose(bins.confidence, conf_sk, atol=1e-12)
    expected = float(np.mean(np.abs(acc_sk - conf_sk)))  # equal mass: plain mean of gaps
    assert M.gate_expected_calibration_error(y, probs) == pytest.approx(expected, abs=1e-12)


def test_equal_mass_with_fewer_samples_than_bins() -> None:
    y, probs = _two_class([0.6, 0.9], [True, False])
    bins = M.reliability_bins(y, probs, n_bins=15, strategy="quantile")
    assert bins.count.tolist() == [1, 1]
    assert bins.ece == pytest.approx((0.4 + 0.9) / 2)


def test_perfectly_calibrated_and_overconfident() -> None:
    y, probs = _two_class([1.0, 1.0, 1.0], [True, True, True])
    assert M.expected_calibration_error(y, probs) == 0.0
    y, probs = _two_class([0.95] * 4, [True, False, False, False])
    assert M.expected_calibration_error(y, probs) == pytest.approx(0.7)


# ----------------------------------------------------------------------------- hand cases
def test_qwk_three_classes_by_hand() -> None:
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 2, 2, 0]
    # O = [[1,1,0],[0,1,1],[1,0,1]], E = 2/3 everywhere, W = (i-j)^2/4:
    # sum(W*O) = 0.25 + 0.25 + 1 = 1.5 ; sum(W*E) = 2/3 * 3 = 2 ; kappa = 1 - 1.5/2.
    assert M.quadratic_weighted_kappa(y, pred, 3) == pytest.approx(0.25, abs=1e-12)
    assert M.quadratic_weighted_kappa(y, y, 3) == pytest.approx(1.0)


def test_qwk_undefined_when_all_one_class() -> None:
    assert math.isnan(M.quadratic_weighted_kappa([1, 1, 1], [1, 1, 1], 5))
    # Truth constant but predictions vary: defined (and not positive).
    assert M.quadratic_weighted_kappa([1, 1, 1], [1, 2, 0], 5) <= 0.0


def test_macro_f1_by_hand() -> None:
    # Class 0: TP 2 FP 1 FN 0 -> 0.8; class 1: TP 1 FP 0 FN 1 -> 2/3; class 2 never seen.
    assert M.macro_f1([0, 0, 1, 1], [0, 0, 1, 0], 3) == pytest.approx((0.8 + 2 / 3) / 2)


def test_referable_threshold_is_inclusive_and_icdr_cut_is_two() -> None:
    y = [0, 1, 2, 3, 4, 1]
    prob = np.array([0.1, 0.5, 0.5, 0.9, 0.4, 0.2])
    sens, spec = M.referable_dr_sensitivity_specificity(y, prob)
    assert sens == pytest.approx(2 / 3)  # grade 4 at 0.4 is missed
    assert spec == pytest.approx(2 / 3)  # grade 1 at 0.5 is referred


# ----------------------------------------------------------------------------- masking, empty
@pytest.mark.parametrize("seed", range(4))
def test_unknown_labels_are_masked_out(seed: int) -> None:
    y, probs, pred, c = _random_case(seed, c=5)
    rng = np.random.default_rng(100 + seed)
    unknown = rng.random(y.size) < 0.3
    y_masked = np.where(unknown, -1, y)
    pred_masked = np.where(unknown, -1, pred)  # prediction rows for unknown truth may be junk
    keep = ~unknown
    assert M.accuracy(y_masked, pred_masked) == M.accuracy(y[keep], pred[keep])
    assert M.quadratic_weighted_kappa(y_masked, pred_masked, c) == pytest.approx(
        M.quadratic_weighted_kappa(y[keep], pred[keep], c)
    )
    full = M.head_metrics(y_masked, probs, c, referable_from=2)
    kept = M.head_metrics(y[keep], probs[keep], c, referable_from=2)
    assert _same(full, kept)
    assert full["n"] == int(keep.sum())


def _same(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(b[key], float), 1e-12)
    return True


@pytest.mark.parametrize("y", [[], [-1, -1]])
def test_no_labelled_rows_gives_nan(y: list[int]) -> None:
    n = len(y)
    probs = np.full((n, 3), 1 / 3)
    pred = np.zeros(n, dtype=int)
    for value in (
        M.accuracy(y, pred),
        M.quadratic_weighted_kappa(y, pred, 3),
        M.macro_f1(y, pred, 3),
        M.one_vs_rest_auc(y, probs),
        M.binary_auc(y, np.zeros(n)),
        M.expected_calibration_error(y, probs),
        M.gate_expected_calibration_error(y, probs),
        M.negative_log_likelihood(y, probs),
        *M.referable_dr_sensitivity_specificity(y, np.zeros(n)),
    ):
        assert math.isnan(value)
    assert M.confusion_matrix(y, pred, 3).tolist() == [[0] * 3] * 3
    metrics = M.head_metrics(y, probs, 3)
    assert metrics["n"] == 0 and math.isnan(float(metrics["accuracy"]))  # type: ignore[arg-type]


def test_auc_nan_when_single_class() -> None:
    assert math.isnan(M.binary_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(M.one_vs_rest_auc([2, 2], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: M.accuracy([0, 1], [0]), "length"),
        (lambda: M.accuracy([[0, 1]], [[0, 1]]), "1-D"),
        (lambda: M.accuracy([0, -2], [0, 0]), "-1"),
        (lambda: M.accuracy([0.5, 1], [0, 1]), "whole"),
        (lambda: M.confusion_matrix([0, 5], [0, 1], 5), "5 classes"),
        (lambda: M.confusion_matrix([0, 1], [0, 7], 5), "y_pred"),
        (lambda: M.quadratic_weighted_kappa([0], [0], 1), "num_classes"),
        (lambda: M.one_vs_rest_auc([0, 1], [[2.0, -1.0], [0.0, 1.0]]), "logits"),
        (lambda: M.one_vs_rest_auc([0, 1], [[0.9, 0.9], [0.0, 1.0]]), "sum to 1"),
        (lambda: M.one_vs_rest_auc([0, 1], [[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
        (lambda: M.one_vs_rest_auc([0, 1, 0], [[0.5, 0.5], [0.0, 1.0]]), "rows"),
        (lambda: M.expected_calibration_error([0], [[1.0, 0.0]], strategy="x"), "strategy"),  # type: ignore[arg-type]
        (lambda: M.expected_calibration_error([0], [[1.0, 0.0]], n_bins=0), "n_bins"),
        (lambda: M.referable_dr_sensitivity_specificity([0, 3], [0, 3]), "grades >= 2"),
        (lambda: M.referable_dr_sensitivity_specificity([0, 3], [0.1, 1.5]), "[0, 1]"),
        (lambda: M.head_metrics([0, 1], [[0.5, 0.5], [0.5, 0.5]], 3), "num_classes"),
    ],
)
def test_bad_input_raises_clear_value_error(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()  # type: ignore[operator]


def test_head_metrics_agrees_with_individual_functions() -> None:
    y, probs, pred, _ = _random_case(7, n=120, c=5)
    out = M.head_metrics(y, probs, 5, referable_from=2)
    assert out["accuracy"] == M.accuracy(y, pred)
    assert out["qwk"] == M.quadratic_weighted_kappa(y, pred, 5)
    assert out["macro_f1"] == M.macro_f1(y, pred, 5)
    assert out["ovr_auc"] == M.one_vs_rest_auc(y, probs)
    assert out["ece_10_uniform"] == M.expected_calibration_error(y, probs)
    assert out["ece_15_equal_mass"] == M.gate_expected_calibration_error(y, probs)
    assert out["nll"] == M.negative_log_likelihood(y, probs)
    assert out["confusion_matrix"] == M.confusion_matrix(y, pred, 5).tolist()
    ref = probs[:, 2:].sum(axis=1)
    sens, spec = M.referable_dr_sensitivity_specificity(y, ref)
    assert (out["referable_sensitivity"], out["referable_specificity"]) == (sens, spec)
    assert out["referable_auc"] == pytest.approx(skm.roc_auc_score(y >= 2, ref))
    recall = skm.recall_score(y, pred, labels=list(range(5)), average=None, zero_division=0)
    np.testing.assert_allclose(out["per_class_recall"], recall)
