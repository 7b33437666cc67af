"""Task (head) specifications: standard library only, so cards can be read without torch."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One classification head of a multi-task model.

    Args:
        name: head key, lower-case identifier such as ``"dr"`` or ``"amd"`` (it becomes a
            module name, so no dots).
        classes: class names in index order; at least two, unique. Index ``i`` is grade ``i``.

    Example:
        >>> TaskSpec("amd", ("No AMD", "Small drusen", "Large drusen", "CNV")).num_classes
        4
    """

    name: str
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"task name {self.name!r} must be a lower-case identifier (a-z, 0-9, _), "
                "at most 32 characters"
            )
        if not isinstance(self.classes, tuple) or not all(
            isinstance(c, str) and c for c in self.classes
        ):
            raise ValueError(f"task {self.name!r}: classes must be a tuple of non-empty strings")
        if len(self.classes) < 2:
            raise ValueError(f"task {self.name!r} needs at least two classes")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"task {self.name!r} has duplicate class names: {self.classes}")

    @property
    def num_classes(self) -> int:
        """Number of classes ``C_k`` of this head."""
        return len(self.classes)


DR_TASK = TaskSpec("dr", ("No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "PDR"))
"""Diabetic retinopathy on the ICDR scale 0-4."""

REFERABLE_DR_MIN_GRADE = 2
"""Referable DR is ICDR grade 2 (moderate NPDR) or worse."""

AMD_TASK = TaskSpec("amd", ("No AMD", "Small drusen", "Large drusen", "CNV"))
"""AMD on the SALL 0-3 scale (docs/grading-conventions.md, Scales)."""

DEFAULT_TASKS: tuple[TaskSpec, ...] = (DR_TASK, AMD_TASK)
"""The SALL student's heads: DR (5 classes) and AMD (4 classes)."""

DEFAULT_GRADING_SCALES: dict[str, str] = {"dr": "ICDR 0-4", "amd": "SALL AMD 0-3"}
"""Scale label per default head, as written into model cards."""


def validate_tasks(tasks: tuple[TaskSpec, ...]) -> tuple[TaskSpec, ...]:
    """Check that ``tasks`` is a non-empty tuple of TaskSpec with unique names; return it."""
    if not tasks:
        raise ValueError("a model needs at least one task")
    for task in tasks:
        if not isinstance(task, TaskSpec):
            raise ValueError(f"tasks must be TaskSpec values, got {type(task).__name__}")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    return tasks
