"""Periodic verified backups of the label database, and the list of every backup kept.

A damaged database can only be put right from a backup (``sall-desktop restore``), so one is
taken whenever the store opens for writing and the newest backup is older than the interval (a
day by default). It is taken only from a healthy store: the opener first runs ``verify()`` (the
audit chain and every grading against it), and ``backup_to`` runs ``integrity_check`` on the
copy. A store that fails either is never backed up, so the good backups already kept are never
rotated out in favour of damaged copies. The last :attr:`BackupPolicy.keep` periodic backups
are kept in ``<db>.backups/``; the pre-migration backups beside the database
(``<db>.schema<N>-<time>.bak``) are listed with them and never removed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from model_zoo.fileio import remove_stale_temp_files
from sall_desktop.store.errors import StoreError
from sall_desktop.store.sqlite_repository import SqliteLabelStore

BACKUPS_SUFFIX = ".backups"
"""The folder beside the database that holds its periodic backups ("labels.sqlite.backups")."""
PERIODIC_STAMP = "%Y%m%d-%H%M%SZ"
MIGRATION_STAMP = "%Y%m%dT%H%M%SZ"
_MIGRATION = re.compile(r"\.schema(\d+)-(\d{8}T\d{6}Z)\.bak")


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the default clock of :class:`BackupPolicy`)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BackupPolicy:
    """When the store takes a periodic backup at open, and how many it keeps.

    Attributes:
        interval: a backup is due when the newest one (periodic or pre-migration) is at least
            this old, or when there is none.
        keep: periodic backups kept; older ones are removed after a new one verified.
        now: the clock (tests pass a fixed one); must return an aware datetime.
    """

    interval: timedelta = timedelta(hours=24)
    keep: int = 7
    now: Callable[[], datetime] = field(default=utc_now)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"keep at least one backup, not {self.keep}")
        if self.interval < timedelta(0):
            raise ValueError(f"the backup interval cannot be negative ({self.interval})")


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """One backup file of a database.

    Attributes:
        path: the file.
        taken_at: when it was taken (UTC, from its name).
        size: its size in bytes.
        schema: for a pre-migration backup, the schema version it holds; None for a periodic one.
    """

    path: Path
    taken_at: datetime
    size: int
    schema: int | None = None

    @property
    def kind(self) -> str:
        """ "periodic", or "before upgrade" for a backup taken before a schema migration."""
        return "periodic" if self.schema is None else f"before upgrade (schema {self.schema})"


def backups_folder(db: Path) -> Path:
    """The folder of ``db``'s periodic backups: ``<db>.backups`` beside it."""
    return db.with_name(db.name + BACKUPS_SUFFIX)


def periodic_backup_path(db: Path, when: datetime) -> Path:
    """The file of the periodic backup of ``db`` taken at ``when``."""
    stamp = when.astimezone(UTC).strftime(PERIODIC_STAMP)
    return backups_folder(db) / f"{db.stem}-{stamp}.sqlite"


def _parse(stamp: str, fmt: str) -> datetime | None:
    try:
        return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def _info(path: Path, taken_at: datetime, schema: int | None) -> BackupInfo | None:
    try:
        size = path.stat().st_size
    except OSError:  # removed while listing
        return None
    return BackupInfo(path, taken_at, size, schema)


def periodic_backups(db: Path) -> list[BackupInfo]:
    """The periodic backups of ``db``, newest first (only files named as this module names them)."""
    folder = backups_folder(db)
    prefix, suffix = f"{db.stem}-", ".sqlite"
    found: list[BackupInfo] = []
    with contextlib.suppress(OSError):  # no folder yet: no backups
        for path in folder.iterdir():
            name = path.name
            if not (name.startswith(prefix) and name.endswith(suffix)):
                continue
            when = _parse(name[len(prefix) : -len(suffix)], PERIODIC_STAMP)
            if when is not None and path.is_file() and (info := _info(path, when, None)):
                found.append(info)
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def migration_backups(db: Path) -> list[BackupInfo]:
    """The backups taken before schema migrations (``<db>.schema<N>-<time>.bak``), newest first."""
    found: list[BackupInfo] = []
    with contextlib.suppress(OSError):
        for path in db.parent.iterdir():
            if not path.name.startswith(db.name):
                continue
            match = _MIGRATION.fullmatch(path.name[len(db.name) :])
            when = _parse(match.group(2), MIGRATION_STAMP) if match else None
            if match and when is not None and (info := _info(path, when, int(match.group(1)))):
                found.append(info)
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def list_backups(db: Path) -> list[BackupInfo]:
    """Every backup of ``db`` (periodic and pre-migration), newest first."""
    both = periodic_backups(db) + migration_backups(db)
    return sorted(both, key=lambda b: b.taken_at, reverse=True)


def backup_due(db: Path, policy: BackupPolicy) -> bool:
    """True when ``db`` has no backup, or its newest is ``policy.interval`` old or older.

    A newest backup dated in the future (the clock was set back) also makes one due: otherwise a
    clock error would stop the backups until the clock caught up with it.
    """
    backups = list_backups(db)
    if not backups:
        return True
    age = policy.now() - backups[0].taken_at
    return age >= policy.interval or age < timedelta(0)


def take_periodic_backup(store: SqliteLabelStore, policy: BackupPolicy) -> Path | None:
    """Back up a store that has just verified, then keep only the newest ``policy.keep``.

    The caller has run ``verify()``; ``backup_to`` checks the copy's integrity. A failure is a
    warning on the store, never an error: the store itself is still usable, and nothing older is
    removed. A copy that fails its integrity check means the store is damaged, so the store is
    checked and, if so, marked damaged (read-only) like a failed check at open.

    Returns:
        The new backup, or None when none was written.
    """
    dest = periodic_backup_path(store.path, policy.now())
    if dest.parent.is_dir():  # a backup killed half-way left its temporary file (and its -wal)
        remove_stale_temp_files(dest.parent)
    try:
        store.backup_to(dest)
    except StoreError as err:
        first = str(err).splitlines()[0].rstrip(".")
        store.warnings.append(
            f"The periodic backup could not be written ({first}); the earlier backups are kept."
        )
        verdict = store.integrity_check(quick=True)
        if verdict != "ok":
            store.mark_corrupt(verdict.splitlines()[0])
        return None
    _, failed = rotate(store.path, policy.keep)
    if failed:
        store.warnings.append(
            f"An old backup could not be removed ({failed[0]}); remove it by hand to free space."
        )
    return dest


def rotate(db: Path, keep: int) -> tuple[list[Path], list[Path]]:
    """Remove all but the newest ``keep`` periodic backups of ``db``.

    Only the periodic backups are rotated: pre-migration backups and any other file in the
    folder are never touched.

    Returns:
        (removed, could not be removed).
    """
    removed: list[Path] = []
    failed: list[Path] = []
    for old in periodic_backups(db)[keep:]:
        try:
            old.path.unlink()
            removed.append(old.path)
        except FileNotFoundError:
            pass
        except OSError:
            failed.append(old.path)
    return removed, failed
