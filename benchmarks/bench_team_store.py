"""The team store under load: N client processes x M gradings each, with image leases.

Each client is a spawned process with its own pool and its own grader name. Per grading it
claims the lease of an image in the primary role (half the draws go to a few hot images, the
rest to a shared pool of 2 x N x M / 10; a refused claim moves on to the next image), reads the
image's last gradings row, saves a grading with a fresh client UUID (``perf_counter`` around
``add_grading``: the save latency) and releases the lease. The clients start together at a
barrier once each has opened the store, so gradings/s is over the span from the first start to
the last finish, process start-up left out.

Then the checks of ``tests/support/team_load.py``: 0 lost, 0 duplicated (every acknowledged
client UUID stored once, under the id the client got), ``verify()`` ok, every client finished
(a generous hang guard, not a speed limit), no two clients inside the same image at once (by
the machine's monotonic clock, and by the chain of store ids), no lease left.

Starts its own throwaway server (``tests/support/pg_server.py``: fsync and synchronous_commit
on, loopback) unless ``--url`` names an empty database to use instead.

Run: ``.venv/bin/python benchmarks/bench_team_store.py [--clients 10] [--gradings 1000]
[--images N] [--hot N] [--url postgresql://...]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.pg_server import PgServer  # noqa: E402
from tests.support.team_load import (  # noqa: E402
    LoadPlan,
    check_load,
    default_images,
    load_stats,
    run_load,
)

GOAL_P95_MS = 50.0


def bench(plan: LoadPlan, load_before: tuple[float, float, float]) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
        run = run_load(plan, Path(tmp))
    for error in run.errors:
        print(error, file=sys.stderr)
    checks = check_load(run)
    print(
        f"{plan.clients} clients x {plan.gradings} gradings, pool {plan.images} images "
        f"({plan.hot} hot, {plan.hot_share:.0%} of draws), load average before "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs"
    )
    if run.reports:
        s = load_stats(run)
        print(f"{'gradings saved':<34} {s.gradings:>10}")
        print(f"{'wall (first start to last end)':<34} {s.wall_s:>10.1f} s")
        print(f"{'gradings/s':<34} {s.per_s:>10.1f}")
        print(f"{'save latency p50':<34} {s.p50_ms:>10.1f} ms")
        goal = "meets" if s.p95_ms < GOAL_P95_MS else "MISSES"
        print(f"{'save latency p95':<34} {s.p95_ms:>10.1f} ms  ({goal} p95 < {GOAL_P95_MS:g})")
        print(f"{'save latency p99':<34} {s.p99_ms:>10.1f} ms")
        print(f"{'save latency max':<34} {s.max_ms:>10.1f} ms")
        print(
            f"{'lease claims refused':<34} {s.refusals:>10} of {s.claims} "
            f"({s.refusals / s.claims:.1%})"
        )
    print("checks:")
    for line in checks.lines():
        print(f"  {line}")
    print("ALL CHECKS PASSED" if checks.ok else "CHECKS FAILED")
    return checks.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="client processes")
    parser.add_argument("--gradings", type=int, default=1000, help="gradings per client")
    parser.add_argument("--images", type=int, default=None, help="pool size (2 x N x M / 10)")
    parser.add_argument("--hot", type=int, default=None, help="hot images (as many as clients)")
    parser.add_argument("--hot-share", type=float, default=0.5, help="draws going to hot ones")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hang-guard", type=float, default=3600.0, help="seconds before a client counts as hung"
    )
    parser.add_argument("--url", default=None, help="an empty team-store database to use")
    args = parser.parse_args()
    load_before = os.getloadavg()

    def plan(url: str) -> LoadPlan:
        return LoadPlan(
            url=url,
            clients=args.clients,
            gradings=args.gradings,
            images=args.images or default_images(args.clients, args.gradings),
            hot=args.hot or args.clients,
            hot_share=args.hot_share,
            seed=args.seed,
            hang_guard_s=args.hang_guard,
        )

    if args.url:
        ok = bench(plan(args.url), load_before)
    else:
        with PgServer() as server:
            ok = bench(plan(server.create_database("bench_team_store")), load_before)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
