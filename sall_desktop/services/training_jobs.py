"""One-click fine-tuning, the Qt-free half: freeze the corrections, build the command, read results.

Flow (docs/architecture.md, Training runs): :func:`freeze_finetune` reads the store and writes
``run_dir/manifest.csv`` (the current human gradings, hold-out images and hold-out patients left
out) and ``run_dir/holdout.csv`` through ``training.protocol.manifest``, and records the run;
:func:`build_command` turns a :class:`FinetuneSpec` into the ``sall-train finetune`` command
line (pure): exactly ``finetune --init M --manifest C --holdout H --out R`` plus ``--run-id`` and
``--expect-manifest-digest``, so the one click runs the same frozen configuration as the bare
command (the recipe is ``[finetune]``'s defaults; replay and reference sets come from the model
folder); ``gui/training_process.py`` runs it as a ``QProcess``; :func:`read_outcome` reads
``events.jsonl`` and ``report.json`` of a finished run (also one this app did not watch), and
:func:`record_outcome` stores it and registers the candidate (never activated here).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from model_zoo.fileio import atomic_write_text
from sall_desktop.domain.grades import Grading, GradingSource, utc_now
from sall_desktop.services import models as model_versions
from sall_desktop.services.holdout import (
    HoldoutSet,
    load_holdout,
    reference_gradings,
    split_by_patient,
)
from sall_desktop.services.paths import data_dir
from sall_desktop.store import LabelStore
from sall_desktop.store.models_repository import TrainingRunRow
from training.protocol.events import (
    Event,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    parse_stream,
)
from training.protocol.gate_rules import decide_gate, is_interval_verdict, recheck_verdict
from training.protocol.manifest import ManifestRow, format_manifest, manifest_digest
from training.protocol.report import (
    GateStatus,
    GateVerdict,
    Report,
    ReportError,
    report_from_json,
)

MANIFEST_NAME = "manifest.csv"
HOLDOUT_NAME = "holdout.csv"
EVENTS_NAME = "events.jsonl"
REPORT_NAME = "report.json"
STOP_NAME = "STOP"
FROZEN_EXECUTABLE = "sall-train"
"""The bundled console training executable, next to the app's executable (docs/packaging.md)."""


class TrainingJobError(Exception):
    """A fine-tune cannot be prepared (nothing to train on, no hold-out...); message says why."""


@dataclass(frozen=True)
class FinetuneSpec:
    """Everything the ``finetune`` command line needs (paths absolute).

    Attributes:
        run_dir: the run folder (``--out``).
        init: the active model's folder (``--init``).
        manifest: the frozen corrections manifest.
        holdout: the frozen hold-out manifest.
        run_id: the run id (``--run-id``).
        manifest_digest: SHA-256 the manifest must still have (``--expect-manifest-digest``).
        overrides: ``KEY=VALUE`` config overrides (``--set``), for tests and experiments only:
            the app passes none, so its runs have the bare command's configuration.
        teachers: teacher checkpoints of the lineage.
    """

    run_dir: Path
    init: Path
    manifest: Path
    holdout: Path
    run_id: str = ""
    manifest_digest: str = ""
    overrides: tuple[str, ...] = ()
    teachers: tuple[Path, ...] = ()


def training_executable(frozen: bool, app_executable: str | None = None) -> list[str]:
    """The program part of the command: ``python -m training`` or the bundled ``sall-train``."""
    exe = app_executable or sys.executable
    if not frozen:
        return [exe, "-m", "training"]
    name = FROZEN_EXECUTABLE + (".exe" if exe.lower().endswith(".exe") else "")
    return [str(Path(exe).with_name(name))]


def build_command(
    spec: FinetuneSpec, frozen: bool, *, app_executable: str | None = None
) -> list[str]:
    """The ``finetune`` command line for ``spec`` (pure: no I/O, no environment reads).

    Args:
        spec: the frozen run.
        frozen: True in the PyInstaller bundle (``sys.frozen``): the bundled ``sall-train``
            next to the app's executable; False from source: ``[python, -m, training]``.
        app_executable: ``sys.executable`` unless given (tests).

    Returns:
        The argv list; ``argv[0]`` is the program.
    """
    argv = training_executable(frozen, app_executable)
    argv += ["finetune", "--init", str(spec.init), "--manifest", str(spec.manifest)]
    argv += ["--holdout", str(spec.holdout), "--out", str(spec.run_dir)]
    if spec.run_id:
        argv += ["--run-id", spec.run_id]
    if spec.manifest_digest:
        argv += ["--expect-manifest-digest", spec.manifest_digest]
    for override in spec.overrides:
        argv += ["--set", override]
    for teacher in spec.teachers:
        argv += ["--teacher", str(teacher)]
    return argv


def is_frozen() -> bool:
    """True inside the PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False))


@dataclass(frozen=True)
class FrozenRun:
    """A run folder with its frozen manifests, ready to start.

    Attributes:
        spec: the command's inputs.
        corrections: images in the corrections manifest (train + val).
        train_images: of those, training images.
        val_images: of those, validation images (patient-grouped split).
        holdout_images: images in the hold-out manifest (graded hold-out images).
        excluded_images: corrected images left out because they are hold-out images.
        excluded_patient_images: corrected images left out because their patient is held out.
        parent_id: the active model the run starts from.
    """

    spec: FinetuneSpec
    corrections: int
    train_images: int
    val_images: int
    holdout_images: int
    excluded_images: int
    excluded_patient_images: int
    parent_id: str

    @property
    def excluded(self) -> int:
        """Every corrected image kept out of training by the hold-out."""
        return self.excluded_images + self.excluded_patient_images

    def summary(self) -> str:
        """One sentence for the GUI, saying what the hold-out kept out."""
        return (
            f"{self.corrections} corrected images ({self.train_images} training, "
            f"{self.val_images} validation); {self.holdout_images} locked hold-out images "
            f"evaluate the result. {self.excluded} corrected image(s) excluded because they are "
            f"in the hold-out ({self.excluded_images}) or belong to a hold-out patient "
            f"({self.excluded_patient_images}): hold-out images never enter training."
        )


def runs_dir() -> Path:
    """``data_dir()/runs``: where fine-tuning runs are kept."""
    folder = data_dir() / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _path(store: LabelStore, sha256: str) -> str:
    # The most recently seen path that still exists; training re-hashes it anyway.
    paths = store.image_paths(sha256)
    for path in paths:
        if Path(path).is_file():
            return path
    return paths[0] if paths else ""


def _row(
    store: LabelStore, sha256: str, grading_split: str, graded: dict[str, Grading]
) -> ManifestRow | None:
    grading = graded[sha256]
    record = store.get_image(sha256)
    path = _path(store, sha256)
    if not path:
        return None
    return ManifestRow(
        image_path=path,
        sha256=sha256,
        patient_id=record.patient_id if record else "",
        laterality=record.laterality.value if record else "",
        dr_grade=grading.dr_grade if grading.gradable else None,
        amd_grade=grading.amd_grade if grading.gradable else None,
        gradable=grading.gradable,
        split=grading_split,
    )


def freeze_finetune(
    store: LabelStore,
    *,
    run_dir: Path | None = None,
    overrides: tuple[str, ...] = (),
    val_fraction: float = 0.2,
    min_corrections: int = 4,
    seed: int = 0,
) -> FrozenRun:
    """Freeze the current human gradings into ``manifest.csv`` and the hold-out into
    ``holdout.csv`` in a new run folder, and record the run as ``pending``.

    Corrections are the current gradings typed by graders in this app (source ``human``).
    A corrected image that is a hold-out image, or whose patient has a hold-out image, is left
    out (counted in the result). Validation images are a patient-grouped ``val_fraction``.
    ``overrides`` (``--set``) are for tests and experiments: the app passes none.

    Raises:
        TrainingJobError: no active model, no hold-out, or fewer than ``min_corrections``
            usable corrections.
    """
    active = model_versions.active_model(store)
    if active is None:
        raise TrainingJobError("There is no active model to fine-tune.")
    holdout: HoldoutSet = load_holdout(store)
    if not holdout.images:
        raise TrainingJobError(
            "Designate or sample a locked hold-out first: every candidate is judged on it."
        )
    labels = reference_gradings(store)
    corrections = reference_gradings(store, sources=frozenset({GradingSource.HUMAN}))
    excluded_images = excluded_patients = 0
    usable: list[tuple[str, str]] = []
    for sha256 in corrections:
        record = store.get_image(sha256)
        patient = record.patient_id if record else ""
        if sha256 in holdout.images:
            excluded_images += 1
        elif holdout.excludes(sha256, patient):
            excluded_patients += 1
        else:
            usable.append((sha256, patient))
    if len(usable) < min_corrections:
        raise TrainingJobError(
            f"Only {len(usable)} corrected image(s) outside the hold-out; grade at least "
            f"{min_corrections} before fine-tuning."
        )
    train, val = split_by_patient(usable, val_fraction, seed)
    rows = [
        r
        for sha, _ in usable
        if (r := _row(store, sha, "val" if sha in val else "train", corrections)) is not None
    ]
    hold_rows = [
        r
        for sha in sorted(holdout.images)
        if sha in labels and (r := _row(store, sha, "holdout", labels)) is not None
    ]
    if not hold_rows:
        raise TrainingJobError("None of the hold-out images is graded: grade them first.")
    run_id = f"ft-{utc_now()[:19].replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:6]}"
    folder = run_dir or runs_dir() / run_id
    folder.mkdir(parents=True, exist_ok=True)
    text = format_manifest(rows)
    atomic_write_text(folder / MANIFEST_NAME, text)
    atomic_write_text(folder / HOLDOUT_NAME, format_manifest(hold_rows))
    spec = FinetuneSpec(
        run_dir=folder,
        init=active.folder,
        manifest=folder / MANIFEST_NAME,
        holdout=folder / HOLDOUT_NAME,
        run_id=run_id,
        manifest_digest=manifest_digest(text),
        overrides=overrides,
    )
    frozen = FrozenRun(
        spec=spec,
        corrections=len(rows),
        train_images=sum(r.split == "train" for r in rows),
        val_images=sum(r.split == "val" for r in rows),
        holdout_images=len(hold_rows),
        excluded_images=excluded_images,
        excluded_patient_images=excluded_patients,
        parent_id=active.id,
    )
    store.add_training_run(
        TrainingRunRow(
            run_id=run_id,
            config_json=json.dumps(
                {
                    "command": "finetune",
                    "parent_id": active.id,
                    "overrides": list(overrides),
                    "corrections": frozen.corrections,
                    "holdout_images": frozen.holdout_images,
                    "excluded": frozen.excluded,
                },
                sort_keys=True,
            ),
            manifest_sha256=spec.manifest_digest,
            status="pending",
            run_dir=str(folder),
        )
    )
    return frozen


@dataclass(frozen=True)
class RunOutcome:
    """What a run folder says about how the run ended.

    Attributes:
        status: ``finished``, ``cancelled``, ``failed`` or ``running`` (no final event yet).
        events: the parsed events (unknown ones skipped).
        errors: one message per malformed line of ``events.jsonl``.
        final: the last final event (finished, cancelled or failed), if any.
        report: the parsed ``report.json`` of a finished run, if readable.
        verdict: the app's gate verdict, recomputed from the report (None without a report).
        message: a grader-readable explanation for a failed or unreadable run.
    """

    status: str
    events: tuple[Event, ...] = ()
    errors: tuple[str, ...] = ()
    final: Event | None = None
    report: Report | None = None
    verdict: GateVerdict | None = None
    message: str = ""
    max_qwk_drop: float = field(default=0.01)

    @property
    def gate_passed(self) -> bool:
        """True only when the trainer's and the app's gate verdicts both passed."""
        final_ok = isinstance(self.final, RunFinished) and self.final.gate_passed is True
        return final_ok and self.verdict is not None and self.verdict.promotable

    @property
    def gate_status(self) -> GateStatus | None:
        """``passed``, ``failed`` or ``insufficient`` (None without a verdict): only
        :attr:`gate_passed` is ``passed``."""
        if self.verdict is None:
            return None
        if self.gate_passed:
            return "passed"
        return "insufficient" if self.verdict.status == "insufficient" else "failed"


def _max_qwk_drop(events: tuple[Event, ...]) -> float:
    for ev in events:
        if isinstance(ev, RunStarted):
            section = ev.config.get("finetune")
            if isinstance(section, dict):
                value = section.get("max_qwk_drop")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
    return 0.01


def outcome_from_events(
    events: tuple[Event, ...], errors: tuple[str, ...], run_dir: Path
) -> RunOutcome:
    """Build a :class:`RunOutcome` from already-parsed events (reads ``report.json``)."""
    final = next(
        (e for e in reversed(events) if isinstance(e, RunFinished | RunCancelled | RunFailed)),
        None,
    )
    delta = _max_qwk_drop(events)
    if isinstance(final, RunCancelled):
        return RunOutcome("cancelled", events, errors, final, max_qwk_drop=delta)
    if isinstance(final, RunFailed):
        msg = f"{final.error_type}: {final.message}"
        return RunOutcome("failed", events, errors, final, message=msg, max_qwk_drop=delta)
    if not isinstance(final, RunFinished):
        return RunOutcome("running", events, errors, None, max_qwk_drop=delta)
    report_path = run_dir / (final.report_path or REPORT_NAME)
    try:
        report = report_from_json(report_path.read_text(encoding="utf-8"))
    except (OSError, ReportError) as exc:
        return RunOutcome(
            "failed", events, errors, final, message=f"The report is unreadable: {exc}"
        )
    verdict = None
    if is_interval_verdict(report.gate):  # the CI gate needs logits: re-derive, never re-decide
        verdict = recheck_verdict(report.gate)
    elif report.parent is not None:  # a report from before the CI gate
        verdict = decide_gate(report.parent, report.model, max_qwk_drop=delta)
    return RunOutcome("finished", events, errors, final, report, verdict, max_qwk_drop=delta)


def read_outcome(run_dir: Path) -> RunOutcome:
    """Read ``events.jsonl`` and ``report.json`` of a run folder (a run this app did not watch).

    Malformed lines are reported in ``errors``, never raised.
    """
    try:
        text = (run_dir / EVENTS_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return RunOutcome("failed", message="The run left no events file.")
    events, errors = parse_stream(text)
    return outcome_from_events(tuple(events), tuple(errors), run_dir)


def mark_started(store: LabelStore, run_id: str) -> None:
    """Record that the run's process started."""
    store.update_training_run(run_id, status="running", started=True)


def record_outcome(
    store: LabelStore, run_id: str, run_dir: Path, outcome: RunOutcome, *, actor: str
) -> model_versions.ModelVersion | None:
    """Store how the run ended; register a finished run's model as a (gated) candidate.

    The candidate is never activated here: promotion is a separate, named decision.

    Returns:
        The candidate version for a finished run, else None.
    """
    report_json = None
    if outcome.report is not None:
        report_json = (run_dir / REPORT_NAME).read_text(encoding="utf-8")
    candidate = None
    if outcome.status == "finished" and isinstance(outcome.final, RunFinished):
        candidate = model_versions.register_model(
            store,
            run_dir / (outcome.final.model_path or "model"),
            source="training",
            actor=actor or "training",
            gate_passed=outcome.gate_passed,
            run_id=run_id,
        )
    status = outcome.status if outcome.status != "running" else "failed"
    store.update_training_run(
        run_id,
        status=status,  # type: ignore[arg-type]
        report_json=report_json,
        model_id=candidate.id if candidate else None,
        ended=True,
    )
    return candidate


def request_stop(run_dir: Path) -> None:
    """Create ``run_dir/STOP``: the trainer acknowledges within 1 s and stops at a step."""
    atomic_write_text(run_dir / STOP_NAME, "stop\n")


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the training child: unbuffered output, the app's import path."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if not is_frozen():
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


__all__ = [
    "FinetuneSpec",
    "FrozenRun",
    "RunOutcome",
    "TrainingJobError",
    "build_command",
    "child_environment",
    "freeze_finetune",
    "is_frozen",
    "mark_started",
    "outcome_from_events",
    "read_outcome",
    "record_outcome",
    "request_stop",
    "runs_dir",
    "training_executable",
]
