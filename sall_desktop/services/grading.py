"""Grading service: every grading write goes through one ordered, retried, acknowledged queue.

Qt-free. The GUI never waits on SQL: it hands a write to :class:`GradingService` and gets a
``Future`` that resolves with the row id only after the store committed it (R1: "saved" means
committed). Writes are applied strictly in the order they were made, so a grade followed by its
undo can never land the wrong way round. When the store refuses a write (disk full, read-only,
locked) the write stays at the head of the queue, every later write waits behind it, listeners
hear about it (the GUI shows a banner), and the queue is retried automatically with back-off and
on demand (R4). Nothing is dropped until it is committed or the caller explicitly gives up.

Undo and redo are plain data (:class:`GradeCommand`): undoing a grading appends the previous
grading again, or a retraction when there was none, so the store stays append-only (R8).

A write may instead be a grader's answer to a test item (``test_set``: the set's name): the same
queue, order, retries and undo, but it is committed to the test answers
(``store.add_test_answer`` / ``retract_test_answer``) and never to the gradings, so it is never
routed and never becomes an image's grade.

Offline on a team store: the outbox keeps each write until acknowledged (``services/outbox.py``).
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord, utc_now
from sall_desktop.services import outbox as offline
from sall_desktop.services.store_executor import StoreExecutor
from sall_desktop.store import LabelStore, StoreError, StoreWriteError

T = TypeVar("T")

RETRY_DELAYS_S: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
"""Back-off between automatic retries; the last value repeats."""

LAST_IMAGE_KEY = "gui.last_image"
LAST_FOLDER_KEY = "gui.last_folder"


class SaveState(enum.StrEnum):
    """Where an image's latest grading write stands."""

    SAVED = "saved"
    """Committed: every write for the image is on disk."""
    PENDING = "pending"
    """Queued or being written."""
    FAILED = "failed"
    """The store refused the write; it is kept and will be retried."""
    OUTBOX = "outbox"
    """The team store cannot be reached: kept on this workstation (the outbox); will be sent."""


class ReadOnlyError(RuntimeError):
    """The store is read-only (another instance holds it, or the medium is read-only)."""


@dataclass(frozen=True, slots=True)
class GradeWrite:
    """One append-only write: a grading row, or a retraction of the grader's current grading.

    Args:
        sha256: the image.
        grader: the named grader whose grading changes.
        grading: the row to append; None appends a retraction (the grader has no grading).
        reason: why (goes into the audit trail), e.g. "grade", "undo", "redo".
        record: the image's catalogue record, upserted first so the grading has its image row.
        test_set: the test set the image is a test item of: the write is the grader's answer
            (or its retraction) in that set, never a grading ("" for a grading).
        client_uuid / made_at: its own UUID and when it was made (UTC), kept on every retry.
    """

    sha256: str
    grader: str
    grading: Grading | None
    reason: str = "grade"
    record: ImageRecord | None = None
    test_set: str = ""
    write_id: int = field(default_factory=itertools.count(1).__next__)
    client_uuid: str = field(default_factory=offline.new_uuid)
    made_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.grading is not None and (
            self.grading.image_sha256 != self.sha256 or self.grading.grader != self.grader
        ):
            raise ValueError("a write's grading must belong to its image and grader")


@dataclass(frozen=True, slots=True)
class GradeCommand:
    """An undoable change of one grader's grading of one image, as data.

    ``before`` is the grading that was current (None: none), ``after`` the new one (None: a
    retraction). Undo appends ``before`` again with a fresh timestamp, never deletes ``after``.
    With ``test_set`` both are the grader's answers to a test item of that set.
    """

    sha256: str
    grader: str
    before: Grading | None
    after: Grading | None
    record: ImageRecord | None = None
    test_set: str = ""

    def redo_write(self, *, again: bool = False) -> GradeWrite:
        """The write that applies the change (``again``: a redo after an undo, re-stamped)."""
        grading = self.after
        if again and grading is not None:
            grading = replace(grading, created_at=utc_now())
        return GradeWrite(
            self.sha256, self.grader, grading, "redo" if again else "grade",
            record=self.record, test_set=self.test_set,
        )  # fmt: skip

    def undo_write(self) -> GradeWrite:
        """The write that restores ``before``: that grading again, or a retraction."""
        grading = None if self.before is None else replace(self.before, created_at=utc_now())
        return GradeWrite(
            self.sha256, self.grader, grading, "undo", record=self.record, test_set=self.test_set
        )


@dataclass(frozen=True, slots=True)
class GradingEvent:
    """What listeners hear, on the store thread (a Qt bridge re-emits it on the GUI thread).

    Args:
        sha256: the image whose state changed ("" for queue-wide events).
        state: the image's save state after the change.
        pending: writes not yet committed, all images.
        error: the grader-readable failure message when a write failed, else "".
        write: the write concerned.
        row_id: the committed row id, for a successful write.
        online: False while the team store cannot be reached (the status bar says so).
        outbox: writes kept in the outbox file, not acknowledged yet (0 without an outbox).
    """

    sha256: str
    state: SaveState
    pending: int
    error: str = ""
    write: GradeWrite | None = None
    row_id: int | None = None
    online: bool = True
    outbox: int = 0


Listener = Callable[[GradingEvent], None]


@dataclass(slots=True)
class _Queued:
    write: GradeWrite
    future: Future[int]
    attempts: int = 0


class GradingService(offline.OfflineStatus):
    """Ordered, acknowledged, retried grading writes on the store thread (``online``,
    ``outbox_count``: see :class:`~sall_desktop.services.outbox.OfflineStatus`).

    Args:
        store: the store thread executor; all SQL runs there.
        retry_delays: seconds before each automatic retry after a failure; the last repeats.
        listener: called on the store thread with every :class:`GradingEvent`.
        outbox: a team store's outbox; what an earlier session left there is queued first.
        timer: starts the automatic retries (tests pass their own to drive ``retry``).

    Example:
        >>> service = GradingService(StoreThread(db_path))
        >>> future = service.grade(Grading(sha, "Dr Ada", dr_grade=2, amd_grade=0))
        >>> future.result()  # the row id, once committed
    """

    def __init__(
        self,
        store: StoreExecutor,
        *,
        retry_delays: Iterable[float] = RETRY_DELAYS_S,
        listener: Listener | None = None,
        outbox: offline.Outbox | None = None,
        timer: offline.TimerFactory = offline.start_timer,
    ) -> None:
        self._store = store
        self._retry_delays = tuple(retry_delays) or RETRY_DELAYS_S
        self._listeners: list[Listener] = [] if listener is None else [listener]
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()
        self._per_image: Counter[str] = Counter()
        self._blocked = False
        self._drain_scheduled = False
        self._failures = 0
        self._last_error = ""
        self._timer: offline.RetryTimer | None = None
        self._start_timer = timer
        self._closed = False
        self._registered: set[str] = set()  # images whose record was upserted this session
        self._link = offline.OutboxLink(outbox)
        restored = [GradeWrite(**offline.entry_fields(e)) for e in self._link.restore()]
        self._queue.extend(_Queued(w, Future()) for w in restored)  # first, with UUID and time
        self._per_image.update(w.sha256 for w in restored)
        self._kick()

    # ------------------------------------------------------------------ state
    @property
    def read_only(self) -> bool:
        return self._store.read_only

    @property
    def pending_count(self) -> int:
        """Writes not yet committed (queued, in flight or failed)."""
        with self._lock:
            return len(self._queue)

    @property
    def failing(self) -> bool:
        """True while the head of the queue failed and waits for a retry."""
        with self._lock:
            return self._blocked

    @property
    def last_error(self) -> str:
        with self._lock:
            return self._last_error

    def state_of(self, sha256: str) -> SaveState:
        """The save state of an image's writes; SAVED when none is outstanding."""
        with self._lock:
            return self._state_locked(sha256)

    def pending_writes(self) -> list[GradeWrite]:
        """The writes not yet committed, oldest first."""
        with self._lock:
            return [item.write for item in self._queue]

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------------ writes
    def grade(
        self, grading: Grading, *, record: ImageRecord | None = None, reason: str = "grade"
    ) -> Future[int]:
        """Append ``grading`` (a new current grading for its grader and image)."""
        return self.write(GradeWrite(grading.image_sha256, grading.grader, grading, reason, record))

    def apply(self, command: GradeCommand, *, again: bool = False) -> Future[int]:
        """Apply (redo) ``command``."""
        return self.write(command.redo_write(again=again))

    def revert(self, command: GradeCommand) -> Future[int]:
        """Undo ``command`` by appending the previous grading again (or a retraction)."""
        return self.write(command.undo_write())

    def write(self, write: GradeWrite) -> Future[int]:
        """Queue ``write``; the future resolves with the committed row id.

        The future fails at once with :class:`ReadOnlyError` on a read-only store, and with the
        store's error when the write is invalid; a refused write (``StoreWriteError``) leaves it
        pending and retried instead.
        """
        future: Future[int] = Future()
        if self._store.read_only:
            future.set_exception(
                ReadOnlyError("the database is open read-only; grades cannot be saved")
            )
            return future
        with self._lock:
            if self._closed:
                raise RuntimeError("the grading service is closed")
            self._link.keep(write)  # on disk before the store sees it, in the queue's order
            self._queue.append(_Queued(write, future))
            self._per_image[write.sha256] += 1
            event = self._event_locked(write.sha256, write=write)
        self._notify(event)
        self._kick()
        return future

    def discard_failed(self) -> GradeWrite | None:
        """Give up the failed write at the head of the queue (only on the grader's request).

        Its future fails with the store's error; later writes proceed. Returns the write.
        """
        with self._lock:
            if not self._blocked or not self._queue:
                return None
            item = self._queue[0]
            self._cancel_timer_locked()
            self._blocked = False
            message = self._last_error
        self._finish(item, error=StoreWriteError(message or "discarded", retryable=False))
        self._kick()
        return item.write

    def retry(self) -> None:
        """Retry the failed write now (the manual "Retry" of the banner)."""
        with self._lock:
            self._cancel_timer_locked()
            self._blocked = False
        self._kick()

    # ------------------------------------------------------------------ store jobs
    def submit(self, fn: Callable[[LabelStore], T]) -> Future[T]:
        """Run ``fn(store)`` on the store thread (reads, settings); writes of gradings use
        :meth:`write` so they are ordered and retried."""
        return self._store.submit(fn)

    def current_gradings(self, grader: str) -> Future[dict[str, Grading]]:
        """The grader's current grading of every image, keyed by SHA-256."""

        def job(store: LabelStore) -> dict[str, Grading]:
            return {g.image_sha256: g for g in store.current_gradings(grader=grader)}

        return self._store.submit(job)

    def graders(self) -> Future[list[str]]:
        """Known grader names, in registration order."""
        return self._store.submit(lambda store: store.graders())

    def add_grader(self, name: str, role: GraderRole = GraderRole.PRIMARY) -> Future[None]:
        """Register a named grader with ``role`` (idempotent; skipped on a read-only store)."""
        if not name.strip():
            raise ValueError("a grader needs a name")

        def job(store: LabelStore) -> None:
            if not store.read_only and role not in store.grader_roles(name):
                store.add_grader(name, role)

        return self._store.submit(job)

    def register_images(self, records: Iterable[ImageRecord]) -> Future[int]:
        """Upsert catalogue records (identity by SHA-256, path as metadata); skipped read-only."""
        batch = list(records)

        def job(store: LabelStore) -> int:
            if store.read_only:
                return 0
            store.upsert_images(batch)
            return len(batch)

        return self._store.submit(job)

    def remember(self, values: Mapping[str, str]) -> Future[None]:
        """Persist small settings in the database (last image and folder, for restart, R7)."""
        items = dict(values)

        def job(store: LabelStore) -> None:
            if store.read_only:
                return
            for key, value in items.items():
                store.set_setting(key, value)

        return self._store.submit(job)

    def recall(self, *keys: str) -> Future[dict[str, str | None]]:
        """Read settings stored with :meth:`remember`."""

        def job(store: LabelStore) -> dict[str, str | None]:
            return {key: store.get_setting(key) for key in keys}

        return self._store.submit(job)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> list[GradeWrite]:
        """Stop retrying and refuse new writes; return the writes that never committed.

        Their futures are cancelled; an outbox keeps them for the next start. Call it after the
        user agreed to quit with pending items; the store thread is closed by its owner after.
        """
        with self._lock:
            self._closed = True
            self._cancel_timer_locked()
            timer = self._timer
            left = list(self._queue)
        if timer is not None:
            timer.join()
        for item in left:
            item.future.cancel()
        return [item.write for item in left]

    # ------------------------------------------------------------------ internals
    def _state_locked(self, sha256: str) -> SaveState:
        if not self._per_image.get(sha256):
            return SaveState.SAVED
        if self._link.holding:  # every queued write waits in the outbox, not just the head
            return SaveState.OUTBOX
        if self._blocked and self._queue and self._queue[0].write.sha256 == sha256:
            return SaveState.FAILED
        return SaveState.PENDING

    def _event_locked(self, sha256: str, **extra: object) -> GradingEvent:
        return GradingEvent(
            sha256,
            self._state_locked(sha256),
            len(self._queue),
            **extra,  # type: ignore[arg-type]
            online=self._link.online,
            outbox=self._link.count,
        )

    def _events_locked(self, sha256: str, flip: bool, **extra: object) -> list[GradingEvent]:
        """The image's event and, when online/offline just flipped, every queued image's."""
        others = [self._event_locked(s) for s in self._per_image if s != sha256] if flip else []
        return [self._event_locked(sha256, **extra), *others]

    def _notify(self, *events: GradingEvent) -> None:
        for event in events:
            for listener in list(self._listeners):
                listener(event)

    def _kick(self) -> None:
        with self._lock:
            if self._drain_scheduled or self._blocked or self._closed or not self._queue:
                return
            self._drain_scheduled = True
        try:
            self._store.submit(self._drain)
        except (StoreError, RuntimeError) as exc:  # the store thread is closed: keep them pending
            with self._lock:
                self._drain_scheduled = False
                self._blocked = True
                self._last_error = f"Could not save: the database is closed ({exc})."

    def _drain(self, store: LabelStore) -> None:
        """Store-thread job: commit queued writes in order until empty or one fails."""
        with self._lock:
            self._drain_scheduled = False
        while True:
            with self._lock:
                if self._blocked or self._closed or not self._queue:
                    return
                item = self._queue[0]
                item.attempts += 1
            try:
                row_id = self._commit(store, item.write)
            except StoreWriteError as exc:
                self._on_failure(item, str(exc), retryable=exc.retryable)
                return
            except OSError as exc:
                self._on_failure(item, f"Could not save the grade: {exc}", retryable=True)
                return
            except Exception as exc:  # an invalid write: never retried, always reported
                self._finish(item, error=exc)
                continue
            self._finish(item, row_id=row_id)

    def _commit(self, store: LabelStore, write: GradeWrite) -> int:
        if write.record is not None and write.sha256 not in self._registered:
            # The grading alone would register a bare SHA-256; the record adds path and eye.
            store.upsert_image(write.record)
            self._registered.add(write.sha256)
        return offline.send(store, write)  # with its UUID and time: a resend writes nothing

    def _finish(
        self, item: _Queued, *, row_id: int | None = None, error: Exception | None = None
    ) -> None:
        sha = item.write.sha256
        self._link.sent(item.write)  # committed, or given up for good: never to be resent
        with self._lock:
            flip = error is None and self._link.answered()
            if self._queue and self._queue[0] is item:
                self._queue.popleft()
            self._per_image[sha] -= 1
            if self._per_image[sha] <= 0:
                del self._per_image[sha]
            self._failures = 0
            message = "" if error is None else f"Could not save the grade: {error}"
            if error is None:
                self._last_error = ""
            events = self._events_locked(sha, flip, error=message, write=item.write, row_id=row_id)
        if error is None:
            item.future.set_result(row_id if row_id is not None else -1)
        else:
            item.future.set_exception(error)
        self._notify(*events)

    def _on_failure(self, item: _Queued, message: str, *, retryable: bool) -> None:
        with self._lock:
            self._blocked = True
            self._last_error = message
            delay = self._retry_delays[min(self._failures, len(self._retry_delays) - 1)]
            self._failures += 1
            flip = self._link.failed(message)
            if retryable and not self._closed:
                self._cancel_timer_locked()
                self._timer = self._start_timer(delay, self.retry)
            events = self._events_locked(item.write.sha256, flip, error=message, write=item.write)
        self._notify(*events)

    def _cancel_timer_locked(self) -> None:
        if self._timer is not None:  # cancelling the running timer itself is harmless
            self._timer.cancel()
