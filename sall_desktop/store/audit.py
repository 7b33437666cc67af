"""The audit trail (R8): entries, the hash chain, and replay.

Every change of a grading writes one audit row per field in the same transaction as the grading
row. Each row stores ``prev_hash`` (the previous row's hash) and ``row_hash`` = SHA-256 of
``prev_hash``, a newline and the JSON array of the row's other columns in :data:`AUDIT_COLUMNS`
order (compact, non-ASCII kept as is).
Triggers stop accidental UPDATE/DELETE; the chain makes deliberate tampering detectable.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sall_desktop.domain.grades import Grading, utc_now
from sall_desktop.store.sql import SqlConnection

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first audit row."""

AUDITED_FIELDS: tuple[str, ...] = (
    "role",
    "source",
    "gradable",
    "ungradable_reason",
    "dr_grade",
    "amd_grade",
    "dme",
    "notes",
    "model_version",
)
"""Fields of a :class:`Grading` whose every change is audited (and that replay rebuilds)."""

ACTIONS: tuple[str, ...] = ("create", "modify", "confirm", "delete")
"""create: first grading (or first after a delete), one row per field; modify: one row per
changed field; confirm: saved again unchanged, one row with an empty field; delete: retraction,
one row per field with its old value."""

AUDIT_COLUMNS: tuple[str, ...] = (
    "id",
    "at_utc",
    "local_offset",
    "grader",
    "image_sha256",
    "action",
    "field",
    "old_value",
    "new_value",
    "reason",
    "app_version",
    "model_version",
    "grading_id",
    "client_at_utc",
    "prev_hash",
    "row_hash",
)

_CONTENT_COLUMNS = AUDIT_COLUMNS[:-2]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail.

    Attributes:
        id: row id; increases by one per row, in commit order.
        at_utc: UTC ISO-8601 time of the write.
        local_offset: the workstation's UTC offset at that time, e.g. "+02:00".
        grader: the named grader who made the change.
        image_sha256: the image concerned.
        action: one of :data:`ACTIONS`.
        field: one of :data:`AUDITED_FIELDS`, or "" for "confirm".
        old_value / new_value: canonical text (see :func:`encode_value`); None is blank.
        reason: why, as typed by the grader ("" when none was asked).
        app_version: version of SALL Desktop that wrote the row.
        model_version: id of the model whose output the grader was shown, if any.
        grading_id: the gradings row this change wrote.
        client_at_utc: on a team store, the workstation's own clock when the change was made
            (``at_utc`` is then the server's); None on a workstation's own SQLite store.
        prev_hash / row_hash: the hash chain (64 lowercase hex characters each).
    """

    id: int
    at_utc: str
    local_offset: str
    grader: str
    image_sha256: str | None
    action: str
    field: str
    old_value: str | None
    new_value: str | None
    reason: str
    app_version: str
    model_version: str | None
    grading_id: int | None
    client_at_utc: str | None
    prev_hash: str
    row_hash: str

    def content(self) -> dict[str, object]:
        """Every column except the two hashes: what ``row_hash`` covers."""
        # Built by hand: dataclasses.asdict deep-copies and would dominate the cost of a save.
        return {name: getattr(self, name) for name in _CONTENT_COLUMNS}

    def content_values(self) -> tuple[object, ...]:
        """:meth:`content` values in column order: what :func:`compute_row_hash` takes."""
        return tuple(getattr(self, name) for name in _CONTENT_COLUMNS)

    def values(self) -> tuple[object, ...]:
        """The row in :data:`AUDIT_COLUMNS` order, as stored."""
        return tuple(getattr(self, name) for name in AUDIT_COLUMNS)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of checking the hash chain.

    Attributes:
        ok: True when every row links to its predecessor and matches its own hash.
        checked: number of rows examined (all rows when ok; up to the first bad one otherwise).
        first_bad_id: id of the first row that fails, or None.
        message: grader-readable summary.
    """

    ok: bool
    checked: int
    first_bad_id: int | None
    message: str


@dataclass(frozen=True, slots=True)
class AuditChange:
    """One audit row still to be written (before it gets an id and its hashes)."""

    action: str
    field: str
    old_value: str | None
    new_value: str | None


def encode_value(value: object) -> str | None:
    """Canonical text of a field value: None stays None, booleans are "true"/"false"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def grading_fields(grading: Grading) -> dict[str, str | None]:
    """The audited fields of ``grading`` as canonical text, as :func:`replay_audit` returns them."""
    return {name: encode_value(getattr(grading, name)) for name in AUDITED_FIELDS}


def grading_changes(previous: Grading | None, new: Grading) -> list[AuditChange]:
    """The audit rows that saving ``new`` over ``previous`` (None: no current grading) needs."""
    new_fields = grading_fields(new)
    if previous is None:
        return [AuditChange("create", f, None, v) for f, v in new_fields.items()]
    old_fields = grading_fields(previous)
    changes = [
        AuditChange("modify", f, old_fields[f], v)
        for f, v in new_fields.items()
        if old_fields[f] != v
    ]
    return changes or [AuditChange("confirm", "", None, None)]


def retraction_changes(previous: Grading) -> list[AuditChange]:
    """The audit rows of retracting (deleting) ``previous``: every field's old value."""
    return [AuditChange("delete", f, v, None) for f, v in grading_fields(previous).items()]


def local_offset() -> str:
    """The local UTC offset now, as "+HH:MM" or "-HH:MM"."""
    offset = datetime.now().astimezone().utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compute_row_hash(prev_hash: str, content: Sequence[object]) -> str:
    """SHA-256 hex of ``prev_hash``, a newline and the canonical JSON array of ``content``.

    Args:
        prev_hash: the previous row's ``row_hash`` (:data:`GENESIS_HASH` for the first row).
        content: the row's values in :data:`AUDIT_COLUMNS` order, without the two hashes.
    """
    # An array, not an object: the column order is fixed, and an array encodes faster, which
    # matters when the whole trail is verified at start-up. A blank client time (the last
    # content column, added with the team store) is left out, so rows written before it
    # existed keep their hashes.
    values = list(content)
    if values and values[-1] is None and len(values) == len(_CONTENT_COLUMNS):
        values.pop()
    return hashlib.sha256(f"{prev_hash}\n{_CANONICAL.encode(values)}".encode()).hexdigest()


def append_audit_rows(
    conn: SqlConnection,
    changes: Sequence[AuditChange],
    *,
    grader: str,
    image_sha256: str | None,
    grading_id: int | None,
    reason: str,
    app_version: str,
    model_version: str | None,
    client_at_utc: str | None = None,
) -> list[AuditEntry]:
    """Insert ``changes`` as chained audit rows. Call inside the write transaction of the change.

    The caller holds the write lock (BEGIN IMMEDIATE on SQLite, the advisory write lock on a
    team store), so the last row read here stays the last row until commit and the chain
    cannot fork. On a team store ``at_utc`` is the server's clock and ``client_at_utc`` the
    workstation's (the moment the grade was made, even when it was sent later from the outbox).
    """
    last = conn.execute("SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    next_id, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
    offset = local_offset()
    server_now = getattr(conn, "server_now", None)
    if callable(server_now):
        at_utc, client_at_utc = str(server_now()), client_at_utc or utc_now()
    else:
        at_utc = utc_now()
    entries: list[AuditEntry] = []
    for change in changes:
        draft = AuditEntry(
            id=next_id,
            at_utc=at_utc,
            local_offset=offset,
            grader=grader,
            image_sha256=image_sha256,
            action=change.action,
            field=change.field,
            old_value=change.old_value,
            new_value=change.new_value,
            reason=reason,
            app_version=app_version,
            model_version=model_version,
            grading_id=grading_id,
            client_at_utc=client_at_utc,
            prev_hash=prev_hash,
            row_hash="",
        )
        entry = replace(draft, row_hash=compute_row_hash(prev_hash, draft.content_values()))
        entries.append(entry)
        next_id, prev_hash = next_id + 1, entry.row_hash
    placeholders = ", ".join("?" for _ in AUDIT_COLUMNS)
    conn.executemany(
        f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}) VALUES ({placeholders})",
        [e.values() for e in entries],
    )
    return entries


class ChainVerifier:
    """Checks audit rows one by one, in id order, so a long trail needs no list in memory."""

    def __init__(self) -> None:
        self._prev_hash = GENESIS_HASH
        self._checked = 0
        self._bad: tuple[int, str] | None = None

    def feed(self, entry: AuditEntry) -> bool:
        """Check the next row; return False once a bad row has been seen."""
        return self.feed_row(entry.values())

    def feed_row(self, row: Sequence[Any]) -> bool:
        """:meth:`feed` for a raw row in :data:`AUDIT_COLUMNS` order (no object per row)."""
        if self._bad is not None:
            return False
        self._checked += 1
        prev_hash, row_hash = row[-2], row[-1]
        if prev_hash != self._prev_hash:
            why = "does not link to the row before it (a row was removed or inserted)"
            self._bad = (int(row[0]), why)
        elif compute_row_hash(prev_hash, row[:-2]) != row_hash:
            self._bad = (int(row[0]), "does not match its stored hash (it was edited)")
        self._prev_hash = str(row_hash)
        return self._bad is None

    def report(self) -> ChainReport:
        """The verdict on every row fed so far."""
        if self._bad is None:
            return ChainReport(True, self._checked, None, f"{self._checked} audit rows verified.")
        bad_id, why = self._bad
        return ChainReport(
            False, self._checked, bad_id, f"The audit trail was altered: row {bad_id} {why}."
        )


def verify_entries(entries: Iterable[AuditEntry]) -> ChainReport:
    """Verify the hash chain of ``entries`` (all rows, in id order)."""
    verifier = ChainVerifier()
    for entry in entries:
        if not verifier.feed(entry):
            break
    return verifier.report()


def replay_audit(entries: Iterable[AuditEntry]) -> dict[tuple[str, str], dict[str, str | None]]:
    """Rebuild every current grading from the audit trail alone, starting from empty.

    Args:
        entries: the whole audit trail in id order.

    Returns:
        (image SHA-256, grader) -> {field: canonical value} for every grading that is current
        (not retracted), comparable with :func:`grading_fields` of ``current_gradings()``.

    Raises:
        ValueError: the trail modifies or deletes a grading it never created.
    """
    state: dict[tuple[str, str], dict[str, str | None]] = {}
    # A create or delete is a group of rows, one per field in AUDITED_FIELDS order: the group's
    # first row starts (create) or ends (delete) the grading; the others carry the field values.
    opens_group = AUDITED_FIELDS[0]
    for entry in entries:
        if entry.field and entry.field not in AUDITED_FIELDS:
            continue  # a programme event (role, routing, test set), not a grading field
        key = (entry.image_sha256 or "", entry.grader)
        if entry.action == "create" and entry.field == opens_group:
            state[key] = {}
        elif entry.action not in ACTIONS:
            raise ValueError(f"audit row {entry.id} has an unknown action {entry.action!r}")
        elif key not in state and not (entry.action == "delete" and entry.field != opens_group):
            raise ValueError(f"audit row {entry.id} changes a grading that does not exist")
        if entry.action in ("create", "modify"):
            state[key][entry.field] = entry.new_value
        elif entry.action == "delete" and entry.field == opens_group:
            del state[key]
    return state
