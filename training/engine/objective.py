"""The contract between the training loop and a method's objective (no method in here).

:func:`training.engine.loop.fit` trains an :class:`Objective`; SALL's is
:class:`training.engine.sall.objective.SallObjective`. The loop reads nothing else of the
method: the loss and its components come out of ``forward``, the network and the extra modules
go into checkpoints, and the per-head metrics of the validation split come from :meth:`metrics`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn


class Objective(Protocol):
    """What a stage trains: a torch module whose ``forward(x, idx, split)`` returns the loss.

    ``objective(x, idx, split)`` takes ``[B, 3, S, S]`` images and their ``[B]`` positions in
    the split's dataset and returns ``(loss, parts, logits)``: the scalar to minimise, a detached
    vector of its components in :attr:`part_names` order (the first is the loss itself), and
    logits per head. Implementations subclass ``torch.nn.Module`` (DDP wraps them).
    """

    @property
    def part_names(self) -> tuple[str, ...]:
        """Names of the loss components; ``part_names[0]`` is the total."""
        ...

    @property
    def model(self) -> nn.Module:
        """The network: saved in checkpoints, restored from the best one at the end."""
        ...

    @property
    def extra(self) -> nn.Module:
        """Other trainable modules, saved with the optimiser state for ``--resume``."""
        ...

    def place(self, device: torch.device, *, channels_last: bool) -> None:
        """Move parameters and any supervision to ``device`` (and channels_last)."""
        ...

    def metrics(
        self, split: str, predicted: Mapping[str, NDArray[np.int64]]
    ) -> dict[str, dict[str, float]]:
        """Per-head figures of ``split`` from its predicted classes (dataset order)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...

    def __call__(
        self, x: Tensor, idx: Tensor, split: str
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]: ...


__all__ = ["Objective"]
