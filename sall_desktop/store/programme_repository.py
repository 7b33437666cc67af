"""Screening-programme tables (schema 3): roles per folder, routing decisions and rules.

A mixin of :class:`~sall_desktop.store.sqlite_repository.SqliteLabelStore`: the same connection,
the same one-thread rule. Routing happens *inside* the transaction that saves a grading
(:meth:`ProgrammeRepositoryMixin._programme_after_grading`), so a grade and the decision it
causes commit together, from the GUI, the CLI or a script alike. With no programme set up
(no rules stored) nothing here runs and single-grader use is unchanged.

Every grant, revocation, rule change and routing decision is also an audit row (action
``create`` or ``delete``, field ``programme.*``) in the same hash chain as the gradings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource, utc_now
from sall_desktop.domain.programme import (
    ProgrammeRole,
    RoutingRules,
    Stage,
    disagreement,
    secondary_reason,
)
from sall_desktop.store import audit
from sall_desktop.store.errors import StoreWriteError
from sall_desktop.store.rows import GRADING_SELECT, grading_from_row, in_parts
from sall_desktop.store.sql import SqlConnection
from sall_desktop.store.transactions import Transactions

RULES_KEY = "rules"
SINGLE = "single"
"""Stage of a normal the sample did not pick (kept so the sample's share can be counted)."""
SAMPLE_REASON = "sampled normal"


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """A programme role a grader holds. ``scope`` is a folder, or "" for every folder."""

    grader: str
    role: ProgrammeRole
    scope: str = ""


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """One image queued for a level (or, stage "single", left with one grading)."""

    image_sha256: str
    stage: str
    reason: str
    actor: str
    at_utc: str


def _audit(
    conn: SqlConnection,
    app_version: str,
    *,
    actor: str,
    field: str,
    new_value: str,
    action: str = "create",
    image_sha256: str | None = None,
    grading_id: int | None = None,
) -> None:
    audit.append_audit_rows(
        conn,
        [audit.AuditChange(action, field, None, new_value)],
        grader=actor,
        image_sha256=image_sha256,
        grading_id=grading_id,
        reason="programme",
        app_version=app_version,
        model_version=None,
    )


class ProgrammeRepositoryMixin:
    """Roles, rules and routing of a screening programme (see the module docstring)."""

    # ------------------------------------------------------------------ rules

    def programme_rules(self: Transactions) -> RoutingRules | None:
        """The routing rules in force, or None when no programme is set up."""
        with self._read("the programme rules") as conn:
            return _rules(conn)

    def set_programme_rules(self: Transactions, rules: RoutingRules, *, actor: str) -> None:
        """Set up the programme (or change its rules); audited."""
        text = json.dumps(asdict(rules), sort_keys=True)
        with self._write("the programme rules") as conn:
            conn.execute(
                "INSERT INTO programme_settings (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (RULES_KEY, text, utc_now()),
            )
            _audit(conn, self.app_version, actor=actor, field="programme.rules", new_value=text)

    # ------------------------------------------------------------------ roles

    def set_programme_role(
        self: Transactions,
        grader: str,
        role: ProgrammeRole,
        *,
        actor: str,
        scope: str = "",
        granted: bool = True,
    ) -> None:
        """Grant (or revoke) ``role`` to ``grader`` for ``scope``; audited. Idempotent."""
        if not grader.strip() or not actor.strip():
            raise StoreWriteError(
                "A role needs a named grader and who assigns it.", retryable=False
            )
        with self._write("the role") as conn:
            row = conn.execute("SELECT id FROM graders WHERE name = ?", (grader,)).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO graders (name, created_at) VALUES (?, ?) RETURNING id",
                    (grader, utc_now()),
                )
                grader_id = int(cur.fetchone()[0])
            else:
                grader_id = int(row[0])
            held = conn.execute(
                "SELECT granted FROM programme_roles WHERE grader_id = ? AND role = ? "
                "AND scope = ? ORDER BY id DESC LIMIT 1",
                (grader_id, role.value, scope),
            ).fetchone()
            if (held is not None and bool(held[0]) == granted) or (held is None and not granted):
                return
            conn.execute(
                "INSERT INTO programme_roles (grader_id, role, scope, granted, actor, at_utc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (grader_id, role.value, scope, int(granted), actor, utc_now()),
            )
            value = json.dumps({"grader": grader, "role": role.value, "scope": scope})
            _audit(
                conn,
                self.app_version,
                actor=actor,
                field="programme.role",
                new_value=value,
                action="create" if granted else "delete",
            )

    def programme_roles(self: Transactions) -> list[RoleGrant]:
        """Every role held now (the latest grant or revocation of each wins)."""
        with self._read("the programme roles") as conn:
            rows = conn.execute(
                "SELECT g.name, r.role, r.scope, r.granted FROM programme_roles AS r "
                "JOIN graders AS g ON g.id = r.grader_id "
                "WHERE r.id = (SELECT max(x.id) FROM programme_roles AS x WHERE "
                "x.grader_id = r.grader_id AND x.role = r.role AND x.scope = r.scope) "
                "ORDER BY r.id"
            ).fetchall()
        return [RoleGrant(str(r[0]), ProgrammeRole(r[1]), str(r[2])) for r in rows if r[3]]

    # ------------------------------------------------------------------ routing

    def routing_decisions(
        self: Transactions, image_sha256s: Iterable[str] | None = None
    ) -> list[RoutingDecision]:
        """Every routing decision (of ``image_sha256s`` if given), oldest first."""
        sql = (
            "SELECT i.sha256, d.stage, d.reason, d.actor, d.at_utc FROM routing_decisions "
            "AS d JOIN images AS i ON i.id = d.image_id"
        )
        with self._read("the routing decisions") as conn:
            if image_sha256s is None:
                rows = conn.execute(sql + " ORDER BY d.id").fetchall()
            else:
                rows = []
                for marks, part in in_parts(image_sha256s):
                    rows += conn.execute(
                        f"{sql} WHERE i.sha256 IN ({marks}) ORDER BY d.id", part
                    ).fetchall()
        return [RoutingDecision(*(str(v) for v in r)) for r in rows]

    def level_gradings(
        self: Transactions, image_sha256s: Iterable[str] | None = None
    ) -> dict[str, dict[GraderRole, Grading]]:
        """Each graded image's current grading per level (the earliest grader per level), of
        ``image_sha256s`` if given (a refresh after a few saves need not read them all)."""
        with self._read("the gradings per level") as conn:
            if image_sha256s is None:
                return all_levels(conn)
            out: dict[str, dict[GraderRole, Grading]] = {}
            for marks, part in in_parts(image_sha256s):
                out.update(all_levels(conn, f" WHERE i.sha256 IN ({marks})", part))
            return out

    def _programme_check(
        self: Transactions, conn: SqlConnection, grading: Grading, previous: Grading | None
    ) -> None:
        """Refuse what a programme forbids, before the grading is written."""
        if _rules(conn) is None or grading.role not in _LEVELS:
            return
        if previous is not None and previous.role in _LEVELS and previous.role != grading.role:
            raise StoreWriteError(
                f"{grading.grader} already graded this image as {previous.role.value}; "
                f"a grader never grades one image at two levels.",
                retryable=False,
            )

    def _programme_after_grading(
        self: Transactions, conn: SqlConnection, grading: Grading, grading_id: int
    ) -> None:
        """Route the image after ``grading`` was written, in the same transaction."""
        rules = _rules(conn)
        if rules is None or grading.role not in (GraderRole.PRIMARY, GraderRole.SECONDARY):
            return
        if not _at_level(grading):
            return
        image_id = conn.execute(
            "SELECT id FROM images WHERE sha256 = ?", (grading.image_sha256,)
        ).fetchone()[0]
        stages = {
            str(r[0])
            for r in conn.execute(
                "SELECT stage FROM routing_decisions WHERE image_id = ?", (image_id,)
            )
        }
        levels = _levels(conn, image_id)
        primary, secondary = levels.get(GraderRole.PRIMARY), levels.get(GraderRole.SECONDARY)
        decisions: list[tuple[str, str]] = []
        if primary is not None and Stage.SECONDARY not in stages:
            reason = secondary_reason(primary)
            if reason:
                decisions.append((Stage.SECONDARY, reason))
            elif SINGLE not in stages:
                seen, sampled = _sample_counts(conn)
                picked = rules.samples_normal(
                    grading.image_sha256, normals_seen=seen, sampled=sampled
                )
                decisions.append((Stage.SECONDARY, SAMPLE_REASON) if picked else (SINGLE, "normal"))
        if primary is not None and secondary is not None and Stage.ARBITRATION not in stages:
            reason = disagreement(primary, secondary, rules)
            if reason:
                decisions.append((Stage.ARBITRATION, reason))
        if Stage.ARBITRATION not in stages and not decisions:
            # Two graders at one level (their leases crossed on a team store, or a QA lead
            # gave the image twice): both grades stay, and a disagreement between them is
            # arbitrated like one between levels, never settled by whoever saved first.
            reason = _same_level_disagreement(conn, image_id, grading, rules)
            if reason:
                decisions.append((Stage.ARBITRATION, reason))
        rules_text = json.dumps(asdict(rules), sort_keys=True)
        for stage, reason in decisions:
            conn.execute(
                "INSERT INTO routing_decisions (image_id, stage, reason, rules_json, actor, "
                "at_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (image_id, str(stage), reason, rules_text, grading.grader, utc_now()),
            )
            _audit(
                conn,
                self.app_version,
                actor=grading.grader,
                field=f"programme.routing.{stage}",
                new_value=reason,
                image_sha256=grading.image_sha256,
                grading_id=grading_id,
            )


_LEVELS = (GraderRole.PRIMARY, GraderRole.SECONDARY, GraderRole.ARBITER)


def _at_level(grading: Grading) -> bool:
    """Whether a grading is programme work: typed at a level, not imported (an import can never
    stand in for a grader's level, least of all the arbiter's final word)."""
    return grading.role in _LEVELS and grading.source is not GradingSource.IMPORT


def _rules(conn: SqlConnection) -> RoutingRules | None:
    row = conn.execute(
        "SELECT value FROM programme_settings WHERE key = ?", (RULES_KEY,)
    ).fetchone()
    return None if row is None else RoutingRules(**json.loads(row[0]))


def _sample_counts(conn: SqlConnection) -> tuple[int, int]:
    """Normals whose routing was decided so far, and how many of them were sampled."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE stage = ?), "
        "count(*) FILTER (WHERE stage = 'secondary' AND reason = ?) FROM routing_decisions",
        (SINGLE, SAMPLE_REASON),
    ).fetchone()
    single, sampled = int(row[0] or 0), int(row[1] or 0)
    return single + sampled, sampled


def _current(conn: SqlConnection, image_id: int) -> Iterator[tuple[int, Grading]]:
    """Each grader's current grading of the image, with the id of that grader's first row."""
    rows = conn.execute(
        GRADING_SELECT + " WHERE g.image_id = ? ORDER BY g.id", (image_id,)
    ).fetchall()
    latest: dict[str, tuple[int, bool, Grading | None]] = {}
    for row in rows:
        first = latest[row[2]][0] if row[2] in latest else int(row[0])
        retracted = bool(row[3])
        latest[row[2]] = (first, retracted, None if retracted else grading_from_row(row))
    for first, retracted, grading in latest.values():
        if not retracted and grading is not None:
            yield first, grading


def _same_level_disagreement(
    conn: SqlConnection, image_id: int, grading: Grading, rules: RoutingRules
) -> str:
    """Why ``grading`` and another grader's current grading at its level must be arbitrated."""
    for _, other in _current(conn, image_id):
        if other.grader == grading.grader or other.role is not grading.role:
            continue
        if _at_level(other) and (why := disagreement(other, grading, rules)):
            return f"two {grading.role.value} graders: {why}"
    return ""


def _levels(conn: SqlConnection, image_id: int) -> dict[GraderRole, Grading]:
    """The image's grading at each level: the earliest grader to reach that level counts."""
    found: dict[GraderRole, tuple[int, Grading]] = {}
    for first, grading in _current(conn, image_id):
        held = found.get(grading.role)
        if _at_level(grading) and (held is None or first < held[0]):
            found[grading.role] = (first, grading)
    return {role: grading for role, (_, grading) in found.items()}


def all_levels(
    conn: SqlConnection, where: str = "", params: Sequence[str] = ()
) -> dict[str, dict[GraderRole, Grading]]:
    """:func:`_levels` of every graded image (``where`` narrows them) in one pass."""
    latest: dict[tuple[str, str], tuple[int, Grading | None]] = {}
    for row in conn.execute(GRADING_SELECT + where + " ORDER BY g.id", params):
        key = (str(row[1]), str(row[2]))
        first = latest[key][0] if key in latest else int(row[0])
        latest[key] = (first, None if row[3] else grading_from_row(row))
    found: dict[str, dict[GraderRole, tuple[int, Grading]]] = {}
    for (sha, _), (first, grading) in latest.items():
        if grading is None or not _at_level(grading):
            continue
        levels = found.setdefault(sha, {})
        held = levels.get(grading.role)
        if held is None or first < held[0]:
            levels[grading.role] = (first, grading)
    return {sha: {r: g for r, (_, g) in lv.items()} for sha, lv in found.items()}
