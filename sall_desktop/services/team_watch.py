"""Following the other workstations of a team store: whose grades arrived since the last look.

Qt-free. The window asks :meth:`TeamWatch.poll` on a timer (``gui/team_controller.py``); each
poll is one indexed read on the store thread (``gradings_since``), so a quiet team costs one
tiny query per interval. Polling rather than LISTEN/NOTIFY: it needs no connection held open
outside the pool, survives the server going away and coming back without re-subscribing, and
works the same on SQLite (where it is simply not started).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from sall_desktop.domain.grades import Grading
from sall_desktop.store import GradingRow, LabelStore

T = TypeVar("T")

Submit = Callable[[Callable[[LabelStore], T]], Future[T]]

POLL_LIMIT = 500
"""Rows read per poll at most; a backlog (after a long time offline) is read over several."""


@dataclass(frozen=True, slots=True)
class TeamNews:
    """What changed in the store since the previous poll.

    Attributes:
        rows: the new gradings rows (saves and retractions by anyone), oldest first.
        cursor: the id of the last row seen: the next poll starts after it.
        more: True when the poll stopped at :data:`POLL_LIMIT` (poll again soon).
    """

    rows: tuple[GradingRow, ...]
    cursor: int
    more: bool

    @property
    def images(self) -> frozenset[str]:
        """Every image some row touched."""
        return frozenset(r.image_sha256 for r in self.rows)

    def current_of(self, grader: str) -> dict[str, Grading | None]:
        """``grader``'s grade of each image their rows touched (None: withdrawn), latest wins.

        The same grader may work at two workstations; what they saved at the other one shows
        here as if saved here.
        """
        current: dict[str, Grading | None] = {}
        for row in self.rows:
            if row.grader == grader:
                current[row.image_sha256] = row.grading
        return current


class TeamWatch:
    """A cursor over the store's gradings rows, advanced by :meth:`poll`.

    The first poll only finds where the store stands (nothing before it is news). Polls are
    serial: one asked while another is out returns that one, so a slow server never piles
    reads up on the store thread.
    """

    def __init__(self, submit: Submit[TeamNews], *, limit: int = POLL_LIMIT) -> None:
        self._submit = submit
        self._limit = limit
        self._cursor: int | None = None
        self._out: Future[TeamNews] | None = None
        self._lock = threading.Lock()

    @property
    def cursor(self) -> int | None:
        """The last row id seen (None before the first poll returned)."""
        return self._cursor

    def poll(self) -> Future[TeamNews]:
        """Read what arrived since the last poll (the rows of this workstation included)."""
        with self._lock:
            if self._out is not None and not self._out.done():
                return self._out
            cursor, limit = self._cursor, self._limit

            def read(store: LabelStore) -> TeamNews:
                if cursor is None:
                    return TeamNews((), store.last_grading_id(), False)
                rows = store.gradings_since(cursor, limit=limit)
                last = rows[-1].id if rows else cursor
                return TeamNews(tuple(rows), last, len(rows) >= limit)

            out = self._submit(read)
            self._out = out
        out.add_done_callback(self._advance)
        return out

    def _advance(self, done: Future[TeamNews]) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # the server may be away: the next poll asks again from the same place
        with self._lock:
            self._cursor = max(self._cursor or 0, done.result().cursor)
