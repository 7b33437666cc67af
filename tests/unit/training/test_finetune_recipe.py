"""The one-click fine-tune's recipe: what the parent decides, what ``[finetune]`` decides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_zoo.cards import card_from_json
from training.engine.finetune import _unseen, config_for_parent, domain_weights
from training.protocol.config import ConfigError, load_config
from training.protocol.manifest import ManifestRow

DEMO_CARD = Path(__file__).resolve().parents[3] / "model_zoo" / "weights" / "demo" / "card.json"


def _row(n: int, patient: str) -> ManifestRow:
    return ManifestRow(f"{n}.jpg", f"{n:064x}", patient, "R", 0, 0, True, "train")


def test_the_parent_gives_the_shape_and_finetune_gives_the_recipe() -> None:
    parent = card_from_json(DEMO_CARD.read_text(encoding="utf-8"))
    cfg = config_for_parent(load_config(None), parent)
    assert (cfg.model.backbone, cfg.model.input_size) == ("efficientnet_b0", 128)
    assert [t.name for t in cfg.sall.tasks] == ["dr", "amd"]
    # [optim] describes training from scratch (lr 1e-5); a fine-tune takes [finetune]'s.
    assert cfg.optim.lr == cfg.finetune.lr != load_config(None).optim.lr
    assert cfg.optim.schedule == "cosine"
    assert cfg.optim.max_epochs == cfg.finetune.max_epochs
    assert cfg.optim.patience == cfg.finetune.patience
    assert cfg.sall.augment is True and cfg.sall.feature_term == "none"
    off = config_for_parent(load_config(None, ["finetune.augment=none"]), parent)
    assert off.sall.augment is False


def test_the_one_click_config_is_the_bare_default() -> None:
    parent = card_from_json(DEMO_CARD.read_text(encoding="utf-8"))
    digest = config_for_parent(load_config(None), parent).digest()
    assert digest == config_for_parent(load_config(None, []), parent).digest()
    assert digest != config_for_parent(load_config(None, ["finetune.lr=1e-5"]), parent).digest()


def test_replay_takes_its_share_of_the_draws_whatever_the_sizes() -> None:
    weights = domain_weights(40, 160, 0.5)
    assert sum(weights[:40]) == pytest.approx(0.5) and sum(weights[40:]) == pytest.approx(0.5)
    weights = domain_weights(200, 50, 0.25)
    assert sum(weights[200:]) == pytest.approx(0.25)
    assert domain_weights(10, 0) == [1.0] * 10


@pytest.mark.parametrize(
    "override", ["finetune.replay_share=1.0", "finetune.bootstrap=10", "finetune.lr=0"]
)
def test_out_of_range_recipes_are_refused(override: str) -> None:
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_reference_images_a_grader_corrected_leave_the_gate_not_the_run() -> None:
    reference = [_row(1, "p1"), _row(2, "p2"), _row(3, "p3")]
    seen = [_row(1, "x"), _row(9, "p3")]
    assert [r.sha256 for r in _unseen(reference, seen)] == [f"{2:064x}"]


def test_old_cards_keep_their_recorded_finetune_section() -> None:
    saved = json.loads(DEMO_CARD.read_text(encoding="utf-8"))["provenance"]["config"]
    assert "finetune" in saved  # written before the recipe moved; it still loads
    from training.protocol.config import config_from_dict

    assert config_from_dict(saved).finetune.max_epochs == saved["finetune"]["max_epochs"]
