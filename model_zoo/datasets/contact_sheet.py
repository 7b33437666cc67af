"""A captioned contact sheet of synthetic fundus images (``docs/synthetic_contact_sheet.png``).

Example:
    >>> from model_zoo.datasets.contact_sheet import write_contact_sheet
    >>> write_contact_sheet("docs/synthetic_contact_sheet.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from model_zoo.datasets.synthetic import FundusSpec, render_fundus
from model_zoo.fileio import atomic_write_bytes

_GALLERY: tuple[tuple[int | None, int | None, str, str | None], ...] = (
    (0, 0, "R", None),
    (1, 0, "L", None),
    (2, 0, "R", None),
    (3, 0, "L", None),
    (4, 0, "R", None),
    (0, 1, "L", None),
    (0, 2, "R", None),
    (0, 3, "L", None),
    (2, 3, "R", None),
    (None, None, "L", "blur"),
    (None, None, "R", "underexposed"),
    (None, None, "L", "artefact"),
)


def gallery_specs(seed: int = 2024, size: int = 512) -> list[FundusSpec]:
    """Twelve specs covering every DR and AMD grade, a co-occurrence and the three defects."""
    return [
        FundusSpec(
            seed=seed + i,
            size=size,
            dr_grade=dr,
            amd_grade=amd,
            laterality=side,
            gradable=defect is None,
            defect=defect,
        )
        for i, (dr, amd, side, defect) in enumerate(_GALLERY)
    ]


def caption(spec: FundusSpec) -> str:
    """Tile caption, e.g. ``"DR 2 · AMD 0 · R"`` or ``"ungradable (blur) · L"``."""
    if not spec.gradable:
        return f"ungradable ({spec.defect}) · {spec.laterality}"
    return f"DR {spec.dr_grade} · AMD {spec.amd_grade} · {spec.laterality}"


def render_contact_sheet(
    specs: Sequence[FundusSpec], *, tile: int = 256, columns: int = 4
) -> NDArray[np.uint8]:
    """Render ``specs`` as a grid of ``tile``-pixel thumbnails, each captioned underneath.

    Returns:
        RGB uint8 image of ``ceil(len(specs) / columns)`` rows.
    """
    if not specs:
        raise ValueError("a contact sheet needs at least one spec")
    pad, text_h = 6, 22
    rows = -(-len(specs) // columns)
    width = columns * tile + (columns + 1) * pad
    height = rows * (tile + text_h) + (rows + 1) * pad
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for i, spec in enumerate(specs):
        rgb = render_fundus(spec).rgb
        thumb = cv2.resize(
            rgb, (tile, tile * rgb.shape[0] // rgb.shape[1]), interpolation=cv2.INTER_AREA
        )
        x = pad + (i % columns) * (tile + pad)
        y = pad + (i // columns) * (tile + text_h + pad)
        sheet.paste(Image.fromarray(thumb), (x, y))
        draw.text((x + 4, y + tile + 3), caption(spec), font=font, fill=(235, 235, 235))
    return np.asarray(sheet, np.uint8)


def write_contact_sheet(
    path: str | os.PathLike[str], specs: Sequence[FundusSpec] | None = None, *, tile: int = 256
) -> None:
    """Render a contact sheet (default: :func:`gallery_specs`) and write it as PNG atomically."""
    image = render_contact_sheet(specs if specs is not None else gallery_specs(), tile=tile)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the contact sheet as PNG")
    atomic_write_bytes(path, encoded.tobytes())
