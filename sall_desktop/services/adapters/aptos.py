"""APTOS 2019 ``train.csv``: ``id_code,diagnosis``.

``id_code`` is a hex id without extension (matched to files by stem); ``diagnosis`` is ICDR
0-4. No laterality, patient, AMD or gradability columns and its readers expect 0-4 in every
row, so an export leaves out ungradable images and images without a DR grade and counts them as
skipped (never a blank or 0 ``diagnosis``).
"""

from __future__ import annotations

from typing import ClassVar

from sall_desktop.services.adapters.base import IdGradeAdapter, register_adapter


@register_adapter
class AptosAdapter(IdGradeAdapter):
    """``id_code,diagnosis`` (see the module docstring)."""

    name: ClassVar[str] = "aptos"
    columns: ClassVar[tuple[str, ...]] = ("id_code", "diagnosis")
