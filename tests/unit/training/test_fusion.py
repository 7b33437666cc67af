"""The ``fusion`` feature term: heads read the other task's probabilities."""

from __future__ import annotations

import torch

from model_zoo.checkpoints import load_checkpoint, save_checkpoint
from training.engine.models import build_card, build_model
from training.engine.sall.fusion import FusionStudent
from training.engine.sall.losses import SemanticLossConfig
from training.engine.sall.objective import SallObjective, Targets
from training.protocol.config import load_config


def _fusion(tmp_path=None):
    cfg = load_config(
        None, ["model.backbone=resnet18", "model.input_size=32", "sall.feature_term=fusion"]
    )
    torch.manual_seed(0)
    return cfg, build_model(cfg, cfg.sall.tasks)


def test_heads_see_the_other_tasks_probabilities() -> None:
    _, model = _fusion()
    assert isinstance(model, FusionStudent)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    amd_a = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    amd_b = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 1.0]])
    dr = torch.full((2, 5), 0.2)
    with torch.no_grad():
        a = model(x, {"dr": dr, "amd": amd_a}).logits
        b = model(x, {"dr": dr, "amd": amd_b}).logits
    assert not torch.allclose(a["dr"], b["dr"])  # the DR head reads q_AMD
    assert torch.allclose(a["amd"], b["amd"])  # the AMD head does not read its own vector


def test_inference_is_two_passes_from_a_uniform_vector() -> None:
    _, model = _fusion()
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        uniform = {"dr": torch.full((3, 5), 0.2), "amd": torch.full((3, 4), 0.25)}
        first = model(x, uniform).logits
        second = model(x, {k: torch.softmax(v, 1) for k, v in first.items()}).logits
        auto = model(x).logits
    for k in ("dr", "amd"):
        torch.testing.assert_close(auto[k], second[k])


def test_fusion_checkpoint_round_trip(tmp_path) -> None:
    cfg, model = _fusion()
    card = build_card(cfg, cfg.sall.tasks, name="fusion", run_id="r", manifest_digest="")
    assert card.architecture == "sall_fusion_student"
    saved = save_checkpoint(model, card, tmp_path / "ckpt")
    loaded, loaded_card = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, FusionStudent) and loaded_card.id == saved.id


def test_objective_feeds_teacher_probabilities_in_training() -> None:
    cfg, model = _fusion()
    n = 4
    targets = Targets(
        hard=torch.tensor([[1, -1], [-1, 2], [0, 0], [3, -1]]),
        teacher_logits={"dr": torch.randn(n, 5), "amd": torch.randn(n, 4)},
        soft_mask={
            "dr": torch.tensor([False, True, False, False]),
            "amd": torch.tensor([True, False, False, True]),
        },
    )
    objective = SallObjective(
        model, {"train": targets}, SemanticLossConfig(), feature_term="fusion"
    )
    loss, parts, logits = objective(torch.randn(n, 3, 32, 32), torch.arange(n), "train")
    loss.backward()
    assert parts.shape == (5,) and float(parts[4]) == 0.0 and logits["dr"].shape == (n, 5)
    assert model.heads["dr"][1].weight.grad is not None
