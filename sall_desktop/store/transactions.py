"""What a repository mixin needs of the store it is mixed into: its version and transactions."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Protocol


class Transactions(Protocol):
    """The part of ``StoreConnection`` the repository mixins use as their ``self`` type."""

    app_version: str

    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...
    def _read(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...
