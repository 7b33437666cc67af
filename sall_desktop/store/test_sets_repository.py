"""Test sets (schema 3): images with known answers that a QA lead assigns to graders.

A mixin of :class:`~sall_desktop.store.sqlite_repository.SqliteLabelStore`. A test set's answers
live in their own append-only table (``test_answers``), never in ``gradings``: a trainee's answer
can never become an image's final grade, an export or training data. Creating a set, assigning
it and every answer are audit rows (field ``programme.test_*``) in the one hash chain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource, UngradableReason, utc_now
from sall_desktop.store import audit
from sall_desktop.store.errors import StoreWriteError
from sall_desktop.store.sql import SqlConnection
from sall_desktop.store.transactions import Transactions


@dataclass(frozen=True, slots=True)
class TestSetRow:
    """One test set: its name, size, who it is assigned to, and whether it is announced."""

    __test__ = False  # not a pytest test class

    name: str
    size: int
    graders: tuple[str, ...]
    unannounced: bool
    created_by: str
    created_at: str


_VALUES = "gradable, ungradable_reason, dr_grade, amd_grade, dme"


def _values(grading: Grading) -> tuple[object, ...]:
    reason = grading.ungradable_reason.value if grading.ungradable_reason else None
    return (int(grading.gradable), reason, grading.dr_grade, grading.amd_grade, grading.dme)


def _grading(sha: str, grader: str, row: Sequence[object], created_at: str = "") -> Grading:
    gradable, reason, dr, amd, dme = row
    return Grading(
        image_sha256=sha,
        grader=grader,
        gradable=bool(gradable),
        ungradable_reason=UngradableReason(str(reason)) if reason else None,
        dr_grade=None if dr is None else int(str(dr)),
        amd_grade=None if amd is None else int(str(amd)),
        dme=None if dme is None else int(str(dme)),
        role=GraderRole.REFERENCE,
        source=GradingSource.IMPORT,
        **({"created_at": created_at} if created_at else {}),
    )


def _id(conn: SqlConnection, table: str, column: str, value: str) -> int | None:
    row = conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()
    return None if row is None else int(row[0])


def _grader_id(conn: SqlConnection, name: str) -> int:
    found = _id(conn, "graders", "name", name)
    if found is not None:
        return found
    cur = conn.execute(
        "INSERT INTO graders (name, created_at) VALUES (?, ?) RETURNING id", (name, utc_now())
    )
    return int(cur.fetchone()[0])


def _audit(conn: SqlConnection, app_version: str, actor: str, field: str, value: object, *,
           image_sha256: str | None = None) -> None:  # fmt: skip
    audit.append_audit_rows(
        conn,
        [audit.AuditChange("create", field, None, json.dumps(value, sort_keys=True))],
        grader=actor,
        image_sha256=image_sha256,
        grading_id=None,
        reason="test set",
        app_version=app_version,
        model_version=None,
    )


class TestSetsRepositoryMixin:
    """Test sets, their assignments and answers (see the module docstring)."""

    __test__ = False

    def create_test_set(
        self: Transactions,
        name: str,
        answers: Sequence[Grading],
        *,
        actor: str,
        source: str,
        unannounced: bool = False,
    ) -> int:
        """Create a test set from reference ``answers`` (one per image); return its size.

        Raises:
            StoreWriteError: the name is taken or empty, or there are no answers.
        """
        if not name.strip() or not answers:
            raise StoreWriteError(
                "A test set needs a name and at least one image.", retryable=False
            )
        with self._write("the test set") as conn:
            if _id(conn, "test_sets", "name", name) is not None:
                raise StoreWriteError(
                    f"There is already a test set called {name!r}.", retryable=False
                )
            cur = conn.execute(
                "INSERT INTO test_sets (name, unannounced, created_by, created_at) "
                "VALUES (?, ?, ?, ?) RETURNING id",
                (name, int(unannounced), actor, utc_now()),
            )
            set_id = int(cur.fetchone()[0])
            for answer in answers:
                image_id = _id(conn, "images", "sha256", answer.image_sha256)
                if image_id is None:
                    raise StoreWriteError(
                        "A test set image is not in the catalogue.", retryable=False
                    )
                conn.execute(
                    f"INSERT INTO test_set_items (test_set_id, image_id, {_VALUES}, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (set_id, image_id, *_values(answer), source),
                )
            _audit(conn, self.app_version, actor, "programme.test_set",
                   {"name": name, "size": len(answers), "source": source})  # fmt: skip
        return len(answers)

    def assign_test_set(self: Transactions, name: str, grader: str, *, actor: str) -> None:
        """Assign the test set to ``grader`` (idempotent); audited."""
        with self._write("the test set assignment") as conn:
            set_id = _id(conn, "test_sets", "name", name)
            if set_id is None:
                raise StoreWriteError(f"There is no test set called {name!r}.", retryable=False)
            grader_id = _grader_id(conn, grader)
            cur = conn.execute(
                "INSERT INTO test_set_assignments (test_set_id, grader_id, actor, at_utc) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (set_id, grader_id, actor, utc_now()),
            )
            if cur.rowcount:
                _audit(conn, self.app_version, actor, "programme.test_assignment",
                       {"name": name, "grader": grader})  # fmt: skip

    def test_sets(self: Transactions) -> list[TestSetRow]:
        """Every test set, oldest first."""
        with self._read("the test sets") as conn:
            rows = conn.execute(
                "SELECT t.id, t.name, t.unannounced, t.created_by, t.created_at, "
                "(SELECT count(*) FROM test_set_items AS i WHERE i.test_set_id = t.id) "
                "FROM test_sets AS t ORDER BY t.id"
            ).fetchall()
            out = []
            for set_id, name, unannounced, by, at, size in rows:
                graders = conn.execute(
                    "SELECT g.name FROM test_set_assignments AS a JOIN graders AS g "
                    "ON g.id = a.grader_id WHERE a.test_set_id = ? ORDER BY a.id",
                    (set_id,),
                ).fetchall()
                out.append(
                    TestSetRow(name, size, tuple(g[0] for g in graders), bool(unannounced), by, at)
                )
            return out

    def test_set_answers(self: Transactions, name: str) -> dict[str, Grading]:
        """The reference answer of each image of the set (grader ``test:<name>``)."""
        with self._read("the test set") as conn:
            rows = conn.execute(
                f"SELECT im.sha256, {', '.join('i.' + c for c in _VALUES.split(', '))} "
                "FROM test_set_items AS i JOIN test_sets AS t ON t.id = i.test_set_id "
                "JOIN images AS im ON im.id = i.image_id WHERE t.name = ? ORDER BY i.id",
                (name,),
            ).fetchall()
        return {str(r[0]): _grading(str(r[0]), f"test:{name}", r[1:]) for r in rows}

    def add_test_answer(
        self: Transactions, name: str, grading: Grading, *, client_uuid: str | None = None
    ) -> int:
        """Append ``grading`` as the grader's answer to a test item; audited. A ``client_uuid``
        already stored writes nothing and returns that row's id (an outbox resending).

        Raises:
            StoreWriteError: no such set, the image is not in it, or it is not assigned to the
                grader.
        """
        with self._write("the test answer") as conn:
            if (sent := _sent(conn, client_uuid)) is not None:
                return sent
            set_id, image_id, grader_id = _assigned_item(
                conn, name, grading.image_sha256, grading.grader
            )
            cur = conn.execute(
                "INSERT INTO test_answers (test_set_id, image_id, grader_id, client_uuid, "
                f"{_VALUES}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (set_id, image_id, grader_id, client_uuid, *_values(grading), grading.created_at),
            )
            _audit(conn, self.app_version, grading.grader, "programme.test_answer",
                   {"set": name, "values": list(_values(grading))},
                   image_sha256=grading.image_sha256)  # fmt: skip
            return int(cur.fetchone()[0])

    def retract_test_answer(
        self: Transactions,
        name: str,
        image_sha256: str,
        grader: str,
        *,
        client_uuid: str | None = None,
    ) -> int:
        """Append a "no answer" row: the grader's answer to the item is withdrawn (the undo of a
        first answer); audited. Earlier answers stay in the table. ``client_uuid``: as for
        :meth:`add_test_answer`.

        Raises:
            StoreWriteError: as :meth:`add_test_answer`.
        """
        with self._write("the test answer") as conn:
            if (sent := _sent(conn, client_uuid)) is not None:
                return sent
            set_id, image_id, grader_id = _assigned_item(conn, name, image_sha256, grader)
            cur = conn.execute(
                "INSERT INTO test_answers (test_set_id, image_id, grader_id, retracted, "
                "client_uuid, created_at) VALUES (?, ?, ?, 1, ?, ?) RETURNING id",
                (set_id, image_id, grader_id, client_uuid, utc_now()),
            )
            _audit(conn, self.app_version, grader, "programme.test_answer_retracted",
                   {"set": name}, image_sha256=image_sha256)  # fmt: skip
            return int(cur.fetchone()[0])

    def test_answers(self: Transactions, name: str | None = None) -> list[tuple[str, Grading]]:
        """Each grader's current answer per test item: (set name, answer), oldest first; an item
        whose latest row is a retraction has none."""
        sql = (
            "SELECT t.name, im.sha256, g.name, a.created_at, "
            f"{', '.join('a.' + c for c in _VALUES.split(', '))} FROM test_answers AS a "
            "JOIN test_sets AS t ON t.id = a.test_set_id JOIN images AS im ON im.id = a.image_id "
            "JOIN graders AS g ON g.id = a.grader_id WHERE a.id = (SELECT max(b.id) FROM "
            "test_answers AS b WHERE b.test_set_id = a.test_set_id AND b.image_id = a.image_id "
            "AND b.grader_id = a.grader_id) AND a.retracted = 0"
        )
        params: tuple[str, ...] = ()
        if name is not None:
            sql, params = sql + " AND t.name = ?", (name,)
        with self._read("the test answers") as conn:
            rows = conn.execute(sql + " ORDER BY a.id", params).fetchall()
        out = []
        for set_name, sha, grader, at, *values in rows:
            answer = _grading(str(sha), str(grader), values, str(at))
            out.append((str(set_name), _as_answer(answer)))
        return out


def _sent(conn: SqlConnection, client_uuid: str | None) -> int | None:
    """The test answer already stored under ``client_uuid`` (None: none, or no UUID)."""
    if client_uuid is None:
        return None
    row = conn.execute(
        "SELECT id FROM test_answers WHERE client_uuid = ?", (client_uuid,)
    ).fetchone()
    return None if row is None else int(row[0])


def _assigned_item(
    conn: SqlConnection, name: str, image_sha256: str, grader: str
) -> tuple[int, int, int]:
    """(test set id, image id, grader id) of an item of a set assigned to ``grader``."""
    row = conn.execute(
        "SELECT t.id, im.id FROM test_sets AS t JOIN test_set_items AS i "
        "ON i.test_set_id = t.id JOIN images AS im ON im.id = i.image_id "
        "WHERE t.name = ? AND im.sha256 = ?",
        (name, image_sha256),
    ).fetchone()
    grader_id = _id(conn, "graders", "name", grader)
    assigned = grader_id is not None and row is not None and conn.execute(
        "SELECT 1 FROM test_set_assignments WHERE test_set_id = ? AND grader_id = ?",
        (row[0], grader_id),
    ).fetchone()  # fmt: skip
    if row is None or grader_id is None or not assigned:
        raise StoreWriteError(
            f"This image is not in a test set assigned to {grader}.", retryable=False
        )
    return int(row[0]), int(row[1]), grader_id


def _as_answer(grading: Grading) -> Grading:
    """A grader's answer is a human grading at no level (the reference role marks "not live")."""
    return replace(grading, source=GradingSource.HUMAN)
