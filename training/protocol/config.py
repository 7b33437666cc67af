"""``TrainConfig``: every hyperparameter of a training run, typed, frozen, loaded from TOML.

Defaults are those of ``docs/sall-method.md`` (the three stages and its table of choices). A run's
configuration is read from a TOML file and then overridden by ``--set section.key=value``
arguments; overrides are type-checked and an unknown key raises :class:`ConfigError` (no ``exec``,
no globals). The resolved configuration is saved in every model card.

TOML layout (every key optional)::

    [model]
    backbone = "resnet18"
    input_size = 224

    [sall]
    temperature = 3.0
    feature_term = "hint"
    [[sall.tasks]]
    name = "dr"
    classes = ["No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "PDR"]

    [optim]
    lr = 1e-5

Example:
    >>> cfg = load_config(None, ["sall.temperature=2", "optim.batch_size=16"])
    >>> cfg.sall.temperature, cfg.optim.batch_size
    (2.0, 16)

Standard library only (the app builds and validates configs without torch).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from training.protocol.finetune_config import FinetuneConfig

FeatureTerm: TypeAlias = Literal["hint", "fusion", "none"]
NormalPolicy: TypeAlias = Literal["hard_both", "soft_other"]
SamplerName: TypeAlias = Literal["uniform", "balanced_tasks", "class_balanced"]
ScheduleName: TypeAlias = Literal["constant", "cosine"]


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, out of range)."""


MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024
MAX_TASKS, MAX_CLASSES = 8, 16
"""What a model card accepts (``model_zoo.cards``, which this light package may not import; a
test keeps the two equal): a run configured beyond them would train, then fail to save its card."""


@dataclass(frozen=True)
class TaskConfig:
    """One classification head.

    Attributes:
        name: task name; the manifest column ``<name>_grade`` holds its labels (``dr``, ``amd``).
        classes: class names in index order (at least two).
    """

    name: str
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"task name {self.name!r} must be a simple identifier")
        if not 2 <= len(self.classes) <= MAX_CLASSES:
            raise ConfigError(f"task {self.name!r} needs 2 to {MAX_CLASSES} classes")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"task {self.name!r} has repeated class names")

    @property
    def num_classes(self) -> int:
        """Number of classes of the head."""
        return len(self.classes)


DEFAULT_TASKS: tuple[TaskConfig, ...] = (
    TaskConfig("dr", ("No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "PDR")),
    TaskConfig("amd", ("No AMD", "Small drusen", "Large drusen", "CNV")),
)
"""DR (ICDR 0-4) and AMD (0-3), docs/grading-conventions.md; the "arter" task is off by default."""


@dataclass(frozen=True)
class ModelConfig:
    """Network shape.

    Attributes:
        backbone: ``model_zoo`` backbone name. The paper uses ``inception_v3`` at 299 px.
        input_size: square input side in pixels.
        pretrained: start from ImageNet weights. Off by default because nothing may download at
            run time; turn it on only where torchvision's weights are already cached.
        dropout: dropout before each head (0.5 in the authors' code).
    """

    backbone: str = "inception_v3"
    input_size: int = 299
    pretrained: bool = False
    dropout: float = 0.5

    def __post_init__(self) -> None:
        _check(
            MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE,
            f"model.input_size must be in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}]",
        )
        _check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")


@dataclass(frozen=True)
class SallConfig:
    """The SALL loss and data policy (docs/sall-method.md, keys named as there).

    Attributes:
        tasks: heads of the student (one teacher per task).
        temperature: T, student softening in the distillation term.
        teacher_temperature: tau, softening of the cached teacher logits into soft labels.
        hard_temperature: T_h, temperature on the hard-label term (authors' graph: 3).
        kd_weight: lambda, weight of the soft term (same for every task).
        kd_t2_scaling: multiply the soft term by T^2 (Hinton's gradient rescaling).
        feature_term: ``hint`` (adapters to frozen teachers' features), ``fusion`` or ``none``.
        feature_weight: beta, weight of the feature term.
        normal_policy: ``soft_other`` (the default): a blank grade stays unknown, even on an image
            graded 0 for its other tasks, and gets the teacher's (or the parent's) soft label; a
            normal eye is ground truth for a task only where it is graded for it. ``hard_both``
            (older model cards store it) used to turn such a blank grade into a hard 0, which is
            wrong for task-disjoint sets and partial corrections: it is still accepted so old
            configs load, gives the same labels, and refuses (``ConfigError``) a run whose rows
            have a blank grade it would have overridden.
        sampler: ``uniform`` (with replacement over the union, the authors' code),
            ``balanced_tasks`` (equal mass per labelled-task group) or ``class_balanced``.
        augment: flips, +-15 degree rotation and mild colour jitter.
        fundus_crop: crop to the fundus disc before resizing.
    """

    tasks: tuple[TaskConfig, ...] = DEFAULT_TASKS
    temperature: float = 3.0
    teacher_temperature: float = 3.0
    hard_temperature: float = 3.0
    kd_weight: float = 1.0
    kd_t2_scaling: bool = False
    feature_term: FeatureTerm = "hint"
    feature_weight: float = 1.0
    normal_policy: NormalPolicy = "soft_other"
    sampler: SamplerName = "uniform"
    augment: bool = False
    fundus_crop: bool = False

    def __post_init__(self) -> None:
        _check(1 <= len(self.tasks) <= MAX_TASKS, f"sall.tasks needs 1 to {MAX_TASKS} tasks")
        names = [t.name for t in self.tasks]
        _check(len(set(names)) == len(names), f"sall.tasks has repeated names {names}")
        for key in ("temperature", "teacher_temperature", "hard_temperature"):
            value = getattr(self, key)
            _check(math.isfinite(value) and value > 0, f"sall.{key} must be > 0")
        _check(self.kd_weight >= 0, "sall.kd_weight must be >= 0")
        _check(self.feature_weight >= 0, "sall.feature_weight must be >= 0")
        _check(
            self.feature_term != "fusion" or len(self.tasks) == 2,
            "sall.feature_term = 'fusion' needs exactly two tasks",
        )

    def task(self, name: str) -> TaskConfig:
        """Return the task called ``name``; raises ``ConfigError`` if there is none."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise ConfigError(f"no task {name!r}; tasks are {[t.name for t in self.tasks]}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (docs/sall-method.md: Adam, lr 1e-5, eps 1e-7, batch 32, 32 epochs).

    Attributes:
        lr: peak learning rate.
        beta1: Adam beta1.
        beta2: Adam beta2.
        eps: Adam epsilon (Keras' 1e-7, not PyTorch's 1e-8).
        weight_decay: L2 weight decay (Adam, not AdamW, as in the authors' code).
        batch_size: images per step (per process under torchrun).
        max_epochs: epoch limit.
        patience: early stopping after this many epochs without a better validation loss.
        schedule: ``constant`` (the paper) or ``cosine`` decay to ``lr * min_lr_ratio``.
        warmup_epochs: linear warm-up length in epochs (fractions allowed), both schedules.
        min_lr_ratio: final learning rate of the cosine schedule as a fraction of ``lr``.
        steps_per_epoch: steps per epoch; 0 means ceil(train images / batch size).
    """

    lr: float = 1e-5
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-7
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 32
    patience: int = 10
    schedule: ScheduleName = "constant"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    steps_per_epoch: int = 0

    def __post_init__(self) -> None:
        _check(math.isfinite(self.lr) and self.lr > 0, "optim.lr must be > 0")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2 must be in [0, 1)")
        _check(self.eps > 0, "optim.eps must be > 0")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _check(self.batch_size >= 1, "optim.batch_size must be >= 1")
        _check(self.max_epochs >= 1, "optim.max_epochs must be >= 1")
        _check(self.patience >= 1, "optim.patience must be >= 1")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]")
        _check(self.steps_per_epoch >= 0, "optim.steps_per_epoch must be >= 0")


@dataclass(frozen=True)
class RuntimeConfig:
    """Reproducibility and speed switches (none of them changes the method).

    Attributes:
        seed: seed of every random generator; recorded in the model card.
        deterministic: deterministic kernels (``torch.use_deterministic_algorithms``); slower.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler).
        channels_last: NHWC memory format for convolutions.
        device: ``auto`` (CUDA, then MPS, then CPU), or an explicit torch device string.
        num_workers: DataLoader worker processes (0 decodes in the training process).
        preload_max_mb: keep decoded, preprocessed images in memory when augmentation is off
            and they fit in this many MiB (0 disables).
        progress_interval_s: minimum seconds between two ``progress`` events.
    """

    seed: int = 0
    deterministic: bool = False
    amp: bool = False
    channels_last: bool = False
    device: str = "auto"
    num_workers: int = 0
    preload_max_mb: int = 1024
    progress_interval_s: float = 1.0

    def __post_init__(self) -> None:
        _check(self.num_workers >= 0, "runtime.num_workers must be >= 0")
        _check(self.preload_max_mb >= 0, "runtime.preload_max_mb must be >= 0")
        _check(self.progress_interval_s >= 0, "runtime.progress_interval_s must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation report settings (docs/sall-method.md, Evaluation).

    Attributes:
        ece_bins: equal-width bins of the paper-comparable ECE.
        gate_ece_bins: equal-mass bins of the ECE the promotion gate uses (R23).
        plots: write the PNG plots next to ``report.json``.
    """

    ece_bins: int = 10
    gate_ece_bins: int = 15
    plots: bool = True

    def __post_init__(self) -> None:
        _check(self.ece_bins >= 1 and self.gate_ece_bins >= 1, "eval.*_bins must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """The whole run configuration; one section per concern.

    Build it with :func:`load_config`; serialise with :meth:`to_dict` / :func:`config_from_dict`.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    sall: SallConfig = field(default_factory=SallConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible nested dict (tuples as lists) that round-trips."""
        return _to_json(self)  # type: ignore[no-any-return]

    def digest(self) -> str:
        """SHA-256 hex of the canonical JSON of :meth:`to_dict` (key order does not matter)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def replace(self, **sections: Any) -> TrainConfig:
        """Return a copy with whole sections replaced, e.g. ``cfg.replace(optim=new_optim)``."""
        return dataclasses.replace(self, **sections)


# ----------------------------------------------------------------------------- helpers


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "list"
    return getattr(hint, "__name__", str(hint))


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` (decoded TOML/JSON) against a field annotation and convert it."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key} must be one of {_type_name(hint)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}")
        (item_t, _ellipsis) = typing.get_args(hint)
        return tuple(_convert(v, item_t, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a table, got {type(value).__name__}")
        return _build(hint, value, key)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {hint!r}")  # a bug here, not bad input


def _unknown_key(key: str, choices: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(choices)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _build(cls: type[Any], data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise _unknown_key(key, names)
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # a required field (TaskConfig.name/classes) is missing
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Build a config from a nested mapping (a parsed TOML file or a card's saved config).

    Raises:
        ConfigError: unknown key, wrong type or out-of-range value.
    """
    return _build(TrainConfig, data, "")  # type: ignore[no-any-return]


def _parse_override_value(text: str, hint: Any, key: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        # Bare words are convenient for strings: --set sall.feature_term=none
        if hint is str or typing.get_origin(hint) is Literal:
            return text
        raise ConfigError(f"{key}: cannot read {text!r} as a TOML value") from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a nested dict (values parsed as TOML).

    Raises:
        ConfigError: malformed override, unknown section or key, or a mistyped value.
    """
    sections = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    section_hints = typing.get_type_hints(TrainConfig)
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key.count(".") != 1:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        section, name = key.split(".")
        if section not in sections:
            raise _unknown_key(section, list(sections))
        cls = section_hints[section]
        field_hints = typing.get_type_hints(cls)
        if name not in field_hints:
            raise _unknown_key(key, [f.name for f in dataclasses.fields(cls)])
        value = _parse_override_value(text.strip(), field_hints[name], key)
        _convert(value, field_hints[name], key)  # type-check now, with the key in the message
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config key {section!r} must be a table")
        table[name] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a TOML config (or start from the defaults when ``path`` is None) and apply overrides.

    Args:
        path: TOML file; ``None`` for the sall-method defaults.
        overrides: ``section.key=value`` strings, applied in order; values are TOML literals
            (``3``, ``1e-4``, ``true``, ``"hint"``; bare words are accepted for strings).

    Raises:
        ConfigError: unreadable file, invalid TOML, unknown key, wrong type, out-of-range value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file is not valid TOML: {exc}") from None
    return config_from_dict(apply_overrides(data, overrides))


__all__ = [
    "DEFAULT_TASKS",
    "ConfigError",
    "EvalConfig",
    "FeatureTerm",
    "FinetuneConfig",
    "ModelConfig",
    "NormalPolicy",
    "OptimConfig",
    "RuntimeConfig",
    "SallConfig",
    "SamplerName",
    "ScheduleName",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
]
