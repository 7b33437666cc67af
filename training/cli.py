"""``sall-train`` / ``python -m training``: the SALL stages as sub-commands.

Sub-commands (each also a function in ``training.engine``)::

    train-teacher  --manifest M --out RUN --task dr     stage 1 (also the single-task baseline)
    soft-labels    --manifest M --out RUN --teacher T.. stage 2: cache teacher logits + features
    train-student  --manifest M --out RUN --teacher T.. stage 3 (computes missing soft labels)
    sall           --manifest M --out RUN               the three stages, calibration, report
    evaluate       --model CKPT --manifest M --out DIR  per-head metrics, report.json, plots
    finetune       --init CKPT --manifest corrections.csv --holdout holdout.csv --out RUN
    synth          --out DIR --n N --seed S             synthetic dataset (training.synth)

Common options: ``--config run.toml``, ``--set section.key=value`` (repeatable, type-checked),
``--resume`` (continue a cancelled or crashed run in the same folder), ``--run-id``,
``--expect-manifest-digest`` (refuse a manifest edited after it was frozen).

The run folder receives ``events.jsonl`` (also on stdout, one JSON object per line),
``train.log`` (also on stderr), stage checkpoints, ``model/`` and ``report.json``. Create
``RUN/STOP`` to cancel: the run saves a checkpoint and exits 0 with ``run_cancelled``.

Exit codes: 0 finished or cancelled, 1 failed (``run_failed`` says why), 2 bad arguments,
130 interrupted by Ctrl+C.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.engine.sall.pipeline import RunInputs, Trained
    from training.protocol.manifest import ManifestRow

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
RUN_FILENAME = "run.json"


@dataclass(frozen=True)
class Outcome:
    """What a command produced, for ``run_finished`` (paths relative to the run folder)."""

    model_path: str = ""
    model_id: str = ""
    report_path: str = ""
    gate_passed: bool | None = None
    gate_status: str = ""
    teachers: dict[str, str] = field(default_factory=dict)
    teacher_ids: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- arguments


def _run_id_arg(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
        raise argparse.ArgumentTypeError("a run id is 1-64 letters, digits, '.', '_' or '-'")
    return text


def _common(parser: argparse.ArgumentParser, *, manifest: bool = True) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder (created if missing)")
    if manifest:
        parser.add_argument("--manifest", type=Path, required=True, help="frozen manifest CSV")
    parser.add_argument("--config", type=Path, help="TOML configuration (defaults: sall-method)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set sall.temperature=2 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--run-id", type=_run_id_arg, help="run identifier (default: new, or the resumed run's)"
    )
    parser.add_argument("--expect-manifest-digest", help="SHA-256 the manifest must have")
    parser.add_argument("--intended-use", default="", help="intended-use text for the model card")


def build_parser() -> argparse.ArgumentParser:
    """The ``sall-train`` argument parser (pure; used by tests and ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="sall-train", description="SALL training: teachers, soft labels, student, fine-tune."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="stage 1: single-task teacher of one disease")
    _common(p)
    p.add_argument("--task", required=True, help="task name from sall.tasks (dr, amd)")
    p.set_defaults(handler=cmd_train_teacher)

    p = sub.add_parser("soft-labels", help="stage 2: cache teacher logits on the other images")
    _common(p)
    p.add_argument(
        "--teacher", type=Path, action="append", required=True, help="teacher checkpoint"
    )
    p.add_argument("--cache", type=Path, help="cache folder (default RUN/soft-labels)")
    p.set_defaults(handler=cmd_soft_labels)

    p = sub.add_parser("train-student", help="stage 3: the multi-task SALL student")
    _common(p)
    p.add_argument(
        "--teacher", type=Path, action="append", required=True, help="teacher checkpoint"
    )
    p.add_argument("--cache", type=Path, help="soft-label cache folder (default RUN/soft-labels)")
    p.set_defaults(handler=cmd_train_student)

    p = sub.add_parser("sall", help="all three stages, calibration and the test report")
    _common(p)
    p.set_defaults(handler=cmd_sall)

    p = sub.add_parser("evaluate", help="per-head metrics of a model on a manifest split")
    _common(p)
    p.add_argument("--model", type=Path, required=True, help="checkpoint folder or card.json")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--calibrate-on",
        default="val",
        help="split to fit T_cal on ('card' keeps the card's temperatures; default val)",
    )
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("finetune", help="fine-tune the active student on corrections, gated")
    _common(p)
    p.add_argument("--init", type=Path, required=True, help="active student checkpoint")
    p.add_argument("--holdout", type=Path, required=True, help="locked hold-out manifest")
    p.add_argument("--replay", type=Path, help="original training manifest (replay sample)")
    p.add_argument("--teacher", type=Path, action="append", default=[], help="lineage teacher")
    p.set_defaults(handler=cmd_finetune)

    if importlib.util.find_spec("training.synth") is not None:
        from training import synth

        synth.add_parser(sub)
    return parser


# ----------------------------------------------------------------------------- commands
# Each command imports the engine lazily: ``--help`` and argument errors stay fast.


def cmd_train_teacher(args: argparse.Namespace, inp: RunInputs) -> Outcome:
    """Stage 1 for ``--task``."""
    from training.engine.sall.pipeline import train_teacher

    task = inp.cfg.sall.task(args.task)
    trained = train_teacher(inp, task)
    path = _best_path(inp, f"teacher-{task.name}")
    return Outcome(
        model_path=path,
        model_id=trained.card.id,
        teachers={task.name: path},
        teacher_ids={task.name: trained.card.id},
    )


def _teachers(inp: RunInputs, folders: Sequence[Path]) -> dict[str, Trained]:
    from model_zoo.architectures.student import SallStudent
    from model_zoo.checkpoints import load_checkpoint
    from training.engine.sall.pipeline import Trained

    out: dict[str, Trained] = {}
    for folder in folders:
        model, card = load_checkpoint(folder, device="cpu")
        if not isinstance(model, SallStudent) or len(card.tasks) != 1:
            raise ValueError(f"teacher {card.id[:12]} is not a single-task SALL model")
        out[card.tasks[0].name] = Trained(model, card)
    missing = [t.name for t in inp.cfg.sall.tasks if t.name not in out]
    if missing:
        raise ValueError(f"no teacher given for task(s) {', '.join(missing)}")
    return out


def cmd_soft_labels(args: argparse.Namespace, inp: RunInputs) -> Outcome:
    """Stage 2 for the given teachers."""
    from training.engine.sall.pipeline import soft_labels

    soft_labels(inp, _teachers(inp, args.teacher), cache_dir=args.cache)
    return Outcome()


def cmd_train_student(args: argparse.Namespace, inp: RunInputs) -> Outcome:
    """Stage 3 (stage 2 first for images missing from the cache)."""
    from training.engine.sall.pipeline import soft_labels, train_student

    teachers = _teachers(inp, args.teacher)
    outputs = soft_labels(inp, teachers, cache_dir=args.cache)
    live = None
    if inp.cfg.sall.augment and inp.cfg.sall.feature_term == "hint":
        live = {k: t.model for k, t in teachers.items()}
    trained = train_student(
        inp, outputs, teacher_ids=[t.card.id for t in teachers.values()], live_teachers=live
    )
    return Outcome(model_path=_best_path(inp, "student"), model_id=trained.card.id)


def cmd_sall(args: argparse.Namespace, inp: RunInputs) -> Outcome:
    """Teachers, soft labels, student, calibration, export and test report."""
    from training.engine.sall.pipeline import MODEL_DIRNAME, run_sall

    result = run_sall(inp)
    return Outcome(
        model_path=MODEL_DIRNAME,
        model_id=result.card.id,
        report_path=result.report_path.name if result.report_path is not None else "",
        teachers=result.teachers,
        teacher_ids=result.teacher_ids,
    )


def cmd_evaluate(args: argparse.Namespace, inp: RunInputs) -> Outcome:
    """Metrics of ``--model`` on ``--split``; T_cal fitted on ``--calibrate-on``."""
    from model_zoo.architectures.student import SallStudent
    from model_zoo.checkpoints import load_checkpoint
    from training.engine.data import select_rows
    from training.engine.evaluate import calibrate, config_tasks, predict
    from training.engine.sall.pipeline import evaluate_and_report

    model, card = load_checkpoint(args.model, device="cpu")
    if not isinstance(model, SallStudent):
        raise ValueError(f"model {card.id[:12]} is not a SALL model")
    notes = []
    calib_rows = select_rows(inp.rows, [args.calibrate_on]) if args.calibrate_on != "card" else []
    if calib_rows:
        preds = predict(model, card, calib_rows, inp.base_dir, cfg=inp.cfg, device=inp.ctx.device)
        card = card.replace(temperatures=calibrate(preds, config_tasks(card)))
        notes.append(f"T_cal fitted on the {args.calibrate_on} split ({len(calib_rows)} images)")
    else:
        notes.append("T_cal taken from the model card")
    path, _ = evaluate_and_report(
        inp,
        model,
        card,
        split=args.split,
        out_dir=inp.ctx.run_dir,
        kind="evaluate",
        notes=notes,
    )
    return Outcome(model_id=card.id, report_path=path.name)


def cmd_finetune(args: argparse.Namespace, inp: RunInputs) -> Outcome:
    """Stage 3 from the active student on corrections, then the promotion gate."""
    from training.engine.finetune import run_finetune
    from training.engine.sall.pipeline import MODEL_DIRNAME
    from training.protocol.manifest import read_manifest

    holdout = read_manifest(args.holdout)
    original = read_manifest(args.replay) if args.replay else []
    card, verdict, report = run_finetune(
        inp,
        parent_dir=args.init,
        holdout=holdout,
        holdout_base=args.holdout.parent,
        original=original,
        original_base=args.replay.parent if args.replay else None,
        teacher_dirs=args.teacher,
    )
    return Outcome(
        model_path=MODEL_DIRNAME,
        model_id=card.id,
        report_path=report.name,
        gate_passed=verdict.passed,
        gate_status=verdict.status,
    )


def _best_path(inp: RunInputs, stage: str) -> str:
    from training.engine.sall.pipeline import best_checkpoint_path

    return best_checkpoint_path(inp, stage)


# ----------------------------------------------------------------------------- running


def _run_id(run_dir: Path, args: argparse.Namespace) -> str:
    path = run_dir / RUN_FILENAME
    if args.run_id:
        return str(args.run_id)
    if args.resume and path.is_file():
        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["run_id"])
        except (ValueError, KeyError):
            pass
    return uuid.uuid4().hex


def run_command(args: argparse.Namespace) -> int:
    """Run one training command with events, logs, cancellation and error reporting."""
    from model_zoo.cards import current_versions
    from training.engine.distributed import dist_info_from_env, setup, sync_run_id, teardown
    from training.engine.loop import Cancelled, RunContext
    from training.engine.runlog import EventSink, StopWatcher, run_logging
    from training.engine.sall.pipeline import RunInputs
    from training.protocol.config import load_config
    from training.protocol.events import (
        RunCancelled,
        RunFailed,
        RunFinished,
        RunStarted,
        redact_message,
    )

    info = dist_info_from_env()
    run_dir: Path = args.out
    writer = info.rank == 0
    run_id = _open_run_dir(run_dir, args, writer=writer)
    started = time.monotonic()
    with run_logging(run_dir, rank=info.rank) as log:
        sink = EventSink(run_dir, run_id, enabled=writer)
        stop = StopWatcher(run_dir if writer else None, sink)
        stage = ""
        try:
            with stop:
                cfg = load_config(args.config, args.overrides)
                if cfg.runtime.deterministic:
                    # cuBLAS needs this before CUDA starts to be deterministic.
                    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                rows, digest = _read_manifest(args)
                device, note = setup(cfg.runtime.device, info)
                if info.world_size > 1:
                    run_id = sync_run_id(run_id, device)
                    sink.run_id = run_id
                log.info("run %s: %s on %s", run_id, args.command, note)
                sink.emit(
                    RunStarted(
                        run_id=run_id,
                        command=args.command,
                        config=cfg.to_dict(),
                        config_digest=cfg.digest(),
                        manifest_digest=digest,
                        device=note,
                        versions=current_versions(),
                        world_size=info.world_size,
                    )
                )
                ctx = RunContext(
                    run_dir, run_id, sink, stop, device, rank=info.rank, world_size=info.world_size
                )
                inp = RunInputs(
                    cfg=cfg,
                    rows=rows,
                    base_dir=args.manifest.parent,
                    manifest_digest=digest,
                    ctx=ctx,
                    resume=args.resume,
                    intended_use=args.intended_use,
                )
                outcome = args.handler(args, inp)
            sink.emit(
                RunFinished(
                    run_id=run_id,
                    model_path=outcome.model_path,
                    model_id=outcome.model_id,
                    report_path=outcome.report_path,
                    gate_passed=outcome.gate_passed,
                    gate_status=outcome.gate_status,
                    seconds=time.monotonic() - started,
                    teachers=outcome.teachers,
                    teacher_ids=outcome.teacher_ids,
                )
            )
            log.info("run finished in %.1f s", time.monotonic() - started)
            return EXIT_OK
        except Cancelled as exc:
            log.info("%s", exc)
            sink.emit(RunCancelled(run_id=run_id, stage=exc.stage, checkpoint_path=exc.checkpoint))
            return EXIT_OK
        except KeyboardInterrupt:
            sink.emit(RunCancelled(run_id=run_id, stage=stage, checkpoint_path=""))
            return EXIT_INTERRUPTED
        except Exception as exc:  # every failure must reach the GUI as run_failed
            message = redact_message(str(exc) or type(exc).__name__)
            sink.emit(RunFailed(run_id=run_id, error_type=type(exc).__name__, message=message))
            log.error("run failed: %s: %s", type(exc).__name__, message)
            if not isinstance(exc, _expected_errors()):
                details = "".join(traceback.format_exception(exc))
                log.error("%s", redact_message(details, limit=20_000))
            return EXIT_FAILED
        finally:
            sink.close()
            teardown(info)


def _open_run_dir(run_dir: Path, args: argparse.Namespace, *, writer: bool) -> str:
    """Create the run folder and return the run id; the writer records it in ``run.json``."""
    from model_zoo.fileio import atomic_write_text
    from training.engine.runlog import STOP_FILENAME

    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = _run_id(run_dir, args)
    if writer:
        if args.resume:
            (run_dir / STOP_FILENAME).unlink(missing_ok=True)  # the previous run's cancel
        atomic_write_text(
            run_dir / RUN_FILENAME,
            json.dumps({"run_id": run_id, "command": args.command}, indent=1) + "\n",
        )
    return run_id


def _read_manifest(args: argparse.Namespace) -> tuple[list[ManifestRow], str]:
    """The manifest's rows and digest; a frozen manifest must still have its digest."""
    from training.engine.data import DataIntegrityError
    from training.protocol.manifest import manifest_digest, parse_manifest

    text = args.manifest.read_text(encoding="utf-8-sig") if args.manifest else ""
    digest = manifest_digest(text)
    if args.expect_manifest_digest and args.expect_manifest_digest != digest:
        raise DataIntegrityError("the manifest changed after it was frozen (digest mismatch)")
    return parse_manifest(text, source="manifest"), digest


def _expected_errors() -> tuple[type[BaseException], ...]:
    # Errors with a complete message for the user: no traceback in the log.
    from model_zoo.checkpoints import CheckpointError
    from training.engine.data import DataIntegrityError, LeakageError
    from training.engine.loop import NonFiniteLossError
    from training.engine.state import ResumeError
    from training.protocol.config import ConfigError
    from training.protocol.manifest import ManifestError

    return (
        CheckpointError,
        ConfigError,
        DataIntegrityError,
        LeakageError,
        ManifestError,
        NonFiniteLossError,
        ResumeError,
        OSError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "synth":
        return int(args.func(args))
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
