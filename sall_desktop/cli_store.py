"""Looking after the label database: ``verify``, ``backups`` and ``restore``.

``verify`` checks the audit chain and the gradings against it; ``backups`` lists the verified
backups the store takes (periodically at open, and before every schema upgrade); ``restore``
puts one back after checking it, keeping the database it replaces. Registered by
``sall_desktop.__main__.build_parser`` with the shared CLI helpers.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sall_desktop.cli_programme import CliHelpers

if TYPE_CHECKING:
    from sall_desktop.services.database import BackupCheck, BackupInfo


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], cli: CliHelpers
) -> list[argparse.ArgumentParser]:
    """Add ``verify``, ``backups`` and ``restore`` to ``sub``; return their parsers."""
    verify = sub.add_parser(
        "verify",
        help="check the audit trail and every grading against it (exit 1 if altered)",
        description="Replays the hash-chained audit trail grading by grading: an edited, "
        "inserted or deleted grading, a renamed grader or a cut trail is reported. The chain "
        "head printed on success is what exports record; keep it to compare later.",
    )
    verify.set_defaults(func=lambda a: _verify(a, cli))
    backups = sub.add_parser(
        "backups",
        help="list the label database's backups (--check: check each one now)",
        description="Lists the backups kept beside the label database, newest first: the "
        "periodic ones (taken when the database opens for writing and the newest is a day "
        "old, only from a database that verifies) and the ones taken before a schema upgrade.",
    )
    backups.add_argument(
        "--check",
        action="store_true",
        help="check each backup's integrity and audit trail now (exit 1 if one fails); "
        "reads every backup in full",
    )
    backups.set_defaults(func=lambda a: _backups(a, cli))
    restore = sub.add_parser(
        "restore",
        help="replace the label database with a verified backup (the old one is kept)",
        description="Checks the backup (integrity, audit trail, gradings) and refuses a "
        "damaged one. The current database is renamed to '<db>.replaced-<time>', never "
        "deleted. Close the workstation first: a database another program writes is refused.",
    )
    restore.add_argument(
        "--from", dest="source", required=True, help="the backup file (see `sall-desktop backups`)"
    )
    restore.set_defaults(func=lambda a: _restore(a, cli))
    return [verify, backups, restore]


def _verify(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.services.database import readable_store

    with readable_store(cli.db_path(args)) as store:
        report = store.verify()
    print(report.format())
    return 0 if report.ok else 1


def _size(n: int) -> str:
    value, unit = float(n), "B"
    for bigger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _state(info: BackupInfo, check: BackupCheck | None) -> str:
    if check is None:
        return "verified when taken" if info.schema is None else "integrity-checked when taken"
    if check.ok:
        return f"verified now ({check.gradings} gradings)"
    return f"NOT USABLE: {check.problem}"


def _sqlite_only(db: object, what: str, cli: CliHelpers) -> None:
    """Refuse ``what`` for a team store: its server keeps its backups (pg_dump, WAL archive)."""
    if isinstance(db, str):
        raise cli.error(
            f"{what} is for a workstation's SQLite file; a team store is backed up and "
            "restored on its server (pg_dump / pg_restore)"
        )


def _backups(args: argparse.Namespace, cli: CliHelpers) -> int:
    from pathlib import Path

    from sall_desktop.services.database import database_backups

    db = cli.db_path(args)
    _sqlite_only(db, "`backups`", cli)
    assert isinstance(db, Path)
    found = database_backups(db, check=args.check)
    if not found:
        print(
            f"no backups of {db} yet: one is taken when it next opens for writing "
            "(at most once a day), and before every schema upgrade"
        )
        return 0
    print(f"backups of {db}, newest first (times in UTC):")
    for info, check in found:
        when = info.taken_at.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"  {when}  {info.kind:<27} {_size(info.size):>9}  {_state(info, check)}  {info.path}"
        )
    return 1 if any(c is not None and not c.ok for _, c in found) else 0


def _restore(args: argparse.Namespace, cli: CliHelpers) -> int:
    from pathlib import Path

    from sall_desktop.services.database import restore_backup

    db = cli.db_path(args)
    _sqlite_only(db, "`restore`", cli)
    assert isinstance(db, Path)
    result = restore_backup(db, Path(args.source))
    check = result.check
    upgraded = f", upgraded from schema {result.migrated_from}" if result.migrated_from else ""
    print(
        f"restored {db} from {args.source}: {check.gradings} gradings and {check.audit_rows} "
        f"audit rows verified (schema {check.schema}{upgraded}); "
        f"chain head {check.chain_head or '(empty)'}"
    )
    if result.replaced is not None:
        print(f"the database it replaced is kept as {result.replaced}")
    return 0
