"""Grading scales and the grading record.

A *grading* is one grader's answer for one image. Ungradable is its own answer: an ungradable
grading carries no disease grade (blank), never 0 (docs/grading-conventions.md, Ungradable).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

DR_GRADES: tuple[int, ...] = (0, 1, 2, 3, 4)
"""ICDR scale: 0 no apparent DR, 1 mild NPDR, 2 moderate, 3 severe, 4 proliferative."""
DR_NAMES: tuple[str, ...] = ("No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "PDR")
AMD_GRADES: tuple[int, ...] = (0, 1, 2, 3)
"""SALL AMD head: 0 no AMD, 1 small drusen, 2 large drusen, 3 CNV."""
AMD_NAMES: tuple[str, ...] = ("No AMD", "Small drusen", "Large drusen", "CNV")
DME_GRADES: tuple[int, ...] = (0, 1, 2)
"""Messidor/IDRiD risk of macular oedema 0-2 (the native scale we store)."""
REFERABLE_DR_MIN = 2
"""ICDR >= 2 (moderate NPDR or worse) is referable DR."""


class Laterality(enum.StrEnum):
    RIGHT = "R"
    LEFT = "L"
    BOTH = "B"
    UNKNOWN = ""


class FieldSource(enum.StrEnum):
    """Where a derived field (laterality, patient id) came from."""

    DICOM_TAG = "dicom_tag"
    FILENAME_RULE = "filename_rule"
    USER = "user"
    INFERRED = "inferred"
    NONE = ""


class UngradableReason(enum.StrEnum):
    BLUR = "blur"
    EXPOSURE = "exposure"
    ARTEFACT = "artefact"
    FIELD = "field"
    MEDIA_OPACITY = "media_opacity"
    OTHER = "other"


class GraderRole(enum.StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    ARBITER = "arbiter"
    REFERENCE = "reference"
    """Labels imported from a dataset, not typed by a person in this app."""


class GradingSource(enum.StrEnum):
    HUMAN = "human"
    ACCEPTED_PREDICTION = "accepted_prediction"
    IMPORT = "import"


def utc_now() -> str:
    """UTC ISO-8601 timestamp with microseconds, e.g. ``2026-11-25T17:50:01.123456+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _check_grade(name: str, value: int | None, allowed: tuple[int, ...]) -> None:
    if value is not None and (isinstance(value, bool) or value not in allowed):
        raise ValueError(f"{name} must be one of {allowed} or blank, got {value!r}")


@dataclass(frozen=True, slots=True)
class Grading:
    """One grader's grading of one image (one append-only row in the store).

    Args:
        image_sha256: identity of the image: SHA-256 of the file bytes (64 hex chars).
        grader: display name of the named grader; never empty.
        dr_grade: ICDR 0-4, or None (blank: not graded for DR, or ungradable).
        amd_grade: AMD 0-3, or None.
        gradable: False marks the image ungradable; then both disease grades must be None.
        ungradable_reason: required when ``gradable`` is False.
        dme: optional DME 0-2.
        notes: free text, never exported unless asked.
        model_version: id of the model whose output the grader was shown, if any.
        role: primary / secondary / arbiter / reference.
        source: human, accepted_prediction or import.
        created_at: UTC ISO-8601.
    """

    image_sha256: str
    grader: str
    dr_grade: int | None = None
    amd_grade: int | None = None
    gradable: bool = True
    ungradable_reason: UngradableReason | None = None
    dme: int | None = None
    notes: str = ""
    model_version: str | None = None
    role: GraderRole = GraderRole.PRIMARY
    source: GradingSource = GradingSource.HUMAN
    created_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if len(self.image_sha256) != 64 or any(
            c not in "0123456789abcdef" for c in self.image_sha256
        ):
            raise ValueError("image_sha256 must be 64 lowercase hex characters")
        if not self.grader.strip():
            raise ValueError("a grading needs a named grader")
        _check_grade("dr_grade", self.dr_grade, DR_GRADES)
        _check_grade("amd_grade", self.amd_grade, AMD_GRADES)
        _check_grade("dme", self.dme, DME_GRADES)
        if not self.gradable:
            if self.dr_grade is not None or self.amd_grade is not None or self.dme is not None:
                raise ValueError("an ungradable image has blank disease grades, never 0")
            if self.ungradable_reason is None:
                raise ValueError("an ungradable grading needs a reason")
        elif self.ungradable_reason is not None:
            raise ValueError("a gradable image has no ungradable reason")

    @property
    def is_complete(self) -> bool:
        """True when the grading answers both heads, or says ungradable."""
        return not self.gradable or (self.dr_grade is not None and self.amd_grade is not None)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What the catalogue knows of one image. Identity is ``sha256``; ``path`` is metadata."""

    sha256: str
    path: str
    width: int = 0
    height: int = 0
    file_format: str = ""
    laterality: Laterality = Laterality.UNKNOWN
    laterality_source: FieldSource = FieldSource.NONE
    patient_id: str = ""
    patient_id_source: FieldSource = FieldSource.NONE
    study_date: str = ""
    modality: str = ""
    sop_instance_uid: str = ""
    frames: int = 1
