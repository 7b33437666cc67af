"""The store thread: the one read-write connection, used only from its own thread.

``sqlite3``'s ``check_same_thread`` stays on. Commits fsync (``synchronous=FULL``), so they
must never run on the GUI thread: the GUI submits work and gets a future that resolves after
commit (R1), or fails with ``StoreWriteError`` so the item stays pending (R4).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sall_desktop.store.errors import StoreError
from sall_desktop.store.opener import open_store
from sall_desktop.store.pg_repository import PgLabelStore, is_team_url, open_team_store
from sall_desktop.store.sqlite_repository import SqliteLabelStore

T = TypeVar("T")


def _open(path: Path | str, **open_kwargs: Any) -> SqliteLabelStore | PgLabelStore:
    if is_team_url(path):
        return open_team_store(str(path), **open_kwargs)
    return open_store(Path(path), **open_kwargs)


class StoreThread:
    """Owns the store on one dedicated thread; every call goes through it.

    Args:
        path: the SQLite database file, or a team store's ``postgresql://`` URL.
        **open_kwargs: passed to :func:`~sall_desktop.store.opener.open_store` (or
            ``open_team_store``).

    Example:
        >>> thread = StoreThread(Path("labels.sqlite3"), app_version="0.1.0")
        >>> future = thread.submit(lambda store: store.add_grading(grading))
        >>> row_id = future.result()  # after commit; raises StoreWriteError on failure
        >>> thread.close()
    """

    def __init__(self, path: Path | str, **open_kwargs: Any) -> None:
        # One worker, never more: the executor keeps its single thread for its whole life, so
        # the connection is created and used on the same thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sall-store")
        self._opened: Future[SqliteLabelStore | PgLabelStore] = self._executor.submit(
            _open, path, **open_kwargs
        )
        self._closed = False

    def wait_open(self, timeout: float | None = None) -> SqliteLabelStore | PgLabelStore:
        """Block until the store is open; raise what opening raised.

        The returned object may be inspected (attributes) from any thread, but its methods must
        only run through :meth:`submit`.
        """
        return self._opened.result(timeout)

    @property
    def read_only(self) -> bool:
        """True when writes are refused (waits for the open to finish)."""
        return self.wait_open().read_only

    @property
    def read_only_reason(self) -> str:
        """Why writes are refused ("" when writable); waits for the open."""
        return self.wait_open().read_only_reason

    @property
    def warnings(self) -> list[str]:
        """Warnings from opening (network share, altered audit trail); waits for the open."""
        return list(self.wait_open().warnings)

    @property
    def unclean_shutdown(self) -> bool:
        """True when the previous session did not close cleanly; waits for the open."""
        return self.wait_open().unclean_shutdown

    def submit(self, fn: Callable[[SqliteLabelStore | PgLabelStore], T]) -> Future[T]:
        """Run ``fn(store)`` on the store thread, after everything submitted before it.

        Returns:
            A future with ``fn``'s result; it carries the exception if opening or ``fn`` failed.

        Raises:
            StoreError: the store thread was closed.
        """
        if self._closed:
            raise StoreError("The label store is closed.")

        def task() -> T:
            return fn(self._opened.result())

        return self._executor.submit(task)

    def close(self) -> None:
        """Finish the work already submitted, close the store and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True

        def close_store() -> None:
            if self._opened.exception() is None:
                self._opened.result().close()

        try:
            self._executor.submit(close_store).result()
        finally:
            self._executor.shutdown(wait=True)
