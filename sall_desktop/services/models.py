"""Model versions: register, verify, list with lineage, promote, roll back, import (R12).

A model version is a folder ``data_dir()/models/<id>/`` holding ``card.json`` and
``weights.safetensors``; its id is the SHA-256 of the weights. Every use verifies that the
weights still hash to the id (a one-byte change is refused). Which version is active is one
pointer in the store; promotion needs a named approver and a passed gate (no override; a
never-gated import can only be the first active model); rollback re-activates any version that
was active before. A folder's ``sets/`` (its domain's replay and reference sets) is copied too.

Qt-free and torch-free except :func:`import_model`, which loads the checkpoint fully (in the
caller's worker thread) before accepting it. Functions take the store and run wherever the
caller runs them; the GUI reaches them through :mod:`.model_versions`, which runs them on the
store thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_zoo.cards import (
    CARD_FILENAME,
    SYNTHETIC_INTENDED_USE,
    CardError,
    card_from_json,
    read_card,
)
from sall_desktop.services.gate_evidence import promotion_refusal
from sall_desktop.services.model_folders import (
    SETS_DIRNAME,
    ModelError,
    add_sets,
    copy_in,
    models_dir,
    verify_model_folder,
)
from sall_desktop.store import LabelStore
from sall_desktop.store.models_repository import ModelEvent, ModelRow, ModelSource

BUNDLED_APPROVER = "SALL Desktop (bundled model)"
"""Recorded as the approver when the bundled demo model becomes active on first use."""
FIRST_MODEL_REASON = "first model: no active model to gate it against"


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version as the GUI shows it.

    Attributes:
        id: SHA-256 of the weights (the version id stored with every prediction).
        name: human name from the card.
        version: human version label from the card.
        parent_id: the version it was fine-tuned from, or None.
        status: ``candidate``, ``active`` or ``retired``.
        source: ``bundled``, ``training`` or ``import``.
        intended_use: the card's intended-use statement.
        folder: the verified copy in the data folder.
        gate_passed: gate verdict (None: not gated, e.g. bundled or imported).
        approver: who promoted it last, approved_at: when, approval_reason: why.
        was_active: it has been active before (a rollback target).
        run_id: training run that produced it.
        metrics: ``provenance.metrics`` of the card (hold-out figures, gate checks).
        created_at: registration time (UTC ISO-8601).
    """

    id: str
    name: str
    version: str
    parent_id: str | None
    status: str
    source: str
    intended_use: str
    folder: Path
    gate_passed: bool | None = None
    approver: str | None = None
    approved_at: str | None = None
    approval_reason: str = ""
    was_active: bool = False
    run_id: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def is_active(self) -> bool:
        """True for the version graders currently see."""
        return self.status == "active"

    @property
    def synthetic(self) -> bool:
        """True when the card says it was trained on synthetic data (not for clinical use)."""
        return "synthetic" in self.intended_use.lower()

    @property
    def badge(self) -> str:
        """The intended-use badge: "synthetic — not for clinical use" for the demo model."""
        return "synthetic — not for clinical use" if self.synthetic else self.intended_use

    @property
    def gate_status(self) -> str | None:
        """``passed``, ``failed``, ``insufficient`` or None (not gated): the stored result; the
        card's ``metrics['gate']['status']`` only tells a failure from too little evidence."""
        if self.gate_passed is None:
            return None
        if self.gate_passed:
            return "passed"
        gate = self.metrics.get("gate")
        insufficient = isinstance(gate, dict) and gate.get("status") == "insufficient"
        return "insufficient" if insufficient else "failed"

    @property
    def short_id(self) -> str:
        """The first 12 characters of the id."""
        return self.id[:12]

    def holdout_metric(self, head: str, metric: str) -> float | None:
        """A metric recorded on the card: ``metrics['holdout']['heads'][head][metric]``.

        Falls back to the first evaluation block with ``heads`` (e.g. the test split of a
        ``sall`` run) when there is no hold-out block.
        """
        blocks = [self.metrics.get("holdout")] + list(self.metrics.values())
        for block in blocks:
            heads = block.get("heads") if isinstance(block, dict) else None
            figures = heads.get(head) if isinstance(heads, dict) else None
            if isinstance(figures, dict):
                number = figures.get(metric)
                if isinstance(number, int | float) and not isinstance(number, bool):
                    return float(number)
                return None
        return None


def _version(row: ModelRow) -> ModelVersion:
    try:
        card = card_from_json(row.card_json)
        name, version, use = card.name, card.version, card.intended_use
        metrics = dict(card.provenance.metrics)
    except CardError:
        name, version, use, metrics = "(unreadable card)", "?", "", {}
    return ModelVersion(
        id=row.id,
        name=name,
        version=version,
        parent_id=row.parent_id,
        status=row.status,
        source=row.source,
        intended_use=use,
        folder=models_dir() / row.id,
        gate_passed=row.gate_passed,
        approver=row.approver,
        approved_at=row.approved_at,
        approval_reason=row.approval_reason,
        was_active=row.was_active,
        run_id=row.run_id,
        metrics=metrics,
        created_at=row.created_at,
    )


def register_model(
    store: LabelStore,
    folder: Path,
    *,
    source: ModelSource,
    actor: str,
    gate_passed: bool | None = None,
    run_id: str = "",
) -> ModelVersion:
    """Verify a model folder, copy it into the data folder and record it as a candidate.

    Registering the same weights again returns the existing version unchanged.

    Raises:
        ModelError: the folder is not a complete, intact model.
    """
    card = verify_model_folder(folder)
    copy_in(folder, card)
    row = ModelRow(
        id=card.id,
        parent_id=card.provenance.parent_id,
        card_json=(folder / CARD_FILENAME).read_text(encoding="utf-8"),
        status="candidate",
        source=source,
        run_id=run_id or card.provenance.training_run_id,
        gate_passed=gate_passed,
    )
    return _version(store.add_model(row, actor=actor))


def list_models(store: LabelStore) -> list[ModelVersion]:
    """Every registered version, newest first."""
    rows = store.list_models()
    return [_version(r) for r in reversed(rows)]


def get_model(store: LabelStore, model_id: str) -> ModelVersion | None:
    """The registered version with this id, or None."""
    row = store.get_model(model_id)
    return None if row is None else _version(row)


def lineage(store: LabelStore, model_id: str) -> list[ModelVersion]:
    """The version and its registered ancestors, newest first (stops at an unknown parent)."""
    chain: list[ModelVersion] = []
    seen: set[str] = set()
    current: str | None = model_id
    while current and current not in seen:
        seen.add(current)
        version = get_model(store, current)
        if version is None:
            break
        chain.append(version)
        current = version.parent_id
    return chain


def model_history(store: LabelStore, model_id: str | None = None) -> list[ModelEvent]:
    """Who registered, promoted, rolled back or discarded which version, and when."""
    return store.model_events(model_id)


def _bundled_demo_dir() -> Path | None:
    from model_zoo.weights import demo_model_dir

    try:
        return demo_model_dir()
    except FileNotFoundError:
        return None


def active_model(store: LabelStore, *, verify: bool = True) -> ModelVersion | None:
    """The active version; on first use the bundled demo model is registered and activated.

    Args:
        store: the label store.
        verify: re-hash the weights before returning (the default; "verified before use").

    Returns:
        The active version, or None when none is active and no demo model ships with the app.

    Raises:
        ModelError: the active version's files are missing or damaged (the app must not silently
            switch to another model; the grader rolls back or re-imports).
    """
    row = store.active_model_row()
    if row is None:
        demo = _bundled_demo_dir()
        if demo is None:
            return None
        if store.read_only:
            # A second instance cannot register anything: it shows the bundled model in place.
            card = verify_model_folder(demo)
            return ModelVersion(
                id=card.id,
                name=card.name,
                version=card.version,
                parent_id=card.provenance.parent_id,
                status="active",
                source="bundled",
                intended_use=card.intended_use,
                folder=demo,
                metrics=dict(card.provenance.metrics),
            )
        version = register_model(store, demo, source="bundled", actor=BUNDLED_APPROVER)
        row = store.activate_model(
            version.id,
            actor=BUNDLED_APPROVER,
            action="promote",
            reason="bundled demo model, activated on first use",
        )
    version = _version(row)
    if version.source == "bundled" and not store.read_only:
        demo = _bundled_demo_dir()  # a copy made before models carried their sets gets them
        if demo is not None and not (version.folder / SETS_DIRNAME).exists():
            if read_card(demo / CARD_FILENAME).id == version.id:
                add_sets(demo, version.folder)
    if verify:
        verify_model_folder(version.folder)
    return version


def promote(store: LabelStore, model_id: str, *, approver: str) -> ModelVersion:
    """Make a candidate the active version; the approver and time are recorded.

    Args:
        store: the label store.
        model_id: the candidate.
        approver: the named person approving (required).

    Raises:
        ModelError: no approver, unknown model, damaged files, or a candidate that
            ``gate_evidence.promotion_refusal`` refuses (its gate failed or found too little
            evidence, or it was never gated while a model is active). The active model is
            unchanged.
    """
    if not approver.strip():
        raise ModelError("Promotion needs the name of the person approving it.")
    version = get_model(store, model_id)
    if version is None:
        raise ModelError(f"Unknown model version {model_id[:12]}.")
    if version.is_active:
        return version
    model_active = store.active_model_row() is not None
    if why := promotion_refusal(version.gate_status, model_active=model_active):
        raise ModelError(f"{why} (model {version.short_id}).")
    verify_model_folder(version.folder)
    reason = "" if version.gate_status == "passed" else FIRST_MODEL_REASON
    return _version(
        store.activate_model(model_id, actor=approver.strip(), action="promote", reason=reason)
    )


def rollback(store: LabelStore, model_id: str, *, approver: str, reason: str = "") -> ModelVersion:
    """Re-activate a version that was active before (a pointer change; nothing is deleted).

    Old predictions and gradings keep the model ids they were made with.

    Raises:
        ModelError: no approver, unknown version, never active before, or damaged files.
    """
    if not approver.strip():
        raise ModelError("A rollback needs the name of the person doing it.")
    version = get_model(store, model_id)
    if version is None:
        raise ModelError(f"Unknown model version {model_id[:12]}.")
    if version.is_active:
        return version
    if not version.was_active:
        raise ModelError(
            f"Model {version.short_id} was never active; promote it instead of rolling back."
        )
    verify_model_folder(version.folder)
    return _version(
        store.activate_model(model_id, actor=approver.strip(), action="rollback", reason=reason)
    )


def discard(store: LabelStore, model_id: str, *, actor: str, reason: str = "") -> None:
    """Retire a candidate without promoting it (kept on record; never shown to graders)."""
    store.retire_model(model_id, actor=actor, reason=reason)


def import_model(
    store: LabelStore, source: Path, *, actor: str, device: str = "cpu"
) -> ModelVersion:
    """Import a model (``card.json`` + ``weights.safetensors``, and ``sets/``) as an ungated
    candidate (it can become active only while no model is; ``gate_evidence``).

    ``source`` is the folder or its ``card.json``. The checkpoint is loaded completely (hash,
    header, architecture and shapes, ``strict=True``) before it is accepted; call this off the
    GUI thread (it imports torch).

    Raises:
        ModelError: the files are missing, damaged or do not describe a loadable model.
    """
    folder = source.parent if source.is_file() else source
    verify_model_folder(folder)
    from model_zoo.checkpoints import CheckpointError, load_checkpoint

    try:
        load_checkpoint(folder, device=device)
    except CheckpointError as exc:
        raise ModelError(f"The model cannot be imported: {exc}") from exc
    return register_model(store, folder, source="import", actor=actor)


def metrics_summary(version: ModelVersion) -> str:
    """One line of hold-out figures for a list, e.g. ``dr QWK 0.81 · amd QWK 0.74``."""
    parts = []
    for head in ("dr", "amd"):
        qwk = version.holdout_metric(head, "qwk")
        if qwk is not None:
            parts.append(f"{head} QWK {qwk:.2f}")
    return " · ".join(parts) or "—"


def card_json(version: ModelVersion) -> dict[str, Any]:
    """The stored card as a dict (for a details view)."""
    data: dict[str, Any] = json.loads((version.folder / CARD_FILENAME).read_text("utf-8"))
    return data


__all__ = [
    "BUNDLED_APPROVER",
    "SYNTHETIC_INTENDED_USE",
    "ModelError",
    "ModelVersion",
    "active_model",
    "discard",
    "get_model",
    "import_model",
    "lineage",
    "list_models",
    "metrics_summary",
    "model_history",
    "models_dir",
    "promote",
    "register_model",
    "rollback",
    "verify_model_folder",
]
