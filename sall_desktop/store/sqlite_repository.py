"""SQLite implementation of :class:`~sall_desktop.store.repository.LabelRepository`.

One instance owns one read-write connection and must be used from one thread (``sqlite3``'s
``check_same_thread`` stays on); the GUI reaches it through :class:`~sall_desktop.store.thread.
StoreThread`. Open it with :func:`~sall_desktop.store.opener.open_store`.
"""

from __future__ import annotations

from sall_desktop.store.connection import StoreConnection
from sall_desktop.store.label_queries import LabelQueries


# mypy compares the two _write/_read declarations by name, not structurally: StoreConnection's
# yields a sqlite3.Connection, which is an SqlConnection (the call sites type-check).
class SqliteLabelStore(LabelQueries, StoreConnection):  # type: ignore[misc]
    """The SQLite label store (see LabelRepository). Create it with ``open_store(path)``.

    Used from one thread only; the app reaches it through ``StoreThread``.
    """
