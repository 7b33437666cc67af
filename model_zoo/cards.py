"""Model cards: the JSON description written next to every ``weights.safetensors`` (R12, R13).

A card identifies a model version (``id`` = SHA-256 of its weights file), says how to rebuild
it from the registry, how to preprocess its input, how to calibrate its outputs, and where it came
from. Standard library only, so the app can list and show models without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from model_zoo.architectures.tasks import TaskSpec, validate_tasks
from model_zoo.fileio import loads_json, read_regular

SCHEMA = "sall-model-card"
SCHEMA_VERSION = 1
CARD_FILENAME = "card.json"
WEIGHTS_FILENAME = "weights.safetensors"
MAX_CARD_BYTES = 1024 * 1024
"""Cards are a few kilobytes (the demo's is 4.6 KB); a bigger file is refused before it is read."""

MAX_CARD_DEPTH = 32
"""JSON nesting a card may use (ours: 4 levels); deeper is refused, never a RecursionError."""

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024
"""Input side a card may ask for, in pixels. 32 is the smallest the registered backbones accept;
1024 is well above what fundus graders use (224-768) and keeps one image's activations within
what a workstation can hold (at 4096 px a batch of one needs tens of GB)."""

MAX_TASKS, MAX_CLASSES = 8, 16
"""Heads per card and classes per head (ours: 2 heads, 4 and 5 classes). Checked before any model
is built, so a card cannot make the loader allocate a head of 300,000 outputs."""

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
"""Resize filters a card may name (see :mod:`model_zoo.transforms`)."""

PREPROCESSING_KEYS: dict[str, type] = {"fundus_crop": bool, "crop_threshold": int}
"""Known ``preprocessing`` options and their types; unknown options are refused rather than
silently ignored, because ignoring one would change what the model sees."""

SYNTHETIC_INTENDED_USE = "Synthetic data only — not for clinical use."

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CardError(ValueError):
    """A model card is malformed, incomplete, or of an unsupported schema version."""


def current_versions() -> dict[str, str]:
    """Versions of the libraries that determine a model's numbers, for provenance (R12).

    Read from package metadata, so torch is not imported.
    """
    versions = {"python": platform.python_version()}
    for key, dist in (
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("safetensors", "safetensors"),
        ("numpy", "numpy"),
        ("opencv", "opencv-python-headless"),
        ("model_zoo", "sall-desktop"),
    ):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "unknown"
    return versions


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json_value(value: Any, where: str) -> Any:
    """Deep copy of ``value`` in canonical JSON form (tuples become lists); CardError if not."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CardError(f"{where}: {value} is not a finite number (JSON has no NaN/inf)")
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CardError(f"{where}: keys must be strings, got {key!r}")
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise CardError(f"{where}: {type(value).__name__} is not a JSON value")


def _triple(value: Any, where: str, *, positive: bool) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise CardError(f"{where} must be three numbers (R, G, B), got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise CardError(f"{where} must be finite numbers, got {value!r}")
        if positive and v <= 0:
            raise CardError(f"{where} must be positive, got {value!r}")
        out.append(float(v))
    return (out[0], out[1], out[2])


@dataclass(frozen=True)
class Provenance:
    """Where a model version came from (R12).

    Args:
        parent_id: id of the model it was fine-tuned from; None for a model trained from scratch
            or from ImageNet weights.
        training_run_id: id of the training run that produced it ("" if none).
        manifest_digest: SHA-256 of the frozen training manifest (the exact training set).
        config: the training configuration (hyperparameters, temperature T, ...), JSON values.
        metrics: evaluation figures, JSON values (finite numbers only).
        teacher_ids: ids of the teachers whose soft labels it was distilled from.
        seed: random seed of the run.
        versions: library versions (see :func:`current_versions`).
        created_at: UTC ISO-8601 time stamp.
    """

    parent_id: str | None = None
    training_run_id: str = ""
    manifest_digest: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    teacher_ids: tuple[str, ...] = ()
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=current_versions)
    created_at: str = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        if self.parent_id is not None and not _SHA256.match(str(self.parent_id)):
            raise CardError(f"provenance.parent_id must be a model id, got {self.parent_id!r}")
        for name in ("training_run_id", "manifest_digest", "created_at"):
            if not isinstance(getattr(self, name), str):
                raise CardError(f"provenance.{name} must be a string")
        if not isinstance(self.teacher_ids, tuple) or not all(
            isinstance(t, str) and _SHA256.match(t) for t in self.teacher_ids
        ):
            raise CardError(
                f"provenance.teacher_ids must be a tuple of model ids, got {self.teacher_ids!r}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise CardError(f"provenance.seed must be an integer or null, got {self.seed!r}")
        if not isinstance(self.config, dict) or not isinstance(self.metrics, dict):
            raise CardError("provenance.config and provenance.metrics must be JSON objects")
        if not isinstance(self.versions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.versions.items()
        ):
            raise CardError("provenance.versions must map names to version strings")
        # Defensive deep copies: the card is a frozen value shared across threads.
        object.__setattr__(self, "config", _json_value(self.config, "provenance.config"))
        object.__setattr__(self, "metrics", _json_value(self.metrics, "provenance.metrics"))
        object.__setattr__(self, "versions", dict(self.versions))


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild, preprocess for, calibrate and trace one model version.

    Dict fields are private copies; treat them as read-only.

    Args:
        id: SHA-256 (64 lower-case hex) of ``weights.safetensors``; ``""`` before saving.
        name: human name, e.g. ``"SALL demo student"``.
        version: human version label, e.g. ``"1.0.0"``.
        architecture: registry name of the builder, e.g. ``"sall_student"``.
        architecture_kwargs: builder keywords other than ``tasks`` (``backbone``, ``dropout``).
        tasks: the heads, in output order, with class names.
        grading_scales: head -> scale label, e.g. ``{"dr": "ICDR 0-4"}``.
        input_size: square network input side in pixels.
        mean: RGB mean on the [0, 1] scale (from the pretrained weights' card).
        std: RGB standard deviation on the [0, 1] scale.
        interpolation: resize filter, one of :data:`INTERPOLATIONS`.
        preprocessing: options, see :data:`PREPROCESSING_KEYS` (e.g. ``{"fundus_crop": True}``).
        temperatures: head -> calibration temperature ``T_cal > 0`` (1.0 until calibrated);
            displayed probabilities are ``softmax(z / T_cal)``. Never the training temperature.
        provenance: see :class:`Provenance`.
        licence: licence of the weights.
        intended_use: e.g. :data:`SYNTHETIC_INTENDED_USE` for the demo model.
    """

    id: str
    name: str
    version: str
    architecture: str
    architecture_kwargs: dict[str, Any]
    tasks: tuple[TaskSpec, ...]
    grading_scales: dict[str, str]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    preprocessing: dict[str, Any]
    temperatures: dict[str, float]
    provenance: Provenance
    licence: str
    intended_use: str

    def __post_init__(self) -> None:
        if self.id != "" and not (isinstance(self.id, str) and _SHA256.match(self.id)):
            raise CardError(
                f"id must be a SHA-256 hex digest (or empty before saving): {self.id!r}"
            )
        for name in ("name", "version", "architecture", "licence", "intended_use"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise CardError(f"{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.architecture_kwargs, dict):
            raise CardError("architecture_kwargs must be a JSON object")
        if "tasks" in self.architecture_kwargs:
            raise CardError(
                "architecture_kwargs must not contain 'tasks'; the card's tasks are used"
            )
        kwargs = _json_value(self.architecture_kwargs, "architecture_kwargs")
        object.__setattr__(self, "architecture_kwargs", kwargs)
        if not isinstance(self.tasks, tuple | list):
            raise CardError(f"tasks must be a tuple of TaskSpec, got {type(self.tasks).__name__}")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        try:
            validate_tasks(self.tasks)
        except ValueError as exc:
            raise CardError(f"tasks: {exc}") from None
        _check_task_counts(
            len(self.tasks), [(f"task {t.name!r}", t.num_classes) for t in self.tasks]
        )
        task_names = [t.name for t in self.tasks]
        if not isinstance(self.grading_scales, dict) or not all(
            k in task_names and isinstance(v, str) for k, v in self.grading_scales.items()
        ):
            raise CardError(
                f"grading_scales must map task names {task_names} to strings, "
                f"got {self.grading_scales!r}"
            )
        object.__setattr__(self, "grading_scales", dict(self.grading_scales))
        size = self.input_size
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE
        ):
            raise CardError(
                f"input_size must be an integer from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels "
                f"(the limit), got {size!r}"
            )
        object.__setattr__(self, "mean", _triple(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", _triple(self.std, "std", positive=True))
        if self.interpolation not in INTERPOLATIONS:
            raise CardError(
                f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )
        self._check_preprocessing()
        self._check_temperatures(task_names)
        if not isinstance(self.provenance, Provenance):
            raise CardError("provenance must be a Provenance value")

    def _check_preprocessing(self) -> None:
        if not isinstance(self.preprocessing, dict):
            raise CardError("preprocessing must be a JSON object")
        for key, value in self.preprocessing.items():
            expected = PREPROCESSING_KEYS.get(key)
            if expected is None:
                raise CardError(
                    f"unknown preprocessing option {key!r}; this version understands "
                    f"{sorted(PREPROCESSING_KEYS)} (a newer program may have written the card)"
                )
            if type(value) is not expected:
                raise CardError(f"preprocessing.{key} must be {expected.__name__}, got {value!r}")
        object.__setattr__(self, "preprocessing", dict(self.preprocessing))

    def _check_temperatures(self, task_names: list[str]) -> None:
        temps = self.temperatures
        if not isinstance(temps, dict) or sorted(temps) != sorted(task_names):
            raise CardError(
                f"temperatures must give one value per task {task_names}, got {temps!r}"
            )
        clean = {}
        for key in task_names:
            value = temps[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CardError(f"temperatures.{key} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise CardError(f"temperatures.{key} must be finite and > 0, got {value!r}")
            clean[key] = float(value)
        object.__setattr__(self, "temperatures", clean)

    def task(self, name: str) -> TaskSpec:
        """The TaskSpec of head ``name`` (KeyError if the model has no such head)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"model {self.name!r} has no head {name!r}")

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def card_to_dict(card: ModelCard) -> dict[str, Any]:
    """The card as a JSON-ready dict, with the schema marker and version first."""
    prov = card.provenance
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "id": card.id,
        "name": card.name,
        "version": card.version,
        "architecture": card.architecture,
        "architecture_kwargs": card.architecture_kwargs,
        "tasks": [{"name": t.name, "classes": list(t.classes)} for t in card.tasks],
        "grading_scales": card.grading_scales,
        "input_size": card.input_size,
        "mean": list(card.mean),
        "std": list(card.std),
        "interpolation": card.interpolation,
        "preprocessing": card.preprocessing,
        "temperatures": card.temperatures,
        "provenance": {
            "parent_id": prov.parent_id,
            "training_run_id": prov.training_run_id,
            "manifest_digest": prov.manifest_digest,
            "config": prov.config,
            "metrics": prov.metrics,
            "teacher_ids": list(prov.teacher_ids),
            "seed": prov.seed,
            "versions": prov.versions,
            "created_at": prov.created_at,
        },
        "licence": card.licence,
        "intended_use": card.intended_use,
    }


def card_to_json(card: ModelCard) -> str:
    """Serialise ``card`` to indented JSON text (UTF-8 safe, trailing newline)."""
    return json.dumps(card_to_dict(card), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_CARD_KEYS = frozenset(f.name for f in dataclasses.fields(ModelCard)) | {"schema", "schema_version"}
_PROVENANCE_KEYS = frozenset(f.name for f in dataclasses.fields(Provenance))


def _check_keys(obj: Any, expected: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CardError(f"{where} must be a JSON object")
    missing = sorted(expected - obj.keys())
    if missing:
        raise CardError(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(obj.keys() - expected)
    if unknown:
        raise CardError(f"{where} has unknown field(s) {', '.join(unknown)}")
    return obj


def _check_task_counts(n_tasks: int, classes: list[tuple[str, int]]) -> None:
    if n_tasks > MAX_TASKS:
        raise CardError(f"the card has {n_tasks:,} tasks; at most {MAX_TASKS} heads are allowed")
    for where, count in classes:
        if count > MAX_CLASSES:
            raise CardError(
                f"{where} has {count:,} classes; at most {MAX_CLASSES} per head are allowed"
            )


def _parse_tasks(value: Any) -> tuple[TaskSpec, ...]:
    if not isinstance(value, list):
        raise CardError("tasks must be a list of {name, classes} objects")
    # Counts first: nothing proportional to a hostile card's class list is built.
    _check_task_counts(
        len(value),
        [
            (f"tasks[{i}]", len(item["classes"]))
            for i, item in enumerate(value)
            if isinstance(item, dict) and isinstance(item.get("classes"), list)
        ],
    )
    tasks = []
    for i, item in enumerate(value):
        item = _check_keys(item, frozenset({"name", "classes"}), f"tasks[{i}]")
        classes = item["classes"]
        if not isinstance(classes, list):
            raise CardError(f"tasks[{i}].classes must be a list of names")
        try:
            tasks.append(TaskSpec(item["name"], tuple(classes)))
        except ValueError as exc:
            raise CardError(f"tasks[{i}]: {exc}") from None
    return tuple(tasks)


def card_from_dict(data: Any) -> ModelCard:
    """Validate a decoded card object and build the :class:`ModelCard` (CardError if invalid)."""
    if not isinstance(data, dict):
        raise CardError("a model card must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise CardError(
            f"not a SALL model card (schema {data.get('schema')!r}, expected {SCHEMA!r})"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CardError(
            f"model card schema version {version!r} is not supported; this program reads "
            f"version {SCHEMA_VERSION} (a newer SALL Desktop may be needed)"
        )
    _check_keys(data, _CARD_KEYS, "model card")
    prov = _check_keys(data["provenance"], _PROVENANCE_KEYS, "provenance")
    teacher_ids = prov["teacher_ids"]
    if not isinstance(teacher_ids, list):
        raise CardError("provenance.teacher_ids must be a list")
    try:
        provenance = Provenance(**{**prov, "teacher_ids": tuple(teacher_ids)})
        return ModelCard(
            **{
                **{k: v for k, v in data.items() if k not in ("schema", "schema_version")},
                "tasks": _parse_tasks(data["tasks"]),
                "provenance": provenance,
            }
        )
    except TypeError as exc:  # e.g. a wrong type reaching a comparison
        raise CardError(f"malformed model card: {exc}") from None


def card_from_json(text: str) -> ModelCard:
    """Parse and validate card JSON text.

    Raises:
        CardError: on invalid JSON, a missing, unknown or ill-typed field, or an unsupported
            schema version, with a message naming the field.
    """
    if len(text) > MAX_CARD_BYTES:
        raise CardError(f"model card is {len(text):,} characters; the limit is {MAX_CARD_BYTES:,}")
    try:
        data = loads_json(text, MAX_CARD_DEPTH)
    except ValueError as exc:  # JSONDecodeError, nesting, memory
        raise CardError(f"model card is not valid JSON: {exc}") from None
    try:
        return card_from_dict(data)
    except (RecursionError, MemoryError) as exc:  # a dict built in code, not through loads_json
        raise CardError(f"malformed model card: {type(exc).__name__}") from None


def read_card(path: str | Path) -> ModelCard:
    """Read ``card.json`` (or the card inside a checkpoint directory) without loading weights.

    Only a regular file (or a link to one) of at most :data:`MAX_CARD_BYTES` is read: a FIFO,
    device or folder is refused without blocking, a bigger file before it is read.

    Raises:
        CardError: the file cannot be read or is not a valid card; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILENAME
    try:
        raw = read_regular(path, MAX_CARD_BYTES, "a model card")
    except OSError as exc:
        raise CardError(f"cannot read model card {path}: {exc.strerror or exc}") from None
    except MemoryError:
        raise CardError(f"cannot read model card {path}: out of memory") from None
    try:
        return card_from_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CardError(f"model card {path} is not UTF-8 text") from None
