"""Offline grading on a team store: the grading queue's outbox, and whether the server answers.

:class:`~sall_desktop.services.grading.GradingService` keeps every write of a team store in an
:class:`~sall_desktop.store.outbox.Outbox` file from the moment it is made until the store
acknowledged it. While the write at the head of the queue fails because the server cannot be
reached, the service is *offline*: its writes go on queuing (and stay in the file, so closing
or killing the app loses none), and the next start queues them first, with their original UUID
and time, so the resend is harmless (the store writes a UUID once) and the audit trail keeps
the moment each grade was made (``client_at_utc``) beside the server's (``at_utc``).

This module holds that bookkeeping, so that the grading service itself only calls it: which
writes are kept, how many, and whether the store was reachable at the last attempt. It also
holds the retry timer the service schedules its retries with (tests hand it their own).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sall_desktop.store.outbox import Outbox, OutboxEntry, OutboxError
from sall_desktop.store.pg_connection import describe_url

if TYPE_CHECKING:
    from sall_desktop.domain.grades import Grading, ImageRecord
    from sall_desktop.store import LabelStore

UNREACHABLE = "cannot be reached"
"""What a team store's error says when its server did not answer (``store/pg_connection.py``).

A phrase, not a type: ``StoreWriteError`` only tells retryable from not. Were it to grow an
"unreachable" flag, :func:`is_unreachable` is the one place to read it."""

log = logging.getLogger(__name__)


def is_unreachable(message: str) -> bool:
    """True when a refused write's message says the server could not be reached."""
    return UNREACHABLE in message


def outbox_path(folder: Path, url: str) -> Path:
    """The outbox file of the team store at ``url``, in the workstation's data ``folder``.

    One file per store (named by a hash of ``host:port/dbname``, never the password): writes
    kept for one team store must never be sent to another one opened later.
    """
    key = hashlib.sha256(describe_url(url).encode()).hexdigest()[:16]
    return folder / f"outbox-{key}.sqlite3"


class RetryTimer(Protocol):
    """A started one-shot timer (``threading.Timer`` is one)."""

    def cancel(self) -> None: ...

    def join(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], RetryTimer]
"""``start(delay_s, fn)``: call ``fn`` once after ``delay_s`` seconds, unless cancelled."""


def start_timer(delay_s: float, fn: Callable[[], None]) -> threading.Timer:
    """The product's :data:`TimerFactory`: a daemon ``threading.Timer``, started."""
    timer = threading.Timer(delay_s, fn)
    timer.name = "grading-retry"
    timer.daemon = True
    timer.start()
    return timer


class WriteLike(Protocol):
    """What the outbox keeps of a ``GradeWrite`` (the fields of :class:`OutboxEntry`)."""

    @property
    def client_uuid(self) -> str: ...
    @property
    def made_at(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def grader(self) -> str: ...
    @property
    def grading(self) -> Grading | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def record(self) -> ImageRecord | None: ...
    @property
    def test_set(self) -> str: ...


def send(store: LabelStore, write: WriteLike) -> int:
    """Commit ``write`` as it was made; the row id. Its UUID makes a resend write nothing."""
    uuid, at = write.client_uuid, write.made_at
    if write.test_set:  # a test answer: never a gradings row
        if write.grading is None:
            return store.retract_test_answer(
                write.test_set, write.sha256, write.grader, client_uuid=uuid
            )
        return store.add_test_answer(write.test_set, write.grading, client_uuid=uuid)
    if write.grading is None:
        return store.retract_grading(
            write.sha256, write.grader, reason=write.reason, client_uuid=uuid, client_at_utc=at
        )
    return store.add_grading(write.grading, reason=write.reason, client_uuid=uuid, client_at_utc=at)


_RANDOM = random.Random()  # seeded once from the system's entropy
os.register_at_fork(after_in_child=_RANDOM.seed)  # a forked child must not repeat our UUIDs


def new_uuid() -> str:
    """A write's client-made name: a random (version 4) UUID; workstations never coordinate.

    Drawn from a private generator rather than ``uuid.uuid4()``, which reads ``os.urandom`` on
    every write: that system call hands the GIL to the store thread in the middle of a burst of
    writes (the grading tests count on a burst being queued before the first attempt ends).
    Never the module-level ``random``, which a training run may seed to a fixed value.
    """
    return str(uuid.UUID(int=_RANDOM.getrandbits(128), version=4))


def entry_fields(entry: OutboxEntry) -> dict[str, Any]:
    """The entry as keyword arguments of ``GradeWrite`` (same names, less the session's id)."""
    return {f.name: getattr(entry, f.name) for f in fields(entry)}


class OutboxLink:
    """The grading service's outbox (None: a store without one) and the server's reachability.

    ``online`` is what the last attempt found: False from a failure that says the server cannot
    be reached until an attempt gets an answer (a commit, or a refusal). The service calls these
    methods under its own lock, except :meth:`keep` and :meth:`sent`, which write the file.
    """

    def __init__(self, outbox: Outbox | None) -> None:
        self.outbox = outbox
        self.online = True
        self._kept: set[str] = set()  # UUIDs in the file, so counting never reads it

    @property
    def count(self) -> int:
        """Writes kept in the file, not acknowledged yet."""
        return len(self._kept)

    @property
    def holding(self) -> bool:
        """True while the server cannot be reached and the writes wait in the file."""
        return self.outbox is not None and not self.online

    def restore(self) -> list[OutboxEntry]:
        """What a previous session left unsent, oldest first (at start-up)."""
        if self.outbox is None:
            return []
        entries = self.outbox.entries()
        self._kept.update(e.client_uuid for e in entries)
        return entries

    def keep(self, write: WriteLike) -> None:
        """Put ``write`` in the file before anything is sent (a no-op without an outbox)."""
        if self.outbox is None:
            return
        entry = OutboxEntry(**{f.name: getattr(write, f.name) for f in fields(OutboxEntry)})
        try:
            self.outbox.put(entry)
        except OutboxError as err:
            # Still queued in memory as without an outbox; only a restart while offline loses it.
            log.warning("%s", err)
            return
        self._kept.add(write.client_uuid)

    def sent(self, write: WriteLike) -> None:
        """The store acknowledged ``write`` (or the grader gave it up): out of the file."""
        if self.outbox is None or write.client_uuid not in self._kept:
            return
        try:
            self.outbox.remove(write.client_uuid)
        except OutboxError as err:
            # Left in the file it is resent at the next start: harmless, the UUID is stored.
            log.warning("%s", err)
        self._kept.discard(write.client_uuid)

    def failed(self, message: str) -> bool:
        """An attempt failed with ``message``; True when that changed ``online``."""
        was = self.online
        self.online = not is_unreachable(message)  # a refusal is an answer: the server is up
        return was != self.online

    def answered(self) -> bool:
        """An attempt committed; True when the service was offline until now."""
        was = self.online
        self.online = True
        return not was


class OfflineStatus:
    """What the status bar reads of the grading service (a base of ``GradingService``)."""

    _link: OutboxLink

    @property
    def online(self) -> bool:
        """False while the team store cannot be reached (writes then wait in the outbox)."""
        return self._link.online  # one bool, set under the service's lock: safe to read

    @property
    def outbox_count(self) -> int:
        """Writes kept in the outbox file and not acknowledged yet (0 without an outbox)."""
        return self._link.count


__all__ = [
    "Outbox",
    "OutboxEntry",
    "OfflineStatus",
    "OutboxLink",
    "RetryTimer",
    "TimerFactory",
    "entry_fields",
    "is_unreachable",
    "new_uuid",
    "outbox_path",
    "send",
    "start_timer",
]
