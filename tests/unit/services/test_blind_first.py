"""The blind-first rule without a window: hidden until graded, never hidden again once seen, and
a change after the reveal audited as such."""

from __future__ import annotations

from sall_desktop.services.blind_first import CHANGED_AFTER_REVEAL, BlindFirst


def test_off_shows_everything() -> None:
    rule = BlindFirst(on=False)
    assert rule.shows("a", graded=False)
    assert rule.audit_reason(changed=True, revealed=True) == "grade"


def test_on_hides_an_ungraded_image_until_its_grade_is_saved() -> None:
    rule = BlindFirst(on=True)
    assert not rule.shows("a", graded=False)
    assert rule.shows("a", graded=True)
    rule.graded("a")
    # Undoing the grade cannot un-see the model's output; other images stay hidden.
    assert rule.shows("a", graded=False)
    assert not rule.shows("b", graded=False)


def test_a_change_after_the_reveal_is_audited() -> None:
    rule = BlindFirst(on=True)
    assert rule.audit_reason(changed=False, revealed=True) == "grade"  # the first grade
    assert rule.audit_reason(changed=True, revealed=False) == "grade"
    assert rule.audit_reason(changed=True, revealed=True) == CHANGED_AFTER_REVEAL
