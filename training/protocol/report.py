"""``report.json``: the evaluation report the GUI shows, and the promotion gate arithmetic.

Written by ``sall-train evaluate``, ``sall`` and ``finetune`` (docs/sall-method.md): per head
accuracy, quadratic weighted kappa, macro-F1, one-vs-rest AUC, NLL, ECE at T = 1 (10 equal-width
bins, comparable with the paper, and 15 equal-mass bins, the gate's variant, R23) and the same
after temperature scaling fitted on the validation split, per-class recall, the confusion matrix,
and for the DR head the referable-DR (ICDR >= 2) sensitivity, specificity and AUC.

The promotion gate itself (a paired bootstrap non-inferiority test on the hold-out and on the
parent's reference set) needs the models' per-image outputs, so the trainer runs it
(``training.engine.gate``) and stores its verdict here. Without torch or numpy, the app can only
re-read that verdict: :func:`recheck_verdict` re-derives every pass from the stored intervals and
margins, and :func:`decide_gate` is the pre-CI rule, kept for reports written before it.
Standard library only.

Undefined metrics (e.g. AUC when a class is absent) are ``None`` (``null`` in JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, Union

REPORT_SCHEMA = 1
"""Version of the ``report.json`` layout."""

ReportKind: TypeAlias = Literal["evaluate", "sall", "finetune"]
REFERABLE_DR_MIN = 2
"""ICDR >= 2 (moderate NPDR or worse) is referable DR."""
SENSITIVITY_TOLERANCE = 1e-12
"""Float slack when comparing sensitivities, which are ratios of the same integer counts."""


class ReportError(ValueError):
    """``report.json`` is not valid for this schema."""


@dataclass(frozen=True)
class ReferableReport:
    """Binary referable DR (ICDR >= 2 vs < 2) from the DR head.

    Attributes:
        n: images with a DR ground truth.
        positives: of those, referable ones.
        sensitivity: recall of referable images (predicted grade >= 2), ``None`` with no positive.
        specificity: recall of non-referable images, ``None`` with no negative.
        auc: ROC AUC of P(grade >= 2), ``None`` when one class is absent.
    """

    n: int
    positives: int
    sensitivity: float | None
    specificity: float | None
    auc: float | None


@dataclass(frozen=True)
class HeadReport:
    """Metrics of one head on the images that have ground truth for it.

    Attributes:
        task: head name (``dr``, ``amd``).
        classes: class names in index order.
        n: images with ground truth for this head.
        accuracy: top-1 accuracy in [0, 1].
        qwk: quadratic weighted kappa in [-1, 1].
        macro_f1: unweighted mean of per-class F1.
        auc: one-vs-rest macro ROC AUC over the classes present.
        nll: mean negative log-likelihood at T = 1 (nats).
        ece: ECE at T = 1, equal-width bins (``ece_bins`` of them).
        ece_mass: ECE at T = 1, equal-mass bins (``gate_ece_bins`` of them).
        temperature: T_cal fitted by NLL on the validation split (1.0 when none was available).
        nll_calibrated: NLL at ``temperature``.
        ece_calibrated: equal-width ECE at ``temperature``.
        ece_mass_calibrated: equal-mass ECE at ``temperature``.
        per_class_recall: recall per class (``None`` for classes absent from the ground truth).
        confusion: confusion matrix, rows = truth, columns = prediction.
        reliability: per equal-width bin at T = 1: ``[mean confidence, accuracy, count]``.
        referable: referable-DR figures (DR head only).
    """

    task: str
    classes: tuple[str, ...]
    n: int
    accuracy: float | None
    qwk: float | None
    macro_f1: float | None
    auc: float | None
    nll: float | None
    ece: float | None
    ece_mass: float | None
    temperature: float
    nll_calibrated: float | None
    ece_calibrated: float | None
    ece_mass_calibrated: float | None
    per_class_recall: tuple[float | None, ...]
    confusion: tuple[tuple[int, ...], ...]
    reliability: tuple[tuple[float | None, float | None, int], ...] = ()
    referable: ReferableReport | None = None


@dataclass(frozen=True)
class ModelEvaluation:
    """One model evaluated on one split of one manifest.

    Attributes:
        model_id: SHA-256 of the model's weights.
        model_name: human name from the card.
        split: evaluated split (``test``, ``holdout``...).
        n_images: images evaluated (gradable rows of the split).
        heads: one report per head, in the model's head order.
        ece_bins: equal-width bins used for ``ece``.
        gate_ece_bins: equal-mass bins used for ``ece_mass``.
    """

    model_id: str
    model_name: str
    split: str
    n_images: int
    heads: tuple[HeadReport, ...]
    ece_bins: int = 10
    gate_ece_bins: int = 15

    def head(self, task: str) -> HeadReport | None:
        """Return the head called ``task`` or ``None``."""
        return next((h for h in self.heads if h.task == task), None)


GateStatus: TypeAlias = Literal["passed", "failed", "insufficient"]
"""``insufficient``: the evidence is too thin to decide (too few images); never a pass."""
GateDomain: TypeAlias = Literal["holdout", "reference"]
"""``holdout``: the clinic's locked hold-out; ``reference``: the parent's own domain, kept with
the model, which shows forgetting."""


@dataclass(frozen=True)
class GateCheck:
    """One non-inferiority criterion of the promotion gate, on one set of images.

    Parent and candidate are scored on the same images; ``difference`` is candidate minus
    parent and ``ci_low``/``ci_high`` its paired bootstrap confidence interval. The check passes
    when ``ci_low >= -allowed_drop`` (the margin).

    Attributes:
        name: ``qwk`` or ``referable_sensitivity`` (``qwk_drop`` in reports before the CI gate).
        task: head the check is about.
        parent: the parent's value on the set.
        candidate: the candidate's value on the same images.
        allowed_drop: the non-inferiority margin.
        passed: verdict of this check (False when ``insufficient``).
        message: one line a person can read.
        domain: which set of images.
        n: images the metric was computed on (referable positives for sensitivity).
        difference: candidate - parent.
        ci_low: lower bound of the difference's confidence interval.
        ci_high: upper bound.
        insufficient: too few images to decide; ``needed`` says how many.
        needed: images (or referable positives) the check needs.
    """

    name: str
    task: str
    parent: float | None
    candidate: float | None
    allowed_drop: float
    passed: bool
    message: str
    domain: GateDomain = "holdout"
    n: int = 0
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    insufficient: bool = False
    needed: int = 0


@dataclass(frozen=True)
class GateVerdict:
    """The promotion gate's verdict: passed only if every check passed.

    Attributes:
        passed: every check passed (never with ``status == "insufficient"``).
        checks: one per (set, head, metric).
        status: ``passed``, ``failed`` (a check's interval crossed its margin) or
            ``insufficient`` (no check failed, but some set was too small to decide).
        confidence: two-sided confidence level of the intervals (0.95).
        resamples: bootstrap resamples behind each interval (0 for the pre-CI gate).
    """

    passed: bool
    checks: tuple[GateCheck, ...]
    status: GateStatus = "passed"
    confidence: float = 0.95
    resamples: int = 0

    @property
    def promotable(self) -> bool:
        """Whether a person may promote the candidate (only a passed gate allows it)."""
        return self.passed and self.status == "passed"


@dataclass(frozen=True)
class EpochRecord:
    """One point of a learning curve.

    Attributes:
        stage: training stage (``teacher-dr``, ``student``...).
        epoch: 0-based epoch.
        train_loss: mean training loss.
        val_loss: validation loss (``None`` without a validation split).
        lr: learning rate at the end of the epoch.
    """

    stage: str
    epoch: int
    train_loss: float | None
    val_loss: float | None
    lr: float


@dataclass(frozen=True)
class Report:
    """Contents of ``report.json``.

    Attributes:
        kind: the command that wrote it.
        run_id: training run id.
        created_at: UTC ISO-8601 time of writing.
        manifest_digest: SHA-256 of the manifest the evaluation read.
        model: the evaluated model (the candidate, for ``finetune``).
        parent: the parent model on the same split (``finetune`` only).
        gate: the promotion gate verdict (``finetune`` only).
        reference: the candidate on the parent's reference set (``finetune`` only).
        reference_parent: the parent on the same reference set.
        plots: plot name -> PNG path relative to the report's folder.
        history: learning curves of the run's stages (empty for ``evaluate``).
        notes: remarks for the reader (e.g. "no validation split: T_cal = 1").
        teachers: task -> checkpoint folder (relative to the run folder, ``/``-separated) of the
            teacher the run trained for it (``sall``); empty otherwise and in older reports.
        teacher_ids: task -> that teacher's weights SHA-256 (its card id), same keys.
        schema: layout version, :data:`REPORT_SCHEMA`.
    """

    kind: ReportKind
    run_id: str
    created_at: str
    manifest_digest: str
    model: ModelEvaluation
    parent: ModelEvaluation | None = None
    gate: GateVerdict | None = None
    reference: ModelEvaluation | None = None
    reference_parent: ModelEvaluation | None = None
    plots: dict[str, str] = field(default_factory=dict)
    history: tuple[EpochRecord, ...] = ()
    notes: tuple[str, ...] = ()
    teachers: dict[str, str] = field(default_factory=dict)
    teacher_ids: dict[str, str] = field(default_factory=dict)
    schema: int = REPORT_SCHEMA


# ----------------------------------------------------------------------------- JSON


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_to_dict(report: Report) -> dict[str, Any]:
    """Return the JSON-compatible dict of ``report`` (NaN/inf written as ``None``)."""
    return _to_json(report)  # type: ignore[no-any-return]


def report_to_json(report: Report) -> str:
    """Serialise ``report`` as indented JSON text (the content of ``report.json``)."""
    return json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n"


def _from_json(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return _union_from_json(value, args, where)
    if origin is Literal:
        if value not in args:
            raise ReportError(f"{where}: {value!r} is not one of {args}")
        return value
    if origin is tuple:
        return _tuple_from_json(value, args, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ReportError(f"{where}: expected an object")
        return {str(k): _from_json(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _dataclass_from_json(value, hint, where)
    return _scalar_from_json(value, hint, where)


def _union_from_json(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for a in (a for a in args if a is not type(None)):
        try:
            return _from_json(value, a, where)
        except ReportError as exc:
            errors.append(str(exc))
    raise ReportError(errors[0] if errors else f"{where}: unexpected null")


def _tuple_from_json(value: Any, args: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ReportError(f"{where}: expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_from_json(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ReportError(f"{where}: expected {len(args)} items")
    pairs = enumerate(zip(value, args, strict=True))
    return tuple(_from_json(v, a, f"{where}[{i}]") for i, (v, a) in pairs)


def _dataclass_from_json(value: Any, hint: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an object")
    hints = typing.get_type_hints(hint)
    kwargs = {}
    for f in dataclasses.fields(hint):
        if f.name in value:
            kwargs[f.name] = _from_json(value[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ReportError(f"{where}: missing field {f.name!r}")
    return hint(**kwargs)


# Scalar annotation -> (does a JSON value fit it, what the error says was expected).
_SCALARS: dict[type, tuple[Callable[[Any], bool], str]] = {
    float: (lambda v: not isinstance(v, bool) and isinstance(v, int | float), "a number"),
    int: (lambda v: not isinstance(v, bool) and isinstance(v, int), "an integer"),
    bool: (lambda v: isinstance(v, bool), "true/false"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _scalar_from_json(value: Any, hint: Any, where: str) -> Any:
    if hint not in _SCALARS:
        raise TypeError(f"unsupported report annotation {hint!r}")  # a bug here, not bad input
    fits, expected = _SCALARS[hint]
    if not fits(value):
        raise ReportError(f"{where}: expected {expected}")
    return float(value) if hint is float else value


def report_from_json(text: str) -> Report:
    """Parse ``report.json`` text; unknown fields are ignored (forward compatible).

    Raises:
        ReportError: invalid JSON, a newer schema, or a missing or mistyped field.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"report is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ReportError("report is not a JSON object")
    schema = data.get("schema", REPORT_SCHEMA)
    if not isinstance(schema, int) or schema > REPORT_SCHEMA:
        raise ReportError(f"report schema {schema!r} is newer than this app understands")
    return _from_json(data, Report, "report")  # type: ignore[no-any-return]


__all__ = [
    "REFERABLE_DR_MIN",
    "REPORT_SCHEMA",
    "EpochRecord",
    "GateCheck",
    "GateDomain",
    "GateStatus",
    "GateVerdict",
    "HeadReport",
    "ModelEvaluation",
    "ReferableReport",
    "Report",
    "ReportError",
    "ReportKind",
    "report_from_json",
    "report_to_dict",
    "report_to_json",
]
