"""A screening programme end to end at the service level (issue 20's scripted scenario).

Three graders, 200 images of 100 patients (both eyes, one visit) with known truth. The primary
grader grades every image through the store; routing must send exactly the images the rules
name to the secondary grader; outcome-changing disagreements must reach an arbiter who is
neither; final grades, how they were reached, visit outcomes and the quality report's figures
must equal what this test computes on its own (with scikit-learn, statsmodels and
krippendorff as the oracles).
"""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.proportion import proportion_confint

from sall_desktop.domain.grades import (
    GraderRole,
    Grading,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.domain.programme import HowReached, ProgrammeRole, RoutingRules
from sall_desktop.services.programme import load_state, visit_outcomes
from sall_desktop.services.programme_report import build_report, report_rows
from sall_desktop.store import SqliteLabelStore, StoreWriteError, open_store

SEED = 7
RULES = RoutingRules(normal_fraction=0.10, seed=SEED, dr_step=2, amd_step=2)
P, S, A, QA = "Dr Primary", "Dr Second", "Dr Arbiter", "QA Lead"


def _sha(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def _truth(rng: random.Random, sha: str) -> Grading:
    if rng.random() < 0.05:
        return Grading(sha, "truth", gradable=False, ungradable_reason=UngradableReason.BLUR)
    dr = rng.choices(range(5), weights=(60, 14, 12, 8, 6))[0]
    dme = 0 if dr < 2 else rng.choice((0, 1, 2))
    amd = rng.choices(range(4), weights=(85, 8, 5, 2))[0]
    return Grading(sha, "truth", dr_grade=dr, amd_grade=amd, dme=dme)


def _answer(
    rng: random.Random, truth: Grading, grader: str, error: float, role: GraderRole
) -> Grading:
    if not truth.gradable or rng.random() >= error:
        values = {"dr_grade": truth.dr_grade, "amd_grade": truth.amd_grade, "dme": truth.dme}
        if not truth.gradable:
            return Grading(truth.image_sha256, grader, gradable=False,
                           ungradable_reason=truth.ungradable_reason, role=role)  # fmt: skip
        return Grading(truth.image_sha256, grader, role=role, **values)  # type: ignore[arg-type]
    dr = min(4, max(0, (truth.dr_grade or 0) + rng.choice((-1, 1, 2))))
    return Grading(truth.image_sha256, grader, dr_grade=dr, amd_grade=truth.amd_grade,
                   dme=truth.dme, role=role)  # fmt: skip


# ---------------------------------------------------------------- the rules, written out again


def _abnormal(g: Grading) -> bool:
    return not g.gradable or any((v or 0) > 0 for v in (g.dr_grade, g.amd_grade, g.dme))


def _referable(g: Grading) -> bool:
    return g.gradable and ((g.dr_grade or 0) >= 2 or g.dme == 2)


def _must_arbitrate(a: Grading, b: Grading) -> bool:
    if a.gradable != b.gradable:
        return True
    if not a.gradable:
        return False
    return (
        _referable(a) != _referable(b)
        or ((a.dr_grade or 0) >= 1) != ((b.dr_grade or 0) >= 1)
        or abs((a.dr_grade or 0) - (b.dr_grade or 0)) >= 2
        or abs((a.amd_grade or 0) - (b.amd_grade or 0)) >= 2
    )


def _expected_secondary(primary: list[Grading]) -> list[str]:
    routed, seen, sampled = [], 0, 0
    for g in primary:
        if _abnormal(g):
            routed.append(g.image_sha256)
            continue
        digest = hashlib.sha256(f"{SEED}:{g.image_sha256}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2.0**64
        seen += 1
        if draw < 0.10 or sampled < math.ceil(0.10 * seen - 1e-9):
            sampled += 1
            routed.append(g.image_sha256)
    assert sampled >= 0.10 * seen
    return routed


_R = {0: "R0", 1: "R1", 2: "R1/R2", 3: "R2", 4: "R3a"}
_RANK = [
    "R0M0",
    "R1M0",
    "R1/R2M0",
    "U",
    "R0M1",
    "R1M1",
    "R1/R2M1",
    "R2M0",
    "R2M1",
    "R3aM0",
    "R3aM1",
]


def _code(g: Grading) -> str:
    if not g.gradable:
        return "U"
    return _R[g.dr_grade or 0] + ("M1" if g.dme == 2 else "M0")


def _rank(code: str) -> int:
    return 4 if code == "R1M1" else _RANK.index(code)  # R0M1 and R1M1 rank alike


# ---------------------------------------------------------------- the scenario


@pytest.fixture
def programme(tmp_path: Path) -> SqliteLabelStore:
    store = open_store(tmp_path / "labels.sqlite", app_version="test")
    store.set_programme_rules(RULES, actor=QA)
    store.set_programme_role(P, ProgrammeRole.PRIMARY, actor=QA)
    store.set_programme_role(P, ProgrammeRole.SECONDARY, actor=QA)  # never for their own images
    store.set_programme_role(S, ProgrammeRole.SECONDARY, actor=QA)
    store.set_programme_role(S, ProgrammeRole.ARBITER, actor=QA)
    store.set_programme_role(A, ProgrammeRole.ARBITER, actor=QA)
    store.set_programme_role(QA, ProgrammeRole.QA, actor=QA)
    return store


def test_two_level_grading_with_arbitration(programme: SqliteLabelStore) -> None:  # noqa: PLR0915
    store, rng = programme, random.Random(2026)
    images = [
        ImageRecord(
            _sha(i),
            f"/screening/{i // 2:03d}_{'RL'[i % 2]}.jpg",
            laterality=Laterality("RL"[i % 2]),
            patient_id=f"P{i // 2:03d}",
            study_date="20261201",
        )  # fmt: skip
        for i in range(200)
    ]
    store.upsert_images(images)
    truth = {im.sha256: _truth(rng, im.sha256) for im in images}

    # Level 1: the primary grader grades everything, in file order.
    primary = [_answer(rng, truth[im.sha256], P, 0.15, GraderRole.PRIMARY) for im in images]
    for g in primary:
        store.add_grading(g)
    expected_secondary = _expected_secondary(primary)
    state = load_state(store)
    assert state.queue(S, GraderRole.SECONDARY, images) == expected_secondary
    assert state.queue(P, GraderRole.SECONDARY, images) == []  # never one image at two levels
    assert state.queue(A, GraderRole.ARBITER, images) == []

    # Level 2: blind second grading of exactly the routed images.
    for sha in expected_secondary:
        assert state.visibility(S, GraderRole.SECONDARY, sha).model is False
        assert state.visibility(S, GraderRole.SECONDARY, sha).others == ()
    by_sha = {g.image_sha256: g for g in primary}
    secondary = {
        sha: _answer(rng, truth[sha], S, 0.08, GraderRole.SECONDARY) for sha in expected_secondary
    }
    for g in secondary.values():
        store.add_grading(g)
    with pytest.raises(StoreWriteError, match="two levels"):
        store.add_grading(Grading(expected_secondary[0], P, dr_grade=0, amd_grade=0,
                                  role=GraderRole.SECONDARY))  # fmt: skip
    expected_arbitration = [
        sha for sha in expected_secondary if _must_arbitrate(by_sha[sha], secondary[sha])
    ]
    assert expected_arbitration, "the scenario must produce disagreements"
    state = load_state(store)
    assert state.queue(A, GraderRole.ARBITER, images) == expected_arbitration
    assert state.queue(S, GraderRole.ARBITER, images) == []  # S graded them all at level 2

    # Level 3: the arbiter sees both grades and decides.
    for sha in expected_arbitration:
        seen = state.visibility(A, GraderRole.ARBITER, sha).others
        assert {g.grader for g in seen} == {P, S}
        t = truth[sha]
        store.add_grading(Grading(sha, A, dr_grade=t.dr_grade, amd_grade=t.amd_grade, dme=t.dme,
                                  gradable=t.gradable, ungradable_reason=t.ungradable_reason,
                                  role=GraderRole.ARBITER))  # fmt: skip

    # Final grades: derived, never stored over the levels.
    state = load_state(store)
    finals = state.finals()
    assert len(finals) == 200
    for im in images:
        sha, final = im.sha256, finals[im.sha256]
        if sha in expected_arbitration:
            assert (final.how, final.arbiter) == (HowReached.ARBITRATED, A)
            assert final.grading is not None and _code(final.grading) == _code(truth[sha])
            assert A not in (final.primary, final.secondary)
        elif sha in secondary:
            assert (final.how, final.grading) == (HowReached.AGREED, secondary[sha])
        else:
            assert (final.how, final.grading) == (HowReached.SINGLE, by_sha[sha])
    for sha in expected_secondary:  # append-only: the primary row is still there, unchanged
        rows = store.grading_rows(sha)
        assert rows[0].grading == by_sha[sha]

    # Visit outcomes: the worse eye's NHS code.
    final_codes = {sha: _code(f.grading) for sha, f in finals.items() if f.grading is not None}
    outcomes = {o.patient_id: o for o in visit_outcomes(images, finals)}
    assert len(outcomes) == 100
    for i in range(0, 200, 2):
        right, left = final_codes[_sha(i)], final_codes[_sha(i + 1)]
        worse = max((right, left), key=_rank)
        o = outcomes[f"P{i // 2:03d}"]
        assert o.right is not None and o.left is not None and o.outcome is not None
        assert (o.right.text.rstrip("*"), o.left.text.rstrip("*")) == (right, left)
        assert _rank(o.outcome.text.rstrip("*")) == _rank(worse)
        assert not o.pending

    # The audit trail holds every role assignment and routing decision, in one verified chain.
    trail = store.audit_log()
    assert store.verify_chain().ok
    assert sum(e.field == "programme.role" for e in trail) == 6
    assert sum(e.field.startswith("programme.routing.") for e in trail) == len(
        store.routing_decisions()
    )

    _check_report(store, images)


def _check_report(store: SqliteLabelStore, images: list[ImageRecord]) -> None:
    rows = report_rows(store)
    report = build_report(store, seed=3)
    for stats in report.graders:
        mine = [r for r in rows if r.grader == stats.grader]
        both = [r for r in mine if r.grading.gradable and r.final.gradable]
        for name, predicate in (("referable", _referable), ("any_dr", _any_dr)):
            y_true = [predicate(r.final) for r in both]
            y_pred = [predicate(r.grading) for r in both]
            tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[False, True]).ravel()
            got = getattr(stats, name)
            assert (got.tp, got.fn, got.tn, got.fp) == (tp, fn, tn, fp)
            if tp + fn:
                assert got.sensitivity == pytest.approx(tp / (tp + fn))
                lo, hi = proportion_confint(tp, tp + fn, method="wilson")
                assert got.sensitivity_ci == pytest.approx((lo, hi))
            if tn + fp:
                lo, hi = proportion_confint(tn, tn + fp, method="wilson")
                assert got.specificity_ci == pytest.approx((lo, hi))
        graded = [
            r for r in mine if r.grading.dr_grade is not None and r.final.dr_grade is not None
        ]
        a = [r.grading.dr_grade for r in graded]
        b = [r.final.dr_grade for r in graded]
        assert stats.qwk_n == len(graded)
        if len(set(a) | set(b)) > 1:
            expected = cohen_kappa_score(a, b, weights="quadratic", labels=list(range(5)))
            assert stats.qwk == pytest.approx(expected)
            assert stats.qwk_ci[0] <= stats.qwk <= stats.qwk_ci[1]
        assert stats.ungradable == sum(not r.grading.gradable for r in mine)
    graders = sorted({r.grader for r in rows})
    data = np.full((len(graders), len(images)), np.nan)
    for r in rows:
        if r.grading.dr_grade is not None:
            data[graders.index(r.grader), [im.sha256 for im in images].index(r.image_sha256)] = (
                r.grading.dr_grade
            )
    expected_alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert report.team_alpha == pytest.approx(expected_alpha, abs=1e-9)


def _any_dr(g: Grading) -> bool:
    return g.gradable and (g.dr_grade or 0) >= 1
