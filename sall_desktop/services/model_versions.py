"""The model-versions workflow (R12) as a Qt-free service: list, lineage, promote, roll back,
import, discard.

:mod:`.models` holds the rules as functions of the store; this object owns the store-thread
work that runs them, so a window only asks and shows: every method returns a
``concurrent.futures.Future`` that resolves on the store thread (a refusal is the future's
``ModelError``, whose message is written for graders).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sall_desktop.services import gate_evidence, models
from sall_desktop.services.models import ModelVersion
from sall_desktop.services.store_executor import StoreExecutor
from training.protocol.report import GateVerdict

if TYPE_CHECKING:
    from sall_desktop.store import LabelStore


@dataclass(frozen=True)
class ModelListing:
    """The registered versions (newest first) and the stored gate verdict of each gated one.

    Attributes:
        versions: every version, as :func:`.models.list_models` orders them.
        verdicts: version id -> the gate verdict stored with the run that produced it.
    """

    versions: list[ModelVersion]
    verdicts: dict[str, GateVerdict] = field(default_factory=dict)

    def promotion_refusal(self, version: ModelVersion) -> str:
        """Why candidate ``version`` cannot be promoted, or ``""`` (the service's own rule; an
        active or retired version is never promoted, only rolled back to, so it has none)."""
        if version.status != "candidate":
            return ""
        return gate_evidence.promotion_refusal(
            version.gate_status,
            model_active=any(m.is_active for m in self.versions),
            verdict=self.verdicts.get(version.id),
        )


def _listing(store: LabelStore) -> ModelListing:
    # The active model is resolved first: on first use that registers the bundled demo model.
    models.active_model(store, verify=False)
    versions = models.list_models(store)
    verdicts = {
        v.id: verdict
        for v in versions
        if v.gate_status is not None
        and (verdict := gate_evidence.stored_verdict(store, v.run_id)) is not None
    }
    return ModelListing(versions, verdicts)


class ModelVersions:
    """Model versions over the store thread; every method returns a Future.

    Args:
        store: the store thread (every call runs there, after what was submitted before).
    """

    def __init__(self, store: StoreExecutor) -> None:
        self._store = store

    def listing(self) -> Future[ModelListing]:
        """Every version with its gate verdict (the bundled demo model registered on first use)."""
        return self._store.submit(_listing)

    def lineage(self, model_id: str) -> Future[list[ModelVersion]]:
        """``model_id`` and its ancestors, newest first."""
        return self._store.submit(lambda store: models.lineage(store, model_id))

    def promote(self, model_id: str, approver: str) -> Future[ModelVersion]:
        """Make candidate ``model_id`` active (refused unless its gate passed; no override)."""
        return self._store.submit(lambda store: models.promote(store, model_id, approver=approver))

    def rollback(self, model_id: str, approver: str, reason: str = "") -> Future[ModelVersion]:
        """Make a version that was active before active again."""
        return self._store.submit(
            lambda store: models.rollback(store, model_id, approver=approver, reason=reason)
        )

    def discard(self, model_id: str, actor: str) -> Future[None]:
        """Retire candidate ``model_id`` without promoting it."""
        return self._store.submit(lambda store: models.discard(store, model_id, actor=actor))

    def import_folder(self, folder: Path, actor: str) -> Future[ModelVersion]:
        """Verify and load ``folder`` completely, then register it as an ungated candidate
        (on the store thread: the checkpoint load imports torch, never on the GUI thread)."""
        return self._store.submit(lambda store: models.import_model(store, folder, actor=actor))


__all__ = ["ModelListing", "ModelVersions"]
