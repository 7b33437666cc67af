"""Model versions, their control history, training runs and the locked hold-out (schema 2).

A mixin of :class:`~sall_desktop.store.sqlite_repository.SqliteLabelStore`: the same connection,
the same one-thread rule, every write one transaction. Values in and out are frozen dataclasses.

Model control is a pointer change (R12): exactly one row of ``models`` has status ``active``
(a partial unique index enforces it); promotion and rollback retire the previous one and record
who did it, when and why in the append-only ``model_events`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sall_desktop.domain.grades import utc_now
from sall_desktop.store.errors import StoreWriteError
from sall_desktop.store.sql import SqlConnection
from sall_desktop.store.transactions import Transactions

ModelStatus = Literal["candidate", "active", "retired"]
ModelSource = Literal["", "bundled", "training", "import"]
ModelAction = Literal["register", "promote", "rollback", "discard"]
RunStatus = Literal["pending", "running", "finished", "cancelled", "failed"]
HoldoutSource = Literal["designated", "sampled"]


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One registered model version.

    Attributes:
        id: SHA-256 of its ``weights.safetensors``.
        parent_id: the version it was fine-tuned from, or None.
        card_json: the model card as stored (``model_zoo.cards`` JSON).
        status: ``candidate`` (never promoted or discarded), ``active`` or ``retired``.
        source: ``bundled``, ``training`` or ``import``.
        run_id: training run that produced it ("" if none).
        gate_passed: promotion gate verdict, None when the model was not gated.
        approver: who promoted it last (None if never promoted).
        approved_at: UTC ISO-8601 time of the last promotion or rollback to it.
        approval_reason: reason given with the last promotion or rollback.
        was_active: it has been the active model at some time (a rollback target).
        created_at: UTC ISO-8601 registration time.
        updated_at: UTC ISO-8601 time of the last status change.
    """

    id: str
    parent_id: str | None
    card_json: str
    status: ModelStatus
    source: ModelSource = ""
    run_id: str = ""
    gate_passed: bool | None = None
    approver: str | None = None
    approved_at: str | None = None
    approval_reason: str = ""
    was_active: bool = False
    created_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """One row of the model-control history (append-only)."""

    id: int
    model_id: str
    action: ModelAction
    actor: str
    reason: str
    previous_id: str | None
    at_utc: str


@dataclass(frozen=True, slots=True)
class TrainingRunRow:
    """One fine-tuning (or other training) run started by the app.

    Attributes:
        run_id: the run's id (also its folder name).
        config_json: command, overrides and counts of the frozen run, JSON.
        manifest_sha256: digest of the frozen ``manifest.csv``.
        status: pending, running, finished, cancelled or failed.
        run_dir: the run folder.
        report_json: ``report.json`` content once finished, else None.
        started_at: UTC ISO-8601, None before start.
        ended_at: UTC ISO-8601, None while running.
        model_id: the candidate it produced, None otherwise.
    """

    run_id: str
    config_json: str
    manifest_sha256: str
    status: RunStatus
    run_dir: str
    report_json: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    model_id: str | None = None


@dataclass(frozen=True, slots=True)
class HoldoutRow:
    """One image of the locked hold-out."""

    sha256: str
    patient_id: str
    source: HoldoutSource
    added_by: str
    added_at: str


_MODEL_COLUMNS = (
    "id, parent_id, card_json, status, source, run_id, gate_passed, approver, approved_at, "
    "approval_reason, was_active, created_at, updated_at"
)
_RUN_COLUMNS = (
    "run_id, config_json, manifest_sha256, status, run_dir, report_json, started_at, ended_at, "
    "model_id"
)


def _model(row: Sequence[object]) -> ModelRow:
    gate = row[6]
    return ModelRow(
        id=str(row[0]),
        parent_id=None if row[1] is None else str(row[1]),
        card_json=str(row[2]),
        status=str(row[3]),  # type: ignore[arg-type]
        source=str(row[4]),  # type: ignore[arg-type]
        run_id=str(row[5] or ""),
        gate_passed=None if gate is None else bool(gate),
        approver=None if row[7] is None else str(row[7]),
        approved_at=None if row[8] is None else str(row[8]),
        approval_reason=str(row[9] or ""),
        was_active=bool(row[10]),
        created_at=str(row[11]),
        updated_at=str(row[12]),
    )


def _run(row: Sequence[object]) -> TrainingRunRow:
    def opt(v: object) -> str | None:
        return None if v is None else str(v)

    return TrainingRunRow(
        run_id=str(row[0]),
        config_json=str(row[1]),
        manifest_sha256=str(row[2]),
        status=str(row[3]),  # type: ignore[arg-type]
        run_dir=str(row[4]),
        report_json=opt(row[5]),
        started_at=opt(row[6]),
        ended_at=opt(row[7]),
        model_id=opt(row[8]),
    )


class ModelsRepositoryMixin:
    """Model, training-run and hold-out methods of the SQLite store (schema 2)."""

    # ------------------------------------------------------------------ models

    def add_model(self: Transactions, model: ModelRow, *, actor: str) -> ModelRow:
        """Register a model version (status as given; ``active`` is refused: promote instead).

        Registering an id that exists returns the stored row unchanged (same weights, same
        version). Returns the stored row.
        """
        if model.status == "active":
            raise StoreWriteError(
                "A new model is registered inactive; promote it.", retryable=False
            )
        now = utc_now()
        with self._write("the model version") as conn:
            row = conn.execute(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model.id,)
            ).fetchone()
            if row is not None:
                return _model(row)
            conn.execute(
                f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, NULL, NULL, '', 0, ?, ?)",
                (
                    model.id,
                    model.parent_id,
                    model.card_json,
                    model.status,
                    model.source,
                    model.run_id,
                    None if model.gate_passed is None else int(model.gate_passed),
                    now,
                    now,
                ),
            )
            _event(conn, model.id, "register", actor, "", None, now)
            row = conn.execute(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model.id,)
            ).fetchone()
        return _model(row)

    def get_model(self: Transactions, model_id: str) -> ModelRow | None:
        """The model version with this id, or None."""
        with self._read("the model version") as conn:
            row = conn.execute(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,)
            ).fetchone()
            return None if row is None else _model(row)

    def list_models(self: Transactions) -> list[ModelRow]:
        """Every registered model version, oldest first."""
        with self._read("the model versions") as conn:
            rows = conn.execute(
                f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY created_at, id"
            ).fetchall()
            return [_model(r) for r in rows]

    def active_model_row(self: Transactions) -> ModelRow | None:
        """The active model version, or None when none was ever promoted."""
        with self._read("the active model") as conn:
            row = conn.execute(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE status = 'active'"
            ).fetchone()
            return None if row is None else _model(row)

    def activate_model(
        self: Transactions,
        model_id: str,
        *,
        actor: str,
        action: Literal["promote", "rollback"],
        reason: str = "",
    ) -> ModelRow:
        """Make ``model_id`` the active version in one transaction (a pointer change).

        The previous active version becomes ``retired``; the approver, time and reason are
        stored on the model and in ``model_events``. Policy (gate, rollback targets) is the
        caller's (``services.models``).

        Raises:
            StoreWriteError: unknown model or no approver; nothing was changed.
        """
        if not actor.strip():
            raise StoreWriteError("A named person must approve a model change.", retryable=False)
        now = utc_now()
        with self._write("the active model") as conn:
            exists = conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone()
            if exists is None:
                raise StoreWriteError(f"Unknown model version {model_id[:12]}.", retryable=False)
            prev = conn.execute("SELECT id FROM models WHERE status = 'active'").fetchone()
            previous = None if prev is None else str(prev[0])
            if previous is not None and previous != model_id:
                conn.execute(
                    "UPDATE models SET status = 'retired', updated_at = ? WHERE id = ?",
                    (now, previous),
                )
            conn.execute(
                "UPDATE models SET status = 'active', approver = ?, approved_at = ?, "
                "approval_reason = ?, was_active = 1, updated_at = ? WHERE id = ?",
                (actor, now, reason, now, model_id),
            )
            _event(conn, model_id, action, actor, reason, previous, now)
            row = conn.execute(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,)
            ).fetchone()
        return _model(row)

    def retire_model(self: Transactions, model_id: str, *, actor: str, reason: str = "") -> None:
        """Discard a candidate (status ``retired``; the row and its files stay for the record).

        Raises:
            StoreWriteError: unknown model, or it is the active one (roll back first).
        """
        now = utc_now()
        with self._write("the model version") as conn:
            row = conn.execute("SELECT status FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                raise StoreWriteError(f"Unknown model version {model_id[:12]}.", retryable=False)
            if row[0] == "active":
                raise StoreWriteError("The active model cannot be discarded.", retryable=False)
            conn.execute(
                "UPDATE models SET status = 'retired', updated_at = ? WHERE id = ?",
                (now, model_id),
            )
            _event(conn, model_id, "discard", actor or "unknown", reason, None, now)

    def model_events(self: Transactions, model_id: str | None = None) -> list[ModelEvent]:
        """The model-control history in order (of one model if given)."""
        sql = "SELECT id, model_id, action, actor, reason, previous_id, at_utc FROM model_events"
        with self._read("the model history") as conn:
            if model_id is None:
                rows = conn.execute(sql + " ORDER BY id").fetchall()
            else:
                rows = conn.execute(sql + " WHERE model_id = ? ORDER BY id", (model_id,)).fetchall()
            return [ModelEvent(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    # ------------------------------------------------------------------ training runs

    def add_training_run(self: Transactions, run: TrainingRunRow) -> None:
        """Record a new training run (its ``run_id`` must be new)."""
        with self._write("the training run") as conn:
            conn.execute(
                f"INSERT INTO training_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.config_json,
                    run.manifest_sha256,
                    run.status,
                    run.run_dir,
                    run.report_json,
                    run.started_at,
                    run.ended_at,
                    run.model_id,
                ),
            )

    def update_training_run(
        self: Transactions,
        run_id: str,
        *,
        status: RunStatus,
        report_json: str | None = None,
        model_id: str | None = None,
        started: bool = False,
        ended: bool = False,
    ) -> None:
        """Set a run's status (and report, candidate, start or end time when given)."""
        now = utc_now()
        with self._write("the training run") as conn:
            cur = conn.execute(
                "UPDATE training_runs SET status = ?, "
                "report_json = coalesce(?, report_json), model_id = coalesce(?, model_id), "
                "started_at = CASE WHEN ? THEN ? ELSE started_at END, "
                "ended_at = CASE WHEN ? THEN ? ELSE ended_at END WHERE run_id = ?",
                (status, report_json, model_id, started, now, ended, now, run_id),
            )
            if cur.rowcount == 0:
                raise StoreWriteError(f"Unknown training run {run_id}.", retryable=False)

    def get_training_run(self: Transactions, run_id: str) -> TrainingRunRow | None:
        """The run with this id, or None."""
        with self._read("the training run") as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM training_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _run(row)

    def training_runs(self: Transactions) -> list[TrainingRunRow]:
        """Every recorded run, oldest first."""
        with self._read("the training runs") as conn:
            rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM training_runs ORDER BY id").fetchall()
            return [_run(r) for r in rows]

    # ------------------------------------------------------------------ hold-out

    def add_holdout(
        self: Transactions,
        images: Sequence[tuple[str, str]],
        *,
        source: HoldoutSource,
        actor: str,
    ) -> int:
        """Lock ``(sha256, patient_id)`` pairs into the hold-out; return how many were new.

        The hold-out is append-only (triggers refuse update and delete).
        """
        if not actor.strip():
            raise StoreWriteError("A named person must designate the hold-out.", retryable=False)
        now = utc_now()
        added = 0
        with self._write("the hold-out") as conn:
            for sha256, patient in images:
                cur = conn.execute(
                    "INSERT INTO holdout_images (sha256, patient_id, source, added_by, added_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (sha256, patient, source, actor, now),
                )
                added += cur.rowcount
        return added

    def holdout_rows(self: Transactions) -> list[HoldoutRow]:
        """The locked hold-out in the order it was designated."""
        with self._read("the hold-out") as conn:
            rows = conn.execute(
                "SELECT sha256, patient_id, source, added_by, added_at FROM holdout_images "
                "ORDER BY id"
            ).fetchall()
            return [HoldoutRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def _event(
    conn: SqlConnection,
    model_id: str,
    action: ModelAction,
    actor: str,
    reason: str,
    previous: str | None,
    now: str,
) -> None:
    conn.execute(
        "INSERT INTO model_events (model_id, action, actor, reason, previous_id, at_utc) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (model_id, action, actor, reason, previous, now),
    )


__all__ = [
    "HoldoutRow",
    "ModelEvent",
    "ModelRow",
    "ModelsRepositoryMixin",
    "TrainingRunRow",
]
