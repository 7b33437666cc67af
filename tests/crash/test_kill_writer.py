"""R1: SIGKILL a grading writer at random moments; no acknowledged grade is ever lost.

A child process commits random gradings (each with its audit rows, one transaction) and prints
each row id after ``commit()`` returned. The parent kills it 0-50 ms after it started, then
checks the database: ``PRAGMA integrity_check`` is ok, every acknowledged row is present and
byte-identical, and gradings and audit rows match one to one. One database is reused across
kills, so later children also recover from the earlier crashes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest

from sall_desktop.store import AUDITED_FIELDS, grading_fields, open_store, replay_audit
from sall_desktop.store.audit import AUDIT_COLUMNS, AuditEntry, ChainVerifier

CHILD = Path(__file__).with_name("kill_writer_child.py")
ROW_SQL = (
    "SELECT g.id, i.sha256, gr.name, g.retracted, g.role, g.source, g.gradable,"
    " g.ungradable_reason, g.dr_grade, g.amd_grade, g.dme, hex(g.notes), g.model_version,"
    " g.created_at FROM gradings AS g JOIN images AS i ON i.id = g.image_id"
    " JOIN graders AS gr ON gr.id = g.grader_id"
)
FULL_CHECK_EVERY = 25
PRESPAWN = 4

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SIGKILL harness runs on Linux"
)


def _spawn(db: Path, seed: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child


class Checker:
    """What the children acknowledged, and the checks after each kill."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.acked: dict[int, list[object]] = {}  # id -> expected row (without id)
        self.retracted: dict[int, tuple[str, str]] = {}
        self.chain = ChainVerifier()
        self.chain_upto = 0

    def record(self, lines: list[str]) -> int:
        count = 0
        for line in lines:
            if not line.endswith("\n"):
                continue  # cut by the kill: its commit may or may not have happened
            message = json.loads(line)
            assert "error" not in message, message["error"]
            if "row" in message:
                self.acked[message["id"]] = message["row"]
            else:
                self.retracted[message["id"]] = tuple(message["retract"])
            count += 1
        return count

    def check(self, full: bool) -> None:
        # Read-only: the parent runs WAL recovery like any reader but never checkpoints, so the
        # next child meets the crashed writer's WAL as it was.
        conn = sqlite3.connect(f"{self.db.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            rows = {r[0]: list(r[1:]) for r in conn.execute(ROW_SQL)}
            for row_id, expected in self.acked.items():
                assert rows.get(row_id) == expected, f"acknowledged grading {row_id} lost/changed"
            for row_id, (image, grader) in self.retracted.items():
                row = rows.get(row_id)
                assert row is not None and row[:3] == [image, grader, 1], row_id
                assert row[5:10] == [None] * 5
            self._check_audit_matches(conn)
            for values in conn.execute(
                f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log WHERE id > ? ORDER BY id",
                (self.chain_upto,),
            ):
                assert self.chain.feed(AuditEntry(*values)), self.chain.report().message
                self.chain_upto = values[0]
        finally:
            conn.close()
        if full:
            with open_store(self.db, read_only=True) as store:
                assert store.chain_report is not None and store.chain_report.ok
                current = {
                    (g.image_sha256, g.grader): grading_fields(g) for g in store.current_gradings()
                }
                assert replay_audit(store.audit_log()) == current

    @staticmethod
    def _check_audit_matches(conn: sqlite3.Connection) -> None:
        # Every grading has audit rows, every audit row belongs to a grading, about the same
        # image and grader; a retraction has exactly one "delete" row per field.
        (orphans,) = conn.execute(
            "SELECT count(*) FROM gradings AS g WHERE NOT EXISTS "
            "(SELECT 1 FROM audit_log AS a WHERE a.grading_id = g.id)"
        ).fetchone()
        (strays,) = conn.execute(
            "SELECT count(*) FROM audit_log AS a LEFT JOIN gradings AS g ON g.id = a.grading_id "
            "WHERE g.id IS NULL"
        ).fetchone()
        (mismatched,) = conn.execute(
            "SELECT count(*) FROM audit_log AS a JOIN gradings AS g ON g.id = a.grading_id "
            "JOIN images AS i ON i.id = g.image_id JOIN graders AS gr ON gr.id = g.grader_id "
            "WHERE a.image_sha256 <> i.sha256 OR a.grader <> gr.name "
            "OR (g.retracted = 1) <> (a.action = 'delete')"
        ).fetchone()
        (bad_deletes,) = conn.execute(
            "SELECT count(*) FROM (SELECT g.id FROM gradings AS g JOIN audit_log AS a "
            "ON a.grading_id = g.id WHERE g.retracted = 1 GROUP BY g.id HAVING count(*) <> ?)",
            (len(AUDITED_FIELDS),),
        ).fetchone()
        assert (orphans, strays, mismatched, bad_deletes) == (0, 0, 0, 0)


def _reap(child: subprocess.Popen[str]) -> list[str]:
    assert child.stdout is not None
    rest = child.stdout.readlines()
    child.wait()
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()
    return rest


def run_campaign(db: Path, kills: int, seed: int) -> tuple[int, int]:
    """Kill ``kills`` writers in turn; return (acknowledged commits, kills during open)."""
    rng = random.Random(seed)
    checker = Checker(db)
    mid_open = 0
    # Children are started ahead of time and wait on stdin, so their ~0.1 s of imports
    # overlaps earlier trials; only one of them ever opens the database at a time.
    waiting = deque(_spawn(db, rng.randrange(2**31)) for _ in range(PRESPAWN))
    try:
        for trial in range(kills):
            child = waiting.popleft()
            assert child.stdout is not None and child.stdin is not None
            ready = child.stdout.readline()
            assert ready == "ready\n", ready + (child.stderr.read() if child.stderr else "")
            delay = rng.uniform(0.0, 0.050)
            from_start = rng.random() < 0.2  # some kills land while the store is opening
            child.stdin.write("go\n")
            child.stdin.flush()
            first: list[str] = []
            if not from_start:
                opened = child.stdout.readline()
                assert opened == "open\n", opened + (child.stderr.read() if child.stderr else "")
                # At least one acknowledged commit before the kill, however slow the machine:
                # the campaign's coverage does not depend on how far a child gets in 50 ms.
                first.append(child.stdout.readline())
                time.sleep(delay)
            # A kill "from start" follows "go" at once, so it lands while the store opens.
            os.kill(child.pid, signal.SIGKILL)
            rest = first + _reap(child)
            waiting.append(_spawn(db, rng.randrange(2**31)))
            if from_start:
                if rest[:1] == ["open\n"]:
                    rest = rest[1:]
                else:
                    mid_open += 1
            checker.record(rest)
            checker.check(full=(trial + 1) % FULL_CHECK_EVERY == 0 or trial == kills - 1)
    finally:
        for child in waiting:
            child.kill()
            _reap(child)
    return len(checker.acked) + len(checker.retracted), mid_open


@pytest.mark.parametrize(
    "kills",
    [pytest.param(200, marks=pytest.mark.slow), pytest.param(5000, marks=pytest.mark.long)],
)
def test_sigkilled_writer_never_loses_an_acknowledged_grading(tmp_path: Path, kills: int) -> None:
    db = tmp_path / "labels.sqlite3"
    acknowledged, mid_open = run_campaign(db, kills, seed=kills)
    # The harness must have exercised both cases: kills after commits (every trial that waited
    # for "open" saw one commit acknowledged first), and kills mid-open.
    assert acknowledged > kills // 2 and mid_open > 0
