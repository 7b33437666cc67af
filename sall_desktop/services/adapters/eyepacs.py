"""EyePACS / Kaggle DR 2015 ``trainLabels.csv``: ``image,level``.

``image`` is ``{patient}_{left|right}`` without extension (matched to files by stem); ``level``
is ICDR 0-4. The file has no AMD, DME or gradability column and its readers expect 0-4 in every
row, so an export leaves out ungradable images and images without a DR grade and counts them as
skipped (never a blank or 0 ``level``).
"""

from __future__ import annotations

from typing import ClassVar

from sall_desktop.services.adapters.base import IdGradeAdapter, register_adapter


@register_adapter
class EyePacsAdapter(IdGradeAdapter):
    """``image,level`` (see the module docstring)."""

    name: ClassVar[str] = "eyepacs"
    columns: ClassVar[tuple[str, ...]] = ("image", "level")
