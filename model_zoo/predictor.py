"""Batch inference with calibrated per-head outputs (docs/sall-method.md, Calibration).

A :class:`Predictor` holds one model in eval mode on the chosen device, preprocesses with the
card's :func:`~model_zoo.transforms.eval_transform`, and turns raw logits ``z`` into calibrated
probabilities ``softmax(z / T_cal)`` per head. :meth:`Predictor.predict_paths` decodes files in
a small thread pool (OpenCV and the hashing release the GIL) while the calling thread runs the
network, so decoding overlaps compute; a file that cannot be read yields an entry with ``error``
set and never stops the batch.

Speed switches (``fast=None`` picks them):
- CPU: ``channels_last`` + bf16 autocast when the CPU has native bf16 (AVX512-BF16 or AMX), else
  fp32 (without native support bf16 is emulated; assumed not faster). On a CPU with native
  bf16 each switch speeds up the forward pass and the two together most
  (``benchmarks/bench_cpu_precision.py``; docs/benchmarks.md), hence both together.
- CUDA: ``channels_last`` + autocast (bf16 where supported, else fp16), i.e. AMP.
- MPS: fp32.
Logits are cast to float64 before the softmax, so probabilities sum to 1 within 1e-12.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from model_zoo.architectures.tasks import REFERABLE_DR_MIN_GRADE
from model_zoo.cards import ModelCard
from model_zoo.device import select_device
from model_zoo.io import LoadError, hash_file
from model_zoo.prepare import PreparedInputs
from model_zoo.transforms import choose_reduce, eval_transform, load_for_model


@dataclass(frozen=True, slots=True)
class HeadPrediction:
    """One head's output for one image.

    Attributes:
        probabilities: calibrated ``softmax(z / T_cal)``, one per class, summing to 1.
        grade: predicted class index (argmax of the logits).
        expected_grade: ``Σ_i i · p_i``, in ``[0, C - 1]``.
        confidence: the largest probability, in ``[1 / C, 1]``.
        entropy: ``-Σ p_i ln p_i`` in nats, in ``[0, ln C]``.
        logits: the raw logits ``z`` (uncalibrated), for storage and re-calibration.
    """

    probabilities: tuple[float, ...]
    grade: int
    expected_grade: float
    confidence: float
    entropy: float
    logits: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ImagePrediction:
    """The model's output for one image, or why there is none.

    Attributes:
        sha256: the image file's SHA-256 (as given for arrays); ``""`` if the file is unreadable.
        model_id: the card id of the model that produced it.
        heads: head name -> :class:`HeadPrediction`; empty when ``error`` is set.
        referable_dr_probability: ``P(ICDR ≥ 2)`` when the model has a 5-class ``"dr"`` head.
        error: the grader-readable reason the image could not be graded, else None.
        path: the file, for :meth:`Predictor.predict_paths` results; ``""`` for arrays.
    """

    sha256: str
    model_id: str
    heads: dict[str, HeadPrediction]
    referable_dr_probability: float | None
    error: str | None = None
    path: str = ""


@dataclass(frozen=True, slots=True)
class _Decoded:
    path: str
    sha256: str
    prepared: NDArray[np.uint8] | None  # the uint8 S×S×3 input; None when unreadable
    error: str | None = None


class _Ready:
    """A pending item that is already there (a cached input), in the queue of decode futures."""

    def __init__(self, item: _Decoded) -> None:
        self._item = item

    def result(self, timeout: float | None = None) -> _Decoded:
        return self._item

    def cancel(self) -> bool:
        return True


def _native_cpu_bf16() -> bool:
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


@dataclass
class _Precision:
    channels_last: bool = False
    autocast_dtype: torch.dtype | None = None
    notes: list[str] = field(default_factory=list)


def _choose_precision(device: torch.device, fast: bool | None) -> _Precision:
    if device.type == "cpu":
        on = _native_cpu_bf16() if fast is None else fast
        return _Precision(
            on, torch.bfloat16 if on else None, ["channels_last + bf16"] if on else []
        )
    if device.type == "cuda":
        on = True if fast is None else fast
        if not on:
            return _Precision()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return _Precision(True, dtype, ["AMP " + str(dtype).removeprefix("torch.")])
    return _Precision()


class Predictor:
    """Calibrated batch inference for one model version.

    The predictor takes ownership of ``model``: it is moved to the device, switched to eval mode
    and, when fast mode is on, to ``channels_last``.

    Args:
        model: a model whose forward returns a
            :class:`~model_zoo.architectures.student.MultiTaskOutput` (or a ``{task: logits}``
            dict, or a logits tensor for a one-task model).
        card: its model card (preprocessing, heads, calibration temperatures, id).
        device: ``None``/``"auto"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"cpu"``
            (see :func:`~model_zoo.device.select_device`).
        fast: ``channels_last`` + bf16 autocast on CPU / AMP on CUDA; ``None`` decides from the
            hardware (on CPU only with native bf16), False forces fp32.

    Example:
        >>> predictor = Predictor.from_checkpoint("models/demo")
        >>> for result in predictor.predict_paths(paths):
        ...     print(result.path, result.error or result.heads["dr"].grade)
    """

    def __init__(
        self,
        model: nn.Module,
        card: ModelCard,
        *,
        device: str | None = None,
        fast: bool | None = None,
    ) -> None:
        tasks = getattr(model, "tasks", None)
        if tasks is not None and tuple(tasks) != card.tasks:
            raise ValueError(
                f"the model's heads {[t.name for t in tasks]} differ from the card's "
                f"{[t.name for t in card.tasks]}"
            )
        self.card = card
        self.device, note = select_device(device)
        self._precision = _choose_precision(self.device, fast)
        if self._precision.notes:
            note = f"{note}, {', '.join(self._precision.notes)}"
        self.device_note: str = note
        memory_format = (
            torch.channels_last if self._precision.channels_last else torch.contiguous_format
        )
        self.model = model.to(self.device).to(memory_format=memory_format).eval()
        self.transform = eval_transform(card)
        self._temperatures = {t.name: card.temperatures[t.name] for t in card.tasks}
        self._reduce_hint = 8
        self.forward_s = 0.0
        """Seconds spent in :meth:`logits` since loading: a caller that reads it before and
        after its work learns how much of it was the model's forward pass."""

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: str | None = None, *, fast: bool | None = None
    ) -> Predictor:
        """Load a checkpoint safely (:func:`~model_zoo.checkpoints.load_checkpoint`) and wrap it."""
        from model_zoo.checkpoints import load_checkpoint

        model, card = load_checkpoint(path, device="cpu")
        return cls(model, card, device=device, fast=fast)

    @property
    def fast(self) -> bool:
        """Whether channels_last / reduced-precision autocast is in use."""
        return self._precision.autocast_dtype is not None

    # ------------------------------------------------------------------ forward
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self._precision.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def logits(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw logits ``{task: float32 [B, C_k]}`` (CPU) of a preprocessed ``[B, 3, S, S]``."""
        started = time.perf_counter()
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            if self._precision.channels_last:  # a no-op for Preprocess.normalise_batch's
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = x.contiguous()
            with self._autocast():
                out = self.model(x)
            raw = out.logits if hasattr(out, "logits") else out
            if isinstance(raw, torch.Tensor):
                if len(self.card.tasks) != 1:
                    raise TypeError("a multi-task model must return logits per task")
                raw = {self.card.tasks[0].name: raw}
            logits = {t.name: raw[t.name].float().cpu() for t in self.card.tasks}
        self.forward_s += time.perf_counter() - started
        return logits

    def _heads(self, logits: dict[str, torch.Tensor]) -> list[dict[str, HeadPrediction]]:
        batch = next(iter(logits.values())).shape[0]
        per_image: list[dict[str, HeadPrediction]] = [{} for _ in range(batch)]
        for task in self.card.tasks:
            z = logits[task.name].double()
            p = torch.softmax(z / self._temperatures[task.name], dim=1)
            grades = torch.arange(task.num_classes, dtype=torch.float64)
            expected = (p * grades).sum(dim=1)
            entropy = -torch.special.xlogy(p, p).sum(dim=1)
            conf, _ = p.max(dim=1)
            argmax = z.argmax(dim=1)
            # Whole columns to Python at once, not a tensor index per image and value: one
            # conversion per column is cheaper than one per value.
            columns = zip(
                p.tolist(), argmax.tolist(), expected.tolist(), conf.tolist(),
                entropy.tolist(), z.tolist(), strict=True,
            )  # fmt: skip
            for i, (probs, grade, mean, top, spread, raw) in enumerate(columns):
                per_image[i][task.name] = HeadPrediction(
                    probabilities=tuple(probs),
                    grade=int(grade),
                    expected_grade=float(mean),
                    confidence=float(top),
                    entropy=float(spread),
                    logits=tuple(raw),
                )
        return per_image

    def _referable(self, heads: dict[str, HeadPrediction]) -> float | None:
        dr = heads.get("dr")
        if dr is None or len(dr.probabilities) != 5:
            return None
        return math.fsum(dr.probabilities[REFERABLE_DR_MIN_GRADE:])

    def _predict_decoded(self, items: Sequence[_Decoded]) -> list[ImagePrediction]:
        good = [item.prepared for item in items if item.prepared is not None]
        heads: list[dict[str, HeadPrediction]] = []
        if good:
            heads = self._heads(self.logits(self.transform.normalise_batch(good)))
        results, it = [], iter(heads)
        for item in items:
            if item.prepared is None:
                results.append(
                    ImagePrediction(item.sha256, self.card.id, {}, None, item.error, item.path)
                )
            else:
                h = next(it)
                results.append(
                    ImagePrediction(
                        item.sha256, self.card.id, h, self._referable(h), None, item.path
                    )
                )
        return results

    # ------------------------------------------------------------------ arrays
    def predict_arrays(
        self, rgbs: Sequence[NDArray[np.uint8]], *, sha256s: Sequence[str], batch_size: int = 8
    ) -> list[ImagePrediction]:
        """Predict decoded images.

        Args:
            rgbs: ``H×W×3`` uint8 RGB arrays (any size; preprocessed with the card's transform).
            sha256s: the image identities, one per array.
            batch_size: images per forward pass.

        Returns:
            One :class:`ImagePrediction` per array, in order; an array that is not a valid RGB
            image gets ``error`` set.
        """
        if len(rgbs) != len(sha256s):
            raise ValueError(f"{len(rgbs)} images but {len(sha256s)} sha256 values")
        decoded = []
        for rgb, sha in zip(rgbs, sha256s, strict=True):
            try:
                decoded.append(_Decoded("", sha, self.transform.prepare(rgb)))
            except ValueError as exc:
                decoded.append(_Decoded("", sha, None, f"image cannot be graded: {exc}"))
        results: list[ImagePrediction] = []
        for start in range(0, len(decoded), max(1, batch_size)):
            results.extend(self._predict_decoded(decoded[start : start + max(1, batch_size)]))
        return results

    # ------------------------------------------------------------------ files
    def _decode(self, path: str, inputs: PreparedInputs | None) -> _Decoded:
        try:
            loaded = load_for_model(path, self.card, reduce_hint=self._reduce_hint)
            # Only a speed hint for the next file (same camera, same size): races are harmless.
            meta = loaded.meta
            self._reduce_hint = choose_reduce(meta.width, meta.height, self.card.input_size)
            prepared = self.transform.prepare(loaded.rgb)
            if inputs is not None:
                inputs.put(meta.sha256, prepared)
            return _Decoded(path, meta.sha256, prepared)
        except LoadError as exc:
            message = str(exc)
        except Exception as exc:  # a decoder bug must cost one file, not the batch
            name = os.path.basename(path)
            message = f"{name} could not be read ({type(exc).__name__}: {exc})"
        try:
            sha = hash_file(path)
        except OSError:
            sha = ""
        return _Decoded(path, sha, None, message)

    def predict_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        batch_size: int = 8,
        workers: int = 2,
        cancel: threading.Event | None = None,
        sha256s: Mapping[str, str] | None = None,
        inputs: PreparedInputs | None = None,
    ) -> Iterator[ImagePrediction]:
        """Decode and predict image files, yielding results in input order.

        Up to ``2 * batch_size`` files are decoded ahead by ``workers`` threads while the calling
        thread runs the network on the previous batch. With ``inputs``, a file whose SHA-256 is
        known and whose prepared input is cached is not decoded at all, and every file decoded
        is cached for the next run (a cached input is the one decoding would give, bit for bit).

        Args:
            paths: image files (JPEG/PNG/TIFF/BMP/DICOM, as :func:`model_zoo.io.read_image`).
            batch_size: images per forward pass.
            workers: decoding threads.
            cancel: when set, no further result is yielded; decoding still in flight finishes
                (at most one file per worker) and the generator returns.
            sha256s: ``str(path)`` -> the file's SHA-256, where already known (the catalogue).
            inputs: prepared inputs to use and fill; its spec must be this model's.

        Raises:
            ValueError: ``inputs`` holds another preprocessing's inputs.

        Yields:
            One :class:`ImagePrediction` per path; unreadable files have ``error`` set.
        """
        if inputs is not None and inputs.spec != self.transform.input_spec:
            raise ValueError("the input cache was prepared for another model's preprocessing")
        known = sha256s or {}
        batch_size = max(1, batch_size)
        window = 2 * batch_size + max(1, workers)
        source = iter(paths)
        pending: collections.deque[concurrent.futures.Future[_Decoded] | _Ready]
        pending = collections.deque()
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="sall-decode"
        )

        queued = 0

        def refill() -> None:
            nonlocal queued
            # Whole forward passes at a time (the window holds two and more), so each read of
            # the input cache below is one pass's images.
            room = max(0, window - len(pending))
            room = max(0, room - (queued + room) % batch_size)
            names = [os.fspath(path) for path in itertools.islice(source, room)]
            queued += len(names)
            shas = [known.get(name, "") for name in names]
            # Read here, between forward passes: a decode thread would compete with the
            # forward pass for the cores and the GIL and cost throughput.
            found = _cached_inputs(inputs, shas, batch_size)
            for name, sha in zip(names, shas, strict=True):
                prepared = found.get(sha)
                if prepared is not None:  # decoded before, for the catalogue or an earlier run
                    pending.append(_Ready(_Decoded(name, sha, prepared)))
                else:
                    pending.append(pool.submit(self._decode, name, inputs))

        def cancelled() -> bool:
            return cancel is not None and cancel.is_set()

        try:
            refill()
            while pending and not cancelled():
                batch: list[_Decoded] = []
                while pending and len(batch) < batch_size:
                    head = pending[0]
                    try:
                        batch.append(head.result(timeout=0.1))
                    except concurrent.futures.TimeoutError:
                        if cancelled():
                            return
                        continue
                    pending.popleft()
                refill()  # keep the workers busy while this batch runs
                for result in self._predict_decoded(batch):
                    if cancelled():
                        return
                    yield result
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _cached_inputs(
    inputs: PreparedInputs | None, shas: list[str], batch_size: int
) -> dict[str, NDArray[np.uint8]]:
    """SHA-256 -> cached prepared input of the known ``shas`` found in ``inputs``.

    One read per forward pass of images, so a pass whose inputs were all cached is normalised
    without stacking them first.
    """
    found: dict[str, NDArray[np.uint8]] = {}
    if inputs is None:
        return found
    for start in range(0, len(shas), batch_size):
        part = [sha for sha in shas[start : start + batch_size] if sha]
        if part:
            found.update(inputs.get_many(part))
    return found
