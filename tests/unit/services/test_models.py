"""Model versions: registration copies and verifies, promote needs a gate or an override with a
reason, rollback is a pointer change, the bundled demo model becomes active on first use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from model_zoo.cards import SYNTHETIC_INTENDED_USE
from sall_desktop.domain.predictions import Prediction
from sall_desktop.services import models
from sall_desktop.services.models import ModelError
from sall_desktop.store import open_store
from sall_desktop.store.sqlite_repository import SqliteLabelStore


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqliteLabelStore]:
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    s = open_store(tmp_path / "db.sqlite")
    yield s
    s.close()


@pytest.fixture
def fake(tmp_path: Path, fake_model_writer: Callable[..., str]) -> Callable[..., Path]:
    def make(seed: int, **kwargs: object) -> Path:
        folder = tmp_path / "src" / str(seed)
        fake_model_writer(folder, seed, **kwargs)
        return folder

    return make


def test_register_copies_into_the_data_folder_and_lists_lineage(store, fake) -> None:
    parent = models.register_model(store, fake(1), source="import", actor="Dr A")
    child_dir = fake(2, parent=parent.id)
    child = models.register_model(
        store, child_dir, source="training", actor="Dr A", gate_passed=True
    )
    assert child.folder == models.models_dir() / child.id and (child.folder / "card.json").is_file()
    assert child.folder != child_dir
    assert [v.id for v in models.lineage(store, child.id)] == [child.id, parent.id]
    assert [v.id for v in models.list_models(store)] == [child.id, parent.id]
    assert child.holdout_metric("dr", "qwk") == pytest.approx(0.52)
    assert models.metrics_summary(child) == "dr QWK 0.52"


def test_a_changed_weights_byte_is_refused(store, fake) -> None:
    folder = fake(1)
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[10] ^= 1
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="changed or damaged"):
        models.register_model(store, folder, source="import", actor="Dr A")
    assert models.list_models(store) == []


def test_promote_needs_approver_and_a_passed_gate_or_a_reason(store, fake) -> None:
    base = models.register_model(store, fake(1), source="import", actor="Dr A")
    with pytest.raises(ModelError, match="override"):
        models.promote(store, base.id, approver="Dr A")
    with pytest.raises(ModelError, match="name"):
        models.promote(store, base.id, approver=" ", override_reason="x")
    first = models.promote(store, base.id, approver="Dr A", override_reason="initial model")
    assert first.is_active and first.approval_reason == "gate override: initial model"
    failed = models.register_model(
        store, fake(2, parent=base.id), source="training", actor="t", gate_passed=False
    )
    with pytest.raises(ModelError, match="gate failed"):
        models.promote(store, failed.id, approver="Dr B")
    assert models.active_model(store).id == base.id  # type: ignore[union-attr]
    good = models.register_model(
        store, fake(3, parent=base.id), source="training", actor="t", gate_passed=True
    )
    promoted = models.promote(store, good.id, approver="Dr B")
    assert promoted.approver == "Dr B" and promoted.approved_at
    assert models.active_model(store).id == good.id  # type: ignore[union-attr]


def test_rollback_restores_an_earlier_version_and_predictions_keep_their_ids(store, fake) -> None:
    a = models.promote(
        store,
        models.register_model(store, fake(1), source="import", actor="x").id,
        approver="Dr A",
        override_reason="first",
    )
    sha = "ab" * 32
    store.add_prediction(Prediction(sha, a.id, {"dr": (1.0, 0, 0, 0, 0)}))
    b = models.register_model(
        store, fake(2, parent=a.id), source="training", actor="t", gate_passed=True
    )
    never = models.register_model(store, fake(3), source="import", actor="x")
    models.promote(store, b.id, approver="Dr A")
    store.add_prediction(Prediction(sha, b.id, {"dr": (0, 1.0, 0, 0, 0)}))
    with pytest.raises(ModelError, match="never active"):
        models.rollback(store, never.id, approver="Dr A")
    back = models.rollback(store, a.id, approver="Dr C", reason="regression seen")
    assert back.is_active and models.active_model(store).id == a.id  # type: ignore[union-attr]
    assert [p.model_id for p in store.predictions()] == [a.id, b.id]
    assert [e.action for e in models.model_history(store)][-1] == "rollback"


def test_active_model_is_verified_before_use(store, fake) -> None:
    v = models.register_model(store, fake(1), source="import", actor="x")
    models.promote(store, v.id, approver="Dr A", override_reason="x")
    with open(v.folder / "weights.safetensors", "r+b") as handle:
        handle.seek(3)
        handle.write(b"\x00\x01")
    with pytest.raises(ModelError, match="changed or damaged"):
        models.active_model(store)


def test_bundled_demo_model_is_registered_and_activated_on_first_use(
    store, fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = fake(7, intended_use=SYNTHETIC_INTENDED_USE)
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: demo)
    active = models.active_model(store)
    assert active is not None and active.source == "bundled" and active.synthetic
    assert active.badge == "synthetic — not for clinical use"
    assert models.active_model(store) == active  # registered once
    assert os.path.isdir(active.folder)


def test_import_refuses_a_folder_without_weights(store, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ModelError):
        models.import_model(store, folder, actor="Dr A")


def test_a_read_only_store_shows_the_bundled_model_without_registering_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_zoo.weights import demo_model_dir
    from sall_desktop.store import open_store

    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    db = tmp_path / "shared.sqlite"
    writer = open_store(db)  # the first instance holds the database
    reader = open_store(db)
    try:
        assert reader.read_only
        version = models.active_model(reader)
        assert version is not None and version.source == "bundled"
        assert version.folder == demo_model_dir()
        assert writer.active_model_row() is None  # nothing was written
    finally:
        reader.close()
        writer.close()
