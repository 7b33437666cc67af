"""GUI test fixtures: data folder in tmp_path, tiny synthetic images, a running workstation.

Every test runs with ``SALL_DESKTOP_HOME`` (settings, database, thumbnail cache) in its own
``tmp_path`` and fails if it leaves a thread running (napari's dangling-thread idea).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest

from sall_desktop.gui.theme import apply_theme

WAIT_MS = 60_000
"""The GUI tests' one hang guard (docs/testing.md): the longest any wait on real work (a scan, a
decode, a store write, inference, a thread ending) may take before the test fails as hung. It
never measures speed: on a busy machine the work may take any time below it. Every
``qtbot.waitUntil``/``waitSignal`` and ``Future.result`` of these tests uses it (long fine-tunes
in a child process keep their own, longer guards)."""
WAIT_S = WAIT_MS / 1000


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _no_dangling_threads() -> Iterator[None]:
    """Fail a test that leaves a (non-daemon or daemon) thread of ours running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + WAIT_S
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"threads left running: {[t.name for t in left]}"


def write_fundus_like(path: Path, seed: int, size: int = 64) -> Path:
    """A small JPEG that looks vaguely like a fundus: a reddish disc on black, with noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 2 - 2, (40, 80, 190), -1)  # BGR: orange-red
    noise = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    image = cv2.add(image, noise)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture()
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Make a folder of ``n`` distinct images named ``pNNN_left/right.jpg`` (two eyes a patient)."""

    def make(n: int = 24, *, name: str = "study", size: int = 64) -> Path:
        folder = tmp_path / name
        for i in range(n):
            eye = "left" if i % 2 else "right"
            write_fundus_like(folder / f"p{i // 2:03d}_{eye}.jpg", seed=i, size=size)
        return folder

    return make


@pytest.fixture()
def qapp_themed(qapp):  # type: ignore[no-untyped-def]
    apply_theme(qapp, "dark")
    return qapp


@pytest.fixture()
def open_workstation(qtbot, qapp_themed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: build, show and start a workstation on a folder; closes everything after."""
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    opened = []

    def start(
        folder: Path | None,
        *,
        db: Path | None = None,
        grader: str | None = "Dr Test",
        auto_advance: bool = True,
        retry_delays: tuple[float, ...] | None = None,
        wait_scan: bool = True,
    ):  # type: ignore[no-untyped-def]
        settings = AppSettings(tmp_path / "home" / "settings.ini")
        settings.auto_advance = auto_advance
        settings.grader = grader or ""
        ws = create_workstation(
            db or tmp_path / "home" / "labels.sqlite", settings=settings, retry_delays=retry_delays
        )
        opened.append(ws)
        ws.window.show()
        ws.window.start(str(folder) if folder is not None else None)
        if wait_scan:
            _wait_scanned(qtbot, ws)
        return ws

    yield start
    for ws in opened:
        ws.window._closing_confirmed = True  # tests that check the quit question do it themselves
        ws.window.close()
        ws.shutdown()


def _wait_scanned(qtbot, ws) -> None:  # type: ignore[no-untyped-def]
    window = ws.window

    def ready() -> None:
        assert window.folders.folder
        assert not window.folders.scanning
        assert window.navigator.current is not None and window.navigator.current.record is not None
        assert not window.grading.loading

    qtbot.waitUntil(ready, timeout=WAIT_MS)


@pytest.fixture()
def wait_saved(qtbot):  # type: ignore[no-untyped-def]
    """``wait_saved(ws)``: wait until every grading write of ``ws`` committed."""

    def wait(ws) -> None:  # type: ignore[no-untyped-def]
        qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)

    return wait


@pytest.fixture()
def store_call():  # type: ignore[no-untyped-def]
    """``store_call(ws, fn)``: run ``fn(store)`` on the store thread, return its result."""

    def call(ws, fn):  # type: ignore[no-untyped-def]
        return ws.store.submit(fn).result(timeout=WAIT_S)

    return call


def _tiny_student(folder: Path, dr_bias_class: int | None = None) -> Path:
    """A 64 px resnet18 student; with ``dr_bias_class`` its DR head always answers that class."""
    import torch

    from model_zoo.architectures.student import card_template
    from model_zoo.checkpoints import save_checkpoint
    from model_zoo.registry import get_model

    torch.manual_seed(0)
    card = card_template(
        name="tiny test", version="0", licence="test", intended_use="tests only", input_size=64
    )
    model = get_model("sall_student", backbone="resnet18", tasks=card.tasks, pretrained=False)
    if dr_bias_class is not None:
        bias = cast(Any, model).heads["dr"][1].bias
        with torch.no_grad():
            bias.zero_()
            bias[dr_bias_class] = 30.0
    save_checkpoint(model, card, folder)
    return folder


def _model_loop_workstation(tmp_path: Path, *, auto_grade: bool) -> Any:
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    settings = AppSettings(tmp_path / "home" / "settings.ini")
    settings.auto_advance = False
    settings.grader = "Dr Test"
    settings.blind_first = False
    settings.auto_grade = auto_grade
    return create_workstation(tmp_path / "home" / "labels.sqlite", settings=settings, device="cpu")


@pytest.fixture
def model_loop_workstation() -> Callable[..., Any]:
    """Builds a CPU workstation for the model-loop tests: ``(tmp_path, auto_grade=...)``."""
    return _model_loop_workstation


def add_reference_set(model_dir: Path, scratch: Path, n: int = 30, seed: int = 23) -> None:
    """Give a model folder a labelled reference set (``MODEL/sets/reference.csv`` and
    ``images/``), as ``sall-train sall`` records one: synthetic eyes of other patients, so the
    gate can judge forgetting. The images are not the fine-tune's (other seed, other patients).
    """
    import shutil

    from model_zoo.datasets.benchmark import write_synthetic_dataset
    from training.protocol.manifest import ManifestRow, format_manifest

    source = scratch / f"reference-{seed}"
    samples = write_synthetic_dataset(source, n, seed=seed, size=64, dicom_fraction=0)
    images = model_dir / "sets" / "images"
    images.mkdir(parents=True)
    rows = []
    for s in samples:
        if not s.gradable:
            continue
        shutil.copyfile(source / s.file_name, images / s.file_name)
        rows.append(
            ManifestRow(
                image_path=f"images/{s.file_name}",
                sha256=s.sha256,
                patient_id=f"reference-{s.patient_id}",
                laterality=s.laterality,
                dr_grade=s.dr_grade,
                amd_grade=s.amd_grade,
                gradable=True,
                split="test",
            )
        )
    (model_dir / "sets" / "reference.csv").write_text(format_manifest(rows), encoding="utf-8")


@pytest.fixture
def reference_set() -> Callable[..., None]:
    """``reference_set(model_dir, scratch)``: see ``add_reference_set``."""
    return add_reference_set


def _open_model_loop(
    tmp_path: Path,
    images: int,
    *,
    auto_grade: bool,
    dr_bias_class: int | None = None,
    with_reference: bool = False,
) -> tuple[Any, list[Any], Any, Path]:
    """A workstation on a synthetic folder with a tiny student registered and active (the
    first model: it needs no gate); ``with_reference`` gives the student a reference set.

    Returns ``(workstation, samples, parent model version, folder)``; the window is shown
    and the folder is opening.
    """
    from model_zoo.datasets.benchmark import write_synthetic_dataset
    from sall_desktop.services import models

    folder = tmp_path / "study"
    samples = write_synthetic_dataset(folder, images, seed=11, size=64, dicom_fraction=0)
    parent_dir = _tiny_student(tmp_path / "parent", dr_bias_class)
    if with_reference:
        add_reference_set(parent_dir, tmp_path)
    ws = _model_loop_workstation(tmp_path, auto_grade=auto_grade)

    def activate(store: Any) -> Any:
        version = models.register_model(store, parent_dir, source="import", actor="Dr A")
        return models.promote(store, version.id, approver="Dr A")

    try:
        parent = ws.store.submit(activate).result(timeout=WAIT_S)
        ws.window.show()
        ws.window.start(str(folder))
    except BaseException:
        ws.window._closing_confirmed = True
        ws.window.close()
        ws.shutdown()
        raise
    return ws, list(samples), parent, folder


def correct_and_lock_holdout(qtbot: Any, ws: Any, samples: list[Any]) -> None:
    """Grade every gradable sample with its true grades as "Dr Test", then sample a hold-out."""
    from sall_desktop.domain.grades import Grading
    from sall_desktop.services import holdout

    entries = {Path(e.path).name: e for e in ws.window.model.entries()}
    for sample in samples:
        entry = entries[sample.file_name]
        if sample.gradable:
            grading = Grading(
                entry.sha256, "Dr Test", dr_grade=sample.dr_grade, amd_grade=sample.amd_grade
            )
            ws.services.grading.grade(grading, record=entry.record)
    qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)
    ws.store.submit(
        lambda s: holdout.sample_holdout(s, actor="Dr Test", fraction=0.3, seed=2)
    ).result(timeout=WAIT_S)


@pytest.fixture
def corrections() -> Callable[[Any, Any, list[Any]], None]:
    """``corrections(qtbot, ws, samples)``: see ``correct_and_lock_holdout``."""
    return correct_and_lock_holdout


@pytest.fixture
def model_loop(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Any, list[Any], Any, Path]]:
    """Opens a model-loop workstation (no bundled demo model): see ``_open_model_loop``."""
    from sall_desktop.services import models

    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    return _open_model_loop


@pytest.fixture()
def model_workstation(qtbot, qapp_themed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``start(folder, model, *, blind=False, auto_grade=False)`` builds, shows and
    starts a workstation with ``model`` loaded on the CPU, and waits until the folder is read and
    the model is in; closes everything after."""
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    opened: list[Any] = []

    def start(folder: Path, model: Path, *, blind: bool = False, auto_grade: bool = False) -> Any:
        settings = AppSettings(tmp_path / "home" / "settings.ini")
        settings.auto_advance = False
        settings.grader = "Dr Test"
        settings.blind_first = blind
        settings.auto_grade = auto_grade
        ws = create_workstation(
            tmp_path / "home" / "labels.sqlite", settings=settings, model=model, device="cpu"
        )
        opened.append(ws)
        ws.window.show()
        ws.window.start(str(folder))
        window = ws.window

        def ready() -> None:
            assert window.folders.folder and not window.folders.scanning
            assert window.navigator.current is not None
            assert window.navigator.current.record is not None
            assert not window.grading.loading
            assert window.model_loop is not None and window.model_loop.info is not None

        qtbot.waitUntil(ready, timeout=WAIT_MS)
        return ws

    yield start
    for ws in opened:
        ws.window._closing_confirmed = True
        ws.window.close()
        ws.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained student (ResNet-18 at 64 px) in a model folder, once per module."""
    import torch

    from model_zoo.architectures.student import card_template
    from model_zoo.cards import SYNTHETIC_INTENDED_USE
    from model_zoo.checkpoints import save_checkpoint
    from model_zoo.registry import get_model

    torch.manual_seed(0)
    card = card_template(
        name="Tiny demo", version="0", licence="test", intended_use=SYNTHETIC_INTENDED_USE,
        backbone="resnet18", input_size=64,
    )  # fmt: skip
    model = get_model(card.architecture, **card.architecture_kwargs)
    out = tmp_path_factory.mktemp("model")
    save_checkpoint(model, card, out)
    return out
