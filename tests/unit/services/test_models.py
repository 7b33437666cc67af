"""Model versions: registration copies and verifies (with the folder's ``sets/``), promote needs a
passed gate and has no override (a never-gated import only as the first model), rollback is a
pointer change, the bundled demo model becomes active on first use."""

from __future__ import annotations

import json
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


def _with_gate(folder: Path, status: str) -> Path:
    """Record a gate verdict in the card's metrics, as ``sall-train finetune`` does."""
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    checks = ["hold-out · DR QWK — 14 graded images, at least 60 needed to decide: insufficient"]
    card["provenance"]["metrics"]["gate"] = {
        "passed": status == "passed",
        "status": status,
        "checks": checks,
    }
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


def test_promote_needs_approver_and_a_passed_gate_and_has_no_override(store, fake) -> None:
    base = models.register_model(store, fake(1), source="import", actor="Dr A")
    assert base.gate_status is None
    with pytest.raises(ModelError, match="name"):
        models.promote(store, base.id, approver=" ")
    # A never-gated import may become the first model: there is nothing to gate it against.
    first = models.promote(store, base.id, approver="Dr A")
    assert first.is_active and first.approval_reason == models.FIRST_MODEL_REASON
    # ...but never replace an active model.
    other = models.register_model(store, fake(4), source="import", actor="Dr A")
    with pytest.raises(ModelError, match="Not gated — cannot be promoted"):
        models.promote(store, other.id, approver="Dr A")
    with pytest.raises(TypeError):
        models.promote(store, other.id, approver="Dr A", override_reason="x")  # type: ignore[call-arg]
    failed = models.register_model(
        store, fake(2, parent=base.id), source="training", actor="t", gate_passed=False
    )
    assert failed.gate_status == "failed"
    with pytest.raises(ModelError, match="^Gate failed — cannot be promoted"):
        models.promote(store, failed.id, approver="Dr B")
    thin = models.register_model(
        store,
        _with_gate(fake(5, parent=base.id), "insufficient"),
        source="training",
        actor="t",
        gate_passed=False,
    )
    assert thin.gate_status == "insufficient"
    with pytest.raises(ModelError, match="^Not enough evidence — cannot be promoted"):
        models.promote(store, thin.id, approver="Dr B")
    assert models.active_model(store).id == base.id  # type: ignore[union-attr]
    good = models.register_model(
        store, fake(3, parent=base.id), source="training", actor="t", gate_passed=True
    )
    assert good.gate_status == "passed"
    promoted = models.promote(store, good.id, approver="Dr B")
    assert promoted.approver == "Dr B" and promoted.approved_at
    assert promoted.approval_reason == ""
    assert models.active_model(store).id == good.id  # type: ignore[union-attr]


def test_a_stored_failure_outranks_a_card_that_says_passed(store, fake) -> None:
    # The app stores its own verdict (trainer and app); the card only words a failure.
    base = models.promote(
        store, models.register_model(store, fake(1), source="import", actor="x").id, approver="A"
    )
    forged = models.register_model(
        store,
        _with_gate(fake(2, parent=base.id), "passed"),
        source="training",
        actor="t",
        gate_passed=False,
    )
    assert forged.gate_status == "failed"
    with pytest.raises(ModelError, match="Gate failed"):
        models.promote(store, forged.id, approver="Dr B")


def _with_sets(folder: Path) -> Path:
    sets = folder / "sets"
    (sets / "images").mkdir(parents=True)
    (sets / "replay.csv").write_text("replay\n", encoding="utf-8")
    (sets / "reference.csv").write_text("reference\n", encoding="utf-8")
    (sets / "images" / "a.png").write_bytes(b"\x89PNG fake")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_model_folders_sets_are_copied_with_it(store, fake) -> None:
    source = _with_sets(fake(1))
    version = models.register_model(store, source, source="import", actor="Dr A")
    assert _files(version.folder / "sets") == _files(source / "sets")
    assert not [p for p in models.models_dir().iterdir() if p.name.startswith(".incoming")]
    # A copy made before models carried their sets gets them when the model comes again.
    plain = models.register_model(store, fake(2), source="import", actor="Dr A")
    assert not (plain.folder / "sets").exists()
    models.register_model(store, _with_sets(fake(2)), source="import", actor="Dr A")
    assert _files(plain.folder / "sets") == _files(source / "sets")
    assert [p.name for p in plain.folder.iterdir() if p.name.startswith(".")] == []


def test_the_bundled_models_copy_gets_its_sets(store, fake, monkeypatch) -> None:
    demo = fake(7)
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: demo)
    active = models.active_model(store)
    assert active is not None and not (active.folder / "sets").exists()
    _with_sets(demo)  # a newer app ships the same demo model with its sets
    active = models.active_model(store)
    assert active is not None and (active.folder / "sets" / "reference.csv").is_file()


def test_rollback_restores_an_earlier_version_and_predictions_keep_their_ids(store, fake) -> None:
    a = models.promote(
        store, models.register_model(store, fake(1), source="import", actor="x").id, approver="Dr A"
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
    models.promote(store, v.id, approver="Dr A")
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


def test_a_model_folder_with_a_fifo_or_a_device_is_refused_without_blocking(store, fake) -> None:
    # A FIFO would block a plain read forever and /dev/zero never end: both are refused at once.
    weights_fifo = fake(3)
    (weights_fifo / "weights.safetensors").unlink()
    os.mkfifo(weights_fifo / "weights.safetensors")
    with pytest.raises(ModelError, match="cannot be read"):
        models.register_model(store, weights_fifo, source="import", actor="Dr A")
    sets_device = _with_sets(fake(4))
    (sets_device / "sets" / "zero.csv").symlink_to("/dev/zero")
    with pytest.raises(ModelError, match="sets/ folder cannot be copied"):
        models.register_model(store, sets_device, source="import", actor="Dr A")
    assert not [p for p in models.models_dir().iterdir() if p.name.startswith(".incoming")]
