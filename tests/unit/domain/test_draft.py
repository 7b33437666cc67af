"""The draft and the keyboard grammar, without a window: what a digit means after each prefix,
and when a draft is complete enough to save at once."""

from __future__ import annotations

import pytest

from sall_desktop.domain.draft import (
    REASON_ORDER,
    Draft,
    SetDme,
    SetDr,
    SetReason,
    read_digit,
)
from sall_desktop.domain.grades import UngradableReason


@pytest.mark.parametrize(
    ("prefix", "digit", "meaning"),
    [
        ("", 0, SetDr(0)),
        ("", 4, SetDr(4)),
        ("", 5, None),  # no DR grade 5: the key does nothing
        ("reason", 1, SetReason(UngradableReason.BLUR)),
        ("reason", 5, SetReason(UngradableReason.MEDIA_OPACITY)),
        ("reason", 6, SetReason(UngradableReason.OTHER)),
        ("reason", 0, None),
        ("reason", 7, None),
        ("dme", 0, SetDme(0)),
        ("dme", 2, SetDme(2)),
        ("dme", 3, None),
    ],
)
def test_a_digit_means_what_the_pending_prefix_says(
    prefix: str, digit: int, meaning: object
) -> None:
    assert read_digit(prefix, digit) == meaning  # type: ignore[arg-type]


def test_every_reason_has_one_digit() -> None:
    assert sorted(REASON_ORDER) == sorted(UngradableReason)
    assert len(set(REASON_ORDER)) == len(REASON_ORDER) == 6


def test_a_draft_is_complete_with_both_grades_or_an_ungradable_reason() -> None:
    assert Draft().empty and not Draft().complete and Draft().valid
    assert not Draft(dr_grade=2).complete
    assert Draft(dr_grade=2, amd_grade=0).complete
    pending = Draft(gradable=False)  # U pressed, no reason yet: nothing can be saved
    assert not pending.complete and not pending.valid
    assert Draft(gradable=False, reason=UngradableReason.BLUR).complete
