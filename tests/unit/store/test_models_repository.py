"""Schema 2: model versions with one active pointer, append-only history, runs, locked hold-out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sall_desktop.store import StoreWriteError
from sall_desktop.store.models_repository import ModelRow, TrainingRunRow
from sall_desktop.store.sqlite_repository import SqliteLabelStore
from tests.unit.store.conftest import Refused


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on the team store (tests/unit/store/conftest.py)."""
    return any_store


def _model(sha: Callable[[int | str], str], n: int, parent: int | None = None) -> ModelRow:
    return ModelRow(
        id=sha(f"m{n}"),
        parent_id=sha(f"m{parent}") if parent is not None else None,
        card_json="{}",
        status="candidate",
        source="training",
        gate_passed=True,
    )


def test_one_active_model_and_promote_then_rollback_is_a_pointer_change(
    store: SqliteLabelStore, sha: Callable[[int | str], str]
) -> None:
    a = store.add_model(_model(sha, 1), actor="Dr A")
    b = store.add_model(_model(sha, 2, parent=1), actor="Dr A")
    assert store.active_model_row() is None
    store.activate_model(a.id, actor="Dr A", action="promote")
    store.activate_model(b.id, actor="Dr B", action="promote", reason="better")
    rows = {m.id: m for m in store.list_models()}
    assert rows[b.id].status == "active" and rows[a.id].status == "retired"
    assert rows[b.id].approver == "Dr B" and rows[b.id].approved_at
    assert rows[b.id].parent_id == a.id
    back = store.activate_model(a.id, actor="Dr C", action="rollback", reason="regression")
    assert back.status == "active" and store.active_model_row() == back
    assert [e.action for e in store.model_events()] == [
        "register", "register", "promote", "promote", "rollback"
    ]  # fmt: skip
    assert store.model_events(a.id)[-1].previous_id == b.id


def test_model_control_refuses_bad_requests_and_history_is_append_only(
    store: SqliteLabelStore, sha: Callable[[int | str], str], raw_execute
) -> None:
    with pytest.raises(StoreWriteError, match="promote"):
        store.add_model(ModelRow(sha(1), None, "{}", "active"), actor="x")
    a = store.add_model(_model(sha, 1), actor="Dr A")
    assert store.add_model(_model(sha, 1), actor="Dr A") == a  # same weights: same version
    with pytest.raises(StoreWriteError, match="named person"):
        store.activate_model(a.id, actor=" ", action="promote")
    with pytest.raises(StoreWriteError, match="Unknown"):
        store.activate_model(sha(99), actor="Dr A", action="promote")
    store.activate_model(a.id, actor="Dr A", action="promote")
    with pytest.raises(StoreWriteError, match="active model cannot be discarded"):
        store.retire_model(a.id, actor="Dr A")
    with pytest.raises(Refused, match="append-only"):
        raw_execute("DELETE FROM model_events")
    with pytest.raises(Refused):  # a second active row
        raw_execute(
            "INSERT INTO models (id, card_json, status, created_at, updated_at) "
            f"VALUES ('{sha(5)}', '{{}}', 'active', 'x', 'x')"
        )


def test_training_runs_are_recorded_and_updated(store: SqliteLabelStore) -> None:
    store.add_training_run(TrainingRunRow("r1", "{}", "ab" * 32, "pending", "/tmp/r1"))
    store.update_training_run("r1", status="running", started=True)
    store.update_training_run("r1", status="finished", report_json="{}", model_id="m", ended=True)
    run = store.get_training_run("r1")
    assert run is not None and run.status == "finished" and run.model_id == "m"
    assert run.started_at and run.ended_at and run.report_json == "{}"
    with pytest.raises(StoreWriteError):
        store.update_training_run("nope", status="failed")
    assert [r.run_id for r in store.training_runs()] == ["r1"]


def test_holdout_is_locked(
    store: SqliteLabelStore, sha: Callable[[int | str], str], raw_execute
) -> None:
    assert store.add_holdout([(sha(1), "p1"), (sha(2), "")], source="sampled", actor="Dr A") == 2
    assert store.add_holdout([(sha(1), "p1")], source="designated", actor="Dr A") == 0
    assert [(r.sha256, r.patient_id) for r in store.holdout_rows()] == [
        (sha(1), "p1"),
        (sha(2), ""),
    ]
    with pytest.raises(Refused, match="locked|append-only"):
        raw_execute("DELETE FROM holdout_images")
