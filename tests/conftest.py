"""Suite-wide settings: headless Qt, no network, per-test data folders."""

from __future__ import annotations

import os

# Before any Qt import: tests never need a display (CI has none).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
