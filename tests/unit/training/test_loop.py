"""The generic loop: any Objective trains through ``fit``; the loop imports nothing of SALL."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from training.engine.context import RunContext
from training.engine.loop import fit
from training.engine.models import build_card, build_model
from training.engine.runlog import EventSink, StopWatcher
from training.engine.state import StageState
from training.protocol import events as ev
from training.protocol.config import load_config

ENGINE = Path(__file__).resolve().parents[3] / "training" / "engine"
GENERIC = ("loop.py", "loop_setup.py", "objective.py", "state.py", "distributed.py", "context.py")


class PlainObjective(nn.Module):
    """Not SALL: cross-entropy of one head against fixed labels, two named components."""

    part_names = ("loss", "ce")

    def __init__(self, model: nn.Module, labels: dict[str, Tensor]) -> None:
        super().__init__()
        self.model = model
        self.labels = labels
        self.extra = nn.ModuleDict()
        self.placed: torch.device | None = None

    def place(self, device: torch.device, *, channels_last: bool) -> None:
        self.to(device)
        self.placed = device

    def forward(self, x: Tensor, idx: Tensor, split: str) -> tuple[Tensor, Tensor, dict]:
        logits = self.model(x).logits
        z = logits["dr"]
        loss = nn.functional.cross_entropy(z, self.labels[split][idx])
        return loss, torch.stack([loss.detach(), loss.detach()]), {"dr": z}

    def metrics(self, split: str, predicted: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        y = self.labels[split].numpy()
        return {"dr": {"n": float(len(y)), "hits": float((predicted["dr"] == y).sum())}}


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        self.x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], i


@pytest.fixture
def cfg():
    return load_config(
        None,
        [
            "model.backbone=resnet18",
            "model.input_size=32",
            "runtime.device=cpu",
            "optim.batch_size=4",
            "optim.steps_per_epoch=2",
            "optim.max_epochs=2",
            "runtime.progress_interval_s=0",
            "runtime.num_workers=0",
        ],
    )


def _run(cfg, tmp_path: Path, objective, *, with_val: bool) -> tuple[list[ev.Event], object]:
    tasks = list(cfg.sall.tasks)
    card = build_card(cfg, tasks, name="plain", run_id="r", manifest_digest="")
    sink = EventSink(tmp_path, "r")
    events: list[ev.Event] = []
    sink.subscribe(events.append)
    with StopWatcher(None, sink, handle_sigterm=False) as stop:
        ctx = RunContext(tmp_path, "r", sink, stop, torch.device("cpu"))
        result = fit(
            stage="plain",
            objective=objective,
            train=Images(8, 1),
            val=Images(4, 2) if with_val else None,
            sampling_weights=None,
            card=card,
            cfg=cfg,
            ctx=ctx,
            max_epochs=2,
            resume=False,
        )
    sink.close()
    return events, result


def _objective(cfg) -> PlainObjective:
    torch.manual_seed(0)
    model = build_model(cfg, list(cfg.sall.tasks))
    labels = {"train": torch.tensor([0, 1, 2, 3, 4, 0, 1, 2]), "val": torch.tensor([0, 1, 2, 3])}
    return PlainObjective(model, labels)


@pytest.mark.slow
def test_fit_trains_an_objective_that_is_not_sall(cfg, tmp_path: Path) -> None:
    objective = _objective(cfg)
    events, result = _run(cfg, tmp_path, objective, with_val=True)

    assert objective.placed == torch.device("cpu")
    kinds = [type(e) for e in events]
    assert kinds[0] is ev.StageStarted
    assert kinds.count(ev.Progress) == 4 and kinds.count(ev.EpochEnd) == 2
    ends = [e for e in events if isinstance(e, ev.EpochEnd)]
    assert set(ends[0].losses) == {"train_loss", "train_ce", "val_loss", "val_ce"}
    assert ends[0].metrics["dr"]["n"] == 4.0 and "hits" in ends[0].metrics["dr"]
    assert ends[0].is_best
    # The objective's component names size the saved running sums.
    state = json.loads((tmp_path / "plain" / "state.json").read_text())
    assert state["sums"] == [0.0, 0.0] and state["epoch"] == 2 and state["finished"]
    assert [h.epoch for h in result.history] == [0, 1]
    assert result.best_dir.parent.parent == tmp_path / "plain"


@pytest.mark.slow
def test_without_validation_every_epoch_is_the_best(cfg, tmp_path: Path) -> None:
    events, result = _run(cfg, tmp_path, _objective(cfg), with_val=False)
    ends = [e for e in events if isinstance(e, ev.EpochEnd)]
    assert [e.is_best for e in ends] == [True, True]
    assert all(e.val_loss is None and e.metrics == {} for e in ends)
    assert result.best_dir.name == "e0001"


def test_end_epoch_keeps_the_best_and_stops_after_patience() -> None:
    state = StageState(stage="s", config_digest="d", sums=[1.0, 2.0])
    assert state.end_epoch(1.0, 0.5, lr=0.1, patience=2, max_epochs=10)
    assert (state.epoch, state.step, state.sums, state.best_epoch) == (1, 0, [0.0, 0.0], 0)
    assert not state.end_epoch(0.9, 0.6, lr=0.1, patience=2, max_epochs=10)
    assert not state.finished and state.bad_epochs == 1
    assert not state.end_epoch(0.8, float("nan"), lr=0.1, patience=2, max_epochs=10)
    assert state.finished and state.best_val == 0.5
    assert state.history[2]["val_loss"] is None  # NaN is written as null
    fresh = StageState(stage="s", config_digest="d")
    assert fresh.end_epoch(3.0, None, lr=0.1, patience=1, max_epochs=1) and fresh.finished


@pytest.mark.parametrize("name", GENERIC)
def test_the_generic_loop_imports_nothing_of_sall(name: str) -> None:
    tree = ast.parse((ENGINE / name).read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "sall" in m], imported
