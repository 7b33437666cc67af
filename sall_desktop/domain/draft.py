"""The grading being edited for one image, and what a digit key means while editing it.

The keyboard grammar: a digit is a DR grade, unless a prefix key is pending — after Ungradable
(U) the digits 1-6 pick the reason, after DME (M) the digits 0-2 pick the DME grade. Other digits
after a prefix mean nothing. Standard library only, so the rule is tested without a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sall_desktop.domain.grades import DME_GRADES, DR_NAMES, Grading, UngradableReason

Prefix = Literal["", "reason", "dme"]
"""A pending prefix key: none, Ungradable (waiting for a reason) or DME (waiting for a grade)."""

REASON_ORDER: tuple[UngradableReason, ...] = (
    UngradableReason.BLUR,
    UngradableReason.EXPOSURE,
    UngradableReason.ARTEFACT,
    UngradableReason.FIELD,
    UngradableReason.MEDIA_OPACITY,
    UngradableReason.OTHER,
)
"""The ungradable reasons in the order of their digit (1-6) after the Ungradable key."""


@dataclass(frozen=True, slots=True)
class Draft:
    """The grading being edited for the current image (not yet a row in the store)."""

    dr_grade: int | None = None
    amd_grade: int | None = None
    gradable: bool = True
    reason: UngradableReason | None = None
    dme: int | None = None
    notes: str = ""

    @classmethod
    def of(cls, grading: Grading | None) -> Draft:
        if grading is None:
            return cls()
        return cls(
            grading.dr_grade,
            grading.amd_grade,
            grading.gradable,
            grading.ungradable_reason,
            grading.dme,
            grading.notes,
        )

    @property
    def complete(self) -> bool:
        """Both disease grades given, or ungradable with its reason: it is saved at once."""
        return (not self.gradable and self.reason is not None) or (
            self.gradable and self.dr_grade is not None and self.amd_grade is not None
        )

    @property
    def empty(self) -> bool:
        return self == Draft()

    @property
    def valid(self) -> bool:
        """A grading can be made of it (an ungradable draft needs its reason first)."""
        return self.gradable or self.reason is not None


@dataclass(frozen=True, slots=True)
class SetDr:
    grade: int


@dataclass(frozen=True, slots=True)
class SetReason:
    reason: UngradableReason


@dataclass(frozen=True, slots=True)
class SetDme:
    grade: int


DigitAnswer = SetDr | SetReason | SetDme


def read_digit(prefix: Prefix, digit: int) -> DigitAnswer | None:
    """What ``digit`` means with ``prefix`` pending; None when it means nothing there."""
    if prefix == "reason":
        return SetReason(REASON_ORDER[digit - 1]) if 1 <= digit <= len(REASON_ORDER) else None
    if prefix == "dme":
        return SetDme(digit) if digit in DME_GRADES else None
    return SetDr(digit) if 0 <= digit < len(DR_NAMES) else None


__all__ = [
    "REASON_ORDER",
    "DigitAnswer",
    "Draft",
    "Prefix",
    "SetDme",
    "SetDr",
    "SetReason",
    "read_digit",
]
