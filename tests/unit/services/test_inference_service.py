"""InferenceService: one worker thread, calibrated summaries, Grad-CAM with released hooks,
batch grading stored with the model id (skipping what this version graded), cancel, errors."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import model_zoo.io  # noqa: F401  # isort: skip  (sets OpenCV's pixel cap before cv2 loads)
import model_zoo.prepare  # isort: skip
import cv2
import numpy as np
import pytest
import torch

from model_zoo.architectures.student import card_template
from model_zoo.cards import SYNTHETIC_INTENDED_USE
from model_zoo.checkpoints import save_checkpoint
from model_zoo.registry import get_model
from sall_desktop.domain.predictions import Prediction
from sall_desktop.services import inference
from sall_desktop.services.inference import (
    BatchProgress,
    HeadSummary,
    InferenceRequest,
    InferenceService,
    summarize,
)
from sall_desktop.store import StoreThread
from tests.unit.services.conftest import HANG_GUARD_S


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    card = card_template(
        name="tiny", version="0", licence="test", intended_use=SYNTHETIC_INTENDED_USE,
        backbone="resnet18", input_size=64,
    )  # fmt: skip
    model = get_model(card.architecture, **card.architecture_kwargs)
    out = tmp_path_factory.mktemp("model")
    save_checkpoint(model, card, out)
    return out


@pytest.fixture()
def images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(10):
        path = folder / f"{i:02d}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 255, (60, 90, 3), np.uint8))
        paths.append(path)
    return paths


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[StoreThread]:
    thread = StoreThread(tmp_path / "db.sqlite")
    thread.wait_open()
    yield thread
    thread.close()


@pytest.fixture(autouse=True)
def _commits_by_count_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Predictions are also committed every half second of grading; on a busy machine that
    # split these tests' tasks after one image. The rule itself is tested in test_batch_grading.
    monkeypatch.setattr("sall_desktop.services.batch_grading.COMMIT_AFTER_S", float("inf"))


@pytest.fixture()
def service(model_dir: Path, store: StoreThread) -> Iterator[InferenceService]:
    svc = InferenceService(model_dir, store=store, device="cpu", low_confidence=0.99)
    yield svc
    svc.shutdown()


def _sha(path: Path) -> str:
    return model_zoo.io.hash_file(path)


def test_summary_is_hand_computed() -> None:
    p = (0.1, 0.2, 0.3, 0.4, 0.0)
    head = HeadSummary.of(p)
    assert head.grade == 3 and head.confidence == 0.4
    assert head.expected_grade == pytest.approx(0.2 + 0.6 + 1.2)
    assert head.entropy == pytest.approx(-sum(v * math.log(v) for v in p if v))
    s = summarize(
        Prediction("a" * 64, "m", {"dr": p, "amd": (0.7, 0.1, 0.1, 0.1)}), low_confidence=0.5
    )
    assert s.referable_dr_probability == pytest.approx(0.7)
    assert s.low_confidence  # the DR head's 0.4 < 0.5
    assert not summarize(Prediction("a" * 64, "m", {"amd": (0.7, 0.1, 0.1, 0.1)})).low_confidence


def test_submit_predicts_and_explains_on_the_worker(
    service: InferenceService, images: list[Path]
) -> None:
    info = service.load().result(timeout=HANG_GUARD_S)
    assert info.badge == "synthetic — not for clinical use"
    path = images[0]
    request = InferenceRequest(7, _sha(path), str(path), info.id, want_cam=("amd", 2))
    result = service.submit(request).result(timeout=HANG_GUARD_S)
    assert result.request_id == 7 and result.model_id == info.id
    assert set(result.heads) == {"dr", "amd"}
    for head in result.heads.values():
        assert math.isclose(sum(head.probabilities), 1.0, abs_tol=1e-9)
    assert result.low_confidence  # threshold 0.99: an untrained model is never that sure
    assert result.referable_dr_probability == pytest.approx(
        sum(result.heads["dr"].probabilities[2:])
    )
    cam = result.cam
    assert cam is not None and cam.dtype == np.float32 and cam.shape == (60, 90)
    assert 0.0 <= float(cam.min()) and float(cam.max()) <= 1.0
    assert result.cam_head == "amd" and result.cam_class == 2
    predictor = service._predictor
    assert predictor is not None
    layer = predictor.model.cam_target_layer()  # type: ignore[operator]
    assert not layer._forward_hooks  # the GradCAM context released its hook


def test_force_sync_runs_in_the_calling_thread(
    service: InferenceService, images: list[Path]
) -> None:
    seen: list[str] = []
    with service.force_sync():
        future = service.load()
        assert future.done()
        future.add_done_callback(lambda _: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]


def test_batch_grading_stores_with_model_id_and_skips_graded(
    service: InferenceService, store: StoreThread, images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    paths = [str(p) for p in images] + [str(broken)]
    known = {str(p): _sha(p) for p in images}
    progress: list[BatchProgress] = []
    shown: list[str] = []
    result = service.grade_folder(
        paths, known, on_progress=progress.append,
        on_predictions=lambda rows: shown.extend(r.sha256 for r in rows),
    ).result(timeout=HANG_GUARD_S)  # fmt: skip
    model_id = service.info.id if service.info else ""
    assert result.graded == 10 and result.skipped == 0 and not result.cancelled
    assert 0.0 < result.forward_s < result.elapsed_s  # the forward passes, within the run
    assert [f[0] for f in result.failures] == [str(broken)]
    stored = store.submit(lambda s: s.predictions(model_id=model_id)).result()
    assert {p.image_sha256 for p in stored} == set(known.values()) == set(shown)
    assert progress[-1].done == 11 and progress[-1].failed == 1
    again = service.grade_folder(paths, known).result(timeout=HANG_GUARD_S)
    assert again.graded == 0 and again.skipped == 10  # only the unreadable file is retried
    assert again.forward_s == 0.0  # the unreadable file never reached the model
    assert len(store.submit(lambda s: s.predictions(model_id=model_id)).result()) == 10
    # The window reads the stored predictions of the images it asks about, no others.
    asked = [_sha(p) for p in images[:4]] + ["0" * 64]  # and an image the model never saw
    stored = service.stored_predictions(asked).result(timeout=HANG_GUARD_S)
    assert stored.model_id == model_id and stored.asked == frozenset(asked)
    assert stored.summaries.keys() == set(asked[:4])
    assert all(s.model_id == model_id for s in stored.summaries.values())


def test_grading_reads_what_describing_the_folder_prepared(
    model_dir: Path,
    store: StoreThread,
    images: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sall_desktop.services.catalogue import FoundFile, describe_file

    svc = InferenceService(model_dir, store=store, device="cpu", inputs_root=tmp_path / "in")
    try:
        inputs = svc.input_cache()  # from the card alone, before the model is loaded
        assert inputs is not None and svc.info is None
        known = {str(p): describe_file(FoundFile(p, 0, 0), inputs).sha256 for p in images}
        decoded: list[str] = []
        real_read = model_zoo.prepare.read_image

        def counting_read(path: object, **kwargs: object) -> object:
            decoded.append(str(path))
            return real_read(path, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(model_zoo.prepare, "read_image", counting_read)
        paths = [str(p) for p in images]
        result = svc.grade_folder(paths[:6], known).result(timeout=HANG_GUARD_S)
        assert result.graded == 6 and decoded == []  # the folder's first read was the only one
        # Files the catalogue has not described are decoded, and prepared for next time.
        result = svc.grade_folder(paths[6:], {}).result(timeout=HANG_GUARD_S)
        assert result.graded == 4 and len(decoded) >= 4
        assert all(known[p] in inputs for p in paths[6:])
        assert svc.input_cache() == inputs  # the loaded model's spec is the card's
    finally:
        svc.shutdown()


def test_the_inputs_to_prepare_come_from_the_card_alone(model_dir: Path, tmp_path: Path) -> None:
    def verified_folder() -> Path:
        raise AssertionError("the weights were re-hashed to learn the preprocessing")

    svc = InferenceService(
        verified_folder, inputs_root=tmp_path, card_dir=lambda: model_dir, device="cpu"
    )
    try:
        inputs = svc.input_cache()
        assert inputs is not None and inputs.spec.input_size == 64
        broken = InferenceService(verified_folder, inputs_root=tmp_path, card_dir=lambda: tmp_path)
        assert broken.input_cache() is None  # no card there: nothing is prepared, no crash
        broken.shutdown()
    finally:
        svc.shutdown()


def test_without_an_inputs_folder_nothing_is_prepared(service: InferenceService) -> None:
    assert service.input_cache() is None


def test_grading_tasks_are_sized_to_half_a_second() -> None:
    assert inference.next_chunk(32, 0.1) == 160  # 320 images/s
    assert inference.next_chunk(32, 2.7) == 8  # resnet50@384 on two cores: never below 8
    assert inference.next_chunk(32, 0.01) == inference.CHUNK_LIMITS[1]
    assert inference.next_chunk(0, 0.0) == inference.CHUNK_LIMITS[1]
    assert inference.next_chunk(45, 0.5) % 8 == 0
    assert inference.next_chunk(32, 0.1, batch=32) == 160  # whole forward passes of 32
    assert inference.next_chunk(54, 0.1, batch=32) == 256
    assert inference.next_chunk(32, 0.5, batch=32) == 32
    assert inference.next_chunk(24, 0.5, batch=32) == 24  # less than one pass: a multiple of 8


def test_light_models_run_bigger_forward_passes_within_a_memory_cap() -> None:
    assert inference.forward_batch(128) == 32  # the demo model
    assert inference.forward_batch(224) == 32
    assert inference.forward_batch(299) == 16  # inception_v3
    assert inference.forward_batch(384) == 8
    assert inference.forward_batch(512) == 8  # never below 8
    for size in (64, 128, 224, 256, 299, 384, 512, 1024):
        batch = inference.forward_batch(size)
        assert batch % 8 == 0 and batch * size * size <= max(
            inference.FORWARD_BATCH_PIXELS, 8 * size * size
        )


def test_batch_grading_runs_forward_passes_of_the_models_batch(
    service: InferenceService, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "FORWARD_BATCH_LIMITS", (4, 4))
    predictor = service.run_on_worker(service._loaded).result(timeout=HANG_GUARD_S)
    sizes: list[int] = []
    logits = predictor.logits
    monkeypatch.setattr(predictor, "logits", lambda x: sizes.append(len(x)) or logits(x))
    known = {str(p): _sha(p) for p in images}
    result = service.grade_folder([str(p) for p in images], known).result(timeout=HANG_GUARD_S)
    assert result.graded == 10 and sizes == [4, 4, 2]


def test_cancel_keeps_committed_chunks(
    service: InferenceService,
    store: StoreThread,
    images: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inference, "CHUNK", 3)
    cancel = threading.Event()
    known = {str(p): _sha(p) for p in images}

    def on_progress(p: BatchProgress) -> None:
        cancel.set()  # after the first committed chunk

    result = service.grade_folder(
        [str(p) for p in images], known, cancel=cancel, on_progress=on_progress
    ).result(timeout=HANG_GUARD_S)
    assert result.cancelled and result.graded == 3
    assert len(store.submit(lambda s: s.predictions()).result()) == 3


def test_a_failed_commit_fails_the_run_and_keeps_what_was_committed(
    service: InferenceService,
    store: StoreThread,
    images: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sall_desktop.store.errors import StoreWriteError
    from sall_desktop.store.sqlite_repository import SqliteLabelStore

    monkeypatch.setattr(inference, "CHUNK", 4)
    monkeypatch.setattr(inference, "CHUNK_LIMITS", (4, 4))
    monkeypatch.setattr(inference, "FORWARD_BATCH_LIMITS", (4, 4))
    add = SqliteLabelStore.add_predictions
    calls: list[int] = []

    def second_fails(self: SqliteLabelStore, rows: list[Prediction]) -> int:
        calls.append(len(rows))
        if len(calls) == 2:
            raise StoreWriteError("disk full")
        return add(self, rows)

    monkeypatch.setattr(SqliteLabelStore, "add_predictions", second_fails)
    known = {str(p): _sha(p) for p in images}
    with pytest.raises(StoreWriteError, match="disk full"):
        service.grade_folder([str(p) for p in images], known).result(timeout=HANG_GUARD_S)
    stored = store.submit(lambda s: s.predictions()).result()
    # Commits are not waited for per task, so the run may go one task past the failure; all
    # but the failed commit's four are stored, and the run reports the failure.
    assert calls[:2] == [4, 4] and len(stored) == sum(calls) - 4
    assert not service._batches  # the run is over: a new one may start


def test_a_model_that_cannot_load_fails_the_future(store: StoreThread, tmp_path: Path) -> None:
    svc = InferenceService(tmp_path / "no-model", store=store)
    try:
        with pytest.raises(Exception, match="no-model|card|not found|No such"):
            svc.load().result(timeout=HANG_GUARD_S)
        with pytest.raises(Exception):  # noqa: B017  # every request reports it too
            request = InferenceRequest(1, "a" * 64, str(tmp_path / "x.jpg"))
            svc.submit(request).result(timeout=HANG_GUARD_S)
    finally:
        svc.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        svc.load()
