"""The locked hold-out: the images every fine-tuned candidate is judged on (R12).

The user designates the hold-out, or lets the app sample one from the graded images, grouped by
patient (both eyes and every visit of a patient go to the same side). Once stored it is locked:
images can be added, never removed. Hold-out images, and every image of a hold-out patient, are
left out of every training manifest (``services.training_jobs``), and the GUI shows how many.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource
from sall_desktop.store import LabelStore
from sall_desktop.store.models_repository import HoldoutRow

DEFAULT_FRACTION = 0.2
"""Share of the graded images a sampled hold-out takes (by patient groups)."""

_ROLE_RANK = {
    GraderRole.ARBITER: 0,
    GraderRole.REFERENCE: 1,
    GraderRole.PRIMARY: 2,
    GraderRole.SECONDARY: 3,
}


class HoldoutError(Exception):
    """The hold-out cannot be designated or sampled (message says why)."""


@dataclass(frozen=True)
class HoldoutSet:
    """The locked hold-out as a lookup.

    Attributes:
        images: SHA-256 of every hold-out image.
        patients: non-blank patient ids of the hold-out images.
    """

    images: frozenset[str] = frozenset()
    patients: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.images)

    def excludes(self, sha256: str, patient_id: str) -> bool:
        """True when an image may not be used for training (held out itself or its patient)."""
        return sha256 in self.images or (bool(patient_id) and patient_id in self.patients)


def reference_gradings(
    store: LabelStore,
    *,
    sources: frozenset[GradingSource] = frozenset({GradingSource.HUMAN, GradingSource.IMPORT}),
) -> dict[str, Grading]:
    """The human reference grade per image: the current grading of the most senior role.

    Arbiter beats reference, primary and secondary; among equals, the latest. Only gradings
    whose source is in ``sources`` count: accepted model predictions are not human labels.
    """
    best: dict[str, Grading] = {}
    for grading in store.current_gradings():
        if grading.source not in sources:
            continue
        held = best.get(grading.image_sha256)
        rank = _ROLE_RANK.get(grading.role, 9)
        if held is None or rank <= _ROLE_RANK.get(held.role, 9):
            best[grading.image_sha256] = grading
    return best


def load_holdout(store: LabelStore) -> HoldoutSet:
    """The stored hold-out (empty when none was designated)."""
    rows = store.holdout_rows()
    return HoldoutSet(
        images=frozenset(r.sha256 for r in rows),
        patients=frozenset(r.patient_id for r in rows if r.patient_id),
    )


def holdout_rows(store: LabelStore) -> list[HoldoutRow]:
    """The stored hold-out rows (who added each image, when, designated or sampled)."""
    return store.holdout_rows()


def _patient(store: LabelStore, sha256: str) -> str:
    record = store.get_image(sha256)
    return record.patient_id if record is not None else ""


def designate_holdout(store: LabelStore, sha256s: Iterable[str], *, actor: str) -> int:
    """Lock the given images into the hold-out; return how many were new.

    Raises:
        HoldoutError: no image given or no named person.
    """
    chosen = sorted(set(sha256s))
    if not chosen:
        raise HoldoutError("Choose at least one image for the hold-out.")
    if not actor.strip():
        raise HoldoutError("A named person must designate the hold-out.")
    return store.add_holdout(
        [(s, _patient(store, s)) for s in chosen], source="designated", actor=actor
    )


def sample_holdout(
    store: LabelStore,
    *,
    actor: str,
    fraction: float = DEFAULT_FRACTION,
    seed: int = 0,
) -> list[str]:
    """Sample and lock a patient-grouped hold-out from the graded, gradable images.

    Patients (an image without a patient id is its own group) are drawn in a seeded random
    order until at least ``fraction`` of the graded images are held out.

    Returns:
        The SHA-256 of the images locked.

    Raises:
        HoldoutError: a hold-out already exists (it is locked), fewer than two patient groups
            are graded, or ``fraction`` is not in (0, 1).
    """
    if not 0 < fraction < 1:
        raise HoldoutError("The hold-out fraction must be between 0 and 1.")
    if store.holdout_rows():
        raise HoldoutError(
            "A locked hold-out already exists; it cannot be re-sampled (add images instead)."
        )
    graded = [g for g in reference_gradings(store).values() if g.gradable]
    groups: dict[str, list[tuple[str, str]]] = {}
    for grading in graded:
        patient = _patient(store, grading.image_sha256)
        key = patient or f"image:{grading.image_sha256}"
        groups.setdefault(key, []).append((grading.image_sha256, patient))
    if len(groups) < 2:
        raise HoldoutError(
            "Grade images of at least two patients before sampling a hold-out "
            "(the rest is needed for training)."
        )
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = max(1, round(fraction * len(graded)))
    picked: list[tuple[str, str]] = []
    for key in keys[:-1]:  # always leave at least one group for training
        if len(picked) >= target:
            break
        picked.extend(groups[key])
    store.add_holdout(picked, source="sampled", actor=actor)
    return [s for s, _ in picked]


def split_by_patient(
    items: Sequence[tuple[str, str]], fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    """Split ``(sha256, patient)`` pairs into (train, val) by patient groups, seeded.

    ``val`` gets about ``fraction`` of the images; empty when there are fewer than 2 groups.
    """
    groups: dict[str, list[str]] = {}
    for sha256, patient in items:
        groups.setdefault(patient or f"image:{sha256}", []).append(sha256)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    val: set[str] = set()
    target = round(fraction * len(items))
    for key in keys[:-1]:
        if len(val) >= target:
            break
        val.update(groups[key])
    return {s for s, _ in items} - val, val


__all__ = [
    "DEFAULT_FRACTION",
    "HoldoutError",
    "HoldoutSet",
    "designate_holdout",
    "holdout_rows",
    "load_holdout",
    "reference_gradings",
    "sample_holdout",
    "split_by_patient",
]
