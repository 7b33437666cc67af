"""Model cards: JSON round trip, strict validation with clear messages, torch-free reading."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from model_zoo.cards import (
    MAX_CARD_BYTES,
    SCHEMA_VERSION,
    CardError,
    ModelCard,
    Provenance,
    card_from_json,
    card_to_json,
    read_card,
)

PARENT = "a" * 64
TEACHERS = ("b" * 64, "c" * 64)


@pytest.fixture
def full_card(card_factory) -> ModelCard:
    provenance = Provenance(
        parent_id=PARENT,
        training_run_id="run-42",
        manifest_digest="d" * 64,
        config={"sall": {"temperature": 3.0, "feature_term": "hint"}, "lr": 1e-5, "tags": ("x",)},
        metrics={"dr": {"accuracy": 0.81, "qwk": 0.7}, "amd": {"ece_10": 0.02}},
        teacher_ids=TEACHERS,
        seed=17,
    )
    card = card_factory(fundus_crop=True, provenance=provenance)
    return card.replace(temperatures={"dr": 1.7, "amd": 0.9}, id="e" * 64)


def test_json_round_trip_is_exact(full_card: ModelCard) -> None:
    text = card_to_json(full_card)
    again = card_from_json(text)
    assert again == full_card
    assert card_to_json(again) == text
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["tasks"][0] == {
        "name": "dr",
        "classes": ["No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "PDR"],
    }
    assert data["grading_scales"] == {"dr": "ICDR 0-4", "amd": "SALL AMD 0-3"}
    assert data["intended_use"] == "Synthetic data only — not for clinical use."
    assert data["provenance"]["versions"]["torch"] not in ("", "unknown")
    # Tuples inside JSON values are canonicalised so the round trip compares equal.
    assert again.provenance.config["tags"] == ["x"]


def _mutate(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return apply


_DELETE = object()

BAD_CARDS = {
    "newer schema": (_mutate(("schema_version",), 2), "schema version 2"),
    "not a card": (_mutate(("schema",), "something-else"), "not a SALL model card"),
    "missing temperatures": (_mutate(("temperatures",), _DELETE), "missing temperatures"),
    "missing provenance field": (_mutate(("provenance", "seed"), _DELETE), "missing seed"),
    "unknown field": (_mutate(("surprise",), 1), "unknown field"),
    "zero temperature": (_mutate(("temperatures", "dr"), 0), "temperatures.dr"),
    "temperature for one head only": (_mutate(("temperatures",), {"dr": 1.0}), "one value per"),
    "zero std": (_mutate(("std",), [0.2, 0.0, 0.2]), "std must be positive"),
    "two-channel mean": (_mutate(("mean",), [0.5, 0.5]), "three numbers"),
    "unknown filter": (_mutate(("interpolation",), "magic"), "interpolation"),
    "unknown preprocessing": (_mutate(("preprocessing", "sharpen"), True), "unknown preprocessing"),
    "crop flag as text": (_mutate(("preprocessing", "fundus_crop"), "yes"), "fundus_crop must be"),
    "duplicate heads": (
        _mutate(("tasks",), [{"name": "dr", "classes": ["a", "b"]}] * 2),
        "unique",
    ),
    "one-class head": (_mutate(("tasks",), [{"name": "dr", "classes": ["a"]}]), "two classes"),
    "bad id": (_mutate(("id",), "not-a-hash"), "SHA-256"),
    "bad parent id": (_mutate(("provenance", "parent_id"), "xyz"), "parent_id"),
    "tiny input": (_mutate(("input_size",), 3), "input_size"),
    "string input size": (_mutate(("input_size",), "224"), "input_size"),
    "scale for unknown head": (_mutate(("grading_scales", "glaucoma"), "x"), "grading_scales"),
    "empty intended use": (_mutate(("intended_use",), " "), "intended_use"),
    "tasks inside kwargs": (_mutate(("architecture_kwargs", "tasks"), []), "must not contain"),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_invalid_cards_are_refused_with_a_clear_message(full_card: ModelCard, case: str) -> None:
    mutate, message = BAD_CARDS[case]
    data = json.loads(card_to_json(full_card))
    mutate(data)
    with pytest.raises(CardError, match=message):
        card_from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"card"', "null"])
def test_non_card_json_is_refused(text: str) -> None:
    with pytest.raises(CardError):
        card_from_json(text)


def test_non_finite_metrics_are_refused(full_card: ModelCard) -> None:
    with pytest.raises(CardError, match="not a finite number"):
        Provenance(metrics={"auc": float("nan")})
    with pytest.raises(CardError, match="keys must be strings"):
        Provenance(config={1: "x"})


def test_cards_are_frozen_values_with_private_copies(full_card: ModelCard) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        full_card.name = "other"  # type: ignore[misc]
    temps = {"dr": 2.0, "amd": 2.0}
    card = full_card.replace(temperatures=temps)
    temps["dr"] = 99.0
    assert card.temperatures["dr"] == 2.0
    assert card.task("amd").num_classes == 4
    with pytest.raises(KeyError):
        card.task("glaucoma")


def test_read_card_refuses_oversized_files(tmp_path, full_card: ModelCard) -> None:
    (tmp_path / "card.json").write_text(card_to_json(full_card), encoding="utf-8")
    assert read_card(tmp_path) == full_card
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CARD_BYTES + 1))
    with pytest.raises(CardError, match="larger than"):
        read_card(big)
    with pytest.raises(CardError, match="cannot read"):
        read_card(tmp_path / "missing.json")


def test_cards_and_registry_import_without_torch(tmp_path, full_card: ModelCard) -> None:
    (tmp_path / "card.json").write_text(card_to_json(full_card), encoding="utf-8")
    code = (
        "import sys, model_zoo, model_zoo.cards as c, model_zoo.registry\n"
        f"card = c.read_card({str(tmp_path)!r})\n"
        "assert card.tasks[0].name == 'dr'\n"
        "bad = [m for m in ('torch', 'torchvision', 'numpy', 'cv2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
