"""How an imported row meets what a grader already has: which fields a row states, the merged
grading, and when a different value may not supersede the stored one (split from
:mod:`.labels_io`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource, UngradableReason, utc_now
from sall_desktop.services.adapters import Adapter, LabelRecord
from sall_desktop.services.adapters.report import GRADE_FIELDS, IssueKind

HUMAN_SOURCES = frozenset({GradingSource.HUMAN, GradingSource.ACCEPTED_PREDICTION})
"""Grades a person decided in the app; an import never supersedes them."""


def incoming(record: LabelRecord, adapter: Adapter) -> dict[str, object]:
    """The grading fields this row states. Absent means "not stated": a format without the
    column, or a blank cell (blank is unknown, never 0, and never erases a stored value)."""
    if record.gradable is False:
        return {
            "gradable": False,
            "ungradable_reason": record.ungradable_reason or UngradableReason.OTHER,
            "dr_grade": None,
            "amd_grade": None,
            "dme": None,
        }
    values: dict[str, object] = {"gradable": True, "ungradable_reason": None}
    for name in ("dr_grade", "amd_grade", "dme", "notes", "model_version"):
        value = getattr(record, name)
        if name in adapter.label_fields and value not in (None, ""):
            values[name] = value
    return values


def merged(
    existing: Grading | None,
    values: Mapping[str, object],
    sha: str,
    grader: str,
    role: GraderRole,
) -> Grading:
    """The grader's grading after applying ``values`` to ``existing`` (or to a blank one).

    Raises:
        ValueError: the combination is not a valid grading.
    """
    base = existing or Grading(image_sha256=sha, grader=grader)
    merged = replace(base, **values)  # type: ignore[arg-type]
    return replace(
        merged,
        image_sha256=sha,
        grader=grader,
        role=role,
        source=GradingSource.IMPORT,
        created_at=utc_now(),
    )


def same(a: Grading, b: Grading) -> bool:
    names = (*GRADE_FIELDS, "notes", "model_version")
    return all(getattr(a, n) == getattr(b, n) for n in names)


def refusal(
    existing: Grading | None, grader: str, *, replace: bool
) -> tuple[IssueKind, str] | None:
    """Why a different incoming value must not supersede ``existing`` (None: it may)."""
    if existing is None:
        return None
    if existing.source in HUMAN_SOURCES:
        kind = IssueKind.PROTECTED if replace else IssueKind.CONFLICT
        return kind, f"{grader} entered a different grade in the app; an import never replaces it"
    if not replace:
        return IssueKind.CONFLICT, (
            f"{grader} already has a different imported grade; import with replace to supersede it"
        )
    return None


__all__ = ["HUMAN_SOURCES", "incoming", "merged", "refusal", "same"]
