"""The grader quality report's figures: each grader measured against the final grade.

A QA lead asks of every grader: how often they call an image ungradable, how many referable
and any-DR images they catch (sensitivity) and how many normals they leave alone (specificity),
with 95 % Wilson intervals; how far their ICDR grades sit from the final ones (quadratic
weighted kappa with a bootstrap interval); and, for the team, Krippendorff's ordinal alpha on
DR. A grader whose referable sensitivity or specificity falls below the programme's standard is
flagged. Test-set gradings are measured against the test's reference answer, apart from
programme work. Pure numpy; the rendering is ``services.quality_report``.

What "against the final grade" means here:

- Sensitivity and specificity count only rows where both the grader and the final call the image
  gradable; the rest are counted in ``excluded_ungradable`` and show in the confusion matrix's
  ``U`` row and column. Referable and any DR are the programme's own predicates
  (``domain.programme.is_referable`` / ``has_any_dr``), so a gradable grading without a DR
  grade reads as they read it.
- A row whose grading *is* the final (an arbitration, a secondary grade that was agreed, a
  normal the sample did not pick for second grading) agrees with the final by construction. It
  is kept, being work the grader did, and counted in ``own_final`` so the reader can see how
  much of a grader's score is independent evidence.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sall_desktop.domain.grades import DR_GRADES, Grading
from sall_desktop.domain.programme import has_any_dr, is_referable

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""
LEVELS: tuple[str, ...] = ("primary", "secondary", "arbiter", "test")
"""A report row's level, in the order an image passes through them (``test``: a test set)."""
UNGRADABLE = "U"
DR_LABELS: tuple[int | str, ...] = (*DR_GRADES, UNGRADABLE)
"""Rows and columns of a DR confusion matrix: ICDR 0-4, then ungradable."""
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One grader's grading of one image beside the image's final grade."""

    grader: str
    level: str
    """``primary``, ``secondary``, ``arbiter`` or ``test``."""
    image_sha256: str
    grading: Grading
    final: Grading
    """The final grade (for a test set: its reference answer)."""
    test_set: str = ""
    """``""`` for programme work, else the test set's name."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if self.level == "test" and not self.test_set:
            raise ValueError("a test-set row needs the test set's name")
        if not self.grader.strip():
            raise ValueError("a report row needs a named grader")
        if not self.image_sha256 == self.grading.image_sha256 == self.final.image_sha256:
            raise ValueError("the grading and the final grade must be of the row's image")


@dataclass(frozen=True, slots=True)
class Standards:
    """The minimum referable-DR performance a grader must meet (the UK programme's usual ones)."""

    min_sensitivity: float = 0.80
    min_specificity: float = 0.95

    def __post_init__(self) -> None:
        for name in ("min_sensitivity", "min_specificity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and 0.0 <= value <= 1.0
            ):
                raise ValueError(f"{name} must be a proportion between 0 and 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class BinaryStats:
    """A grader against the final on one yes/no outcome (referable, any DR).

    ``tp`` / ``fn``: final positive, grader positive / negative; ``tn`` / ``fp`` likewise for a
    final negative. A proportion with no denominator is nan, with a (nan, nan) interval.
    """

    tp: int
    fn: int
    tn: int
    fp: int
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp


@dataclass(frozen=True, slots=True)
class GraderStats:
    """One grader's figures.

    Attributes:
        grader: the grader's name (user input: escape it wherever it is shown).
        levels: the levels the rows came from, in programme order.
        images: distinct images; rows: gradings (one image graded at two levels is two rows).
        ungradable: rows the grader called ungradable; ungradable_rate: their share of ``rows``.
        excluded_ungradable: rows left out of sensitivity and specificity because the grader or
            the final called the image ungradable.
        own_final: rows whose grading is the final grade itself (agree by construction).
        referable / any_dr: sensitivity and specificity, over rows gradable on both sides.
        qwk / qwk_ci / qwk_n: DR quadratic weighted kappa, its bootstrap 95 % interval and the
            rows it is computed on (both sides have a DR grade).
        confusion_dr: counts, rows = the grader's answer, columns = the final's, in
            :data:`DR_LABELS` order (a gradable grading without a DR grade is left out).
        flagged / flag_reasons: referable sensitivity or specificity below the standard.
        notes: what could not be measured ("too few cases: ..."); never a flag.
    """

    grader: str
    levels: tuple[str, ...]
    images: int
    rows: int
    ungradable: int
    ungradable_rate: float
    excluded_ungradable: int
    own_final: int
    referable: BinaryStats
    any_dr: BinaryStats
    qwk: float
    qwk_ci: tuple[float, float]
    qwk_n: int
    confusion_dr: tuple[tuple[int, ...], ...]
    flagged: bool
    flag_reasons: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TestSetReport:
    """The graders of one test set, each against the test's reference answers."""

    __test__ = False  # a report value, not a pytest test class

    name: str
    images: int
    rows: int
    graders: tuple[GraderStats, ...]


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The whole report.

    Attributes:
        graders: programme work, one entry per grader, sorted by name.
        team_alpha: Krippendorff's ordinal alpha on DR over programme rows (units = images,
            coders = graders); nan when it cannot be computed.
        alpha_images: images that at least two graders gave a DR grade (the pairable units).
        images / rows: distinct programme images and programme rows.
        test_rows: rows from test sets; test_sets: one report per test set, sorted by name.
        n_boot / seed: the bootstrap behind the QWK intervals (same seed, same intervals).
    """

    graders: tuple[GraderStats, ...]
    team_alpha: float
    alpha_images: int
    standards: Standards
    images: int
    rows: int
    test_rows: int
    created_at: str
    test_sets: tuple[TestSetReport, ...]
    n_boot: int
    seed: int


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n``; (nan, nan) when ``n`` is 0.

    Wilson rather than the normal approximation: it stays inside [0, 1] and keeps its coverage
    at 0 % and 100 %, which is where a good grader's specificity lives.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    # At 0 % and 100 % the bound is exactly 0 or 1; rounding would leave it a hair inside, and
    # the interval would then miss its own point estimate.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _counts(a: Sequence[int], b: Sequence[int], n_classes: int) -> IntArray:
    if len(a) != len(b):
        raise ValueError(f"two raters need the same number of ratings, got {len(a)} and {len(b)}")
    x = np.asarray(a, dtype=np.int64).reshape(-1)
    y = np.asarray(b, dtype=np.int64).reshape(-1)
    if x.size and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) >= n_classes):
        raise ValueError(f"ratings must lie in 0..{n_classes - 1}")
    flat = np.bincount(x * n_classes + y, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _kappa(counts: npt.NDArray[np.integer] | FloatArray) -> FloatArray:
    """Quadratic weighted kappa of each ``(..., K, K)`` table; nan where it is undefined."""
    k = counts.shape[-1]
    grades = np.arange(k, dtype=np.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    table = counts.astype(np.float64)
    n = table.sum(axis=(-2, -1))
    rows = table.sum(axis=-1)
    cols = table.sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = rows[..., :, None] * cols[..., None, :] / n[..., None, None]
        observed_d = (weights * table).sum(axis=(-2, -1))
        expected_d = (weights * expected).sum(axis=(-2, -1))
        kappa = 1.0 - observed_d / expected_d
    return np.where((n > 0) & (expected_d > 0), kappa, np.nan)


def quadratic_weighted_kappa(a: Sequence[int], b: Sequence[int], n_classes: int = 5) -> float:
    """Cohen's kappa with quadratic weights on the grades ``0..n_classes-1``.

    Equals ``sklearn.metrics.cohen_kappa_score(a, b, labels=range(n_classes),
    weights="quadratic")``; without ``labels`` sklearn weighs by the rank among the grades
    present, which differs when a middle grade is missing (0, 1 and 4 only, say). Undefined
    cases are nan, as sklearn gives them: no ratings, or both raters giving one and the same
    grade throughout (no expected disagreement, so agreement beyond chance cannot be told from
    none; reporting 1.0 there would be a perfect score from no evidence).
    """
    return float(_kappa(_counts(a, b, n_classes)))


def bootstrap_ci(
    a: Sequence[int],
    b: Sequence[int],
    *,
    n_classes: int = 5,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`quadratic_weighted_kappa` over resampled rows.

    QWK depends on the rows only through their ``n_classes x n_classes`` table, so drawing ``n``
    rows with replacement is a multinomial draw of that table with the observed cell shares:
    the same distribution as resampling row indices, at a cost that does not grow with ``n``.
    Resamples whose kappa is undefined (one grade throughout) are left out; (nan, nan) when
    there are no rows or no resample is defined. The same seed gives the same interval.
    """
    if n_boot < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("n_boot must be at least 1 and confidence between 0 and 1")
    counts = _counts(a, b, n_classes).reshape(-1)
    n = int(counts.sum())
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=n_boot)
    kappas = _kappa(draws.reshape(n_boot, n_classes, n_classes))
    kappas = kappas[np.isfinite(kappas)]
    if kappas.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(kappas, [tail, 100.0 - tail])
    return (float(low), float(high))


def krippendorff_alpha_ordinal(units: Mapping[str, Mapping[str, int]]) -> float:
    """Krippendorff's alpha with the ordinal metric, from the coincidence matrix.

    Args:
        units: reliability data as unit (image) -> {coder (grader): value}; a coder who did not
            rate a unit is simply absent.

    Units with fewer than two values cannot be paired and add nothing. The value domain is the
    values seen, so grades nobody used weigh nothing (the ordinal metric's distances are made of
    the value counts). Equals ``krippendorff.alpha(reliability_data, level_of_measurement=
    "ordinal")``; where that raises (fewer than two distinct values, no pairable unit) or has
    no expected disagreement, this returns nan.
    """
    domain = sorted({value for unit in units.values() for value in unit.values()})
    if len(domain) < 2:
        return math.nan
    index = {value: i for i, value in enumerate(domain)}
    counts = np.zeros((len(units), len(domain)), dtype=np.float64)
    for u, unit in enumerate(units.values()):
        for value in unit.values():
            counts[u, index[value]] += 1.0
    m = counts.sum(axis=1)
    pairable = counts[m >= 2]
    if pairable.shape[0] == 0:
        return math.nan
    weighted = pairable / (m[m >= 2] - 1.0)[:, None]
    observed = weighted.T @ pairable - np.diag(weighted.sum(axis=0))
    n_v = observed.sum(axis=0)
    expected = (np.outer(n_v, n_v) - np.diag(n_v)) / (n_v.sum() - 1.0)
    # Ordinal distance: the values' counts from one to the other, half of each end counted.
    cumulative = np.concatenate(([0.0], np.cumsum(n_v)))
    i = np.arange(len(domain))
    low, high = np.minimum.outer(i, i), np.maximum.outer(i, i)
    between = cumulative[high + 1] - cumulative[low]
    distance = (between - (n_v[low] + n_v[high]) / 2.0) ** 2
    expected_d = float((expected * distance).sum())
    if expected_d <= 0.0:
        return math.nan
    return 1.0 - float((observed * distance).sum()) / expected_d


def confusion(a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable]) -> IntArray:
    """Counts of each (a, b) pair: rows = ``a`` (the grader), columns = ``b`` (the final).

    A value outside ``labels`` is an error, not silently dropped.
    """
    if len(a) != len(b):
        raise ValueError(f"need as many grader answers as final ones, got {len(a)} and {len(b)}")
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be distinct")
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for x, y in zip(a, b, strict=True):
        if x not in index or y not in index:
            raise ValueError(f"({x!r}, {y!r}) is not among the labels {tuple(labels)}")
        matrix[index[x], index[y]] += 1
    return matrix


def dr_label(grading: Grading) -> int | str | None:
    """A grading's place in the DR confusion matrix: its ICDR grade, ``U``, or None (no DR)."""
    return UNGRADABLE if not grading.gradable else grading.dr_grade


def binary_stats(pairs: Sequence[tuple[bool, bool]]) -> BinaryStats:
    """Counts, sensitivity and specificity of (grader positive, final positive) pairs."""
    tp = sum(1 for g, f in pairs if g and f)
    fn = sum(1 for g, f in pairs if not g and f)
    fp = sum(1 for g, f in pairs if g and not f)
    tn = len(pairs) - tp - fn - fp
    return BinaryStats(
        tp=tp,
        fn=fn,
        tn=tn,
        fp=fp,
        sensitivity=tp / (tp + fn) if tp + fn else math.nan,
        sensitivity_ci=wilson_interval(tp, tp + fn),
        specificity=tn / (tn + fp) if tn + fp else math.nan,
        specificity_ci=wilson_interval(tn, tn + fp),
    )


def _judge(referable: BinaryStats, standards: Standards) -> tuple[list[str], list[str]]:
    """Flag reasons and notes: a point estimate below the standard flags; no cases, a note."""
    reasons: list[str] = []
    notes: list[str] = []
    checks = (
        ("sensitivity", referable.sensitivity, referable.positives, standards.min_sensitivity),
        ("specificity", referable.specificity, referable.negatives, standards.min_specificity),
    )
    for what, value, denominator, minimum in checks:
        if denominator == 0:
            cases = "referable" if what == "sensitivity" else "non-referable"
            notes.append(f"too few cases: no {cases} images to measure referable {what}")
        elif value < minimum:
            reasons.append(f"referable {what} {value:.3f} is below the {minimum:g} standard")
    return reasons, notes


def _grader_stats(
    name: str, rows: Sequence[ReportRow], standards: Standards, seed: int, n_boot: int
) -> GraderStats:
    both = [r for r in rows if r.grading.gradable and r.final.gradable]
    referable = binary_stats([(is_referable(r.grading), is_referable(r.final)) for r in both])
    any_dr = binary_stats([(has_any_dr(r.grading), has_any_dr(r.final)) for r in both])
    graded = [
        (r.grading.dr_grade, r.final.dr_grade)
        for r in both
        if r.grading.dr_grade is not None and r.final.dr_grade is not None
    ]
    ours = [g for g, _ in graded if g is not None]
    theirs = [f for _, f in graded if f is not None]
    labelled = [(dr_label(r.grading), dr_label(r.final)) for r in rows]
    labelled = [(g, f) for g, f in labelled if g is not None and f is not None]
    matrix = confusion([g for g, _ in labelled], [f for _, f in labelled], DR_LABELS)
    ungradable = sum(1 for r in rows if not r.grading.gradable)
    reasons, notes = _judge(referable, standards)
    seen = {r.level for r in rows}
    return GraderStats(
        grader=name,
        levels=tuple(level for level in LEVELS if level in seen),
        images=len({r.image_sha256 for r in rows}),
        rows=len(rows),
        ungradable=ungradable,
        ungradable_rate=ungradable / len(rows),
        excluded_ungradable=len(rows) - len(both),
        own_final=sum(1 for r in rows if r.grading == r.final),
        referable=referable,
        any_dr=any_dr,
        qwk=quadratic_weighted_kappa(ours, theirs),
        qwk_ci=bootstrap_ci(ours, theirs, n_boot=n_boot, seed=seed),
        qwk_n=len(ours),
        confusion_dr=tuple(tuple(int(c) for c in row) for row in matrix),
        flagged=bool(reasons),
        flag_reasons=tuple(reasons),
        notes=tuple(notes),
    )


def _per_grader(
    rows: Sequence[ReportRow], standards: Standards, seed: int, n_boot: int
) -> tuple[GraderStats, ...]:
    by_grader: dict[str, list[ReportRow]] = {}
    for row in rows:
        by_grader.setdefault(row.grader, []).append(row)
    # Every grader bootstraps from the same seed: a grader's interval then depends on their own
    # rows only, not on who else is in the report.
    return tuple(
        _grader_stats(name, by_grader[name], standards, seed, n_boot)
        for name in sorted(by_grader, key=lambda s: (s.casefold(), s))
    )


def dr_units(rows: Sequence[ReportRow]) -> dict[str, dict[str, int]]:
    """Reliability data for the team alpha: image -> {grader: ICDR grade}.

    Ungradable and DR-blank gradings are missing values. Should one grader have two rows of an
    image, the later row stands (a grader answers once per unit).
    """
    units: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.grading.gradable and row.grading.dr_grade is not None:
            units.setdefault(row.image_sha256, {})[row.grader] = row.grading.dr_grade
    return units


def grader_quality(
    rows: Sequence[ReportRow],
    standards: Standards = Standards(),  # noqa: B008 - a frozen value, safe to share
    *,
    created_at: str,
    seed: int = 0,
    n_boot: int = 2000,
) -> QualityReport:
    """The quality report of ``rows``: programme work per grader, the team's alpha, test sets.

    Rows of level ``arbiter`` on an arbitrated image equal the final by construction; they are
    kept (the arbiter's work is part of what the programme measures) and show in ``own_final``.
    The cost is linear in the rows, plus ``n_boot`` small tables per grader.
    """
    programme = [r for r in rows if not r.test_set]
    tests: dict[str, list[ReportRow]] = {}
    for row in rows:
        if row.test_set:
            tests.setdefault(row.test_set, []).append(row)
    units = dr_units(programme)
    return QualityReport(
        graders=_per_grader(programme, standards, seed, n_boot),
        team_alpha=krippendorff_alpha_ordinal(units),
        alpha_images=sum(1 for unit in units.values() if len(unit) >= 2),
        standards=standards,
        images=len({r.image_sha256 for r in programme}),
        rows=len(programme),
        test_rows=len(rows) - len(programme),
        created_at=created_at,
        test_sets=tuple(
            TestSetReport(
                name=name,
                images=len({r.image_sha256 for r in tests[name]}),
                rows=len(tests[name]),
                graders=_per_grader(tests[name], standards, seed, n_boot),
            )
            for name in sorted(tests)
        ),
        n_boot=n_boot,
        seed=seed,
    )
