"""What a QA lead asks of a programme: the grader quality report and test sets.

Qt-free; call on the store's thread (the CLI opens its own store). The report measures every
grading at every level against the image's final grade, and every test answer against its
test set's reference answer, separately (``services/quality.py`` computes, ``quality_report.py``
renders).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from sall_desktop.domain.grades import GraderRole, utc_now
from sall_desktop.domain.programme import HowReached
from sall_desktop.services.paths import refuse_protected_target, store_file
from sall_desktop.services.programme import load_state
from sall_desktop.services.quality import QualityReport, ReportRow, Standards, grader_quality
from sall_desktop.services.quality_report import write_report
from sall_desktop.store import LabelStore, StoreWriteError

_LEVEL_NAMES = {
    GraderRole.PRIMARY: "primary",
    GraderRole.SECONDARY: "secondary",
    GraderRole.ARBITER: "arbiter",
}


def report_rows(store: LabelStore) -> list[ReportRow]:
    """Every level grading beside its image's final grade, then every test answer.

    Images whose final grade is pending are left out: there is nothing to measure against yet.
    """
    state = load_state(store)
    rows: list[ReportRow] = []
    for sha, levels in sorted(state.levels.items()):
        final = state.final(sha)
        if final is None or final.grading is None or final.how is HowReached.PENDING:
            continue
        for role, grading in (
            (GraderRole.PRIMARY, levels.primary),
            (GraderRole.SECONDARY, levels.secondary),
            (GraderRole.ARBITER, levels.arbiter),
        ):
            if grading is not None:
                rows.append(
                    ReportRow(grading.grader, _LEVEL_NAMES[role], sha, grading, final.grading)
                )
    references = {t.name: store.test_set_answers(t.name) for t in store.test_sets()}
    for name, answer in store.test_answers():
        reference = references.get(name, {}).get(answer.image_sha256)
        if reference is not None:
            rows.append(
                ReportRow(answer.grader, "test", answer.image_sha256, answer, reference, name)
            )
    return rows


def build_report(
    store: LabelStore, standards: Standards | None = None, *, seed: int = 0
) -> QualityReport:
    """The grader quality report of the programme in ``store`` as of now."""
    return grader_quality(
        report_rows(store), standards or Standards(), created_at=utc_now(), seed=seed
    )


def save_report(store: LabelStore, report: QualityReport, out: Path) -> None:
    """Write ``report`` to ``out`` (.html, .pdf, .png), never over the store or its data folder.

    Raises:
        ProtectedTargetError: ``out`` is the database, one of its files, or in the data folder.
        ValueError: another suffix.
    """
    refuse_protected_target(out, db=store_file(store))
    write_report(report, out)


def build_test_set_from_finals(
    store: LabelStore,
    name: str,
    *,
    actor: str,
    size: int | None = None,
    seed: int = 0,
    unannounced: bool = False,
) -> int:
    """Create a test set from images with a final grade (a seeded sample of ``size`` of them).

    Returns:
        The number of images in the set.

    Raises:
        StoreWriteError: no image has a final grade yet, or the name is taken.
    """
    finals = [
        final.grading
        for sha, final in sorted(load_state(store).finals().items())
        if final.grading is not None and final.how is not HowReached.PENDING
    ]
    if size is not None and size < len(finals):
        finals = random.Random(seed).sample(finals, size)
    if not finals:
        raise StoreWriteError(
            "No image has a final grade yet to build a test set from.", retryable=False
        )
    return store.create_test_set(
        name, finals, actor=actor, source="final grades", unannounced=unannounced
    )


def build_test_set_from_reference(
    store: LabelStore, name: str, reference: str, *, actor: str, unannounced: bool = False
) -> int:
    """Create a test set from imported reference labels (``sall-desktop import --as-reference``).

    Args:
        reference: the reference source's grader name, ``reference:<source>``.
    """
    answers = [
        g for g in store.current_gradings(grader=reference) if g.role is GraderRole.REFERENCE
    ]
    if not answers:
        raise StoreWriteError(f"There are no reference labels from {reference!r}.", retryable=False)
    return store.create_test_set(
        name, answers, actor=actor, source=reference, unannounced=unannounced
    )


__all__: Sequence[str] = (
    "build_report",
    "report_rows",
    "save_report",
    "build_test_set_from_finals",
    "build_test_set_from_reference",
)
