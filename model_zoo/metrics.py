"""Evaluation metrics for one classification head (``docs/sall-method.md``, Evaluation), numpy only.

Conventions shared by every function here:

* ``y_true`` / ``y_pred`` are 1-D integer arrays of class indices ``0 .. C-1``. Float arrays are
  accepted when every value is integral (labels read back from a CSV).
* **Unknown labels.** ``-1`` in ``y_true`` means "no ground truth for this head" (a DR-only image
  has AMD = -1). Such rows are dropped before anything is computed, together with the matching
  row of ``y_pred`` / ``probs`` (which may then hold anything, e.g. ``-1``). Any other negative or
  out-of-range label raises ``ValueError``.
* ``probs`` is an ``[N, C]`` float array of probabilities: finite, in [0, 1], rows summing to 1
  within 1e-3. Nothing is renormalised silently.
* **No data.** When no labelled row is left (empty input, or all ``-1``) scalar metrics return
  ``NaN``: "not measurable" must stay distinguishable from a score of 0, and a report over several
  heads must not crash because one head had no labelled test images. Malformed input (wrong
  shapes, out-of-range labels, non-finite probabilities) raises ``ValueError``.
* A metric that is undefined on the data given (AUC with a single class present, kappa when
  truth and prediction are the same single class) is also ``NaN``; the docstrings say when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "GATE_ECE_BINS",
    "UNKNOWN_LABEL",
    "ReliabilityBins",
    "accuracy",
    "binary_auc",
    "confusion_matrix",
    "expected_calibration_error",
    "gate_expected_calibration_error",
    "head_metrics",
    "macro_f1",
    "negative_log_likelihood",
    "one_vs_rest_auc",
    "quadratic_weighted_kappa",
    "referable_dr_sensitivity_specificity",
    "reliability_bins",
]

UNKNOWN_LABEL = -1
"""Label value meaning "no ground truth for this head"; such rows are masked out."""

GATE_ECE_BINS = 15
"""The promotion gate (R23) uses 15 equal-mass bins."""

_PROB_SUM_TOL = 1e-3
_NLL_EPS = 1e-12

BinStrategy = Literal["uniform", "quantile"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
MetricValue = float | list[float] | list[list[int]]


# ----------------------------------------------------------------------------- validation
def _as_int_labels(y: npt.ArrayLike, name: str) -> IntArray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold whole class indices (or -1 for unknown)")
        return arr.astype(np.int64)
    if arr.size == 0:
        return arr.astype(np.int64)
    raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")


def _known_mask(
    y_true: IntArray, num_classes: int | None, name: str = "y_true"
) -> npt.NDArray[np.bool_]:
    known: npt.NDArray[np.bool_] = np.not_equal(y_true, UNKNOWN_LABEL)
    kept = y_true[known]
    if kept.size and kept.min() < 0:
        raise ValueError(f"{name} holds {int(kept.min())}; use -1 only, for an unknown label")
    if num_classes is not None and kept.size and kept.max() >= num_classes:
        raise ValueError(
            f"{name} holds class {int(kept.max())} but the head has {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return known


def _check_num_classes(num_classes: int) -> None:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def _labels_and_preds(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int | None
) -> tuple[IntArray, IntArray]:
    t = _as_int_labels(y_true, "y_true")
    p = _as_int_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    known = _known_mask(t, num_classes)
    t, p = t[known], p[known]
    if p.size and p.min() < 0:
        raise ValueError("y_pred holds a negative class for a labelled row")
    if num_classes is not None and p.size and p.max() >= num_classes:
        raise ValueError(f"y_pred holds class {int(p.max())}, outside 0..{num_classes - 1}")
    return t, p


def _labels_and_probs(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    t = _as_int_labels(y_true, "y_true")
    pr = np.asarray(probs, dtype=np.float64)
    if pr.ndim != 2 or pr.shape[1] < 2:
        raise ValueError(f"probs must be an [N, C] array with C >= 2, got shape {pr.shape}")
    if pr.shape[0] != t.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but probs has {pr.shape[0]}")
    known = _known_mask(t, pr.shape[1])
    t, pr = t[known], pr[known]
    if not np.all(np.isfinite(pr)):
        raise ValueError("probs holds NaN or infinite values")
    if pr.size and (pr.min() < 0.0 or pr.max() > 1.0):
        raise ValueError("probs must lie in [0, 1]; pass softmax outputs, not logits")
    if pr.size and np.max(np.abs(pr.sum(axis=1) - 1.0)) > _PROB_SUM_TOL:
        raise ValueError("each row of probs must sum to 1 (softmax outputs, not logits)")
    return t, pr


# ----------------------------------------------------------------------------- label metrics
def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Fraction of labelled rows where the predicted class equals the true class.

    Args:
        y_true: ``[N]`` true class indices, ``-1`` = unknown (masked out).
        y_pred: ``[N]`` predicted class indices.

    Returns:
        Accuracy in [0, 1]; ``NaN`` when no labelled row remains.
    """
    t, p = _labels_and_preds(y_true, y_pred, None)
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int) -> IntArray:
    """Counts ``M[i, j]`` of labelled rows with true class ``i`` and predicted class ``j``.

    Returns:
        ``[C, C]`` int64 array (all zeros when no labelled row remains).
    """
    _check_num_classes(num_classes)
    t, p = _labels_and_preds(y_true, y_pred, num_classes)
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def quadratic_weighted_kappa(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int
) -> float:
    """Cohen's kappa with quadratic weights ``w_ij = (i - j)^2 / (C - 1)^2``.

    ``kappa = 1 - sum(w * O) / sum(w * E)`` where ``O`` is the confusion matrix and ``E`` the outer
    product of its marginals divided by N.

    Returns:
        Kappa in [-1, 1]; ``NaN`` with no labelled row, or when the expected weighted disagreement
        is zero (truth and prediction are all the same single class: agreement is not measurable).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    n = cm.sum()
    if n == 0:
        return float("nan")
    idx = np.arange(num_classes, dtype=np.float64)
    weights = (idx[:, None] - idx[None, :]) ** 2 / (num_classes - 1) ** 2
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    denom = float(np.sum(weights * expected))
    if denom == 0.0:
        return float("nan")
    return 1.0 - float(np.sum(weights * cm)) / denom


def _per_class_f1(cm: IntArray) -> FloatArray:
    tp = np.diag(cm).astype(np.float64)
    support_and_predicted = cm.sum(axis=0) + cm.sum(axis=1)  # = 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support_and_predicted > 0, 2.0 * tp / support_and_predicted, np.nan)


def macro_f1(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int) -> float:
    """Unweighted mean of per-class F1 ``= 2TP / (2TP + FP + FN)``.

    Absent classes: a class that occurs neither in ``y_true`` nor in ``y_pred`` has an undefined
    F1 (0/0) and is left out of the mean, because it says nothing about the model. A class that
    is true but never predicted, or predicted but never true, counts with F1 = 0. (This equals
    scikit-learn's ``f1_score(average="macro", labels=<classes seen in y_true or y_pred>)``.)

    Returns:
        Macro-F1 in [0, 1]; ``NaN`` when no labelled row remains.
    """
    f1 = _per_class_f1(confusion_matrix(y_true, y_pred, num_classes))
    seen = ~np.isnan(f1)
    return float(np.mean(f1[seen])) if np.any(seen) else float("nan")


# ----------------------------------------------------------------------------- ranking metrics
def _midranks(values: FloatArray) -> FloatArray:
    """1-based ranks where tied values share the mean of their positions (Mann-Whitney)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_position = np.cumsum(counts).astype(np.float64)
    return (last_position - (counts - 1) / 2.0)[inverse]


def _auc_from_binary(positive: npt.NDArray[np.bool_], score: FloatArray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _midranks(score)
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def binary_auc(y_true: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Args:
        y_true: ``[N]`` labels 0/1 (or bool); ``-1`` = unknown (masked out).
        score: ``[N]`` finite scores, larger meaning "more likely positive".

    Returns:
        AUC in [0, 1]; ``NaN`` when positives or negatives are missing.
    """
    t = _as_int_labels(y_true, "y_true")
    s = np.asarray(score, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError(f"y_true and score must both be [N]; got {t.shape} and {s.shape}")
    known = _known_mask(t, 2)
    t, s = t[known], s[known]
    if not np.all(np.isfinite(s)):
        raise ValueError("score holds NaN or infinite values")
    return _auc_from_binary(t == 1, s)


def _per_class_auc(t: IntArray, pr: FloatArray) -> FloatArray:
    return np.array([_auc_from_binary(t == k, pr[:, k]) for k in range(pr.shape[1])])


def one_vs_rest_auc(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    """Macro one-vs-rest ROC AUC: mean of ``AUC(y == k, probs[:, k])`` over the classes present.

    A class with no positive in ``y_true`` has no AUC and is left out of the mean; the AUC of a
    class is computed against all other labelled rows. Ties use the Mann-Whitney formulation.

    Args:
        y_true: ``[N]`` class indices, ``-1`` = unknown.
        probs: ``[N, C]`` class probabilities.

    Returns:
        Macro AUC in [0, 1]; ``NaN`` when fewer than two classes are present.
    """
    t, pr = _labels_and_probs(y_true, probs)
    per_class = _per_class_auc(t, pr)
    defined = ~np.isnan(per_class)
    return float(np.mean(per_class[defined])) if np.any(defined) else float("nan")


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin top-1 calibration statistics, for reliability diagrams and ECE.

    Attributes:
        lower: ``[B]`` lower confidence edge of each bin (exclusive; the first bin includes 0).
        upper: ``[B]`` upper confidence edge of each bin (inclusive).
        count: ``[B]`` number of samples per bin (may be 0 for uniform bins).
        confidence: ``[B]`` mean top-1 probability per bin, ``NaN`` for an empty bin.
        accuracy: ``[B]`` fraction correct per bin, ``NaN`` for an empty bin.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).
    """

    lower: FloatArray
    upper: FloatArray
    count: IntArray
    confidence: FloatArray
    accuracy: FloatArray
    strategy: str

    @property
    def ece(self) -> float:
        """``sum_b (n_b / N) |acc_b - conf_b|``; ``NaN`` when there are no samples."""
        total = int(self.count.sum())
        if total == 0:
            return float("nan")
        used = self.count > 0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float(np.sum(self.count[used] * gaps) / total)


def reliability_bins(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
) -> ReliabilityBins:
    """Bin labelled samples by top-1 confidence ``max_k probs[:, k]`` (prediction = argmax).

    ``"uniform"``: ``n_bins`` equal-width bins ``(b/n, (b+1)/n]`` (the first also holds 0).
    ``"quantile"``: equal mass — samples sorted by confidence (stable sort) and split into
    ``n_bins`` contiguous groups whose sizes differ by at most one, so tied confidences may fall
    into neighbouring bins; with fewer samples than bins, each sample is its own bin. Edges are
    the smallest/largest confidence in each group.

    Args:
        y_true: ``[N]`` class indices, ``-1`` = unknown.
        probs: ``[N, C]`` probabilities.
        n_bins: number of bins, >= 1.
        strategy: ``"uniform"`` or ``"quantile"``.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    t, pr = _labels_and_probs(y_true, probs)
    conf = pr.max(axis=1) if pr.size else np.zeros(0)
    correct = (pr.argmax(axis=1) == t).astype(np.float64) if pr.size else np.zeros(0)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # searchsorted(side="left") on the inner edges puts conf == edge into the lower bin,
        # giving (lower, upper] bins as in Guo et al. 2017.
        bin_of = np.searchsorted(edges[1:-1], conf, side="left")
        groups = [np.flatnonzero(bin_of == b) for b in range(n_bins)]
        lower, upper = edges[:-1].copy(), edges[1:].copy()
    elif strategy == "quantile":
        order = np.argsort(conf, kind="stable")
        groups = [g for g in np.array_split(order, min(n_bins, max(conf.size, 1))) if g.size]
        lower = np.array([conf[g].min() for g in groups], dtype=np.float64)
        upper = np.array([conf[g].max() for g in groups], dtype=np.float64)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    count = np.array([g.size for g in groups], dtype=np.int64)
    mean_conf = np.array([conf[g].mean() if g.size else np.nan for g in groups], dtype=np.float64)
    mean_acc = np.array([correct[g].mean() if g.size else np.nan for g in groups], dtype=np.float64)
    return ReliabilityBins(lower, upper, count, mean_conf, mean_acc, strategy)


def expected_calibration_error(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
) -> float:
    """Top-1 expected calibration error ``sum_b (n_b / N) |acc_b - conf_b|``.

    The default (10 equal-width bins) is the one comparable with the authors' reliability plots;
    the promotion gate uses :func:`gate_expected_calibration_error` (15 equal-mass bins). See
    :func:`reliability_bins` for the binning rules.

    Returns:
        ECE in [0, 1]; ``NaN`` when no labelled row remains.
    """
    return reliability_bins(y_true, probs, n_bins, strategy).ece


def gate_expected_calibration_error(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    """ECE with 15 equal-mass bins, the variant the R23 promotion gate uses."""
    return expected_calibration_error(y_true, probs, GATE_ECE_BINS, "quantile")


def negative_log_likelihood(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    """Mean ``-log p(true class)`` in nats, with probabilities clipped below at 1e-12.

    Returns:
        NLL >= 0 (at most ~27.6 per sample because of the clip); ``NaN`` with no labelled row.
    """
    t, pr = _labels_and_probs(y_true, probs)
    if t.size == 0:
        return float("nan")
    p_true = np.clip(pr[np.arange(t.size), t], _NLL_EPS, 1.0)
    return float(-np.mean(np.log(p_true)))


# ----------------------------------------------------------------------------- referable DR
def referable_dr_sensitivity_specificity(
    y_true_icdr: npt.ArrayLike,
    referable_prob_or_pred: npt.ArrayLike,
    threshold: float = 0.5,
) -> tuple[float, float]:
    """Sensitivity and specificity for referable DR (ICDR >= 2, i.e. moderate NPDR or worse).

    Args:
        y_true_icdr: ``[N]`` true ICDR grades 0..4, ``-1`` = unknown (masked out).
        referable_prob_or_pred: ``[N]`` either floats in [0, 1] — the probability of referable DR,
            positive when ``>= threshold`` — or a binary prediction (bool, or integers 0/1).
            Predicted ICDR *grades* are refused (a grade 1 would otherwise read as "referable");
            pass ``grades >= 2`` instead.
        threshold: decision threshold for probabilities, in [0, 1].

    Returns:
        ``(sensitivity, specificity)``, each in [0, 1], ``NaN`` when the data hold no referable
        (resp. no non-referable) eye.
    """
    t = _as_int_labels(y_true_icdr, "y_true_icdr")
    known = _known_mask(t, 5, "y_true_icdr")
    raw = np.asarray(referable_prob_or_pred)
    if raw.shape != t.shape:
        raise ValueError(f"y_true_icdr and predictions differ in shape: {t.shape} vs {raw.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    raw = raw[known]
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or (raw.size and (raw.min() < 0 or raw.max() > 1)):
            raise ValueError("referable probabilities must be finite and lie in [0, 1]")
        predicted = raw >= threshold
    elif raw.dtype.kind in "biu" or raw.size == 0:
        if raw.size and not np.all((raw == 0) | (raw == 1)):
            raise ValueError(
                "integer predictions must be 0/1 (referable or not); for predicted ICDR grades "
                "pass (grades >= 2)"
            )
        predicted = raw.astype(bool)
    else:
        raise ValueError(f"unsupported prediction dtype {raw.dtype}")
    return _sensitivity_specificity(t[known] >= 2, predicted)


def _sensitivity_specificity(
    truth: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    sens = float(np.sum(predicted & truth) / n_pos) if n_pos else float("nan")
    spec = float(np.sum(~predicted & ~truth) / n_neg) if n_neg else float("nan")
    return sens, spec


# ----------------------------------------------------------------------------- all at once
def head_metrics(
    y_true: npt.ArrayLike,
    probs: npt.ArrayLike,
    num_classes: int,
    *,
    referable_from: int | None = None,
) -> dict[str, MetricValue]:
    """Every report metric for one head, predictions taken as ``argmax(probs)``.

    The metrics are those of ``docs/sall-method.md``, Evaluation.

    Args:
        y_true: ``[N]`` class indices, ``-1`` = unknown (masked out).
        probs: ``[N, C]`` calibrated probabilities, ``C == num_classes``.
        num_classes: C.
        referable_from: for the DR head pass 2: adds referable-DR metrics where "referable" is
            class >= 2 and its probability is ``probs[:, 2:].sum(1)`` (threshold 0.5).

    Returns:
        A dict with keys ``n`` (labelled rows used), ``accuracy``, ``qwk``, ``macro_f1``,
        ``ovr_auc``, ``ece_10_uniform``, ``ece_15_equal_mass``, ``nll``, ``per_class_recall``
        (list, ``NaN`` for a class absent from the truth), ``per_class_f1``, ``per_class_auc``
        and ``confusion_matrix`` (list of lists, rows = truth); with ``referable_from`` also
        ``referable_auc``, ``referable_sensitivity``, ``referable_specificity``. Values are
        ``NaN`` where undefined (see module docstring); lists are plain Python for JSON.
    """
    _check_num_classes(num_classes)
    t, pr = _labels_and_probs(y_true, probs)
    if pr.shape[1] != num_classes:
        raise ValueError(f"probs has {pr.shape[1]} columns but num_classes is {num_classes}")
    pred = pr.argmax(axis=1) if t.size else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(t, pred, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    out: dict[str, MetricValue] = {
        "n": int(t.size),
        "accuracy": accuracy(t, pred),
        "qwk": quadratic_weighted_kappa(t, pred, num_classes),
        "macro_f1": macro_f1(t, pred, num_classes),
        "ovr_auc": one_vs_rest_auc(t, pr),
        "ece_10_uniform": expected_calibration_error(t, pr, 10, "uniform"),
        "ece_15_equal_mass": gate_expected_calibration_error(t, pr),
        "nll": negative_log_likelihood(t, pr),
        "per_class_recall": [float(v) for v in recall],
        "per_class_f1": [float(v) for v in _per_class_f1(cm)],
        "per_class_auc": [float(v) for v in _per_class_auc(t, pr)],
        "confusion_matrix": cm.tolist(),
    }
    if referable_from is not None:
        if not 0 < referable_from < num_classes:
            raise ValueError(f"referable_from must lie in 1..{num_classes - 1}")
        ref_prob = np.clip(pr[:, referable_from:].sum(axis=1), 0.0, 1.0)
        ref_true = t >= referable_from
        out["referable_auc"] = _auc_from_binary(ref_true, ref_prob)
        sens, spec = _sensitivity_specificity(ref_true, ref_prob >= 0.5)
        out["referable_sensitivity"] = sens
        out["referable_specificity"] = spec
    return out
