"""Render ``sall-desktop.svg`` to the PNG sizes desktops ask for, and a Windows ``.ico``.

Run from the repository root: ``.venv/bin/python packaging/icons/render_icons.py``. The PNGs are
committed, so a build never needs this script; rerun it after editing the SVG.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
HERE = Path(__file__).resolve().parent


def main() -> int:
    """Write ``sall-desktop-<N>.png`` per size, ``sall-desktop.png`` (256 px) and the ``.ico``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(HERE / "sall-desktop.svg"))
    if not renderer.isValid():
        print("the SVG is not valid", file=sys.stderr)
        return 1
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        image.save(str(HERE / f"sall-desktop-{size}.png"))
    (HERE / "sall-desktop.png").write_bytes((HERE / "sall-desktop-256.png").read_bytes())
    icon = Image.open(HERE / "sall-desktop-256.png")
    icon.save(HERE / "sall-desktop.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
