"""The training process's event stream: one JSON object per line (docs/architecture.md).

The training child writes every event to stdout and appends it to ``run_dir/events.jsonl``; the GUI
(``gui/training_process.py``) buffers stdout, splits lines and calls :func:`parse_event`. Standard
library only, so the app can import it without torch.

Wire format (protocol version :data:`PROTOCOL_VERSION`)::

    {"v": 1, "event": "progress", "time": "2026-11-25T17:50:01.123456+00:00", "run_id": "...",
     "stage": "student", "epoch": 0, "step": 3, "steps_per_epoch": 12, "loss": 1.93}

Compatibility rules, so an older app can watch a newer trainer and the reverse:

* an unknown ``event`` name parses to ``None`` (ignored, never an error);
* unknown extra fields are ignored;
* a field added later has a default, and a line without it (an older trainer) gets the default;
* a missing required field, a mistyped field, a non-object line or invalid JSON raises
  :class:`EventParseError`, which the GUI logs and skips.

Non-finite floats (a metric that is undefined, e.g. AUC with one class present) are written as
``null``: JSON has no NaN.

Example:
    >>> ev = Progress(run_id="r1", stage="student", epoch=0, step=1, steps_per_epoch=2, loss=0.5)
    >>> parse_event(format_event(ev)) == ev
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeAlias, Union

PROTOCOL_VERSION = 1
"""Bumped only for incompatible changes; additive fields keep the version."""

JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = Union[JsonScalar, list["JsonValue"], dict[str, "JsonValue"]]  # noqa: UP007
"""Any JSON value (mypy needs the recursive alias spelled with ``Union``)."""

Metrics: TypeAlias = dict[str, float | None]
"""Named metric values; ``None`` where a metric is undefined (NaN on the training side)."""

StopReason: TypeAlias = Literal["stop_file", "signal"]


class EventParseError(ValueError):
    """A line of the event stream is not a valid event (bad JSON, missing or mistyped field)."""


def utc_timestamp() -> str:
    """Return the current UTC time as ISO-8601 with microseconds and ``+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields common to every event.

    Attributes:
        run_id: identifier of the training run (one run may hold several stages).
        time: UTC ISO-8601 timestamp of emission.
        v: protocol version the writer speaks.
    """

    EVENT: ClassVar[str] = ""
    run_id: str
    time: str = field(default_factory=utc_timestamp)
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """The run has validated its inputs and is about to train.

    Attributes:
        command: sub-command (``sall``, ``train-student``, ``finetune``, ...).
        config: the full resolved configuration (``TrainConfig.to_dict()``).
        config_digest: SHA-256 of the canonical JSON of ``config``.
        manifest_digest: SHA-256 of the manifest text (empty if the command reads none).
        device: device description, e.g. ``"cpu"`` or ``"cuda:0 (NVIDIA H100)"``.
        versions: library versions (python, torch, torchvision, numpy, ...).
        world_size: number of training processes (1 unless launched by torchrun).
    """

    EVENT: ClassVar[str] = "run_started"
    command: str
    config: dict[str, JsonValue]
    config_digest: str
    manifest_digest: str
    device: str
    versions: dict[str, str]
    world_size: int = 1


@dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    """A stage of a multi-stage command begins (``teacher-dr``, ``soft-labels``, ``student``...).

    Attributes:
        stage: stage name.
        index: 0-based position of the stage in the command.
        total: number of stages the command will run.
        train_images: images in the training set of this stage (0 for non-training stages).
        val_images: images in its validation set.
    """

    EVENT: ClassVar[str] = "stage_started"
    stage: str
    index: int
    total: int
    train_images: int
    val_images: int


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """A training step finished (rate-limited by the writer).

    Attributes:
        stage: stage name.
        epoch: 0-based epoch.
        step: 1-based step inside the epoch.
        steps_per_epoch: steps in one epoch.
        loss: running mean training loss of this epoch so far.
    """

    EVENT: ClassVar[str] = "progress"
    stage: str
    epoch: int
    step: int
    steps_per_epoch: int
    loss: float


@dataclass(frozen=True, kw_only=True)
class EpochEnd(Event):
    """An epoch and its validation pass finished.

    Attributes:
        stage: stage name.
        epoch: 0-based epoch.
        train_loss: mean total training loss over the epoch.
        val_loss: total validation loss (the early-stopping criterion).
        losses: loss components ``train_*`` and ``val_*`` (``hard``, ``soft``, ``kl``,
            ``feature``).
        metrics: per head name, validation metrics (``accuracy``, ``qwk``, ...).
        lr: learning rate at the end of the epoch.
        is_best: whether this epoch has the best validation loss so far.
        seconds: wall time of the epoch including validation.
    """

    EVENT: ClassVar[str] = "epoch_end"
    stage: str
    epoch: int
    train_loss: float | None
    val_loss: float | None
    losses: Metrics
    metrics: dict[str, Metrics]
    lr: float
    is_best: bool
    seconds: float


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved(Event):
    """A checkpoint directory is complete on disk (its ``card.json`` was written last).

    Attributes:
        stage: stage name.
        epoch: 0-based epoch the checkpoint belongs to.
        path: checkpoint directory relative to the run folder, ``/``-separated.
        weights_sha256: SHA-256 of ``weights.safetensors`` (the model id).
        is_best: whether it is the best checkpoint so far.
    """

    EVENT: ClassVar[str] = "checkpoint_saved"
    stage: str
    epoch: int
    path: str
    weights_sha256: str
    is_best: bool


@dataclass(frozen=True, kw_only=True)
class StopAcknowledged(Event):
    """The trainer saw the ``STOP`` file (or SIGTERM) and will stop at the next step boundary.

    Attributes:
        reason: ``"stop_file"`` or ``"signal"``.
    """

    EVENT: ClassVar[str] = "stop_acknowledged"
    reason: StopReason


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The run completed.

    Attributes:
        model_path: directory of the resulting model (checkpoint) relative to the run folder.
        model_id: its weights SHA-256.
        report_path: ``report.json`` relative to the run folder, empty when none was written.
        gate_passed: promotion gate verdict for ``finetune``; ``None`` for other commands.
        seconds: wall time of the whole run.
        teachers: task -> checkpoint folder (relative to the run folder, ``/``-separated) of the
            teacher the run trained for it (``sall``: every task; ``train-teacher``: its task);
            empty for other commands and in events of trainers older than this field.
        teacher_ids: task -> that teacher's weights SHA-256 (its card id), same keys.
        gate_status: ``finetune``'s verdict (``passed``, ``failed``, ``insufficient``), or empty.
    """

    EVENT: ClassVar[str] = "run_finished"
    model_path: str
    model_id: str
    report_path: str
    gate_passed: bool | None
    seconds: float
    teachers: dict[str, str] = field(default_factory=dict)
    teacher_ids: dict[str, str] = field(default_factory=dict)
    gate_status: str = ""


@dataclass(frozen=True, kw_only=True)
class RunCancelled(Event):
    """The run stopped cleanly on request; ``--resume`` continues it.

    Attributes:
        stage: stage that was running.
        checkpoint_path: last saved checkpoint relative to the run folder (empty if none).
    """

    EVENT: ClassVar[str] = "run_cancelled"
    stage: str
    checkpoint_path: str


@dataclass(frozen=True, kw_only=True)
class RunFailed(Event):
    """The run aborted.

    Attributes:
        error_type: exception class name (``DataIntegrityError``, ``LeakageError``, ...).
        message: human-readable message with file paths redacted (:func:`redact_message`).
    """

    EVENT: ClassVar[str] = "run_failed"
    error_type: str
    message: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.EVENT: cls
    for cls in (
        RunStarted,
        StageStarted,
        Progress,
        EpochEnd,
        CheckpointSaved,
        StopAcknowledged,
        RunFinished,
        RunCancelled,
        RunFailed,
    )
}
"""Event name -> class; the parser's dispatch table."""

_COMMON = ("v", "event", "time", "run_id")


# ----------------------------------------------------------------------------- formatting


def _json_safe(value: Any) -> JsonValue:
    # NaN/inf are not JSON; an undefined metric travels as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"event field value of type {type(value).__name__} is not JSON")


def event_to_dict(ev: Event) -> dict[str, JsonValue]:
    """Return the wire dictionary of ``ev`` (common fields first, then the event's own fields)."""
    out: dict[str, JsonValue] = {"v": ev.v, "event": ev.EVENT, "time": ev.time, "run_id": ev.run_id}
    for f in dataclasses.fields(ev):
        if f.name not in out:
            out[f.name] = _json_safe(getattr(ev, f.name))
    return out


def format_event(ev: Event) -> str:
    """Serialise ``ev`` as one JSON line without the trailing newline (never contains ``\\n``)."""
    return json.dumps(event_to_dict(ev), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# ----------------------------------------------------------------------------- parsing


def _matches(value: object, hint: Any) -> bool:
    """Whether a decoded JSON value fits a field annotation (the few shapes events use)."""
    if hint is Any or hint is JsonValue or isinstance(hint, typing.ForwardRef):
        # Only JSON values reach here (json.loads output), so a JSON-typed field always fits.
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is dict:
        key_t, val_t = args
        return isinstance(value, dict) and all(
            isinstance(k, str) and _matches(v, val_t) for k, v in value.items()
        )
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    raise TypeError(f"unsupported field annotation {hint!r}")  # a bug in this module, not input


def _coerce(value: object, hint: Any) -> object:
    # An integral JSON number in a float field (``1`` for ``1.0``) becomes a float so that a
    # parsed event compares equal to the one that was formatted.
    if hint is float and isinstance(value, int):
        return float(value)
    if typing.get_origin(hint) in (Union, types.UnionType) and float in typing.get_args(hint):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    if typing.get_origin(hint) is dict and isinstance(value, dict):
        val_t = typing.get_args(hint)[1]
        return {k: _coerce(v, val_t) for k, v in value.items()}
    return value


_HINTS: dict[type[Event], dict[str, Any]] = {}
_OPTIONAL: dict[type[Event], frozenset[str]] = {}


def _hints(cls: type[Event]) -> dict[str, Any]:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _optional(cls: type[Event]) -> frozenset[str]:
    """Fields an event line may omit: those with a default (e.g. added after protocol v1).

    The common fields are never optional, although ``time`` and ``v`` have defaults for writers.
    """
    if cls not in _OPTIONAL:
        _OPTIONAL[cls] = frozenset(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _COMMON
            and (f.default, f.default_factory) != (dataclasses.MISSING, dataclasses.MISSING)
        )
    return _OPTIONAL[cls]


def parse_event(line: str | bytes) -> Event | None:
    """Parse one line of the stream.

    Args:
        line: one line, with or without its line end; bytes are decoded as UTF-8.

    Returns:
        The event, or ``None`` for an event name this version does not know.

    Raises:
        EventParseError: invalid UTF-8 or JSON, not an object, or a known event with a missing
            required field or a mistyped field.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventParseError(f"event line is not UTF-8: {exc}") from None
    text = line.strip()
    if not text:
        raise EventParseError("empty event line")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventParseError(f"event line is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise EventParseError(f"event line is a JSON {type(obj).__name__}, not an object")
    name = obj.get("event")
    if not isinstance(name, str):
        raise EventParseError("event line has no string 'event' field")
    cls = EVENT_TYPES.get(name)
    if cls is None:
        return None
    if not _matches(obj.get("v"), int):
        raise EventParseError(f"{name}: field 'v' must be an integer")
    kwargs: dict[str, object] = {}
    for fname, hint in _hints(cls).items():
        if fname not in obj:
            if fname in _optional(cls):
                continue  # an older writer: the dataclass default applies
            raise EventParseError(f"{name}: missing field {fname!r}")
        value = obj[fname]
        if not _matches(value, hint):
            raise EventParseError(f"{name}: field {fname!r} has the wrong type ({value!r:.80})")
        kwargs[fname] = _coerce(value, hint)
    return cls(**kwargs)  # type: ignore[arg-type]


def parse_stream(text: str) -> tuple[list[Event], list[str]]:
    """Parse a whole ``events.jsonl``; return the events and an error message per bad line.

    Unknown events are skipped silently; blank lines are skipped; a truncated last line (a run
    killed mid-write) is reported as an error, never raised.
    """
    events: list[Event] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ev = parse_event(line)
        except EventParseError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        if ev is not None:
            events.append(ev)
    return events, errors


# ----------------------------------------------------------------------------- redaction

# Absolute POSIX paths, Windows drive and UNC paths, and file URLs (R20: no paths in logs or
# events; the GUI shows the message to a grader and may store it).
_ABS_PATH = r"""(?<![\w.\-])(?:file://)?(?:[A-Za-z]:[\\/]|\\\\|/)[^\s'"<>|*?:]+"""
# Relative paths that name a file ("site2/p001_left.jpg") are redacted too; bare words are not.
_REL_FILE = (
    r"""(?<![\w.\-/\\])[^\s'"<>|*?/\\]+(?:[\\/][^\s'"<>|*?/\\]+)+\.[A-Za-z][A-Za-z0-9]{0,4}\b"""
)
_PATH_RE = re.compile(f"{_ABS_PATH}|{_REL_FILE}")


def redact_message(message: str, *, limit: int = 2000) -> str:
    """Replace file paths in ``message`` by ``<path>`` and cut it to ``limit`` characters.

    Example:
        >>> redact_message("cannot read /home/ann/eyes/p1_left.jpg: truncated")
        'cannot read <path>: truncated'
    """
    redacted = _PATH_RE.sub("<path>", message)
    if len(redacted) > limit:
        redacted = redacted[: limit - 1] + "…"
    return redacted


__all__ = [
    "EVENT_TYPES",
    "PROTOCOL_VERSION",
    "CheckpointSaved",
    "EpochEnd",
    "Event",
    "EventParseError",
    "JsonValue",
    "Metrics",
    "Progress",
    "RunCancelled",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "StageStarted",
    "StopAcknowledged",
    "event_to_dict",
    "format_event",
    "parse_event",
    "parse_stream",
    "redact_message",
    "utc_timestamp",
]
