"""The only SQL in the app: the label store (SQLite, or a team's PostgreSQL), its migrations
and repositories.

Open a database with :func:`open_store` (synchronous, one thread) or :class:`StoreThread` (the
app: all SQL on one dedicated thread, results as futures).
"""

from sall_desktop.store.audit import (
    AUDITED_FIELDS,
    AuditEntry,
    ChainReport,
    grading_fields,
    replay_audit,
    verify_entries,
)
from sall_desktop.store.errors import StoreError, StoreLockedError, StoreWriteError
from sall_desktop.store.fs_probe import JournalPolicy, filesystem_type, journal_policy
from sall_desktop.store.opener import open_store
from sall_desktop.store.pg_repository import PgLabelStore, is_team_url, open_team_store
from sall_desktop.store.repository import GradingRow, LabelRepository
from sall_desktop.store.sqlite_repository import SqliteLabelStore
from sall_desktop.store.thread import StoreThread

LabelStore = SqliteLabelStore | PgLabelStore
"""Either backend's store: a workstation's SQLite file or the team's PostgreSQL (ADR 0013)."""

__all__ = [
    "AUDITED_FIELDS",
    "AuditEntry",
    "ChainReport",
    "GradingRow",
    "JournalPolicy",
    "LabelRepository",
    "LabelStore",
    "PgLabelStore",
    "SqliteLabelStore",
    "StoreError",
    "StoreLockedError",
    "StoreThread",
    "StoreWriteError",
    "filesystem_type",
    "grading_fields",
    "is_team_url",
    "journal_policy",
    "open_store",
    "open_team_store",
    "replay_audit",
    "verify_entries",
]
