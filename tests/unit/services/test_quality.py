"""The grader quality report's figures, each checked against an independent implementation:
Wilson intervals (statsmodels), quadratic weighted kappa (scikit-learn), Krippendorff's alpha
(krippendorff), counts (scikit-learn's confusion matrix); then what the report does with them:
flags, ungradable rows, test sets apart from programme work."""

from __future__ import annotations

import hashlib
import math
import warnings

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.proportion import proportion_confint

from sall_desktop.domain.grades import Grading, UngradableReason
from sall_desktop.services.quality import (
    DR_LABELS,
    ReportRow,
    Standards,
    bootstrap_ci,
    confusion,
    grader_quality,
    krippendorff_alpha_ordinal,
    quadratic_weighted_kappa,
    wilson_interval,
)

CREATED = "2026-11-25T17:50:01.000000+00:00"
U = "U"


def sha(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def grading(image: str, grader: str, dr: int | None, dme: int = 0) -> Grading:
    """A grading; ``dr=None`` is an ungradable answer (blank grades, a reason)."""
    if dr is None:
        return Grading(image, grader, gradable=False, ungradable_reason=UngradableReason.BLUR)
    return Grading(image, grader, dr_grade=dr, amd_grade=0, dme=dme)


def row(
    grader: str,
    image: str,
    dr: int | None,
    final: Grading,
    *,
    level: str = "primary",
    test_set: str = "",
    dme: int = 0,
) -> ReportRow:
    return ReportRow(grader, level, image, grading(image, grader, dr, dme), final, test_set)


def random_rows(seed: int, graders: tuple[str, ...], n_images: int) -> list[ReportRow]:
    """Every grader grades every image; about 6 % ungradable on each side, some DME 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        image = sha(i, f"r{seed}")
        truth = None if rng.random() < 0.06 else int(rng.choice(5, p=[0.5, 0.2, 0.15, 0.1, 0.05]))
        final = grading(image, "final", truth, dme=2 if truth == 0 and rng.random() < 0.05 else 0)
        for name in graders:
            if rng.random() < 0.06:
                dr = None
            elif truth is None:
                dr = int(rng.integers(0, 3))
            else:
                dr = int(np.clip(truth + rng.choice([-1, 0, 1], p=[0.15, 0.7, 0.15]), 0, 4))
            dme = 2 if dr == 1 and rng.random() < 0.05 else 0
            rows.append(row(name, image, dr, final, dme=dme))
    return rows


# ---------------------------------------------------------------- the statistics


@pytest.mark.parametrize("n", [1, 2, 7, 40, 333])
def test_wilson_interval_equals_statsmodels(n: int) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-12)
        assert wilson_interval(k, n)[0] <= k / n <= wilson_interval(k, n)[1]
    low, high = proportion_confint(3, 10, alpha=0.10, method="wilson")
    assert wilson_interval(3, 10, z=1.6448536269514722) == pytest.approx((low, high), abs=1e-12)


def test_wilson_interval_without_cases_is_nan_and_refuses_nonsense() -> None:
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    for k, n in ((3, 2), (-1, 5), (0, -1)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


@pytest.mark.parametrize("seed", range(8))
def test_qwk_equals_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    a = rng.integers(0, 5, n)
    noise = rng.choice([-2, -1, 0, 1, 2], size=n, p=[0.05, 0.2, 0.5, 0.2, 0.05])
    b = np.clip(a + noise, 0, 4) if seed % 2 else rng.integers(0, 5, n)
    ours = quadratic_weighted_kappa(a.tolist(), b.tolist())
    assert ours == pytest.approx(
        cohen_kappa_score(a, b, labels=list(range(5)), weights="quadratic"), abs=1e-12
    )
    if len(set(a) | set(b)) == 5:  # with every grade present sklearn's default labels agree too
        assert ours == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"), abs=1e-12)


def test_qwk_uses_the_grade_values_when_a_grade_is_missing() -> None:
    a, b = [0, 1, 4, 4, 0, 1], [0, 4, 4, 1, 1, 0]
    expected = cohen_kappa_score(a, b, labels=list(range(5)), weights="quadratic")
    assert quadratic_weighted_kappa(a, b) == pytest.approx(expected, abs=1e-12)
    assert quadratic_weighted_kappa([0, 1, 2], [0, 1, 2], n_classes=3) == pytest.approx(1.0)


def test_qwk_degenerate_cases_match_sklearn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns where kappa is undefined
        same = cohen_kappa_score([2, 2, 2], [2, 2, 2], labels=list(range(5)), weights="quadratic")
    assert math.isnan(same) and math.isnan(quadratic_weighted_kappa([2, 2, 2], [2, 2, 2]))
    apart = cohen_kappa_score([0, 0, 0], [3, 3, 3], labels=list(range(5)), weights="quadratic")
    assert quadratic_weighted_kappa([0, 0, 0], [3, 3, 3]) == pytest.approx(apart) == 0.0
    assert math.isnan(quadratic_weighted_kappa([], []))
    with pytest.raises(ValueError):
        quadratic_weighted_kappa([0, 5], [0, 1])
    with pytest.raises(ValueError):
        quadratic_weighted_kappa([0, 1], [0])


def test_bootstrap_ci_is_deterministic_for_a_seed_and_holds_the_estimate() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, 150)
    b = np.clip(a + rng.choice([-1, 0, 1], size=150, p=[0.2, 0.6, 0.2]), 0, 4)
    first = bootstrap_ci(a.tolist(), b.tolist(), seed=11)
    assert first == bootstrap_ci(a.tolist(), b.tolist(), seed=11)
    assert first != bootstrap_ci(a.tolist(), b.tolist(), seed=12)
    low, high = first
    assert low < quadratic_weighted_kappa(a.tolist(), b.tolist()) < high
    assert all(math.isnan(x) for x in bootstrap_ci([], []))
    assert all(math.isnan(x) for x in bootstrap_ci([1, 1], [1, 1]))


def test_bootstrap_of_the_table_matches_resampling_row_indices() -> None:
    # The multinomial draw of the table is claimed to be the same as resampling rows: compare
    # with a plain index bootstrap (both seeded, so this never flickers).
    rng = np.random.default_rng(5)
    a = rng.integers(0, 5, 300)
    b = np.clip(a + rng.choice([-1, 0, 1], size=300, p=[0.2, 0.6, 0.2]), 0, 4)
    picks = np.random.default_rng(99).integers(0, 300, size=(2000, 300))
    kappas = [quadratic_weighted_kappa(a[p].tolist(), b[p].tolist()) for p in picks]
    by_index = np.percentile(kappas, [2.5, 97.5])
    assert bootstrap_ci(a.tolist(), b.tolist()) == pytest.approx(tuple(by_index), abs=0.015)


def _reliability(units: dict[str, dict[str, int]], coders: list[str]) -> np.ndarray:
    return np.array([[units[u].get(c, np.nan) for u in units] for c in coders], dtype=np.float64)


@pytest.mark.parametrize("seed", range(8))
def test_krippendorff_alpha_equals_the_krippendorff_package(seed: int) -> None:
    rng = np.random.default_rng(seed)
    coders = [f"grader {c}" for c in range(int(rng.integers(2, 7)))]
    missing = rng.uniform(0.2, 0.6)
    units: dict[str, dict[str, int]] = {}
    for u in range(int(rng.integers(15, 90))):
        truth = int(rng.integers(0, 5))
        units[sha(u)] = {
            c: int(np.clip(truth + rng.integers(-1, 2), 0, 4))
            for c in coders
            if rng.random() > missing
        }
    expected = krippendorff.alpha(
        reliability_data=_reliability(units, coders), level_of_measurement="ordinal"
    )
    assert krippendorff_alpha_ordinal(units) == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_textbook_example_and_degenerate_data() -> None:
    # Krippendorff's own example (4 coders, 12 units, missing values): ordinal alpha 0.815.
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = {
        f"u{j}": {f"c{i}": v for i, coder in enumerate(data) if (v := coder[j]) is not None}
        for j in range(12)
    }
    assert krippendorff_alpha_ordinal(units) == pytest.approx(0.815, abs=5e-4)
    assert math.isnan(krippendorff_alpha_ordinal({}))
    assert math.isnan(krippendorff_alpha_ordinal({"a": {"x": 1, "y": 1}, "b": {"x": 1}}))
    assert math.isnan(krippendorff_alpha_ordinal({"a": {"x": 1}, "b": {"x": 2}}))


def test_confusion_equals_sklearn_and_refuses_unknown_labels() -> None:
    rng = np.random.default_rng(0)
    a = [U if x == 5 else int(x) for x in rng.integers(0, 6, 200)]
    b = [U if x == 5 else int(x) for x in rng.integers(0, 6, 200)]
    names = [str(x) for x in DR_LABELS]
    expected = confusion_matrix([str(x) for x in a], [str(x) for x in b], labels=names)
    assert (confusion(a, b, DR_LABELS) == expected).all()
    with pytest.raises(ValueError):
        confusion([7], [0], DR_LABELS)
    with pytest.raises(ValueError):
        confusion([0], [0], [0, 0])


# ---------------------------------------------------------------- the report


def _referable(g: Grading) -> bool:
    """Written out again here, not imported: ICDR >= 2 or DME 2, gradable only."""
    return g.gradable and ((g.dr_grade or 0) >= 2 or g.dme == 2)


def test_grader_figures_equal_an_independent_computation() -> None:
    graders = ("ann", "ben", "cat")
    rows = random_rows(1, graders, 240)
    report = grader_quality(rows, created_at=CREATED, n_boot=300)
    assert [g.grader for g in report.graders] == list(graders)
    for stats in report.graders:
        mine = [r for r in rows if r.grader == stats.grader]
        both = [r for r in mine if r.grading.gradable and r.final.gradable]
        for binary, positive in (
            (stats.referable, _referable),
            (stats.any_dr, lambda g: g.gradable and (g.dr_grade or 0) >= 1),
        ):
            # sklearn: rows = truth (the final), columns = prediction (the grader).
            (tn, fp), (fn, tp) = confusion_matrix(
                [positive(r.final) for r in both],
                [positive(r.grading) for r in both],
                labels=[False, True],
            )
            assert (binary.tp, binary.fn, binary.tn, binary.fp) == (tp, fn, tn, fp)
            assert binary.sensitivity == pytest.approx(tp / (tp + fn))
            assert binary.specificity == pytest.approx(tn / (tn + fp))
            assert binary.sensitivity_ci == wilson_interval(int(tp), int(tp + fn))
        graded = [r for r in both if r.grading.dr_grade is not None]
        a = [r.grading.dr_grade for r in graded]
        b = [r.final.dr_grade for r in graded]
        assert stats.qwk_n == len(graded)
        assert stats.qwk == pytest.approx(
            cohen_kappa_score(a, b, labels=list(range(5)), weights="quadratic"), abs=1e-12
        )
        assert stats.qwk_ci[0] <= stats.qwk <= stats.qwk_ci[1]

        def label(g: Grading) -> str:
            return U if not g.gradable else str(g.dr_grade)

        expected = confusion_matrix(
            [label(r.grading) for r in mine],
            [label(r.final) for r in mine],
            labels=[str(x) for x in DR_LABELS],
        )
        assert np.array_equal(np.array(stats.confusion_dr), expected)
        assert stats.images == stats.rows == 240
        assert stats.excluded_ungradable == len(mine) - len(both)


def test_the_same_seed_gives_the_same_intervals() -> None:
    rows = random_rows(2, ("ann", "ben"), 120)
    first = grader_quality(rows, created_at=CREATED, seed=4, n_boot=200)
    again = grader_quality(rows, created_at=CREATED, seed=4, n_boot=200)
    other = grader_quality(rows, created_at=CREATED, seed=5, n_boot=200)
    assert [g.qwk_ci for g in first.graders] == [g.qwk_ci for g in again.graders]
    assert [g.qwk_ci for g in first.graders] != [g.qwk_ci for g in other.graders]
    assert (first.seed, first.n_boot) == (4, 200)


def _panel(
    grader: str,
    answers: list[int | None],
    truths: list[int | None],
    *,
    level: str = "primary",
    test_set: str = "",
) -> list[ReportRow]:
    rows = []
    for i, (dr, truth) in enumerate(zip(answers, truths, strict=True)):
        image = sha(i, test_set)
        final = grading(image, "final", truth)
        rows.append(row(grader, image, dr, final, level=level, test_set=test_set))
    return rows


TRUTH: list[int | None] = [3] * 10 + [0] * 40
"""10 referable images, 40 normals."""


def test_a_grader_below_the_standard_is_flagged_and_a_good_one_is_not() -> None:
    good = _panel("good", [3] * 9 + [1] + [0] * 40, TRUTH)  # sensitivity 0.9, specificity 1
    misses = _panel("misses", [3] * 6 + [1] * 4 + [0] * 40, TRUTH)  # sensitivity 0.6
    over = _panel("over", [3] * 10 + [2] * 4 + [0] * 36, TRUTH)  # specificity 0.9
    report = grader_quality(good + misses + over, created_at=CREATED, n_boot=100)
    by_name = {g.grader: g for g in report.graders}
    assert not by_name["good"].flagged and by_name["good"].flag_reasons == ()
    assert by_name["misses"].flagged
    assert by_name["misses"].flag_reasons == (
        "referable sensitivity 0.600 is below the 0.8 standard",
    )
    assert by_name["over"].flagged and "specificity 0.900" in by_name["over"].flag_reasons[0]
    lenient = grader_quality(misses + over, Standards(0.5, 0.85), created_at=CREATED, n_boot=100)
    assert not any(g.flagged for g in lenient.graders)


def test_no_cases_is_a_note_not_a_flag() -> None:
    only_normals = _panel("nora", [0] * 20, [0] * 20)
    stats = grader_quality(only_normals, created_at=CREATED, n_boot=100).graders[0]
    assert not stats.flagged
    assert math.isnan(stats.referable.sensitivity)
    assert stats.notes == ("too few cases: no referable images to measure referable sensitivity",)
    assert math.isnan(stats.qwk)  # one grade throughout on both sides


def test_ungradable_rows_are_left_out_of_sensitivity_but_counted_in_the_rate() -> None:
    answers: list[int | None] = [None] * 3 + [3] * 7 + [0] * 39 + [None]
    truths: list[int | None] = [3] * 10 + [0] * 38 + [None] * 2
    stats = grader_quality(_panel("g", answers, truths), created_at=CREATED, n_boot=100).graders[0]
    assert stats.ungradable == 4 and stats.ungradable_rate == pytest.approx(4 / 50)
    assert stats.excluded_ungradable == 5  # 3 + 1 called ungradable, 1 only the final did
    ref = stats.referable
    assert (ref.tp, ref.fn, ref.tn, ref.fp) == (7, 0, 38, 0)
    assert ref.sensitivity == 1.0 and not stats.flagged
    u = DR_LABELS.index(U)
    assert stats.confusion_dr[u][3] == 3 and stats.confusion_dr[u][u] == 1
    assert stats.confusion_dr[0][u] == 1


def test_test_set_rows_are_measured_apart_from_programme_work() -> None:
    programme = random_rows(3, ("ann", "ben"), 80)
    eqa = _panel("ann", [0] * 10 + [3] * 40, TRUTH, level="test", test_set="EQA 2026")
    with_tests = grader_quality(programme + eqa, created_at=CREATED, n_boot=100)
    without = grader_quality(programme, created_at=CREATED, n_boot=100)
    assert with_tests.graders == without.graders
    assert with_tests.team_alpha == without.team_alpha
    assert with_tests.images == 80 and with_tests.rows == 160 and with_tests.test_rows == 50
    (test,) = with_tests.test_sets
    assert (test.name, test.images, test.rows) == ("EQA 2026", 50, 50)
    (ann,) = test.graders
    assert ann.referable.sensitivity == 0.0 and ann.referable.specificity == 0.0
    assert ann.flagged and ann.levels == ("test",)


def test_team_alpha_is_krippendorff_over_programme_dr_grades() -> None:
    graders = ("ann", "ben", "cat")
    rows = random_rows(4, graders, 60)
    report = grader_quality(rows, created_at=CREATED, n_boot=50)
    units: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.grading.dr_grade is not None:
            units.setdefault(r.image_sha256, {})[r.grader] = r.grading.dr_grade
    expected = krippendorff.alpha(
        reliability_data=_reliability(units, list(graders)), level_of_measurement="ordinal"
    )
    assert report.team_alpha == pytest.approx(expected, abs=1e-9)
    assert report.alpha_images == sum(1 for unit in units.values() if len(unit) >= 2)


def test_a_grading_that_is_the_final_counts_as_own_final() -> None:
    image = sha(0)
    final = Grading(image, "arbiter", dr_grade=2, amd_grade=0, dme=0)
    rows = [
        ReportRow("arbiter", "arbiter", image, final, final),
        row("pat", image, 0, final),
    ]
    report = grader_quality(rows, created_at=CREATED, n_boot=10)
    by_name = {g.grader: g for g in report.graders}
    assert by_name["arbiter"].own_final == 1 and by_name["pat"].own_final == 0
    assert by_name["arbiter"].levels == ("arbiter",)


def test_rows_and_standards_refuse_contradictions() -> None:
    image = sha(0)
    final = grading(image, "final", 0)
    with pytest.raises(ValueError, match="level"):
        ReportRow("a", "tertiary", image, grading(image, "a", 0), final)
    with pytest.raises(ValueError, match="test set"):
        ReportRow("a", "test", image, grading(image, "a", 0), final)
    with pytest.raises(ValueError, match="image"):
        ReportRow("a", "primary", sha(1), grading(image, "a", 0), final)
    for bad in (1.2, -0.1, math.nan, True):
        with pytest.raises(ValueError):
            Standards(min_sensitivity=bad)
        with pytest.raises(ValueError):
            Standards(min_specificity=bad)


def test_an_empty_report_is_empty() -> None:
    report = grader_quality([], created_at=CREATED)
    assert report.graders == () and report.test_sets == ()
    assert math.isnan(report.team_alpha) and report.images == report.rows == 0
