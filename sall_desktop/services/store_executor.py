"""What a service needs of the store thread: the one ``StoreExecutor`` protocol.

Services take this protocol, not ``sall_desktop.store.StoreThread``, so that a test can hand
them any executor and the GUI, which builds windows over services, never names the store.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sall_desktop.store import LabelStore

T = TypeVar("T")


class StoreExecutor(Protocol):
    """The store thread (``sall_desktop.store.StoreThread``) as services see it."""

    @property
    def read_only(self) -> bool:
        """True when the store refuses writes."""
        ...

    def submit(self, fn: Callable[[LabelStore], T]) -> Future[T]:
        """Run ``fn(store)`` on the store thread, after everything submitted before it."""
        ...


__all__ = ["StoreExecutor"]
