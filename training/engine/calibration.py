"""Post-hoc temperature scaling (Guo et al. 2017), fitted per head by NLL on a calibration split.

Displayed probabilities are ``softmax(z / T_cal)`` (docs/sall-method.md, Calibration; R23).
The SALL training temperature T = 3 is never used as a calibration device. numpy only.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

T_MIN = 0.05
T_MAX = 20.0


def softmax(logits: NDArray[np.float64], temperature: float = 1.0) -> NDArray[np.float64]:
    """Row-wise ``softmax(z / T)`` in float64 (``[N, C] -> [N, C]``)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def nll(logits: NDArray[np.float64], labels: NDArray[np.int64], temperature: float) -> float:
    """Mean negative log-likelihood (nats) of ``labels`` under ``softmax(logits / T)``.

    Rows with label -1 are ignored; NaN when none is left.
    """
    known = labels >= 0
    if not known.any():
        return math.nan
    z = np.asarray(logits, dtype=np.float64)[known] / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(int(known.sum())), labels[known]].mean())


def fit_temperature(
    logits: NDArray[np.float64], labels: NDArray[np.int64], *, iterations: int = 80
) -> float:
    """The T in [0.05, 20] minimising NLL (golden-section search on log T).

    NLL is unimodal in log T (convex in 1/T), so the search finds the global minimum to about
    1e-6 relative precision. Returns 1.0 when no labelled row is given.

    Args:
        logits: ``[N, C]`` raw logits.
        labels: ``[N]`` class indices, -1 = unknown.
        iterations: golden-section steps (each shrinks the bracket by 0.618).
    """
    if not (np.asarray(labels) >= 0).any():
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2

    def f(log_t: float) -> float:
        return nll(logits, labels, math.exp(log_t))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(iterations):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return float(math.exp((lo + hi) / 2))


__all__ = ["fit_temperature", "nll", "softmax"]
