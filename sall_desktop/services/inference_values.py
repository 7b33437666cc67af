"""Values the inference service hands to the GUI: frozen, so they cross threads safely."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Re-exported: the app names the referable threshold where its predictions are summarised.
from model_zoo.architectures.tasks import REFERABLE_DR_MIN_GRADE as REFERABLE_DR_MIN_GRADE
from sall_desktop.domain.predictions import Prediction

DEFAULT_LOW_CONFIDENCE = 0.6
"""A head whose top calibrated probability is below this is flagged "low confidence"."""
CLINICAL_WARNING = "not for clinical use"


# ---------------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the GUI shows of the active model.

    Attributes:
        id: model version id (SHA-256 of the weights).
        name: human name; version: human version label; intended_use: the card's text.
        heads: head name -> class count, in card order.
        device: where it runs, e.g. ``"cpu, channels_last + bf16"``.
    """

    id: str
    name: str
    version: str
    intended_use: str
    heads: tuple[tuple[str, int], ...]
    device: str = ""

    @property
    def not_for_clinical_use(self) -> bool:
        text = self.intended_use.lower()
        return CLINICAL_WARNING in text or "synthetic" in text

    @property
    def badge(self) -> str:
        """The always-visible intended-use badge text."""
        if self.not_for_clinical_use:
            return "synthetic — not for clinical use"
        return self.intended_use


@dataclass(frozen=True, slots=True)
class HeadSummary:
    """One head's calibrated output for one image.

    Attributes:
        probabilities: one per class, summing to 1.
        grade: the most probable class.
        expected_grade: ``Σ i p_i`` in ``[0, C-1]``.
        confidence: the top probability, in ``[1/C, 1]``.
        entropy: ``-Σ p ln p`` in nats, in ``[0, ln C]``.
    """

    probabilities: tuple[float, ...]
    grade: int
    expected_grade: float
    confidence: float
    entropy: float

    @classmethod
    def of(cls, probabilities: Sequence[float]) -> HeadSummary:
        p = tuple(float(v) for v in probabilities)
        if not p:
            raise ValueError("a head needs at least one probability")
        grade = max(range(len(p)), key=p.__getitem__)
        entropy = -math.fsum(v * math.log(v) for v in p if v > 0.0)
        expected = math.fsum(i * v for i, v in enumerate(p))
        return cls(p, grade, expected, p[grade], max(0.0, entropy))


@dataclass(frozen=True, slots=True)
class PredictionSummary:
    """A model's output for one image as the GUI shows it (stored or freshly computed).

    Attributes:
        sha256: the image; model_id: the version that produced it.
        heads: head name -> :class:`HeadSummary`.
        referable_dr_probability: ``P(ICDR >= 2)`` when there is a 5-class ``dr`` head.
        low_confidence: some head's confidence is below the threshold.
        gradable_probability: the quality gate's output when the model has one.
    """

    sha256: str
    model_id: str
    heads: dict[str, HeadSummary]
    referable_dr_probability: float | None
    low_confidence: bool
    gradable_probability: float | None = None

    @property
    def gate_failed(self) -> bool:
        """The model's quality gate calls the image ungradable (R22): hide its grades."""
        return self.gradable_probability is not None and self.gradable_probability < 0.5


HEAD_ORDER = {"dr": 0, "amd": 1}
"""The order heads are shown in: DR first, then AMD, then any other head by name."""


def summarize(
    prediction: Prediction, *, low_confidence: float = DEFAULT_LOW_CONFIDENCE
) -> PredictionSummary:
    """Derive grades, confidence, entropy and the referable probability from stored probabilities.

    Args:
        prediction: calibrated per-head probabilities of one model for one image.
        low_confidence: confidence threshold in ``[0, 1]`` of the low-confidence flag.
    """
    # DR before AMD wherever heads are listed, whatever order the stored JSON kept them in.
    names = sorted(prediction.probabilities, key=lambda n: (HEAD_ORDER.get(n, len(HEAD_ORDER)), n))
    heads = {name: HeadSummary.of(prediction.probabilities[name]) for name in names}
    dr = heads.get("dr")
    referable = (
        math.fsum(dr.probabilities[REFERABLE_DR_MIN_GRADE:])
        if dr is not None and len(dr.probabilities) == 5
        else None
    )
    low = any(h.confidence < low_confidence for h in heads.values())
    return PredictionSummary(
        prediction.image_sha256,
        prediction.model_id,
        heads,
        referable,
        low,
        prediction.gradable_probability,
    )


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """Ask the model about one image.

    Attributes:
        request_id: the requester's id; the result carries it back (stale ones are dropped).
        sha256: the image identity; path: its file.
        model_id: the version the requester expects ("" = whatever is active).
        want_cam: ``(head, class)`` for an attention map (class None = the predicted class).
        save: append the prediction to the store (a newly seen image).
    """

    request_id: int
    sha256: str
    path: str
    model_id: str = ""
    want_cam: tuple[str, int | None] | None = None
    save: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class InferenceResult:
    """The answer to an :class:`InferenceRequest`.

    Attributes:
        cam: ``H×W`` float32 in [0, 1] in the image's own aspect ratio (long side at most
            :data:`MAX_CAM_SIDE`), or None when no map was asked for.
        cam_head, cam_class: what the map explains.
        seconds: compute time on the worker.
    """

    request_id: int
    sha256: str
    path: str
    model_id: str
    summary: PredictionSummary
    cam: npt.NDArray[np.float32] | None = None
    cam_head: str = ""
    cam_class: int = -1
    seconds: float = 0.0

    @property
    def heads(self) -> dict[str, HeadSummary]:
        return self.summary.heads

    @property
    def low_confidence(self) -> bool:
        return self.summary.low_confidence

    @property
    def referable_dr_probability(self) -> float | None:
        return self.summary.referable_dr_probability


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Progress of a folder's batch grading (after each committed chunk)."""

    done: int
    total: int
    failed: int
    skipped: int
    elapsed_s: float

    @property
    def images_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class BatchResult:
    """How a batch-grading run ended.

    Attributes:
        elapsed_s: the run's seconds; forward_s: those spent in the model's forward passes
            (the rest went to reading, normalising, storing and waiting for the machine).
    """

    model_id: str
    graded: int
    skipped: int
    failures: tuple[tuple[str, str], ...] = ()
    cancelled: bool = False
    elapsed_s: float = 0.0
    forward_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredPredictions:
    """The stored predictions of one model version for the images the window asked about.

    Attributes:
        model_id: the version (a reply for a version no longer active is stale).
        asked: every image asked about, found or not: those not found need the model.
        summaries: by SHA-256, the newest stored prediction of each image that has one.
    """

    model_id: str
    asked: frozenset[str]
    summaries: dict[str, PredictionSummary]
