"""Shared fixtures of the training integration tests: a tiny synthetic dataset and real runs.

Every run is a real ``python -m training`` child process on CPU, as the GUI starts it. The
dataset (48 images at 64 px) and the ``sall`` run are session-scoped: several tests read the
same run instead of training again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from model_zoo.datasets.benchmark import write_synthetic_dataset
from model_zoo.fileio import atomic_write_text
from training.protocol.events import Event, parse_stream
from training.protocol.manifest import ManifestRow, format_manifest
from training.synth import manifest_rows

ROOT = Path(__file__).resolve().parents[2]

TINY_CONFIG = """
[model]
backbone = "resnet18"
input_size = 64

[optim]
batch_size = 8
max_epochs = 1
lr = 1e-3

[runtime]
device = "cpu"
seed = 3
progress_interval_s = 0.0
"""


@dataclass(frozen=True)
class Dataset:
    folder: Path
    manifest: Path
    rows: list[ManifestRow]


@dataclass(frozen=True)
class Run:
    folder: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[Event]:
        events, errors = parse_stream(self.stdout)
        assert not errors, errors
        return events

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


class Trainer:
    """Starts ``python -m training`` children the way the GUI does (tests use the fixture)."""

    root = ROOT

    @staticmethod
    def env() -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        # The CI box is small and shared: one thread per process avoids oversubscription.
        env["OMP_NUM_THREADS"] = "1"
        return env

    def popen(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [sys.executable, "-m", "training", *args], cwd=ROOT, env=self.env(), text=True, **kwargs
        )

    def finish(self, proc: subprocess.Popen[str], args: Sequence[str], timeout: float = 900) -> Run:
        stdout, stderr = proc.communicate(timeout=timeout)
        out = Path(list(args)[list(args).index("--out") + 1])
        return Run(out, proc.returncode, stdout, stderr)

    def run(self, args: Sequence[str], *, timeout: float = 900) -> Run:
        """Run ``python -m training ARGS`` to completion."""
        proc = self.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return self.finish(proc, args, timeout)

    @staticmethod
    def write_manifest(path: Path, rows: Sequence[ManifestRow]) -> Path:
        atomic_write_text(path, format_manifest(rows))
        return path


@pytest.fixture(scope="session")
def trainer() -> Trainer:
    return Trainer()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder = tmp_path_factory.mktemp("synthetic")
    samples = write_synthetic_dataset(folder, 48, seed=11, size=64, dicom_fraction=0.0)
    rows = manifest_rows(samples)
    manifest = Trainer.write_manifest(folder / "manifest.csv", rows)
    return Dataset(folder, manifest, rows)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def sall_run(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_data: Dataset,
    tiny_config: Path,
    trainer: Trainer,
) -> Run:
    out = tmp_path_factory.mktemp("sall") / "run"
    return trainer.run(
        [
            "sall",
            "--manifest",
            str(tiny_data.manifest),
            "--out",
            str(out),
            "--config",
            str(tiny_config),
            "--set",
            "optim.max_epochs=2",
            # Enough steps for the parent of the fine-tune tests to fit its training images.
            "--set",
            "optim.steps_per_epoch=10",
            "--set",
            "sall.kd_t2_scaling=true",
        ]
    )
