"""Headless batch grading: predictions appended with the model id, bad files reported, reruns
skip what this model version already graded, a cancel keeps what was committed."""

from __future__ import annotations

import csv
import itertools
import threading
from pathlib import Path

import model_zoo.io  # noqa: F401  # isort: skip  (sets OpenCV's pixel cap before cv2 loads)
import cv2
import numpy as np
import pytest
import torch

from model_zoo.architectures.student import card_template
from model_zoo.cards import SYNTHETIC_INTENDED_USE, ModelCard
from model_zoo.checkpoints import save_checkpoint
from model_zoo.registry import get_model
from sall_desktop.__main__ import main
from sall_desktop.services.batch_grading import GradingProgress, grade_paths
from sall_desktop.services.folder_scan import register_images, scan_folder
from sall_desktop.services.inference import load_predictor
from sall_desktop.store import open_store


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    card = card_template(
        name="tiny",
        version="0",
        licence="test",
        intended_use=SYNTHETIC_INTENDED_USE,
        backbone="resnet18",
        input_size=64,
    )
    model = get_model(card.architecture, **card.architecture_kwargs)
    out = tmp_path_factory.mktemp("model")
    save_checkpoint(model, card, out)
    return out


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        cv2.imwrite(str(root / f"{i}_left.jpg"), rng.integers(0, 255, (80, 96, 3), np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


def _card(model_dir: Path) -> ModelCard:
    return load_predictor(model_dir).card


def test_grading_appends_predictions_and_reports_bad_files(
    model_dir: Path, folder: Path, tmp_path: Path
) -> None:
    predictor = load_predictor(model_dir, device="cpu")
    summary = scan_folder(folder)
    store = open_store(tmp_path / "db.sqlite")
    register_images(store, summary.records)
    paths = [Path(r.path) for r in summary.records] + [folder / "broken.jpg"]
    seen: list[GradingProgress] = []
    result = grade_paths(
        store, predictor, paths, batch_size=4, on_progress=seen.append, csv_out=tmp_path / "p.csv"
    )
    assert result.graded == 10 and len(result.failures) == 1
    assert result.failures[0][0].endswith("broken.jpg")
    stored = store.predictions(model_id=predictor.card.id)
    assert {p.image_sha256 for p in stored} == {r.sha256 for r in summary.records}
    assert all(abs(sum(p.probabilities["dr"]) - 1) < 1e-3 for p in stored)
    assert seen[-1].done == 11
    with (tmp_path / "p.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and rows[0]["model_id"] == predictor.card.id

    known = {r.path: r.sha256 for r in summary.records}
    again = grade_paths(store, predictor, paths[:10], known_sha256=known)
    assert again.skipped == 10 and again.graded == 0
    assert len(store.predictions(model_id=predictor.card.id)) == 10
    store.close()


def test_cancel_keeps_committed_predictions(
    model_dir: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits by count only: the clock stands still, so no time-based commit comes (on a busy
    # machine the half-second commit once fired after one image).
    import sall_desktop.services.batch_grading as batch_grading

    monkeypatch.setattr(batch_grading, "COMMIT_EVERY", 2)
    predictor = load_predictor(model_dir, device="cpu")
    summary = scan_folder(folder)
    store = open_store(tmp_path / "db.sqlite")
    cancel = threading.Event()

    def stop_after_first(progress: GradingProgress) -> None:
        cancel.set()

    result = grade_paths(
        store,
        predictor,
        [Path(r.path) for r in summary.records],
        batch_size=2,
        cancel=cancel,
        on_progress=stop_after_first,
        clock=lambda: 0.0,
    )
    assert result.cancelled
    kept = store.predictions(model_id=predictor.card.id)
    assert 2 <= len(kept) < 10 and len(kept) == result.graded
    store.close()


def test_grade_command(
    model_dir: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "db.sqlite")
    out = tmp_path / "predictions.csv"
    code = main(["--db", db, "grade", str(folder), "--model", str(model_dir), "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "10 graded" in text and "1 unreadable" in text
    assert out.exists()


def test_grade_command_refuses_a_tampered_model(
    model_dir: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad-model"
    bad.mkdir()
    for name in ("card.json", "weights.safetensors"):
        (bad / name).write_bytes((model_dir / name).read_bytes())
    data = bytearray((bad / "weights.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "weights.safetensors").write_bytes(bytes(data))
    code = main(["--db", str(tmp_path / "db.sqlite"), "grade", str(folder), "--model", str(bad)])
    assert code == 1
    assert "could not be loaded" in capsys.readouterr().err


@pytest.mark.parametrize(("every", "tick_s", "commits"), [(4, 0.0, 3), (1000, 1.0, 10)])
def test_predictions_are_committed_by_count_or_by_time(
    model_dir: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    every: int, tick_s: float, commits: int,
) -> None:  # fmt: skip
    # A fast model commits every COMMIT_EVERY predictions; a slow one every COMMIT_AFTER_S,
    # so its progress still moves. The test drives the clock: it stands still (count only), or
    # each reading is a second later than the last (past COMMIT_AFTER_S after each image).
    import sall_desktop.services.batch_grading as batch_grading

    monkeypatch.setattr(batch_grading, "COMMIT_EVERY", every)
    monkeypatch.setattr(batch_grading, "COMMIT_AFTER_S", 0.5)
    readings = itertools.count()

    def clock() -> float:
        return next(readings) * tick_s

    predictor = load_predictor(model_dir, device="cpu")
    summary = scan_folder(folder)
    store = open_store(tmp_path / "db.sqlite")
    writes: list[int] = []
    add = store.add_predictions

    def counted(rows: list[object]) -> int:
        writes.append(len(rows))
        return add(rows)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "add_predictions", counted)
    grade_paths(
        store, predictor, [Path(r.path) for r in summary.records], batch_size=4, clock=clock
    )
    assert sum(writes) == 10 and len(writes) == commits
    store.close()
