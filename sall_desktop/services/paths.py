"""Where the app keeps its data: the user's data folder, overridable for tests and portable use.

It also guards every file the app writes on the user's behalf (exports, import reports,
prediction CSVs): :func:`refuse_protected_target` keeps such a write off the label database,
its SQLite and lock files, the site pseudonym key and everything else in the data folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR_NAME = "sall-desktop"
HOME_ENV = "SALL_DESKTOP_HOME"
"""Set this to put every file of the app (database, thumbnails, models, demo) in one folder."""
DB_SIDECARS = ("-wal", "-shm", "-journal", ".lock", ".running")
"""Files SQLite and the store keep beside the database ("<db>-wal", "<db>.lock", ...)."""
BACKUPS_SUFFIX = ".backups"
"""The folder of the database's periodic backups ("<db>.backups", ``store/backups.py``)."""


class ProtectedTargetError(PermissionError):
    """A write the app refuses: the target is the database, one of its files or in the data folder.

    A :class:`PermissionError` so that every caller already reporting a file that cannot be
    written (the CLI, the import dialog's "save report") reports this one too; ``str(err)`` is
    the one line shown.
    """


def _data_folder() -> Path:
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return (
            Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / APP_DIR_NAME
        )
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_DIR_NAME
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_DIR_NAME


def data_dir() -> Path:
    """The per-user data folder, created on first use.

    ``$SALL_DESKTOP_HOME`` wins; otherwise the platform's convention: ``%LOCALAPPDATA%`` on
    Windows, ``~/Library/Application Support`` on macOS, ``$XDG_DATA_HOME`` (default
    ``~/.local/share``) elsewhere. The database must live on a local disk (R2), which these are.
    """
    folder = _data_folder()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_db_path() -> Path:
    """The label database used when no ``--db`` is given."""
    return data_dir() / "labels.sqlite"


def _real(path: Path) -> Path:
    """``path`` absolute, with symbolic links and ``..`` resolved, case-folded where the
    platform's file names are (Windows), so two spellings of one file compare equal."""
    return Path(os.path.normcase(Path(path).expanduser().resolve()))


def _same_file(a: Path, b: Path) -> bool:
    # samefile also catches a hard link and a case-insensitive disk (macOS) spelling the name
    # differently; it needs both to exist, the resolved comparison covers the rest.
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_protected_target(path: Path, *, db: Path | None) -> None:
    """Refuse to write ``path`` when it would replace a file the app cannot lose.

    Protected: the open label database ``db`` and the files beside it (``-wal``, ``-shm``,
    ``-journal``, ``.lock``, ``.running``), its backups (the ``<db>.backups`` folder, the
    pre-migration ``<db>.schema<N>-<time>.bak``) and the databases a restore kept
    (``<db>.replaced-<time>``), and anything inside the app's data folder, which holds the
    default database, the site pseudonym key (losing it breaks every later de-identified
    export's pseudonyms), the settings and the models. Relative paths, ``..`` and symbolic
    links are resolved first; the target need not exist.

    Raises:
        ProtectedTargetError: the target is protected; the message is one line.
    """
    target = _real(path)
    if db is not None:
        for suffix in ("", *DB_SIDECARS):
            sibling = Path(f"{db}{suffix}")
            if target == _real(sibling) or _same_file(path, sibling):
                what = "the label database" if not suffix else f"the label database's {suffix} file"
                raise ProtectedTargetError(
                    f"will not write {path}: it is {what} ({db}); choose another file"
                )
        _refuse_backup_target(path, target, _real(db))
    folder = _real(_data_folder())
    if target == folder or target.is_relative_to(folder):
        raise ProtectedTargetError(
            f"will not write {path}: it is in the app's data folder {folder}, which holds the "
            "label database and the site key; choose another folder"
        )


def _refuse_backup_target(path: Path, target: Path, db: Path) -> None:
    backups = db.with_name(db.name + BACKUPS_SUFFIX)
    if target == backups or target.is_relative_to(backups):
        raise ProtectedTargetError(
            f"will not write {path}: it is in the label database's backups folder {backups}; "
            "choose another folder"
        )
    name = target.name
    kept = name.startswith(f"{db.name}.replaced-") or (
        name.startswith(f"{db.name}.schema") and name.endswith(".bak")
    )
    if target.parent == db.parent and kept:
        raise ProtectedTargetError(
            f"will not write {path}: it is a backup of the label database {db}; choose another file"
        )


def store_file(store: object) -> Path | None:
    """The database file behind ``store`` (the SQLite store's ``path``), None for a store
    without one (an in-memory fake): the file :func:`refuse_protected_target` protects."""
    path = getattr(store, "path", None)
    return Path(path) if isinstance(path, str | os.PathLike) else None
