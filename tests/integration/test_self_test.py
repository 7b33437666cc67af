"""``sall-desktop --self-test`` from source: a tiny real model, a tampered one, a missing one.

The model is a real resnet18 SALL student at 64 px saved with ``save_checkpoint`` (random
weights: the self-test checks that the pipeline runs, not what it predicts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import model_zoo.weights
from model_zoo.architectures.student import card_template
from model_zoo.cards import SYNTHETIC_INTENDED_USE
from model_zoo.checkpoints import save_checkpoint
from model_zoo.registry import get_model
from model_zoo.weights import demo_model_dir
from sall_desktop.services.self_test import run_self_test

ROOT = Path(__file__).resolve().parents[2]
STEPS = [
    "environment",
    "load model",
    "write images",
    "decode",
    "decode processes",
    "grade",
    "attention map",
    "store",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    card = card_template(
        name="self-test tiny",
        version="t1",
        licence="Apache-2.0",
        intended_use=SYNTHETIC_INTENDED_USE,
        backbone="resnet18",
        input_size=64,
    )
    folder = tmp_path_factory.mktemp("tiny-model")
    save_checkpoint(get_model(card.architecture, **card.architecture_kwargs), card, folder)
    return folder


@pytest.fixture
def tampered_model(tiny_model: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "tampered"
    shutil.copytree(tiny_model, folder)
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit pattern in the last tensor: the file no longer matches its card
    weights.write_bytes(bytes(data))
    return folder


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty user data folder and an empty temp folder, to prove both stay untouched."""
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return home, scratch


def test_self_test_passes_and_leaves_nothing_behind(
    tiny_model: Path, isolated: tuple[Path, Path]
) -> None:
    report = run_self_test(tiny_model, device="cpu")

    assert report.ok, report.format()
    names = [step.name for step in report.steps]
    assert names[: len(STEPS)] == STEPS
    assert names[-1] == "qt"  # passes offscreen here, or says it skipped without PySide6
    assert all(step.ok and step.seconds >= 0 for step in report.steps)
    load = report.steps[1]
    assert "self-test tiny" in load.detail and "cpu" in load.detail.lower()
    assert "jpeg, dicom, dicom" in report.steps[3].detail
    text = report.format()
    assert text.splitlines()[0].startswith("SALL Desktop ")
    assert text.splitlines()[-1].startswith("self-test PASSED")
    home, scratch = isolated
    assert list(home.iterdir()) == []  # the user's database folder was never touched
    assert list(scratch.iterdir()) == []  # the scratch database and images were removed


def test_tampered_weights_fail_with_a_clear_message(
    tampered_model: Path, isolated: tuple[Path, Path]
) -> None:
    report = run_self_test(tampered_model, device="cpu", qt=False)

    assert not report.ok
    failure = report.first_failure
    assert failure is not None and failure.name == "load model"
    assert "does not match its model card" in failure.detail
    by_name = {step.name: step for step in report.steps}
    # Steps that need no model still ran and passed; those that need it say why they did not run.
    assert by_name["decode"].ok
    assert by_name["grade"].detail == "not run ('load model' failed)"
    assert by_name["attention map"].detail == "not run ('load model' failed)"
    assert by_name["store"].detail == "not run ('grade' failed)"
    assert not any(by_name[n].ok for n in ("grade", "attention map", "store"))
    text = report.format()
    assert "Traceback" not in text
    assert text.splitlines()[-1].startswith("self-test FAILED at 'load model'")


def test_missing_bundled_model_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: tuple[Path, Path]
) -> None:
    monkeypatch.setattr(model_zoo.weights, "_package_folder", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="make demo-model"):
        demo_model_dir()

    report = run_self_test(None, qt=False)

    assert not report.ok and report.first_failure is not None
    assert report.first_failure.name == "load model"
    assert "bundled demo model is missing" in report.first_failure.detail


def test_demo_model_dir_finds_a_complete_folder(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_model, tmp_path / "demo")
    monkeypatch.setattr(model_zoo.weights, "_package_folder", lambda: tmp_path)
    assert demo_model_dir() == tmp_path / "demo"
    (tmp_path / "demo" / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weights.safetensors"):
        demo_model_dir()


def _start_cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, SALL_DESKTOP_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    return subprocess.Popen(
        [sys.executable, "-m", "sall_desktop", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_cli_self_test_exit_status(tiny_model: Path, tampered_model: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    # Both at once: each pays the torch import, which dominates.
    good_run = _start_cli("--self-test", "--model", str(tiny_model), home=home)
    bad_run = _start_cli("--self-test", "--model", str(tampered_model), home=home)
    try:
        good_out, good_err = good_run.communicate(timeout=600)
        bad_out, bad_err = bad_run.communicate(timeout=600)
    finally:
        for run in (good_run, bad_run):
            if run.poll() is None:
                run.kill()
                run.communicate()

    assert good_run.returncode == 0, good_out + good_err
    assert "self-test PASSED" in good_out
    assert bad_run.returncode == 1, bad_out + bad_err
    assert "self-test FAILED at 'load model'" in bad_out
    assert "Traceback" not in bad_out + bad_err
    assert list(home.iterdir()) == []
