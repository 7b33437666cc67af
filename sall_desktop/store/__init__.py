"""The only SQL in the app: the SQLite label store, its migrations and repositories.

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
from sall_desktop.store.repository import GradingRow, LabelRepository
from sall_desktop.store.sqlite_repository import SqliteLabelStore
from sall_desktop.store.thread import StoreThread

__all__ = [
    "AUDITED_FIELDS",
    "AuditEntry",
    "ChainReport",
    "GradingRow",
    "JournalPolicy",
    "LabelRepository",
    "SqliteLabelStore",
    "StoreError",
    "StoreLockedError",
    "StoreThread",
    "StoreWriteError",
    "filesystem_type",
    "grading_fields",
    "journal_policy",
    "open_store",
    "replay_audit",
    "verify_entries",
]
