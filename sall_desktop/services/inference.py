"""Model loading for the app: the only door from services to a model version's weights."""

from __future__ import annotations

from pathlib import Path

from model_zoo.predictor import Predictor


def load_predictor(model: Path, *, device: str | None = None) -> Predictor:
    """Load a model version (a folder with ``card.json`` + ``weights.safetensors``, or the card).

    The weights' SHA-256 is checked against the card before any tensor is read (R12, R13).

    Raises:
        model_zoo.checkpoints.CheckpointError: missing, tampered or mismatched weights.
    """
    return Predictor.from_checkpoint(model, device=device)
