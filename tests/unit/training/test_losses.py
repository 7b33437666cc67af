"""SALL loss terms against values computed by hand (docs/sall-method.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from training.engine.sall.losses import (
    HeadTargets,
    SemanticLossConfig,
    hard_ce_sum,
    hint_loss,
    sall_loss,
    semantic_loss,
    soft_ce_kl_sum,
)


def _log_softmax(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a - math.log(np.exp(a).sum())


# Batch of three images, one 3-class head:
#   image 0 has the ground truth 1, image 1 carries a teacher soft label, image 2 has neither.
LOGITS = [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [2.0, -1.0, 1.0]]
LABELS = [1, -1, -1]
TEACHER = [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
MASK = [False, True, False]


def _targets() -> dict[str, HeadTargets]:
    return {
        "dr": HeadTargets(
            hard=torch.tensor(LABELS),
            teacher_logits=torch.tensor(TEACHER),
            soft_mask=torch.tensor(MASK),
        )
    }


def _by_hand(t_h: float, t: float, tau: float, lam: float, t2: bool) -> tuple[float, float, float]:
    hard = -_log_softmax([x / t_h for x in LOGITS[0]])[LABELS[0]]
    log_q = _log_softmax([x / tau for x in TEACHER[1]])
    log_p = _log_softmax([x / t for x in LOGITS[1]])
    q = np.exp(log_q)
    ce = float(-(q * log_p).sum())
    kl = float((q * (log_q - log_p)).sum())
    w = t * t if t2 else 1.0
    batch = 3  # the FULL batch, not |H| = 1 or |S| = 1
    return hard / batch, lam * w * ce / batch, kl / batch


@pytest.mark.parametrize(
    ("t_h", "t", "tau", "lam", "t2"),
    [(3.0, 3.0, 3.0, 1.0, False), (1.0, 3.0, 3.0, 1.0, True), (2.0, 2.0, 1.0, 0.5, False)],
)
def test_semantic_loss_matches_hand_computation(t_h, t, tau, lam, t2) -> None:
    cfg = SemanticLossConfig(
        temperature=t,
        teacher_temperature=tau,
        hard_temperature=t_h,
        kd_weight=lam,
        kd_t2_scaling=t2,
    )
    hard, soft, kl = semantic_loss({"dr": torch.tensor(LOGITS)}, _targets(), cfg)
    exp_hard, exp_soft, exp_kl = _by_hand(t_h, t, tau, lam, t2)
    assert float(hard) == pytest.approx(exp_hard, rel=1e-6)
    assert float(soft) == pytest.approx(exp_soft, rel=1e-6)
    assert float(kl) == pytest.approx(exp_kl, rel=1e-6)


def test_uniform_student_soft_ce_is_log_c() -> None:
    # p = uniform, so CE(q, p) = log 3 for any q; KL = log 3 - H(q).
    q = np.exp(_log_softmax([3.0, 0.0, 0.0]))
    ce, kl = soft_ce_kl_sum(
        torch.zeros(1, 3),
        torch.tensor([[3.0, 0.0, 0.0]]),
        torch.tensor([True]),
        temperature=5.0,
        teacher_temperature=1.0,
    )
    assert float(ce) == pytest.approx(math.log(3), rel=1e-6)
    assert float(kl) == pytest.approx(math.log(3) + float((q * np.log(q)).sum()), rel=1e-6)


def test_kl_is_zero_at_a_perfect_match_and_ce_is_the_teacher_entropy() -> None:
    z = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    ce, kl = soft_ce_kl_sum(
        z * 2, z, torch.tensor([True]), temperature=2.0, teacher_temperature=1.0
    )
    q = np.exp(_log_softmax([1.0, -2.0, 0.5, 0.0]))
    assert float(kl) == pytest.approx(0.0, abs=1e-6)
    assert float(ce) == pytest.approx(float(-(q * np.log(q)).sum()), rel=1e-6)


def test_unknown_labels_are_masked_and_the_batch_still_counts() -> None:
    cfg = SemanticLossConfig(hard_temperature=1.0)
    one = hard_ce_sum(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1]), 1.0)
    assert float(one) == pytest.approx(-math.log(3 / 4), rel=1e-6)
    # Two more images without any target: the sum is unchanged, the loss divides by B = 3.
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, -5.0], [9.0, 0.0]])
    labels = torch.tensor([1, -1, -1])
    target = HeadTargets(
        hard=labels, teacher_logits=None, soft_mask=torch.zeros(3, dtype=torch.bool)
    )
    hard, soft, kl = semantic_loss({"dr": logits}, {"dr": target}, cfg)
    assert float(hard) == pytest.approx(-math.log(3 / 4) / 3, rel=1e-6)
    assert float(soft) == 0.0 and float(kl) == 0.0


def test_heads_are_summed_with_unit_weights() -> None:
    cfg = SemanticLossConfig()
    t = _targets()["dr"]
    one = semantic_loss({"dr": torch.tensor(LOGITS)}, {"dr": t}, cfg)
    two = semantic_loss(
        {"dr": torch.tensor(LOGITS), "amd": torch.tensor(LOGITS)}, {"dr": t, "amd": t}, cfg
    )
    for a, b in zip(one, two, strict=True):
        assert float(b) == pytest.approx(2 * float(a), rel=1e-6)


def test_soft_term_gradient_is_the_kl_gradient() -> None:
    # d/ds [CE(q, softmax(s/T))] = (p - q) / T; with 1/B and lambda*w in front.
    s = torch.tensor([[0.3, -0.2, 1.0]], requires_grad=True)
    z = torch.tensor([[1.0, 0.0, -1.0]])
    cfg = SemanticLossConfig(temperature=2.0, teacher_temperature=1.5, kd_t2_scaling=True)
    target = HeadTargets(torch.tensor([-1]), z, torch.tensor([True]))
    parts = sall_loss({"dr": s}, {"dr": target}, cfg)
    parts.total.backward()
    p = np.exp(_log_softmax([0.15, -0.1, 0.5]))
    q = np.exp(_log_softmax([1 / 1.5, 0.0, -1 / 1.5]))
    expected = 4.0 * (p - q) / 2.0
    assert s.grad is not None
    np.testing.assert_allclose(s.grad.numpy()[0], expected, rtol=1e-5)


def test_hint_loss_matches_hand_computation() -> None:
    adapters = nn.ModuleDict(
        {"dr": nn.Linear(2, 2, bias=False), "amd": nn.Linear(2, 2, bias=False)}
    )
    with torch.no_grad():
        adapters["dr"].weight.copy_(torch.eye(2))
        adapters["amd"].weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swaps the axes
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    g_dr = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    g_amd = torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    # dr: image 0 distance 0; image 1 |(0,1) - (1,1)/sqrt2|^2 = 2 - sqrt2.
    # amd: A f = (0,1), (2,0) -> image 0 distance 0; image 1 |(1,0) - (0,1)|^2 = 2.
    expected = (2 - math.sqrt(2)) / 2 + 2.0 / 2
    value = hint_loss(f, adapters, {"dr": g_dr, "amd": g_amd})
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)


def test_hint_loss_does_not_train_the_teacher_features() -> None:
    adapters = nn.ModuleDict({"dr": nn.Linear(2, 3)})
    g = torch.randn(4, 3, requires_grad=True)
    f = torch.randn(4, 2, requires_grad=True)
    hint_loss(f, adapters, {"dr": g}).backward()
    assert g.grad is None
    assert f.grad is not None and adapters["dr"].weight.grad is not None


def test_total_adds_beta_times_the_feature_term() -> None:
    cfg = SemanticLossConfig()
    feat = torch.tensor(0.25)
    base = sall_loss({"dr": torch.tensor(LOGITS)}, _targets(), cfg)
    withf = sall_loss(
        {"dr": torch.tensor(LOGITS)}, _targets(), cfg, feature=feat, feature_weight=10
    )
    assert float(withf.total) == pytest.approx(float(base.total) + 2.5, rel=1e-6)
    assert float(withf.feature) == pytest.approx(0.25)
    assert float(base.total) == pytest.approx(float(base.hard) + float(base.soft), rel=1e-6)
