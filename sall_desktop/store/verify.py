"""Check that the gradings and the audit trail still tell the same story (``sall-desktop verify``).

The audit trail's hash chain proves its own rows were not edited, removed or inserted (short of
a full recomputation). It said nothing of the ``gradings`` table, nor of the grader names
gradings point to. This check replays the trail grading by grading and compares: every gradings
row must have the audit rows written with it, those rows must rebuild exactly its values, image
and grader name, and every audit row must point to a gradings row that exists. So an edited,
inserted or deleted gradings row, a renamed grader, and a trail cut short at its end (the
gradings it covered lose their audit rows) are each found.

What it cannot find: someone with write access who rewrites a grading *and* its audit rows *and*
recomputes every later hash leaves a consistent database. Only an outside copy of the chain's
head detects that: ``verify`` prints the head to be kept where the database's users cannot
write; a kept head that is no longer in the trail gives the rewrite away (docs/architecture.md,
What the chain proves).
"""

from __future__ import annotations

from dataclasses import dataclass

from sall_desktop.store.audit import (
    ACTIONS,
    AUDIT_COLUMNS,
    AUDITED_FIELDS,
    ChainVerifier,
    grading_fields,
)
from sall_desktop.store.rows import GRADING_SELECT, grading_from_row
from sall_desktop.store.sql import SqlConnection

MAX_PROBLEMS = 20
"""Problems listed in full; more are counted."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict on one store.

    Attributes:
        ok: nothing wrong was found.
        gradings / audit_rows: rows checked.
        problems: what is wrong, one line each, oldest first (at most :data:`MAX_PROBLEMS`).
        more: problems found beyond those listed.
        chain_head: the last audit row's hash ("" for an empty trail), to keep outside.
    """

    ok: bool
    gradings: int
    audit_rows: int
    problems: tuple[str, ...]
    more: int
    chain_head: str

    def format(self) -> str:
        if self.ok:
            return (
                f"verified: {self.gradings} gradings and {self.audit_rows} audit rows agree; "
                f"chain head {self.chain_head or '(empty)'}"
            )
        lines = [f"NOT verified: {len(self.problems) + self.more} problem(s) found"]
        lines += [f"  - {p}" for p in self.problems]
        if self.more:
            lines.append(f"  ... and {self.more} more")
        return "\n".join(lines)


def chain_head(conn: SqlConnection) -> str:
    """The hash of the last audit row ("" when the trail is empty)."""
    row = conn.execute("SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return "" if row is None else str(row[0])


def verify_store(conn: SqlConnection) -> VerifyReport:
    """Check the hash chain, then the gradings against the trail (see the module docstring)."""
    problems: list[str] = []
    verifier = ChainVerifier()
    audit_rows = 0
    by_grading: dict[int, list[tuple[object, ...]]] = {}
    for row in conn.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY id"):
        audit_rows += 1
        verifier.feed_row(row)
        # Programme events carry no grading field; a grading's rows name one (or "" to confirm).
        field, grading_id = row[6], row[12]
        if grading_id is not None and (field == "" or field in AUDITED_FIELDS):
            by_grading.setdefault(int(grading_id), []).append(row)
    chain = verifier.report()
    if not chain.ok:
        problems.append(chain.message)
    gradings = _check_gradings(conn, by_grading, problems)
    for grading_id in sorted(by_grading):
        problems.append(f"audit rows name grading {grading_id}, which is not in the database")
    return VerifyReport(
        ok=not problems,
        gradings=gradings,
        audit_rows=audit_rows,
        problems=tuple(problems[:MAX_PROBLEMS]),
        more=max(0, len(problems) - MAX_PROBLEMS),
        chain_head=chain_head(conn),
    )


def _check_gradings(
    conn: SqlConnection,
    by_grading: dict[int, list[tuple[object, ...]]],
    problems: list[str],
) -> int:
    """Replay each grading's audit rows and compare; consumes ``by_grading``. Returns rows."""
    state: dict[tuple[str, str], dict[str, str | None]] = {}
    count = 0
    for row in conn.execute(GRADING_SELECT + " ORDER BY g.id"):
        count += 1
        grading_id, sha, grader, retracted = int(row[0]), str(row[1]), str(row[2]), bool(row[3])
        rows = by_grading.pop(grading_id, None)
        if not rows:
            problems.append(
                f"grading {grading_id} has no audit rows "
                "(inserted outside the app, or the trail was cut short)"
            )
            continue
        if any(r[3] != grader or r[4] != sha for r in rows):
            problems.append(
                f"grading {grading_id} does not belong to the grader or image its audit rows "
                "name (a grader was renamed or the row was edited)"
            )
            continue
        key = (sha, grader)
        fields = state.get(key, {}) if not retracted else {}
        for r in rows:
            action, field, new_value = str(r[5]), str(r[6]), r[8]
            if action not in ACTIONS:
                problems.append(f"audit row {r[0]} has an unknown action {action!r}")
            elif action in ("create", "modify") and field:
                fields[field] = None if new_value is None else str(new_value)
        if retracted:
            state.pop(key, None)
            if any(r[5] != "delete" for r in rows):
                problems.append(f"grading {grading_id} is a removal its audit rows do not record")
            continue
        state[key] = fields
        try:
            stored = grading_fields(grading_from_row(row))
        except ValueError:  # a value no save can write: edited past the table's checks
            stored = {}
        if fields != stored:
            problems.append(
                f"grading {grading_id} differs from what its audit rows record (it was edited)"
            )
    return count
