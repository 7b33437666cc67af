"""Suite-wide settings: headless Qt, no network, per-test data folders."""

from __future__ import annotations

import os

# The suite's own PostgreSQL server for the team-store tests (tests/support/pg_server.py).
pytest_plugins = ["tests.support.pg_fixtures"]

# Before any Qt import: tests never need a display (CI has none).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
