"""NHS diabetic eye screening codes (R0-R3, M0/M1, U) derived from the grades we store.

We store ICDR 0-4 and the Messidor/IDRiD DME risk 0-2, not the NHS feature form, so the NHS code
is derived, and some of it is lossy (docs/grading-conventions.md, NHS codes):

- ICDR 0 -> R0, 1 -> R1, 3 -> R2, 4 -> R3a;
- ICDR 2 (moderate NPDR) spans R1 and R2: shown as "R1/R2" and flagged lossy (the feature form
  decides it, and we do not have one);
- R3s (stable treated proliferative) needs the treatment history: never derived;
- DME 0 -> M0, 2 (exudates within 1 DD of the fovea) -> M1; DME 1 (exudates farther out) -> M0,
  flagged lossy (a circinate or a group of exudates in the macula would be M1);
- ungradable -> U, with no R or M code.

An eye's outcome is its worst image; a visit's is its worse eye (:func:`worst`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sall_desktop.domain.grades import Grading

_R_CODES: dict[int, str] = {0: "R0", 1: "R1", 2: "R1/R2", 3: "R2", 4: "R3a"}
_M_CODES: dict[int, str] = {0: "M0", 1: "M0", 2: "M1"}
LOSSY_DR = frozenset({2})
LOSSY_DME = frozenset({1})

# Higher is worse. U sits above the non-referable codes (the patient needs another
# examination) and below the referable ones (a referable finding in the other eye decides).
_SEVERITY: dict[str, int] = {
    "": 0,
    "R0M0": 1,
    "R1M0": 2,
    "R1/R2M0": 3,
    "U": 4,
    "R0M1": 5,
    "R1M1": 5,
    "R1/R2M1": 6,
    "R2M0": 7,
    "R2M1": 8,
    "R3aM0": 9,
    "R3aM1": 10,
}


@dataclass(frozen=True, slots=True)
class NhsCode:
    """The NHS code of one grading.

    Attributes:
        r: "R0", "R1", "R1/R2", "R2", "R3a", or "" (ungradable or no DR grade).
        m: "M0", "M1", or "" (ungradable or no DME grade).
        ungradable: True for U.
        lossy: True when the code is not exact (ICDR 2, DME 1): see the module docstring.
    """

    r: str
    m: str
    ungradable: bool
    lossy: bool

    @property
    def text(self) -> str:
        """ "U", "R1M0", "R2", "" ...; a trailing "*" marks a lossy code."""
        if self.ungradable:
            return "U"
        return self.r + self.m + ("*" if self.lossy else "")

    @property
    def severity(self) -> int:
        """Rank for "the worse eye" (higher is worse); an unknown M counts as M0."""
        if self.ungradable:
            return _SEVERITY["U"]
        if not self.r:
            return 0
        return _SEVERITY.get(self.r + (self.m or "M0"), 0)


def nhs_code(grading: Grading) -> NhsCode:
    """The NHS R/M/U code of one grading (see the module docstring for the lossy cases)."""
    if not grading.gradable:
        return NhsCode("", "", ungradable=True, lossy=False)
    dr, dme = grading.dr_grade, grading.dme
    r = "" if dr is None else _R_CODES[dr]
    m = "" if dme is None else _M_CODES[dme]
    lossy = (dr in LOSSY_DR) or (dme in LOSSY_DME)
    return NhsCode(r, m, ungradable=False, lossy=lossy)


def worst(codes: Iterable[NhsCode]) -> NhsCode | None:
    """The worst of ``codes`` (an eye's images, or a visit's eyes); None for none."""
    found = list(codes)
    if not found:
        return None
    return max(found, key=lambda code: code.severity)
