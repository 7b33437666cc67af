"""One workstation's image leases (Qt-free): hold the image being graded, renew, release.

On a team store several graders work from one programme at once; a lease (``store/
leases_repository.py``) says "Dr A is grading this image as primary, at this workstation, until
then", so no one else is handed it in that role meanwhile. :class:`LeaseKeeper` keeps this
workstation's one lease for the signed-in grader:

- :meth:`LeaseKeeper.hold` when the grader comes to an image (the previous one is released
  first: a grader grades one image at a time, and a lease left behind would keep others off an
  image nobody is grading);
- :meth:`LeaseKeeper.renew_due` from a timer while the grader stays (a lease runs out by itself,
  so a workstation that crashes or loses the network frees its image within ``ttl_s``);
- :meth:`LeaseKeeper.release_all` on signing out and on close;
- :meth:`LeaseKeeper.skip_set` for the queues: the images others hold in a role.

The keeper starts no thread and no timer: every method submits one job to the store's thread
(``GradingService.submit`` / ``StoreThread.submit``) and returns its future, and the GUI owns the
timer. The clock is injected and read inside the jobs, when the claim is written, so an expiry
counts from the moment the store saw it, and tests need no timing. Leases are coordination,
never grades: a failed claim or renewal loses no work, and their futures carry the error.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sall_desktop.domain.grades import GraderRole
from sall_desktop.store import LabelStore
from sall_desktop.store.leases_repository import Lease

T = TypeVar("T")


class Submit(Protocol):
    """Runs a job on the store's thread and returns its future: ``GradingService.submit``,
    ``StoreThread.submit`` (tests: a function that runs it at once)."""

    def __call__(self, fn: Callable[[LabelStore], T], /) -> Future[T]: ...


DEFAULT_TTL_S = 300.0
"""How long a lease lasts unless renewed: long enough that a grader reading an image is not
cut off by one missed renewal, short enough that a crashed workstation's image comes back to
the queues within minutes."""
DEFAULT_RENEW_MARGIN_S = 120.0
"""A held lease with less than this left is renewed by :meth:`LeaseKeeper.renew_due`."""
RENEW_EVERY_S = 60.0
"""How often the GUI should call :meth:`LeaseKeeper.renew_due`: under the margin, so one late
tick (a busy store thread) still renews before the lease runs out."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LeaseKeeper:
    """The signed-in grader's lease at this workstation (see the module docstring).

    What it holds (:attr:`held`) changes only inside its jobs, under a lock: the store thread
    runs them one at a time in the order submitted, and the lock keeps that true for any
    ``submit`` that does not. Reading :attr:`held` from another thread is safe: a frozen
    :class:`Lease` or None.

    Attributes:
        grader: whose leases these are (make a new keeper when another grader signs in, after
            :meth:`release_all` of the old one).
        workstation: this machine's name, stored with each lease (release on close frees only
            this workstation's leases, not the grader's elsewhere).
    """

    def __init__(
        self,
        submit: Submit,
        grader: str,
        *,
        workstation: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        ttl_s: float = DEFAULT_TTL_S,
        renew_margin_s: float = DEFAULT_RENEW_MARGIN_S,
    ) -> None:
        if not 0 < renew_margin_s < ttl_s:
            raise ValueError(
                f"The renew margin ({renew_margin_s} s) must be positive and under the lease's "
                f"time ({ttl_s} s), or a lease would expire before it is renewed."
            )
        self._submit = submit
        self.grader = grader
        self.workstation = socket.gethostname() if workstation is None else workstation
        self._clock = clock
        self.ttl_s = ttl_s
        self.renew_margin_s = renew_margin_s
        self._held: Lease | None = None
        self._lock = threading.Lock()

    @property
    def held(self) -> Lease | None:
        """The lease this keeper holds as of its last finished job (None: none)."""
        return self._held

    def _claim(self, store: LabelStore, sha256: str, role: GraderRole) -> Lease | None:
        return store.claim_lease(
            sha256,
            role,
            self.grader,
            workstation=self.workstation,
            now=self._clock(),
            ttl_s=self.ttl_s,
        )

    def hold(self, image_sha256: str, role: GraderRole) -> Future[bool]:
        """Take (or renew) the image's lease at ``role``, releasing the previously held image.

        Returns:
            A future: True when the grader holds the lease now, False when another grader
            holds it (the GUI says who is grading it; see ``store.leases``).
        """

        def job(store: LabelStore) -> bool:
            with self._lock:
                previous = self._held
                if previous is not None and (previous.image_sha256, previous.role) != (
                    image_sha256,
                    role,
                ):
                    store.release_leases(
                        self.grader,
                        workstation=self.workstation,
                        image_sha256=previous.image_sha256,
                    )
                    self._held = None  # released, whatever the claim below does
                self._held = self._claim(store, image_sha256, role)
                return self._held is not None

        return self._submit(job)

    def renew_due(self) -> Future[bool]:
        """Renew the held lease if it has less than the renew margin left (call from a timer,
        every :data:`RENEW_EVERY_S`; nothing is written when no renewal is due).

        Returns:
            A future: False when the held lease was lost — it expired and another grader took
            the image (the workstation slept, or the store was unreachable too long) — so the
            GUI should tell the grader; True otherwise (renewed, not due, or nothing held).
        """

        def job(store: LabelStore) -> bool:
            with self._lock:
                held = self._held
                if held is None or held.remaining_s(self._clock()) > self.renew_margin_s:
                    return True
                self._held = self._claim(store, held.image_sha256, held.role)
                return self._held is not None

        return self._submit(job)

    def release_all(self) -> Future[int]:
        """Release every lease of the grader at this workstation (on signing out and on
        close; leases left by an earlier session that crashed here go too).

        Returns:
            A future with how many leases were released.
        """

        def job(store: LabelStore) -> int:
            with self._lock:
                released = store.release_leases(self.grader, workstation=self.workstation)
                self._held = None
                return released

        return self._submit(job)

    def skip_set(self, role: GraderRole) -> Future[frozenset[str]]:
        """The images other graders hold a lease of at ``role`` now: to leave out of this
        grader's queue at that level (``WorkQueue.set_leased``). Frozen: it crosses threads."""

        def job(store: LabelStore) -> frozenset[str]:
            return frozenset(store.leased_by_others(self.grader, role, now=self._clock()))

        return self._submit(job)


__all__ = [
    "DEFAULT_RENEW_MARGIN_S",
    "DEFAULT_TTL_S",
    "RENEW_EVERY_S",
    "Lease",
    "LeaseKeeper",
    "Submit",
]
