"""The model-versions service: its futures run the models rules on a real store thread (a temp
database): the listing with gate verdicts, lineage, promote only after a passed gate, rollback,
discard, and an import that is refused as the future's error. No QApplication."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sall_desktop.services import models
from sall_desktop.services.model_versions import ModelListing, ModelVersions
from sall_desktop.services.models import ModelError
from sall_desktop.store import StoreThread
from sall_desktop.store.sqlite_repository import SqliteLabelStore
from tests.unit.services.conftest import HANG_GUARD_S


@pytest.fixture
def thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreThread]:
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    t = StoreThread(tmp_path / "db.sqlite")
    t.wait_open()
    yield t
    t.close()


@pytest.fixture
def fake(tmp_path: Path, fake_model_writer: Callable[..., str]) -> Callable[..., Path]:
    def make(seed: int, **kwargs: object) -> Path:
        folder = tmp_path / "src" / str(seed)
        fake_model_writer(folder, seed, **kwargs)
        return folder

    return make


def test_listing_lineage_promote_rollback_and_discard(
    thread: StoreThread, fake: Callable[..., Path]
) -> None:
    service = ModelVersions(thread)
    assert service.listing().result(HANG_GUARD_S) == ModelListing([], {})

    def setup(store: SqliteLabelStore) -> tuple[str, str, str]:
        base = models.register_model(store, fake(1), source="import", actor="Dr A")
        models.promote(store, base.id, approver="Dr A")  # the first model needs no gate
        passed = models.register_model(
            store, fake(2, parent=base.id), source="training", actor="t", gate_passed=True
        )
        failed = models.register_model(
            store, fake(3, parent=base.id), source="training", actor="t", gate_passed=False
        )
        return base.id, passed.id, failed.id

    base, passed, failed = thread.submit(setup).result(HANG_GUARD_S)
    listing = service.listing().result(HANG_GUARD_S)
    by_id = {v.id: v for v in listing.versions}
    assert set(by_id) == {base, passed, failed} and by_id[base].is_active
    assert listing.verdicts == {}  # no run stored a report here
    assert listing.promotion_refusal(by_id[passed]) == ""
    assert listing.promotion_refusal(by_id[failed]).startswith("Gate failed — cannot be promoted")
    assert listing.promotion_refusal(by_id[base]) == ""  # active: rolled back to, not promoted
    chain = service.lineage(passed).result(HANG_GUARD_S)
    assert [v.id for v in chain] == [passed, base]

    with pytest.raises(ModelError, match="^Gate failed — cannot be promoted"):
        service.promote(failed, "Dr B").result(HANG_GUARD_S)
    promoted = service.promote(passed, "Dr B").result(HANG_GUARD_S)
    assert promoted.id == passed and promoted.approver == "Dr B"
    back = service.rollback(base, "Dr C", "worse on site B").result(HANG_GUARD_S)
    assert back.id == base and back.is_active
    assert service.discard(failed, "Dr C").result(HANG_GUARD_S) is None
    statuses = {v.id: v.status for v in service.listing().result(HANG_GUARD_S).versions}
    assert statuses == {base: "active", passed: "retired", failed: "retired"}


def test_an_import_that_cannot_load_is_the_futures_error(
    thread: StoreThread, fake: Callable[..., Path]
) -> None:
    # The fake weights hash to the card's id but are no checkpoint: the full load refuses them.
    future = ModelVersions(thread).import_folder(fake(5), "Dr A")
    with pytest.raises(ModelError, match="cannot be imported"):
        future.result(HANG_GUARD_S)
    assert ModelVersions(thread).listing().result(HANG_GUARD_S).versions == []
