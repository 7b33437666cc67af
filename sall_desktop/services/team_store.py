"""Setting up a team store and moving a workstation's label database into it.

The service behind ``sall-desktop migrate-store`` (``cli_team.py``): the command line reaches
SQL only through services. The store's errors come out as :class:`DatabaseError`, one line in
a terminal user's words, like every other database problem of a command.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from sall_desktop.services.database import DatabaseError
from sall_desktop.store import StoreError
from sall_desktop.store.pg_connection import describe_url, team_url_problem
from sall_desktop.store.store_copy import (
    CopyReport,
    Progress,
    TableCount,
    copy_sqlite_to_team,
    init_team_store,
)

__all__ = [
    "CopyReport",
    "Progress",
    "TableCount",
    "create_team_store",
    "describe_url",
    "migrate_to_team_store",
    "team_url_problem",
]


def _app_version() -> str:
    # Recorded beside each schema step the command applies; a frozen build may lack metadata.
    try:
        return metadata.version("sall-desktop")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def _line(err: StoreError) -> str:
    """The store's message as one terminal line: "the team store ..." (no final period)."""
    text = " ".join(str(err).split()).rstrip(".")
    return text[:1].lower() + text[1:]


def create_team_store(url: str) -> int:
    """Create or upgrade the team store's schema at ``url``; return its schema version.

    Raises:
        DatabaseError: the server cannot be reached, the login may not create the schema, or
            the database belongs to another program or to a newer SALL Desktop.
    """
    try:
        return init_team_store(url, app_version=_app_version())
    except StoreError as exc:
        raise DatabaseError(_line(exc)) from exc


def migrate_to_team_store(
    source: Path, url: str, *, progress: Progress | None = None
) -> CopyReport:
    """Copy the SQLite label database ``source`` into the empty team store at ``url``.

    Whether the committed copy checked out is the report's ``verified``.

    Raises:
        DatabaseError: nothing was kept: the source is missing, damaged, out of date, in use
            or does not verify; the team store holds data already, cannot be reached, or the
            copy failed or differed (and was rolled back).
    """
    try:
        return copy_sqlite_to_team(Path(source), url, app_version=_app_version(), progress=progress)
    except StoreError as exc:
        raise DatabaseError(_line(exc)) from exc
