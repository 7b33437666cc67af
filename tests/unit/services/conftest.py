"""Shared builders for the services tests, and their one hang guard (docs/testing.md)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from model_zoo.architectures.tasks import DEFAULT_TASKS
from model_zoo.cards import ModelCard, Provenance, card_to_json
from sall_desktop.services.grading import GradingEvent, SaveState

HANG_GUARD_S = 120.0
"""The longest any wait on real work (a thread, a process, a decode) may take before the test
fails as hung. Never a measure of speed: on a busy machine the work may take any time below it."""


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` until it is true; fail after :data:`HANG_GUARD_S` (a hang guard)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"hung: {what} after {HANG_GUARD_S:.0f} s"
        time.sleep(0.01)


def write_fake_model(
    folder: Path, seed: int, *, parent: str | None = None, intended_use: str = "research"
) -> str:
    """A card + 'weights' folder whose hash check passes (torch-free: weights are random bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = hashlib.sha512(str(seed).encode()).digest() * 64
    (folder / "weights.safetensors").write_bytes(weights)
    card = ModelCard(
        id=hashlib.sha256(weights).hexdigest(),
        name=f"model {seed}",
        version=str(seed),
        architecture="sall_student",
        architecture_kwargs={"backbone": "resnet18", "dropout": 0.5},
        tasks=DEFAULT_TASKS,
        grading_scales={},
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        interpolation="bilinear",
        preprocessing={},
        temperatures={t.name: 1.0 for t in DEFAULT_TASKS},
        provenance=Provenance(
            parent_id=parent, metrics={"holdout": {"heads": {"dr": {"qwk": 0.5 + seed / 100}}}}
        ),
        licence="test",
        intended_use=intended_use,
    )
    (folder / "card.json").write_text(card_to_json(card), encoding="utf-8")
    return card.id


@pytest.fixture
def fake_model_writer() -> Callable[..., str]:
    """``write(folder, seed, *, parent=None, intended_use="research") -> card id``."""
    return write_fake_model


class Recorder:
    """A grading-service listener that keeps every event (events arrive on the store thread)."""

    def __init__(self) -> None:
        self.events: list[GradingEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: GradingEvent) -> None:
        with self.lock:
            self.events.append(event)

    def states(self, sha256: str) -> list[SaveState]:
        with self.lock:
            return [e.state for e in self.events if e.sha256 == sha256]

    def shas_in(self, state: SaveState) -> set[str]:
        with self.lock:
            return {e.sha256 for e in self.events if e.state is state}

    def last(self) -> GradingEvent:
        with self.lock:
            return self.events[-1]
