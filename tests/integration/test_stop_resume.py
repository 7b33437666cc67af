"""Cancel with a STOP file, then ``--resume`` to the same result as an uninterrupted run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from model_zoo.cards import read_card
from training.protocol import events as ev
from training.protocol.events import parse_event

pytestmark = pytest.mark.slow


def _args(data, config, out: Path) -> list[str]:
    return [
        "train-teacher",
        "--task",
        "dr",
        "--manifest",
        str(data.manifest),
        "--out",
        str(out),
        "--config",
        str(config),
        "--set",
        "optim.max_epochs=2",
        "--set",
        "optim.steps_per_epoch=4",
    ]


def _run_and_stop(trainer, args: list[str], out: Path) -> tuple[list[ev.Event], int]:
    """Start a run, create STOP after the first training step; return (events, rc)."""
    proc = trainer.popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    events: list[ev.Event] = []
    stopped = acknowledged = False
    for line in proc.stdout:
        event = parse_event(line)
        if event is None:
            continue
        events.append(event)
        if isinstance(event, ev.Progress) and not stopped:
            (out / "STOP").touch()
            stopped = True
        if isinstance(event, ev.StopAcknowledged):
            acknowledged = True
    rc = proc.wait(timeout=600)
    assert stopped and acknowledged, [type(e).__name__ for e in events]
    return events, rc


def test_stop_cancels_cleanly_and_resume_matches_an_uninterrupted_run(
    tmp_path, tiny_data, tiny_config, trainer
) -> None:
    # The uninterrupted reference runs alongside the interrupted run (two cores).
    ref_args = _args(tiny_data, tiny_config, tmp_path / "reference")
    ref_proc = trainer.popen(ref_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = tmp_path / "stopped"
    out.mkdir()
    events, rc = _run_and_stop(trainer, _args(tiny_data, tiny_config, out), out)
    reference = trainer.finish(ref_proc, ref_args)
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert rc == 0
    # R24: the run stops at a step boundary after STOP, not when it is done (below). How soon is
    # not measured here: the STOP poll's period is tested in tests/unit/training/test_runlog.py.
    kinds = [type(e) for e in events]
    assert ev.RunFinished not in kinds and kinds[-1] is ev.RunCancelled
    ack = next(e for e in events if isinstance(e, ev.StopAcknowledged))
    assert ack.reason == "stop_file"
    cancelled = events[-1]
    assert isinstance(cancelled, ev.RunCancelled) and cancelled.stage == "teacher-dr"
    saved = out / cancelled.checkpoint_path
    assert (saved / "card.json").is_file() and read_card(saved).id  # a complete checkpoint

    resumed = trainer.run([*_args(tiny_data, tiny_config, out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (out / "STOP").exists()
    assert resumed.events[0].run_id == events[0].run_id  # the same run continues
    finished = resumed.events[-1]
    assert isinstance(finished, ev.RunFinished)
    expected = reference.events[-1]
    assert isinstance(expected, ev.RunFinished)
    # Same seed, same data: the resumed run ends with bit-identical weights.
    assert finished.model_id == expected.model_id
    ref_ends = [(e.epoch, e.train_loss, e.val_loss) for e in reference.of(ev.EpochEnd)]
    all_ends = [e for e in events + resumed.events if isinstance(e, ev.EpochEnd)]
    assert [(e.epoch, e.train_loss, e.val_loss) for e in all_ends] == ref_ends
