"""Laterality and patient id from public-dataset file-name rules (docs/grading-conventions.md)."""

from __future__ import annotations

import re

# EyePACS / Kaggle: "{patient}_{left|right}", e.g. "10_left".
_EYEPACS = re.compile(r"^(?P<patient>.+?)_(?P<side>left|right)$", re.IGNORECASE)
# DeepDRiD: image_id "{patient}_{l|r}{field}", e.g. "1_l1", "316_r2" (two fields per eye).
_DEEPDRID = re.compile(r"^(?P<patient>.+?)_(?P<side>[lr])(?P<field>[1-9])$", re.IGNORECASE)


def name_rules(stem: str) -> tuple[str, str] | None:
    """Apply the file-name rules to a file stem (name without suffix).

    Args:
        stem: e.g. ``"10_left"``, ``"44_right"``, ``"1_l1"``, ``"316_R2"``.

    Returns:
        ``(laterality, patient_id)`` with laterality ``"R"`` or ``"L"``, or ``None`` when no rule
        matches (``"IDRiD_001"``, APTOS hex ids, ``"_left"`` with no patient part).
    """
    for pattern in (_EYEPACS, _DEEPDRID):
        match = pattern.match(stem.strip())
        if match:
            patient = match.group("patient")
            side = "L" if match.group("side")[0].lower() == "l" else "R"
            return side, patient
    return None
