"""Blind-first: the grader grades before the model's output is shown (R10).

The rule, in one place for every view that shows the model (panel, bars, overlay, thumbnails'
chips, triage scores and orderings): while blind-first is on, an image's model output is hidden
until the grader has saved a grade for it. Once shown it stays shown for the grader's session —
undoing the grade cannot make the grader forget what they saw — and a grade changed after that
is audited as a change of mind. Qt-free; the GUI asks it and never decides for itself.

A screening programme adds a stronger case to the same rule: some images' model output is
*withheld* whatever the grader does (second grading is blind: ``services/work_queue.py`` says
which images). A withheld image's output stays hidden after the grader saves, and is never
counted as revealed. Test items are withheld too (a test measures the grader, not the model),
each withheld image with the reason a grader reads for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CHANGED_AFTER_REVEAL = "changed after model reveal"
"""The audit reason of a grade changed after its image's model output was shown."""


class BlindFirst:
    """Whether the model's output for an image may be shown now."""

    def __init__(self, on: bool = False) -> None:
        self.on = on
        self._seen: set[str] = set()  # images whose model output has been shown after a grade
        self._withheld: frozenset[str] = frozenset()
        self._withhold_all = False
        self.withheld_reason = ""
        """Why the withheld images' output is hidden, in words a grader reads."""
        self._reasons: dict[str, str] = {}  # images withheld for another reason than that

    def shows(self, sha256: str, *, graded: bool) -> bool:
        """May the grader see the model's output for this image (``graded``: they have a saved
        grade for it)?"""
        if self.withholds(sha256):
            return False
        return not self.on or graded or sha256 in self._seen

    def graded(self, sha256: str) -> None:
        """A grade of the grader's for ``sha256`` was saved: its model output is revealed."""
        self._seen.add(sha256)

    def forget(self) -> None:
        """Another grader signed in: what the last one saw was not seen by this one."""
        self._seen.clear()

    def withhold(
        self,
        images: Iterable[str] | None,
        reason: str = "",
        reasons: Mapping[str, str] | None = None,
    ) -> bool:
        """Withhold the model's output of ``images`` (None: of every image) whatever is graded;
        an empty set withholds nothing; ``reasons`` gives some images a reason of their own.
        True when that changed what may be shown (or why)."""
        every = images is None
        chosen = frozenset() if images is None else frozenset(images)
        own = dict(reasons or {})
        changed = (every, chosen) != (self._withhold_all, self._withheld) or own != self._reasons
        self._withhold_all, self._withheld, self._reasons = every, chosen, own
        self.withheld_reason = reason if every or chosen else ""
        return changed

    @property
    def withheld(self) -> frozenset[str] | None:
        """The images whose output is withheld (None: every image)."""
        return None if self._withhold_all else self._withheld

    def withholds(self, sha256: str) -> bool:
        """The image's model output is withheld (shown to nobody grading it here now)."""
        return self._withhold_all or sha256 in self._withheld

    def hidden_reason(self, sha256: str) -> str:
        """Why the image's output is withheld, or "" (blind-first or nothing hides it)."""
        if not self.withholds(sha256):
            return ""
        return self._reasons.get(sha256, self.withheld_reason)

    def audit_reason(self, *, changed: bool, revealed: bool) -> str:
        """The audit reason of a saved grade: a change of a grade (``changed``) made while the
        model's output was revealed is a change of mind after the reveal."""
        return CHANGED_AFTER_REVEAL if self.on and changed and revealed else "grade"


__all__ = ["CHANGED_AFTER_REVEAL", "BlindFirst"]
