"""Image leases (schema 4 / team schema 2): who is grading which image at which level now.

A mixin of :class:`~sall_desktop.store.label_queries.LabelQueries`, so both backends run the
same SQL. On a team store several workstations hand out work from one programme; a lease keeps
two graders from being handed the same image in the same role at once. A lease is taken for a
time (``ttl_s``) and renewed while the grader stays on the image, so a workstation that crashes
or loses its network frees its images by itself once they expire; a clean close releases them.

Leases are coordination, not grades: they are mutable (taken, renewed, released), never audited
and never a grading — losing every lease loses no work. The clock is always passed in (``now``),
never read here: the workstation decides what "now" is, and tests need no timing.

Times are stored as :func:`~sall_desktop.domain.grades.utc_now` writes them (UTC ISO-8601 with
microseconds and ``+00:00``), a fixed width, so comparing them as text compares the instants on
either backend (the PostgreSQL columns are ``COLLATE "C"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sall_desktop.domain.grades import GraderRole
from sall_desktop.store.errors import StoreWriteError
from sall_desktop.store.transactions import Transactions

_COLUMNS = "image_sha256, role, grader, workstation, acquired_at, expires_at"

# One statement, so a claim is atomic on either backend even without the team store's write
# lock: the row is inserted when the image is free; otherwise it is taken over only when the
# holder's lease has expired (``excluded.acquired_at`` is the claim's now) or the holder is the
# same grader (a renewal). When the WHERE refuses, nothing is written and RETURNING yields no
# row. PostgreSQL re-checks the WHERE against the committed row after waiting for a concurrent
# claim of the same key, so two claims can never both win. A renewal keeps ``acquired_at`` (when
# the grader came to the image); a takeover or a re-claim after expiry starts afresh.
_CLAIM = (
    f"INSERT INTO leases ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (image_sha256, role) DO UPDATE SET "
    "grader = excluded.grader, workstation = excluded.workstation, "
    "acquired_at = CASE WHEN leases.grader = excluded.grader "
    "AND leases.expires_at > excluded.acquired_at "
    "THEN leases.acquired_at ELSE excluded.acquired_at END, "
    "expires_at = excluded.expires_at "
    "WHERE leases.expires_at <= excluded.acquired_at OR leases.grader = excluded.grader "
    f"RETURNING {_COLUMNS}"
)


@dataclass(frozen=True, slots=True)
class Lease:
    """One grader's hold on one image at one level (frozen: it crosses threads).

    Attributes:
        image_sha256: the image.
        role: the level it is graded at.
        grader: who holds it.
        workstation: where it is held ("" when not said).
        acquired_at / expires_at: UTC ISO-8601, as ``utc_now()`` writes times.
    """

    image_sha256: str
    role: GraderRole
    grader: str
    workstation: str
    acquired_at: str
    expires_at: str

    def remaining_s(self, now: datetime) -> float:
        """Seconds until the lease expires at ``now`` (0 or less: expired, free to take)."""
        return (datetime.fromisoformat(self.expires_at) - _aware(now)).total_seconds()


def lease_time(now: datetime) -> str:
    """``now`` as leases store times: the text form that sorts as the instants do."""
    return _aware(now).astimezone(UTC).isoformat(timespec="microseconds")


def _aware(now: datetime) -> datetime:
    # A naive time would be taken as the machine's local time: on a team store two workstations
    # in different zones would disagree about which leases have expired.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"A lease time needs a time zone, got naive {now.isoformat()}")
    return now


def _lease(row: tuple[object, ...]) -> Lease:
    sha, role, grader, workstation, acquired, expires = (str(v) for v in row)
    return Lease(sha, GraderRole(role), grader, workstation, acquired, expires)


class LeasesRepositoryMixin:
    """Take, renew, release and list image leases (see the module docstring)."""

    def claim_lease(
        self: Transactions,
        image_sha256: str,
        role: GraderRole,
        grader: str,
        *,
        workstation: str,
        now: datetime,
        ttl_s: float,
    ) -> Lease | None:
        """Take the lease of the image at ``role`` for ``ttl_s`` seconds from ``now``.

        The lease is taken when nobody holds it, when its holder's lease expired, or when
        ``grader`` holds it already (then it is renewed: a new ``expires_at``, from this
        workstation). One transaction.

        Returns:
            The lease now held, or None when another grader holds an unexpired one.

        Raises:
            StoreWriteError: the claim could not be written (read-only store, no server), or
                the grader is unnamed or ``ttl_s`` is not positive (not retryable).
            ValueError: ``now`` has no time zone.
        """
        if not grader.strip():
            raise StoreWriteError("A lease needs a named grader.", retryable=False)
        if not ttl_s > 0:
            raise StoreWriteError(f"A lease needs a positive time, got {ttl_s}.", retryable=False)
        acquired = lease_time(now)
        expires = lease_time(now + timedelta(seconds=ttl_s))
        params = (image_sha256, role.value, grader, workstation, acquired, expires)
        with self._write("the image lease") as conn:
            row = conn.execute(_CLAIM, params).fetchone()
        return None if row is None else _lease(tuple(row))

    def release_leases(
        self: Transactions,
        grader: str,
        *,
        workstation: str | None = None,
        image_sha256: str | None = None,
    ) -> int:
        """Release ``grader``'s leases (only at ``workstation`` / of ``image_sha256`` if given):
        on leaving an image, on signing out, on closing. Expired ones go too (they are no one's).

        Returns:
            How many leases were released.
        """
        sql, params = "DELETE FROM leases WHERE grader = ?", [grader]
        if workstation is not None:
            sql, params = sql + " AND workstation = ?", [*params, workstation]
        if image_sha256 is not None:
            sql, params = sql + " AND image_sha256 = ?", [*params, image_sha256]
        with self._write("the image leases") as conn:
            return max(conn.execute(sql, params).rowcount, 0)

    def leases(self: Transactions, *, now: datetime) -> list[Lease]:
        """Every lease unexpired at ``now``, by image and role."""
        with self._read("the image leases") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM leases WHERE expires_at > ? ORDER BY image_sha256, role",
                (lease_time(now),),
            ).fetchall()
        return [_lease(tuple(r)) for r in rows]

    def leased_by_others(
        self: Transactions, grader: str, role: GraderRole, *, now: datetime
    ) -> set[str]:
        """The images other graders hold an unexpired lease of at ``role`` at ``now``: those
        to leave out of ``grader``'s queue at that level."""
        with self._read("the image leases") as conn:
            rows = conn.execute(
                "SELECT image_sha256 FROM leases WHERE role = ? AND grader <> ? AND expires_at > ?",
                (role.value, grader, lease_time(now)),
            ).fetchall()
        return {str(r[0]) for r in rows}
