"""Blind-first: the grader grades before the model's output is shown (R10).

The rule, in one place for every view that shows the model (panel, bars, overlay, thumbnails'
chips, triage scores and orderings): while blind-first is on, an image's model output is hidden
until the grader has saved a grade for it. Once shown it stays shown for the session — undoing
the grade cannot make the grader forget what they saw — and a grade changed after that is
audited as a change of mind. Qt-free; the GUI asks it and never decides for itself.
"""

from __future__ import annotations

CHANGED_AFTER_REVEAL = "changed after model reveal"
"""The audit reason of a grade changed after its image's model output was shown."""


class BlindFirst:
    """Whether the model's output for an image may be shown now."""

    def __init__(self, on: bool = False) -> None:
        self.on = on
        self._seen: set[str] = set()  # images whose model output has been shown after a grade

    def shows(self, sha256: str, *, graded: bool) -> bool:
        """May the grader see the model's output for this image (``graded``: they have a saved
        grade for it)?"""
        return not self.on or graded or sha256 in self._seen

    def graded(self, sha256: str) -> None:
        """A grade of the grader's for ``sha256`` was saved: its model output is revealed."""
        self._seen.add(sha256)

    def audit_reason(self, *, changed: bool, revealed: bool) -> str:
        """The audit reason of a saved grade: a change of a grade (``changed``) made while the
        model's output was revealed is a change of mind after the reveal."""
        return CHANGED_AFTER_REVEAL if self.on and changed and revealed else "grade"


__all__ = ["CHANGED_AFTER_REVEAL", "BlindFirst"]
