"""torchrun with two CPU processes (gloo): trains, rank 0 alone writes events and checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.protocol import events as ev
from training.protocol.events import parse_stream

pytestmark = pytest.mark.slow


def test_two_process_ddp_trains_and_writes_one_checkpoint(
    tmp_path, tiny_data, tiny_config, trainer
) -> None:
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "training",
            "train-teacher",
            "--task",
            "amd",
            "--manifest",
            str(tiny_data.manifest),
            "--out",
            str(out),
            "--config",
            str(tiny_config),
            "--set",
            "optim.steps_per_epoch=2",
        ],
        cwd=trainer.root,
        env=trainer.env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events, errors = parse_stream(proc.stdout)
    assert not errors
    started = [e for e in events if isinstance(e, ev.RunStarted)]
    assert len(started) == 1 and started[0].world_size == 2  # one writer: rank 0
    assert "gloo" in started[0].device
    saved = [e for e in events if isinstance(e, ev.CheckpointSaved)]
    assert len(saved) == 1 and saved[0].epoch == 0
    checkpoints = list((out / "teacher-amd" / "ckpt").iterdir())
    assert [c.name for c in checkpoints] == ["e0000"]
    assert (checkpoints[0] / "card.json").is_file()
    progress = [e for e in events if isinstance(e, ev.Progress)]
    assert [p.step for p in progress] == [1, 2]  # each rank ran 2 steps; rank 0 reports
    assert isinstance(events[-1], ev.RunFinished)
