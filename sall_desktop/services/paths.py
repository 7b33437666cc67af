"""Where the app keeps its data: the user's data folder, overridable for tests and portable use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR_NAME = "sall-desktop"
HOME_ENV = "SALL_DESKTOP_HOME"
"""Set this to put every file of the app (database, thumbnails, models, demo) in one folder."""


def data_dir() -> Path:
    """The per-user data folder, created on first use.

    ``$SALL_DESKTOP_HOME`` wins; otherwise the platform's convention: ``%LOCALAPPDATA%`` on
    Windows, ``~/Library/Application Support`` on macOS, ``$XDG_DATA_HOME`` (default
    ``~/.local/share``) elsewhere. The database must live on a local disk (R2), which these are.
    """
    override = os.environ.get(HOME_ENV)
    if override:
        folder = Path(override)
    elif sys.platform == "win32":
        folder = (
            Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / APP_DIR_NAME
        )
    elif sys.platform == "darwin":
        folder = Path.home() / "Library" / "Application Support" / APP_DIR_NAME
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        folder = Path(base) / APP_DIR_NAME
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_db_path() -> Path:
    """The label database used when no ``--db`` is given."""
    return data_dir() / "labels.sqlite"
