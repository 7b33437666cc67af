"""Many team-store clients at once, and the checks that nothing went wrong among them.

Shared by ``benchmarks/bench_team_store.py`` (10 processes x 1,000 gradings, timed) and
``tests/integration/test_team_store_load.py`` (a few processes, checks only).

Each client is its own process (spawned: a fresh interpreter with its own psycopg pool, as a
workstation is) and its own grader. Per grading it claims the lease of an image in the primary
role, reads the image's last gradings row, saves a grading with a fresh client UUID, and
releases the lease. Images are drawn so clients collide: half the draws go to a few "hot"
images at the head of a shared pool; a refused claim moves on to the next image of the pool.

The checks after the run (:func:`check_load`):

* **finished**: every client exited 0 within the hang guard (no deadlock; the guard is generous
  and says nothing about speed);
* **lost / duplicated**: every client UUID a client got an id back for is stored exactly once,
  under that id, and nothing else is stored;
* **verified**: ``verify()`` replays the audit chain and checks every grading against it;
* **leases exclusive**, two ways:

  - *by the clock*: each client logs, per lease, the span from "claim returned" to "about to
    release" on ``CLOCK_MONOTONIC`` (one clock for every process of the machine). That span
    lies inside the time the lease was truly held (from the claim's commit to the release's
    commit), so two overlapping spans of the same image from different clients are two clients
    holding it at once;
  - *by the store's ids*: inside its span a client reads the id of the image's last gradings
    row, then saves. Ids grow in commit order (writes are serialised), so when the spans of an
    image never overlap, each grading's "last row seen" is the grading saved on that image just
    before it. Two clients inside the same image at once would both see the same last row: a
    break in the chain. This check needs no clock at all.

* **leases released**: no lease is left in the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import random
import statistics
import sys
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from sall_desktop.domain.grades import GraderRole, Grading, utc_now
from sall_desktop.store import open_team_store

REPO = str(Path(__file__).resolve().parents[2])
ROLE = GraderRole.PRIMARY
APP_VERSION = "team-load"
LEASE_TTL_S = 3600.0
"""Longer than any run: a lease ends by its release only, never by expiry, so exclusivity rests
on claim and release alone."""


@dataclass(frozen=True)
class LoadPlan:
    """What to run.

    Attributes:
        url: the team store: an empty database (the checks count every gradings row in it).
        clients: client processes.
        gradings: gradings saved by each client.
        images: size of the shared image pool (more than ``clients``, so a free one exists).
        hot: the first ``hot`` images of the pool are drawn ``hot_share`` of the time.
        hot_share: the share of draws that go to the hot images.
        seed: draws and grades are reproducible from it (timing is not).
        hang_guard_s: how long a client may take before it counts as hung (not a speed limit).
    """

    url: str
    clients: int
    gradings: int
    images: int
    hot: int
    hot_share: float = 0.5
    seed: int = 1
    hang_guard_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.images <= self.clients:
            raise ValueError("the pool needs more images than clients, or a claim could wait")
        if not 0 < self.hot <= self.images:
            raise ValueError("hot must be between 1 and the pool size")


def default_images(clients: int, gradings: int) -> int:
    """The pool the issue names: 2 x N x M / 10 images (each graded about five times)."""
    return max(2 * clients * gradings // 10, clients + 1)


def image_pool(n: int) -> list[str]:
    return [hashlib.sha256(f"team-load-{i}".encode()).hexdigest() for i in range(n)]


def _draw(rng: random.Random, plan: LoadPlan) -> int:
    if rng.random() < plan.hot_share:
        return rng.randrange(plan.hot)
    return rng.randrange(plan.images)


# ---------------------------------------------------------------------------- one client


def client_main(plan_json: str, index: int, out_path: str, barrier: Any) -> None:
    """One client process (the spawn target): grade, then write what it saw to ``out_path``."""
    try:
        result = _run_client(LoadPlan(**json.loads(plan_json)), index, barrier)
    except BaseException:
        barrier.abort()  # the others must not wait at the start for a client that died
        Path(out_path).write_text(json.dumps({"error": traceback.format_exc()}), "utf-8")
        raise
    Path(out_path).write_text(json.dumps(result), "utf-8")


def _run_client(plan: LoadPlan, index: int, barrier: Any) -> dict[str, Any]:
    pool = image_pool(plan.images)
    rng = random.Random(plan.seed * 1_000_003 + index)
    grader, workstation = f"client-{index:02d}", f"load-ws-{index:02d}"
    acks: list[list[Any]] = []  # [client_uuid, row id, image, id of the last row it saw]
    latencies: list[float] = []
    spans: list[list[Any]] = []  # [image, claim returned ns, about to release ns]
    refusals = 0
    store = open_team_store(plan.url, app_version=APP_VERSION)
    try:
        barrier.wait(timeout=plan.hang_guard_s)  # every client opened: start together
        start_ns = time.monotonic_ns()
        for _ in range(plan.gradings):
            i = _draw(rng, plan)
            while (
                store.claim_lease(
                    pool[i],
                    ROLE,
                    grader,
                    workstation=workstation,
                    now=datetime.now(UTC),
                    ttl_s=LEASE_TTL_S,
                )
                is None
            ):
                refusals += 1
                i = (i + 1) % plan.images
            entered = time.monotonic_ns()
            sha = pool[i]
            rows = store.grading_rows(sha)
            last_seen = rows[-1].id if rows else 0
            client_uuid = str(uuid.uuid4())
            grading = Grading(sha, grader, dr_grade=rng.randrange(5), amd_grade=rng.randrange(4))
            t0 = time.perf_counter()
            row_id = store.add_grading(grading, client_uuid=client_uuid, client_at_utc=utc_now())
            latencies.append(time.perf_counter() - t0)
            acks.append([client_uuid, row_id, sha, last_seen])
            spans.append([sha, entered, time.monotonic_ns()])
            store.release_leases(grader, workstation=workstation, image_sha256=sha)
        end_ns = time.monotonic_ns()
    finally:
        store.close()
    return {
        "index": index,
        "grader": grader,
        "acks": acks,
        "latencies_s": latencies,
        "spans": spans,
        "refusals": refusals,
        "start_ns": start_ns,
        "end_ns": end_ns,
    }


# ---------------------------------------------------------------------------- the run


@dataclass
class LoadRun:
    """What the clients reported. ``results[i]`` is None for a client that left no report."""

    plan: LoadPlan
    results: list[dict[str, Any] | None]
    exitcodes: list[int | None]
    hung: list[int]
    errors: list[str] = field(default_factory=list)

    @property
    def reports(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r is not None and "error" not in r]


@contextlib.contextmanager
def _repo_on_path() -> Iterator[None]:
    """The repository root on ``sys.path`` while clients start: a spawned child imports this
    module by name with the parent's path, and pytest (``--import-mode=importlib``) reaches
    ``tests`` without putting the root there."""
    added = REPO not in sys.path
    if added:
        sys.path.append(REPO)
    try:
        yield
    finally:
        if added:
            sys.path.remove(REPO)


def run_load(plan: LoadPlan, workdir: Path) -> LoadRun:
    """Start ``plan.clients`` spawned processes, wait for them (hang guard only), collect."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(plan.clients)
    plan_json = json.dumps(dataclasses.asdict(plan))
    outs = [workdir / f"client-{i:02d}.json" for i in range(plan.clients)]
    procs = [
        ctx.Process(
            target=client_main,
            args=(plan_json, i, str(outs[i]), barrier),
            name=f"team-load-{i}",
        )
        for i in range(plan.clients)
    ]
    with _repo_on_path():
        for p in procs:
            p.start()
    guard_end = time.monotonic() + plan.hang_guard_s
    hung = []
    for i, p in enumerate(procs):
        p.join(timeout=max(guard_end - time.monotonic(), 1.0))
        if p.is_alive():
            hung.append(i)
    for i in hung:  # ours, by handle: a hung client must not outlive the run
        procs[i].kill()
        procs[i].join()
    results: list[dict[str, Any] | None] = []
    errors = []
    for i, out in enumerate(outs):
        if not out.exists():
            results.append(None)
            errors.append(f"client {i} left no report (exit code {procs[i].exitcode})")
            continue
        result = json.loads(out.read_text("utf-8"))
        results.append(result)
        if "error" in result:
            errors.append(f"client {i}: {result['error']}")
    return LoadRun(plan, results, [p.exitcode for p in procs], hung, errors)


# ---------------------------------------------------------------------------- checks


@dataclass
class LoadChecks:
    """The verdict on one run; :attr:`ok` when every check passed."""

    expected: int
    finished: bool
    acknowledged: int
    stored: int
    lost: list[str]
    duplicated: list[str]
    wrong_ids: list[str]
    unexpected: list[str]
    verify_ok: bool
    verify_gradings: int
    verify_audit_rows: int
    verify_problems: tuple[str, ...]
    span_overlaps: list[str]
    chain_breaks: list[str]
    leases_left: int

    @property
    def ok(self) -> bool:
        return (
            self.finished
            and self.acknowledged == self.expected == self.stored
            and not (self.lost or self.duplicated or self.wrong_ids or self.unexpected)
            and self.verify_ok
            and self.verify_gradings == self.expected
            and not (self.span_overlaps or self.chain_breaks)
            and self.leases_left == 0
        )

    def lines(self) -> list[str]:
        def sample(items: list[str]) -> str:
            return f" e.g. {items[:3]}" if items else ""

        return [
            f"all clients finished (no deadlock): {'yes' if self.finished else 'NO'}",
            f"acknowledged {self.acknowledged} / expected {self.expected}, stored {self.stored}",
            f"lost: {len(self.lost)}{sample(self.lost)}",
            f"duplicated: {len(self.duplicated)}{sample(self.duplicated)}",
            f"stored under another id: {len(self.wrong_ids)}{sample(self.wrong_ids)}",
            f"stored but never acknowledged: {len(self.unexpected)}{sample(self.unexpected)}",
            f"verify(): {'ok' if self.verify_ok else 'NOT ok'}, {self.verify_gradings} "
            f"gradings, {self.verify_audit_rows} audit rows{sample(list(self.verify_problems))}",
            f"lease spans overlapping (clock): {len(self.span_overlaps)}"
            f"{sample(self.span_overlaps)}",
            f"grading chain breaks (store ids): {len(self.chain_breaks)}"
            f"{sample(self.chain_breaks)}",
            f"leases left in the store: {self.leases_left}",
        ]


def span_overlaps(reports: list[dict[str, Any]]) -> list[str]:
    """Spans of one image, held by two clients, that overlap on the monotonic clock."""
    by_image: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for r in reports:
        for sha, entered, left in r["spans"]:
            by_image[sha].append((entered, left, r["index"]))
    found = []
    for sha, spans in by_image.items():
        spans.sort()
        for (e1, l1, c1), (e2, l2, c2) in zip(spans, spans[1:], strict=False):
            if e2 <= l1:
                found.append(f"{sha[:8]}: client {c1} [{e1}, {l1}] and client {c2} [{e2}, {l2}]")
    return found


def chain_breaks(reports: list[dict[str, Any]]) -> list[str]:
    """Gradings whose "last row seen" is not the image's grading just before them."""
    by_image: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for r in reports:
        for _, row_id, sha, last_seen in r["acks"]:
            by_image[sha].append((row_id, last_seen, r["index"]))
    found = []
    for sha, rows in by_image.items():
        before = 0
        for row_id, last_seen, client in sorted(rows):
            if last_seen != before:
                found.append(
                    f"{sha[:8]}: row {row_id} (client {client}) saw {last_seen}, not {before}"
                )
            before = row_id
    return found


def check_load(run: LoadRun) -> LoadChecks:
    plan = run.plan
    reports = run.reports
    acked: dict[str, int] = {}
    for r in reports:
        for client_uuid, row_id, _, _ in r["acks"]:
            acked[client_uuid] = row_id
    with psycopg.connect(plan.url, autocommit=True) as conn:
        stored_rows = conn.execute(
            "SELECT client_uuid::text, count(*), min(id) FROM gradings GROUP BY 1"
        ).fetchall()
        left = conn.execute("SELECT count(*) FROM leases").fetchone()
    leases_left = int(left[0]) if left else -1
    stored = {str(u): (int(n), int(i)) for u, n, i in stored_rows}
    lost = sorted(set(acked) - set(stored))
    duplicated = sorted(u for u, (n, _) in stored.items() if n > 1)
    wrong_ids = sorted(u for u, row_id in acked.items() if u in stored and stored[u][1] != row_id)
    unexpected = sorted(u for u in stored if u not in acked)
    store = open_team_store(plan.url, app_version=APP_VERSION, read_only=True)
    try:
        report = store.verify()
    finally:
        store.close()
    return LoadChecks(
        expected=plan.clients * plan.gradings,
        finished=not run.hung and not run.errors and all(c == 0 for c in run.exitcodes),
        acknowledged=sum(len(r["acks"]) for r in reports),
        stored=sum(n for n, _ in stored.values()),
        lost=lost,
        duplicated=duplicated,
        wrong_ids=wrong_ids,
        unexpected=unexpected,
        verify_ok=report.ok,
        verify_gradings=report.gradings,
        verify_audit_rows=report.audit_rows,
        verify_problems=report.problems,
        span_overlaps=span_overlaps(reports),
        chain_breaks=chain_breaks(reports),
        leases_left=leases_left,
    )


# ---------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class LoadStats:
    gradings: int
    wall_s: float
    per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    refusals: int
    claims: int


def load_stats(run: LoadRun) -> LoadStats:
    """Throughput over the span from the first client's start to the last one's end (process
    start-up and store opening left out: the clients start together at a barrier)."""
    reports = run.reports
    latencies = sorted(s for r in reports for s in r["latencies_s"])
    wall_s = (max(r["end_ns"] for r in reports) - min(r["start_ns"] for r in reports)) / 1e9
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    refusals = sum(r["refusals"] for r in reports)
    return LoadStats(
        gradings=len(latencies),
        wall_s=wall_s,
        per_s=len(latencies) / wall_s,
        p50_ms=cuts[49] * 1e3,
        p95_ms=cuts[94] * 1e3,
        p99_ms=cuts[98] * 1e3,
        max_ms=latencies[-1] * 1e3,
        refusals=refusals,
        claims=refusals + len(latencies),
    )
