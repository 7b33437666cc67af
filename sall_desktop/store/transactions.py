"""What a repository mixin needs of the store it is mixed into: its version and transactions."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from sall_desktop.store.sql import SqlConnection


class Transactions(Protocol):
    """The part of a store connection (SQLite or PostgreSQL) the mixins use as ``self``."""

    app_version: str

    def _write(self, what: str) -> AbstractContextManager[SqlConnection]: ...
    def _read(self, what: str) -> AbstractContextManager[SqlConnection]: ...
