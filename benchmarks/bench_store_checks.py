"""Issue 22: what the store's checks, the periodic backup and a restore cost on a big store.

Builds (or reuses) a store of N gradings, two graders per image, each grading with its audit
rows, then times in this one run: an open for writing with no backup due (the audit chain
check), the same open with a backup due (``verify()`` in place of the chain check, then
``backup_to`` with its ``integrity_check``), ``verify()`` and ``verify_chain()`` alone, the
check of one backup (``sall-desktop backups --check``) and a restore.

Run: ``.venv/bin/python benchmarks/bench_store_checks.py [--gradings 100000] [--folder DIR]``
(a tmpfs folder such as /dev/shm builds the store fastest; ``--reuse`` keeps it for a rerun).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sall_desktop.domain.grades import Grading
from sall_desktop.store import open_store
from sall_desktop.store.backups import BackupPolicy, periodic_backups
from sall_desktop.store.restore import check_backup, restore_database

T = TypeVar("T")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def timed(label: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = fn()
    print(f"{label:<58} {time.perf_counter() - start:7.2f} s", flush=True)
    return result


def build(path: Path, n: int) -> None:
    with open_store(path, backups=None) as store:
        for i in range(n):
            sha = hashlib.sha256(str(i // 2).encode()).hexdigest()
            grader = "Dr A" if i % 2 else "Dr B"
            store.add_grading(Grading(sha, grader, dr_grade=i % 5, amd_grade=i % 4, notes="x"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gradings", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the built store")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-store-"))
    db = folder / f"bench-{args.gradings}.sqlite"
    if not (args.reuse and db.exists()):
        db.unlink(missing_ok=True)
        timed(f"build {args.gradings} gradings", lambda: build(db, args.gradings))
    for old in periodic_backups(db):
        old.path.unlink()
    with open_store(db, read_only=True) as store:
        rows = store.verify_chain().checked
    print(f"{args.gradings} gradings, {rows} audit rows, {db.stat().st_size / 1e6:.0f} MB")

    due = BackupPolicy(now=lambda: T0)
    fresh = BackupPolicy(now=lambda: T0 + timedelta(hours=1))
    timed(
        "open for writing, backup due (verify + backup_to)",
        lambda: open_store(db, backups=due).close(),
    )
    timed(
        "open for writing, no backup due (chain check)",
        lambda: open_store(db, backups=fresh).close(),
    )
    timed(
        "open for writing, no checks",
        lambda: open_store(db, backups=None, verify_audit=False, startup_check="none").close(),
    )
    with open_store(db, read_only=True, verify_audit=False, startup_check="none") as store:
        timed("verify_chain()", store.verify_chain)
        timed("verify()", store.verify)
    backup = periodic_backups(db)[0].path
    timed("check one backup (backups --check)", lambda: check_backup(backup))
    result = timed("restore it", lambda: restore_database(db, backup))
    if result.replaced is not None and not args.reuse:
        result.replaced.unlink()


if __name__ == "__main__":
    main()
