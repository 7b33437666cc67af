"""Inference for the app: one model version on one worker thread (docs/architecture.md, threads).

:class:`InferenceService` owns the loaded ``Predictor`` and a single-thread executor, so there is
one model instance, serialised compute, and Grad-CAM hooks that are never used concurrently. The
GUI talks to it through futures (``gui.inference_bridge`` turns them into queued Qt signals).

torch is imported only inside the worker, when the model is first needed: importing this module
is cheap, so the window is shown before torch loads (P7).

Batch grading of a folder runs on the same thread in chunks, each chunk submitted when the
previous one finishes, so an overlay the grader asks for waits for at most one chunk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from model_zoo.cards import CARD_FILENAME, read_card
from model_zoo.prepare import InputSpec
from sall_desktop.domain.predictions import Prediction
from sall_desktop.services.attention import attention_map
from sall_desktop.services.background import background_priority
from sall_desktop.services.inference_store import (
    StoreAppender,
    StoreExecutor,
    active_model_dir,
    load_predictor,
)
from sall_desktop.services.inference_values import (
    DEFAULT_LOW_CONFIDENCE,
    REFERABLE_DR_MIN_GRADE,
    BatchProgress,
    BatchResult,
    HeadSummary,
    InferenceRequest,
    InferenceResult,
    ModelInfo,
    PredictionSummary,
    StoredPredictions,
    summarize,
)
from sall_desktop.store.input_cache import InputCache

T = TypeVar("T")

if TYPE_CHECKING:
    from model_zoo.predictor import Predictor
    from sall_desktop.services.batch_grading import BatchGradingSummary

__all__ = [  # the values live in inference_values; callers import them from here too
    "REFERABLE_DR_MIN_GRADE",
    "BatchProgress",
    "BatchResult",
    "HeadSummary",
    "InferenceRequest",
    "InferenceResult",
    "InferenceService",
    "ModelInfo",
    "PredictionSummary",
    "StoredPredictions",
    "active_model_dir",
    "load_predictor",
    "summarize",
]

CHUNK = 32
"""Images in a batch-grading run's first task; later tasks are sized to :data:`CHUNK_S`."""

CHUNK_S = 0.5
"""Seconds of work per batch-grading task: the longest an overlay the grader asks for waits
behind batch grading, whatever the model's speed: a fixed number of images would hold a heavy
model's queue for seconds and pay a light model's per-task start-up too often (see
docs/benchmarks.md, "Figures formerly in docstrings")."""

CHUNK_LIMITS = (8, 512)
"""Smallest and largest task, in images."""

FORWARD_BATCH_PIXELS = 32 * 224 * 224
"""Input pixels per forward pass in batch grading: 32 images up to 224², 8 from 384² up.

A bigger batch spreads each pass's fixed costs (the model's Python, one input-cache query, the
heads' arithmetic) over more images, which speeds up light models most (see
docs/benchmarks.md, "Figures formerly in docstrings"). The cap keeps a pass's activations to
what batches of 8 at 384² already need, so a small GPU does not run out of memory."""

FORWARD_BATCH_LIMITS = (8, 32)
"""Smallest and largest forward pass, in images."""


def forward_batch(input_size: int) -> int:
    """Images per forward pass for a model of this input size (:data:`FORWARD_BATCH_PIXELS`),
    a multiple of 8 within :data:`FORWARD_BATCH_LIMITS`."""
    low, high = FORWARD_BATCH_LIMITS
    fits = FORWARD_BATCH_PIXELS // max(1, input_size * input_size) // 8 * 8
    return max(low, min(high, fits))


def next_chunk(images: int, seconds: float, batch: int = 8) -> int:
    """The next task's size: :data:`CHUNK_S` at the rate just measured, within
    :data:`CHUNK_LIMITS`; whole forward passes of ``batch`` when it holds one, else a multiple
    of 8."""
    low, high = CHUNK_LIMITS
    if seconds <= 0:
        return high
    size = int(images / seconds * CHUNK_S)
    size = size // batch * batch if size >= batch else size // 8 * 8
    return max(low, min(high, size))


@dataclass
class _Batch:
    paths: list[str]
    known_sha256: dict[str, str]
    total: int
    skipped: int
    cancel: threading.Event
    on_progress: Callable[[BatchProgress], None] | None
    on_predictions: Callable[[list[PredictionSummary]], None] | None
    outer: Future[BatchResult]
    started: float = field(default_factory=time.perf_counter)
    chunk: int = field(default_factory=lambda: CHUNK)
    appender: StoreAppender | None = None
    done: int = 0
    graded: int = 0
    forward_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------- the service
class InferenceService:
    """Owns one model version and the single inference thread.

    Args:
        model_dir: the model folder, or a callable returning it (called on the worker, so a
            missing bundled model is reported as a failed load, not a crash at start).
        store: the store thread, for stored predictions; None disables storing.
        device: ``None`` (auto), ``"cpu"``, ``"cuda"``...
        low_confidence: confidence threshold of the low-confidence flag.
        inputs_root: the folder of prepared model inputs
            (:mod:`sall_desktop.store.input_cache`) that batch grading reads and fills; None
            decodes every file.
        card_dir: where to read the active card without verifying the weights, for
            :meth:`input_cache` before the model is loaded (default: ``model_dir``).

    Example:
        >>> service = InferenceService(lambda: active_model_dir(store_thread), store=store_thread)
        >>> info = service.load().result()
        >>> result = service.submit(InferenceRequest(1, sha, path, want_cam=("dr", None)))
    """

    def __init__(
        self,
        model_dir: Path | Callable[[], Path],
        *,
        store: StoreExecutor | None = None,
        device: str | None = None,
        low_confidence: float = DEFAULT_LOW_CONFIDENCE,
        inputs_root: Path | None = None,
        card_dir: Callable[[], Path] | None = None,
    ) -> None:
        self._model_dir = model_dir
        self._inputs_root = inputs_root
        self._card_dir = card_dir
        self._store = store
        self._device = device
        self.low_confidence = low_confidence
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="sall-inference", initializer=background_priority
        )
        self._predictor: Predictor | None = None
        self._info: ModelInfo | None = None
        self._load_error: BaseException | None = None
        self._sync = False
        self._lock = threading.Lock()
        self._batches: list[_Batch] = []
        self._closed = False

    # ------------------------------------------------------------------ plumbing
    @property
    def info(self) -> ModelInfo | None:
        """The loaded model, or None before :meth:`load` finished."""
        return self._info

    def _run(self, fn: Callable[[], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the inference service is shut down")
        if not self._sync:
            return self._executor.submit(fn)
        future: Future[T] = Future()
        try:
            future.set_result(fn())
        except BaseException as exc:  # delivered through the future, as on the worker
            future.set_exception(exc)
        return future

    def run_on_worker(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the inference thread, queued behind its work (benchmarks, checks).

        Everything that runs torch in the app runs on this one thread: OpenMP gives each thread
        that runs torch a team of its own, and once a second team exists on a 2-core machine
        libgomp stops spinning between parallel regions, which costs light models a large share
        of their throughput (see docs/benchmarks.md, "Figures formerly in docstrings").
        """
        return self._run(fn)

    @contextlib.contextmanager
    def force_sync(self) -> Iterator[None]:
        """Run requests in the calling thread while inside the block (deterministic tests)."""
        self._executor.submit(lambda: None).result()  # nothing may run on the worker meanwhile
        self._sync = True
        try:
            yield
        finally:
            self._sync = False

    def shutdown(self, *, cancel_futures: bool = True) -> None:
        """Stop the worker (on quit): running batches stop after their chunk, queued work is
        dropped; waits for the task in flight."""
        self._closed = True
        with self._lock:
            batches, self._batches = self._batches, []
        for batch in batches:
            batch.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=cancel_futures)
        for batch in batches:
            if not batch.outer.done():
                batch.outer.cancel()

    # ------------------------------------------------------------------ model
    def load(self) -> Future[ModelInfo]:
        """Load the model on the worker (first use imports torch); resolves with its info."""
        return self._run(self._ensure_loaded)

    def reload(self) -> Future[ModelInfo]:
        """Load the model source again (the active version changed), on the worker.

        Batches running for the old version stop after their chunk in flight. When the new
        version cannot be loaded the previous one stays loaded and the future fails.
        """
        with self._lock:
            batches = list(self._batches)
        for batch in batches:
            batch.cancel.set()

        def job() -> ModelInfo:
            previous = self._predictor, self._info
            self._predictor, self._info = None, None
            try:
                return self._ensure_loaded()
            except BaseException:
                self._predictor, self._info = previous
                raise

        return self._run(job)

    def _ensure_loaded(self) -> ModelInfo:
        if self._info is not None:
            return self._info
        source = self._model_dir
        folder = source() if callable(source) else source
        predictor = load_predictor(Path(folder), device=self._device)
        card = predictor.card
        self._predictor = predictor
        self._info = ModelInfo(
            id=card.id,
            name=card.name,
            version=card.version,
            intended_use=card.intended_use,
            heads=tuple((t.name, len(t.classes)) for t in card.tasks),
            device=predictor.device_note,
        )
        return self._info

    def input_cache(self) -> InputCache | None:
        """Where a folder's first read should leave the active model's inputs, or None (no
        cache, or no readable model card). Before the model is loaded it reads the card found
        through ``card_dir`` (else ``model_dir``): call it off the GUI thread, since resolving
        the active version waits for the store."""
        if self._inputs_root is None:
            return None
        predictor = self._predictor
        if predictor is not None:
            return InputCache(self._inputs_root, predictor.transform.input_spec)
        try:
            source = self._card_dir or self._model_dir
            folder = Path(source() if callable(source) else source)
            card = read_card(folder / CARD_FILENAME if folder.is_dir() else folder)
        except Exception:  # noqa: BLE001 - the load itself reports what is wrong
            return None
        return InputCache(self._inputs_root, InputSpec.of(card))

    def _loaded(self) -> Predictor:
        self._ensure_loaded()
        assert self._predictor is not None
        return self._predictor

    # ------------------------------------------------------------------ one image
    def submit(self, request: InferenceRequest) -> Future[InferenceResult]:
        """Predict one image (and its attention map when asked) on the worker."""
        return self._run(lambda: self._infer(request))

    def _infer(self, request: InferenceRequest) -> InferenceResult:
        from model_zoo.transforms import load_for_model

        started = time.perf_counter()
        predictor = self._loaded()
        card = predictor.card
        if request.model_id and request.model_id != card.id:
            raise RuntimeError("the active model changed; the request was for another version")
        loaded = load_for_model(request.path, card)
        [result] = predictor.predict_arrays([loaded.rgb], sha256s=[request.sha256])
        if result.error is not None:
            raise ValueError(result.error)
        prediction = Prediction(
            image_sha256=request.sha256,
            model_id=card.id,
            probabilities={h: out.probabilities for h, out in result.heads.items()},
        )
        if request.save and self._store is not None:
            self._store.submit(lambda s: s.add_prediction(prediction)).result()
        cam, head, cls = None, "", -1
        if request.want_cam is not None:
            head, wanted = request.want_cam
            cam, cls = attention_map(predictor, loaded.rgb, head, wanted)
        return InferenceResult(
            request.request_id,
            request.sha256,
            request.path,
            card.id,
            summarize(prediction, low_confidence=self.low_confidence),
            cam,
            head,
            cls,
            time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ stored
    def stored_predictions(self, sha256s: Iterable[str]) -> Future[StoredPredictions]:
        """The active model's newest stored prediction of each of ``sha256s`` (loads the model
        first, on the worker; the query itself runs on the store thread).

        The window asks for the images of the open folder as their records arrive. Reading and
        summarising every prediction of the model instead would cost this thread time in
        proportion to the whole store, not the folder, and each overlay and on-demand prediction
        would wait behind it (see docs/benchmarks.md, "Figures formerly in docstrings").
        """
        asked = frozenset(sha256s)

        def job() -> StoredPredictions:
            info = self._ensure_loaded()
            rows: dict[str, Prediction] = {}
            if self._store is not None and asked:
                rows = self._store.submit(lambda s: s.latest_predictions(info.id, asked)).result()
            low = self.low_confidence
            summaries = {sha: summarize(p, low_confidence=low) for sha, p in rows.items()}
            return StoredPredictions(info.id, asked, summaries)

        return self._run(job)

    # ------------------------------------------------------------------ folders
    def grade_folder(
        self,
        paths: Sequence[str],
        known_sha256: dict[str, str],
        *,
        cancel: threading.Event | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
        on_predictions: Callable[[list[PredictionSummary]], None] | None = None,
    ) -> Future[BatchResult]:
        """Grade every image of ``paths`` this model version has not graded yet.

        Predictions are appended to the store (append-only, with the model id) after each
        chunk (about :data:`CHUNK_S` of work); a cancel keeps what was committed.

        Args:
            paths: image files.
            known_sha256: path -> SHA-256 from the catalogue (used to skip graded images).
            cancel: set it to stop after the chunk in flight.
            on_progress: called on the worker after each chunk.
            on_predictions: called on the worker with each committed chunk's predictions.
        """
        if self._store is None:
            raise RuntimeError("batch grading needs the label store")
        outer: Future[BatchResult] = Future()
        cancel = cancel or threading.Event()
        store = self._store

        def start() -> None:
            try:
                info = self._ensure_loaded()
                hashes = [known_sha256[p] for p in paths if p in known_sha256]
                graded = store.submit(lambda s: s.graded_images(info.id, hashes)).result()
                todo = [p for p in paths if known_sha256.get(p) not in graded]
                batch = _Batch(
                    todo, known_sha256, len(todo), len(paths) - len(todo), cancel, on_progress,
                    on_predictions, outer,
                )  # fmt: skip
                with self._lock:
                    self._batches.append(batch)
                self._chunk(batch)
            except BaseException as exc:
                outer.set_exception(exc)

        self._run(start)
        return outer

    def _chunk(self, batch: _Batch) -> None:
        from sall_desktop.services.batch_grading import GradingProgress, grade_paths

        predictor = self._loaded()
        per_pass = forward_batch(predictor.card.input_size)
        chunk, batch.paths = batch.paths[: batch.chunk], batch.paths[batch.chunk :]
        chunk_started = time.perf_counter()
        if batch.appender is None:
            store = cast(StoreExecutor, self._store)
            batch.appender = StoreAppender(store, partial(self._sink, batch))
        if chunk and not batch.cancel.is_set():
            base = batch.done

            def progress(p: GradingProgress) -> None:
                batch.done = base + p.done
                if batch.on_progress is not None:
                    elapsed = time.perf_counter() - batch.started
                    failed = len(batch.failures) + p.failed
                    batch.on_progress(
                        BatchProgress(batch.done, batch.total, failed, batch.skipped, elapsed)
                    )

            forward_before = predictor.forward_s
            inputs = None
            if self._inputs_root is not None:
                inputs = InputCache(self._inputs_root, predictor.transform.input_spec)
            summary: BatchGradingSummary = grade_paths(
                cast("Any", batch.appender), predictor, [Path(p) for p in chunk],
                batch_size=min(per_pass, len(chunk)),
                cancel=batch.cancel, on_progress=progress, known_sha256=batch.known_sha256,
                inputs=inputs, skip_graded=False,
            )  # fmt: skip
            batch.forward_s += predictor.forward_s - forward_before
            batch.appender.check()
            batch.graded += summary.graded
            batch.failures.extend(summary.failures)
            batch.chunk = next_chunk(len(chunk), time.perf_counter() - chunk_started, per_pass)
        if batch.paths and not batch.cancel.is_set() and not self._closed:
            # Queued behind whatever the grader asked for meanwhile (overlays stay responsive).
            try:
                self._executor.submit(self._chunk_safely, batch)
                return
            except RuntimeError:  # shut down between the check and the submit
                pass
        with self._lock:
            if batch in self._batches:
                self._batches.remove(batch)
        batch.appender.wait()  # every prediction counted is committed, or the batch fails
        cancelled = batch.cancel.is_set() and (bool(batch.paths) or batch.done < batch.total)
        if not batch.outer.done():
            batch.outer.set_result(
                BatchResult(
                    predictor.card.id,
                    batch.graded,
                    batch.skipped,
                    tuple(batch.failures),
                    cancelled,
                    time.perf_counter() - batch.started,
                    batch.forward_s,
                )  # fmt: skip
            )

    def _sink(self, batch: _Batch, rows: Sequence[Prediction]) -> None:
        if batch.on_predictions is not None:
            low = self.low_confidence
            batch.on_predictions([summarize(p, low_confidence=low) for p in rows])

    def _chunk_safely(self, batch: _Batch) -> None:
        try:
            self._chunk(batch)
        except BaseException as exc:
            with self._lock:
                if batch in self._batches:
                    self._batches.remove(batch)
            if not batch.outer.done():
                batch.outer.set_exception(exc)
