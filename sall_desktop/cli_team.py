"""The team store's command: ``migrate-store`` (set one up, and move a workstation's store in).

``migrate-store --to URL`` copies a workstation's SQLite label database (``--from``, else
``--db``, else the user's own) into an empty PostgreSQL team store, keeping every id, and
checks the counts and the audit chain; ``--init`` only creates or upgrades the schema (the
administrator's step before graders connect). ``--to`` may be left out when ``--db`` is the
team store's URL, which is how the store's own messages word the ``--init`` step. Registered
by ``sall_desktop.__main__.build_parser`` with the shared CLI helpers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sall_desktop.cli_programme import CliHelpers

if TYPE_CHECKING:
    from sall_desktop.services.team_store import CopyReport


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], cli: CliHelpers
) -> list[argparse.ArgumentParser]:
    """Add ``migrate-store`` to ``sub``; return its parser."""
    migrate = sub.add_parser(
        "migrate-store",
        help="copy a workstation's label database into a new team store (PostgreSQL)",
        description="Copies every table of a workstation's label database (gradings, "
        "predictions, models, programme, test sets, audit trail) into an empty team store in "
        "one transaction, keeping every id, then checks the row counts, the audit chain head "
        "and `verify` on the team store (exit 1 unless they agree). The label database must "
        "verify and no SALL Desktop may have it open; a team store that holds data is "
        "refused, never merged. Run it as the team database's owner.",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="the SQLite label database to copy (default: --db, or the user's database)",
    )
    migrate.add_argument(
        "--to",
        dest="target",
        metavar="URL",
        help="the team store, postgresql://USER@HOST/DBNAME (may be left out when --db is it)",
    )
    migrate.add_argument(
        "--init",
        action="store_true",
        help="only create (or upgrade) the team store's schema and print its version",
    )
    migrate.set_defaults(func=lambda a: _migrate_store(a, cli, migrate))
    return [migrate]


def _where(
    args: argparse.Namespace, cli: CliHelpers, parser: argparse.ArgumentParser
) -> tuple[Path | None, str]:
    """(the SQLite file to copy, or None with --init; the team store's URL). Exit 2 on misuse."""
    from sall_desktop.services.database import is_team_url

    # Only a given --db is read here: the default one is looked up (and its folder made) only
    # when it is the database to copy.
    db = cli.db_path(args) if args.db else None
    url = args.target if args.target is not None else db if isinstance(db, str) else None
    if url is None:
        parser.error("give the team store with --to postgresql://USER@HOST/DBNAME")
    if not is_team_url(url):
        parser.error(f"--to needs a postgresql:// URL, not {url!r}")
    if isinstance(db, str) and db != url:
        parser.error("--db and --to name two different team stores; give one")
    if args.init:
        if args.source is not None:
            parser.error("--init copies nothing; leave out --from")
        return None, url
    if args.source is not None:
        if is_team_url(args.source):
            parser.error("--from needs the workstation's SQLite label database file")
        return Path(args.source), url
    if isinstance(db, Path):
        return db, url
    from sall_desktop.services.paths import default_db_path

    return default_db_path(), url


class _Progress:
    """One stderr line rewritten in place while rows go out; closed by :meth:`end`."""

    def __init__(self) -> None:
        self.open = False

    def __call__(self, table: str, rows: int) -> None:
        if sys.stderr is not None:
            # Padded: a shorter line must cover the longer one it rewrites.
            line = f"copying {table}: {rows}"
            print(f"\r{line:<60}", end="", file=sys.stderr, flush=True)
            self.open = True

    def end(self) -> None:
        if self.open and sys.stderr is not None:
            print(file=sys.stderr)
        self.open = False


def _print_report(report: CopyReport) -> None:
    width = max(len("total"), *(len(t.table) for t in report.tables))
    print(f"{'table':<{width}}  {'label database':>14}  {'team store':>10}")
    for t in report.tables:
        mark = "" if t.source == t.target else "  DIFFERENT"
        print(f"{t.table:<{width}}  {t.source:>14}  {t.target:>10}{mark}")
    total = sum(t.target for t in report.tables)
    print(f"{'total':<{width}}  {report.rows:>14}  {total:>10}")
    print(f"chain head, label database: {report.source_head or '(empty)'}")
    print(f"chain head, team store:     {report.target_head or '(empty)'}")
    rate = report.rows / report.copy_seconds if report.copy_seconds > 0 else 0.0
    print(
        f"copied in {report.copy_seconds:.1f} s ({rate:,.0f} rows/s); "
        f"{report.seconds:.1f} s with the checks"
    )


def _migrate_store(
    args: argparse.Namespace, cli: CliHelpers, parser: argparse.ArgumentParser
) -> int:
    from sall_desktop.services.team_store import (
        create_team_store,
        describe_url,
        migrate_to_team_store,
    )

    source, url = _where(args, cli, parser)
    if source is None:
        version = create_team_store(url)
        print(f"team store {describe_url(url)}: schema version {version}")
        return 0
    print(f"copying {source.absolute()} into the team store {describe_url(url)}", flush=True)
    progress = _Progress()
    try:
        report = migrate_to_team_store(source, url, progress=progress)
    finally:
        progress.end()
    _print_report(report)
    if report.verified:
        print(
            f"verified: {report.gradings} gradings and {report.audit_rows} audit rows agree; "
            f"team store schema {report.schema_version}"
        )
        return 0
    print(f"NOT verified ({report.target} holds the committed copy):")
    for problem in report.problems:
        print(f"  - {problem}")
    return 1
