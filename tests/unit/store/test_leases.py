"""Image leases on both backends: one holder per image and level, expiry, renewal, release;
and on PostgreSQL, claims racing from several connections never both win.

The clock is always passed in, so nothing here depends on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sall_desktop.domain.grades import GraderRole
from sall_desktop.store import StoreWriteError
from sall_desktop.store.leases_repository import Lease, lease_time
from tests.unit.store.conftest import HANG_GUARD_S

T0 = datetime(2026, 12, 7, 20, 46, 6, 368791, tzinfo=UTC)
TTL = 300.0
PRIMARY, SECONDARY = GraderRole.PRIMARY, GraderRole.SECONDARY


@pytest.fixture
def store(any_store):
    """Every test runs on each backend (tests/unit/store/conftest.py)."""
    return any_store


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claim(store, sha: str, grader: str, *, role=PRIMARY, now=T0, ws="ws-1") -> Lease | None:
    return store.claim_lease(sha, role, grader, workstation=ws, now=now, ttl_s=TTL)


def test_a_free_image_is_leased_for_the_time_asked(store, sha) -> None:
    lease = claim(store, sha(1), "Dr A")
    assert lease == Lease(sha(1), PRIMARY, "Dr A", "ws-1", lease_time(T0), lease_time(at(TTL)))
    assert lease.acquired_at == "2026-12-07T20:46:06.368791+00:00"
    assert lease.remaining_s(at(100)) == TTL - 100
    assert store.leases(now=at(1)) == [lease]


def test_a_second_grader_is_refused_the_same_image_and_role(store, sha) -> None:
    held = claim(store, sha(1), "Dr A")
    assert claim(store, sha(1), "Dr B", now=at(TTL - 1), ws="ws-2") is None
    assert store.leases(now=at(2)) == [held]  # the refusal changed nothing


def test_the_same_image_in_another_role_is_free(store, sha) -> None:
    claim(store, sha(1), "Dr A")
    lease = claim(store, sha(1), "Dr B", role=SECONDARY, ws="ws-2")
    assert lease is not None and (lease.grader, lease.role) == ("Dr B", SECONDARY)
    assert {(x.role, x.grader) for x in store.leases(now=at(1))} == {
        (PRIMARY, "Dr A"),
        (SECONDARY, "Dr B"),
    }


def test_an_expired_lease_may_be_taken_over(store, sha) -> None:
    claim(store, sha(1), "Dr A")
    assert store.leases(now=at(TTL)) == []  # expired exactly at expires_at
    lease = claim(store, sha(1), "Dr B", now=at(TTL), ws="ws-2")
    assert lease == Lease(
        sha(1), PRIMARY, "Dr B", "ws-2", lease_time(at(TTL)), lease_time(at(2 * TTL))
    )
    assert claim(store, sha(1), "Dr A", now=at(TTL + 1)) is None  # Dr A lost it


def test_the_same_grader_renews_keeping_when_they_came(store, sha) -> None:
    claim(store, sha(1), "Dr A")
    renewed = claim(store, sha(1), "Dr A", now=at(200))
    assert renewed is not None
    assert (renewed.acquired_at, renewed.expires_at) == (lease_time(T0), lease_time(at(500)))
    assert claim(store, sha(1), "Dr B", now=at(400)) is None  # still held past the first ttl
    # After it expired, the same grader takes it afresh.
    again = claim(store, sha(1), "Dr A", now=at(600), ws="ws-2")
    assert again == Lease(sha(1), PRIMARY, "Dr A", "ws-2", lease_time(at(600)), lease_time(at(900)))


def test_release_frees_the_grader_s_leases(store, sha) -> None:
    claim(store, sha(1), "Dr A")
    claim(store, sha(2), "Dr A", role=SECONDARY)
    claim(store, sha(3), "Dr A", ws="ws-2")
    claim(store, sha(4), "Dr B")
    assert store.release_leases("Dr A", image_sha256=sha(1)) == 1
    assert claim(store, sha(1), "Dr B", now=at(1)) is not None
    assert store.release_leases("Dr A", workstation="ws-1") == 1  # sha(2); ws-2's stays
    assert {x.image_sha256 for x in store.leases(now=at(2))} == {sha(1), sha(3), sha(4)}
    assert store.release_leases("Dr A") == 1
    assert store.release_leases("Dr A") == 0
    assert {(x.image_sha256, x.grader) for x in store.leases(now=at(3))} == {
        (sha(1), "Dr B"),
        (sha(4), "Dr B"),
    }


def test_leased_by_others_is_the_images_to_leave_out_of_a_queue(store, sha) -> None:
    claim(store, sha(1), "Dr A")
    claim(store, sha(2), "Dr B")
    claim(store, sha(3), "Dr B", role=SECONDARY)
    claim(store, sha(4), "Dr C", now=at(-TTL))  # expired before T0
    assert store.leased_by_others("Dr A", PRIMARY, now=T0) == {sha(2)}
    assert store.leased_by_others("Dr A", SECONDARY, now=T0) == {sha(3)}
    assert store.leased_by_others("Dr B", PRIMARY, now=T0) == {sha(1)}
    assert store.leased_by_others("Dr D", PRIMARY, now=at(TTL)) == set()  # all expired


def test_leases_are_not_audited_and_never_a_grading(store, sha) -> None:
    claim(store, sha(1), "Dr A")
    store.release_leases("Dr A")
    assert store.audit_log() == [] and store.current_gradings() == []


def test_a_claim_refuses_what_it_cannot_mean(store, sha) -> None:
    with pytest.raises(StoreWriteError):
        claim(store, sha(1), " ")
    with pytest.raises(StoreWriteError):
        store.claim_lease(sha(1), PRIMARY, "Dr A", workstation="", now=T0, ttl_s=0)
    with pytest.raises(ValueError, match="time zone"):
        claim(store, sha(1), "Dr A", now=datetime(2026, 12, 7, 20, 46))
    assert store.leases(now=T0) == []


def test_times_in_another_zone_are_stored_as_utc(store, sha) -> None:
    lease = claim(store, sha(1), "Dr A", now=T0.astimezone(timezone(timedelta(hours=2))))
    assert lease is not None and lease.acquired_at == lease_time(T0)
    assert lease.acquired_at.endswith("+00:00")


# ---------------------------------------------------------------- PostgreSQL only


def test_a_grader_s_own_login_may_take_renew_and_release_leases(pg_server, pg_url, sha) -> None:
    """The server grants graders (sall_grader) what leases need, and nothing of it is history."""
    from psycopg.conninfo import conninfo_to_dict

    from sall_desktop.store.pg_repository import open_team_store

    open_team_store(pg_url, app_version="9.9.9-test").close()  # the administrator's first open
    dbname = str(conninfo_to_dict(pg_url)["dbname"])
    role = f"lease_{dbname}"[:63]
    pg_server.execute_as_superuser(f'CREATE ROLE "{role}" LOGIN IN ROLE sall_grader'.encode())
    try:
        store = open_team_store(pg_server.url(dbname, user=role), app_version="9.9.9-test")
        try:
            assert claim(store, sha(1), "Dr A") is not None
            assert claim(store, sha(1), "Dr A", now=at(100)) is not None  # renewed (UPDATE)
            assert claim(store, sha(1), "Dr B", now=at(500)) is not None  # taken over
            assert store.leased_by_others("Dr A", PRIMARY, now=at(501)) == {sha(1)}
            assert store.release_leases("Dr B") == 1  # DELETE
        finally:
            store.close()
    finally:
        pg_server.execute_as_superuser(f'DROP ROLE "{role}"'.encode())


THREADS, CLAIMS, IMAGES = 8, 50, 20


def test_racing_claims_from_many_connections_have_one_winner_each(pg_url, sha) -> None:
    """8 graders on 2 connection pools claim 20 images 50 times each, all at one instant:
    exactly one grader ever wins each image (the others are refused every time)."""
    from sall_desktop.store.pg_repository import open_team_store

    stores = [open_team_store(pg_url, app_version="9.9.9-test") for _ in range(2)]
    start = threading.Barrier(THREADS, timeout=HANG_GUARD_S)

    def grader(n: int) -> Callable[[], list[tuple[str, str]]]:
        def run() -> list[tuple[str, str]]:
            store, name, won = stores[n % 2], f"Dr {n}", []
            start.wait()
            for i in range(CLAIMS):
                image = sha((i * 7 + n) % IMAGES)  # each thread walks the images in its order
                lease = claim(store, image, name, ws=f"ws-{n}")
                if lease is not None:
                    assert lease.grader == name and lease.image_sha256 == image
                    won.append((image, name))
            return won

        return run

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(grader(n)) for n in range(THREADS)]
            results = [f.result(timeout=HANG_GUARD_S) for f in futures]
        winners: dict[str, set[str]] = {}
        for won in results:
            for image, name in won:
                winners.setdefault(image, set()).add(name)
        assert set(winners) == {sha(i) for i in range(IMAGES)}  # every image was won...
        assert all(len(names) == 1 for names in winners.values()), winners  # ...by one grader
        held = stores[0].leases(now=T0)
        assert {(x.image_sha256, x.grader) for x in held} == {
            (image, next(iter(names))) for image, names in winners.items()
        }
    finally:
        for store in stores:
            store.close()
