"""A model's output for one image, as stored (append-only) and shown."""

from __future__ import annotations

from dataclasses import dataclass, field

from sall_desktop.domain.grades import utc_now


@dataclass(frozen=True, slots=True)
class Prediction:
    """Calibrated per-head probabilities of one model version for one image.

    Args:
        image_sha256: identity of the image.
        model_id: the model version id (SHA-256 of its weights file).
        probabilities: head name ("dr", "amd") -> class probabilities, each summing to 1.
        gradable_probability: quality-gate probability that the image is gradable, if the
            model has such a gate.
        created_at: UTC ISO-8601.
    """

    image_sha256: str
    model_id: str
    probabilities: dict[str, tuple[float, ...]]
    gradable_probability: float | None = None
    created_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.model_id:
            raise ValueError("a prediction needs the id of the model that made it")
        for head, probs in self.probabilities.items():
            if not probs or abs(sum(probs) - 1.0) > 1e-3:
                raise ValueError(f"probabilities of head {head!r} must sum to 1, got {sum(probs)}")

    def predicted_grade(self, head: str) -> int:
        probs = self.probabilities[head]
        return max(range(len(probs)), key=probs.__getitem__)
