"""``sall-desktop --self-test``: prove an installation works end to end, offscreen, in seconds.

Steps, each timed; a step that needs an earlier one that failed is reported as not run:

1. ``environment``: versions, frozen or not, OpenCV's pixel cap in force (R15).
2. ``load model``: the bundled demo model (or ``--model DIR``), SHA-256 checked against its card.
3. ``write images``: one synthetic fundus photograph (ICDR 2), written as JPEG, as DICOM JPEG
   Baseline (the OpenCV fast path) and as DICOM JPEG 2000 (pydicom + pylibjpeg plugins, which a
   frozen build loses when their entry-point metadata is not bundled).
4. ``decode``: each file through :func:`model_zoo.io.read_image`, checking size and SHA-256.
5. ``grade``: the model's calibrated DR/AMD output for every decoded image.
6. ``attention map``: one attention map (the model's default method) for the DR head.
7. ``store``: a scratch database in a temporary folder (never the user's): open, write one
   grading, verify the audit hash chain, ``integrity_check``, close.
8. ``qt``: only when PySide6 is installed. Services never import Qt (docs/architecture.md), so a
   child process creates an offscreen ``QApplication`` and a widget and decodes a JPEG through
   Qt's image plugins. From source the child is ``python -c``; in the frozen bundle
   ``sys.executable`` is the app itself, so the child is the bundle started with
   ``SALL_DESKTOP_QT_PROBE=<result file>``, which the bundle's runtime hook answers before the
   app starts (``packaging/pyinstaller/runtime_hooks/pyi_rth_sall_qt_probe.py``). The result
   goes through a file because a windowed executable has no stdout. An install without PySide6
   (the headless CI job) reports the step as skipped, which counts as passed.

Nothing is written outside the temporary folder, which is removed afterwards.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any, NamedTuple

BUNDLE_INFO = "sall-bundle.json"
"""Written by the PyInstaller spec into the bundle folder: version, cpu/cuda flavour, torch."""

QT_PROBE_ENV = "SALL_DESKTOP_QT_PROBE"
"""Names the probe's result file; when set, the frozen ``sall-desktop`` runs only the Qt probe."""

QT_PROBE_JPEG_ENV = "SALL_DESKTOP_QT_PROBE_JPEG"
"""The JPEG (hex) the probe decodes through Qt's image plugins."""

QT_PROBE_TIMEOUT_S = 60.0

# Same checks as packaging/pyinstaller/runtime_hooks/pyi_rth_sall_qt_probe.py (keep in step):
# offscreen platform plugin, a widget, and Qt's JPEG image-format plugin. The result goes to a
# file because a windowed frozen executable has no stdout.
_QT_PROBE_SOURCE = """
import importlib
import os
result = os.environ["SALL_DESKTOP_QT_PROBE"]
def report(line):
    with open(result + ".partial", "w", encoding="utf-8") as handle:
        handle.write(line + "\\n")
    os.replace(result + ".partial", result)
os.environ["QT_QPA_PLATFORM"] = "offscreen"
try:
    # Imported by name: Qt stays out of the services layer's own imports.
    QtCore, QtGui, QtWidgets = (
        importlib.import_module("PySide6." + m) for m in ("QtCore", "QtGui", "QtWidgets")
    )
    app = QtWidgets.QApplication(["sall-qt-probe"])
    widget = QtWidgets.QWidget()
    widget.resize(64, 64)
    widget.show()
    app.processEvents()
    jpeg = bytes.fromhex(os.environ.get("SALL_DESKTOP_QT_PROBE_JPEG", ""))
    image = QtGui.QImage.fromData(QtCore.QByteArray(jpeg))
    supported = QtGui.QImageReader.supportedImageFormats()
    formats = " ".join(sorted(bytes(f.data()).decode() for f in supported))
    widget.close()
    if image.isNull():
        report("error Qt cannot decode JPEG; image formats: " + formats)
        raise SystemExit(3)
    report("ok " + app.platformName() + " Qt " + QtCore.qVersion() + "; image formats: " + formats)
except Exception as exc:
    report("error " + type(exc).__name__ + ": " + str(exc))
    raise SystemExit(4)
"""

# A 1x1 JPEG, so the probe needs no file and tests Qt's own JPEG plugin.
_TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c"
    "1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0"
    "000b080001000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bff"
    "c400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a10823"
    "42b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a5354555657"
    "58595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aa"
    "b2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8"
    "f9faffda0008010100003f00fbd3ffd9"
)

# Passed to the frozen app: if its probe hook were missing, argparse refuses it at once instead
# of the window opening offscreen until the timeout.
_FROZEN_PROBE_ARG = "--sall-qt-probe"


class SelfTestStep(NamedTuple):
    """One step's outcome.

    Attributes:
        name: short step name, e.g. ``"load model"``.
        ok: True when the step passed (or was legitimately skipped, see ``detail``).
        detail: what was checked or, on failure, the grader-readable reason (no traceback).
        seconds: wall-clock duration of the step in seconds (0.0 when it did not run).
    """

    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SelfTestReport:
    """The whole self-test.

    Attributes:
        ok: True when every step passed; the process exit status is 0 exactly then.
        steps: the steps in the order they ran.
        header: one line naming the app version, build kind and main library versions.
    """

    ok: bool
    steps: tuple[SelfTestStep, ...]
    header: str = ""

    @property
    def seconds(self) -> float:
        """Total time of all steps in seconds."""
        return sum(step.seconds for step in self.steps)

    @property
    def first_failure(self) -> SelfTestStep | None:
        """The first step that failed, or None."""
        return next((step for step in self.steps if not step.ok), None)

    def format(self) -> str:
        """A plain-text report, one line per step, ending with PASSED or FAILED and why."""
        width = max((len(step.name) for step in self.steps), default=0)
        lines = [self.header] if self.header else []
        for step in self.steps:
            mark = " ok " if step.ok else "FAIL"
            lines.append(f"  [{mark}] {step.name:<{width}}  {step.seconds:6.2f} s  {step.detail}")
        failure = self.first_failure
        if failure is None:
            lines.append(f"self-test PASSED in {self.seconds:.1f} s")
        else:
            lines.append(f"self-test FAILED at '{failure.name}': {failure.detail}")
        return "\n".join(lines)


class _StepFailed(Exception):
    """A check inside a step failed; the message is the grader-readable reason."""


@dataclass
class _Run:
    steps: list[SelfTestStep] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str, needs: tuple[str, ...], body: Callable[[], str]) -> None:
        passed = {step.name for step in self.steps if step.ok}
        missing = [n for n in needs if n not in passed]
        if missing:
            self.steps.append(SelfTestStep(name, False, f"not run ('{missing[0]}' failed)", 0.0))
            return
        start = time.perf_counter()
        try:
            detail = body()
            ok = True
        except Exception as exc:  # every failure becomes a report line, never a traceback
            detail, ok = _describe(exc), False
        self.steps.append(SelfTestStep(name, ok, detail, time.perf_counter() - start))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _StepFailed):
        return str(exc)
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def is_frozen() -> bool:
    """True inside the PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False))


def _bundle_kind() -> str:
    """``"bundle, cpu 0.1.0"`` from the bundle's ``sall-bundle.json``; ``"source"`` unfrozen."""
    if not is_frozen():
        return "source"
    try:
        info = json.loads(
            Path(getattr(sys, "_MEIPASS", ".")).joinpath(BUNDLE_INFO).read_text(encoding="utf-8")
        )
        return f"bundle, {info['flavour']} build"
    except (OSError, ValueError, KeyError, TypeError):
        return "bundle"


def _header() -> str:
    kind = _bundle_kind()
    return (
        f"SALL Desktop {_version('sall-desktop')} self-test ({kind}; Python "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}; "
        f"torch {_version('torch')}, PySide6 {_version('PySide6-Essentials')})"
    )


# ---------------------------------------------------------------------------- steps


def _environment(run: _Run) -> str:
    # Importing model_zoo.io sets the cap if nothing earlier did; a bundle's runtime hook sets it
    # first. Either way it must hold before anything decodes (R15).
    import model_zoo.io  # noqa: F401

    cap = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "")
    if not cap.isdigit() or int(cap) <= 0:
        raise _StepFailed(f"OPENCV_IO_MAX_IMAGE_PIXELS is not a positive number: {cap!r}")
    where = getattr(sys, "_MEIPASS", None) if is_frozen() else None
    suffix = f"; bundle folder {where}" if where else ""
    return f"OpenCV pixel cap {int(cap):,}{suffix}"


def _load_model(run: _Run, model_dir: Path | None, device: str | None) -> str:
    from model_zoo.weights import demo_model_dir
    from sall_desktop.services.inference import load_predictor

    folder = demo_model_dir() if model_dir is None else Path(model_dir)
    if not folder.exists():
        raise _StepFailed(f"there is no model at {folder}")
    predictor = load_predictor(folder, device=device)
    run.state["predictor"] = predictor
    card = predictor.card
    heads = ", ".join(f"{t.name} ({t.num_classes})" for t in card.tasks)
    return (
        f"{card.name} {card.version} ({card.id[:12]}), heads {heads}, "
        f"{card.input_size} px, on {predictor.device_note}"
    )


def _write_images(run: _Run, folder: Path) -> str:
    from PIL import Image

    from model_zoo.datasets.synthetic import FundusSpec, render_fundus
    from model_zoo.fileio import atomic_write_bytes
    from model_zoo.io.dicom_write import write_dicom

    rgb = render_fundus(FundusSpec(seed=0, size=512, dr_grade=2, amd_grade=0, laterality="R")).rgb
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92)
    jpeg = folder / "self-test.jpg"
    atomic_write_bytes(jpeg, buffer.getvalue())
    baseline = folder / "self-test-baseline.dcm"
    write_dicom(baseline, rgb, transfer_syntax="jpeg_baseline", laterality="R", patient_id="ST")
    j2k = folder / "self-test-j2k.dcm"
    write_dicom(j2k, rgb, transfer_syntax="jpeg2000", laterality="R", patient_id="ST")
    files = (jpeg, baseline, j2k)
    run.state["files"] = files
    run.state["shape"] = rgb.shape
    sizes = ", ".join(f"{p.name} {p.stat().st_size // 1024} KiB" for p in files)
    return f"512x512 ICDR 2 synthetic fundus: {sizes}"


def _decode(run: _Run) -> str:
    from model_zoo.io import hash_file, read_image

    files: tuple[Path, ...] = run.state["files"]
    shape = run.state["shape"]
    decoded, kinds = [], []
    for path in files:
        loaded = read_image(path)
        if loaded.rgb.shape != shape:
            raise _StepFailed(f"{path.name} decoded to {loaded.rgb.shape}, expected {shape}")
        if loaded.meta.sha256 != hash_file(path):
            raise _StepFailed(f"{path.name}: the decoder's SHA-256 differs from the file's")
        decoded.append((loaded.rgb, loaded.meta.sha256))
        kinds.append(loaded.meta.file_format)
    run.state["decoded"] = decoded
    return f"{', '.join(kinds)} decoded to {shape[1]}x{shape[0]} RGB; SHA-256 match the files"


def _decode_processes(run: _Run) -> str:
    """The app's decode pool starts (spawn works in this build), agrees, and is memory-capped."""
    from sall_desktop.services.catalogue import FoundFile, describe_files
    from sall_desktop.services.decode_pool import DecodePool, allocation_fits

    files: tuple[Path, ...] = run.state["files"]
    found = [FoundFile(path, path.stat().st_size, 0) for path in files]
    pool = DecodePool(1)
    try:
        outcomes = pool.run(describe_files, found, name=str(files[0]))
        capped = sys.platform.startswith("linux")
        if capped and pool.run(allocation_fits, 2 * pool.memory_limit, name="probe"):
            raise _StepFailed("a decode process could reserve more memory than its cap")
    finally:
        pool.close()
    for path, outcome, (_, sha) in zip(files, outcomes, run.state["decoded"], strict=True):
        if isinstance(outcome, str):
            raise _StepFailed(f"a decode process refused {path.name}: {outcome}")
        if outcome.sha256 != sha:
            raise _StepFailed(f"{path.name}: a decode process and this one disagree")
    cap = f"capped at {pool.memory_limit / 1024**3:.0f} GB" if capped else "no memory cap here"
    return f"{len(files)} files described in a decode process ({cap})"


def _grade(run: _Run) -> str:
    predictor = run.state["predictor"]
    decoded = run.state["decoded"]
    results = predictor.predict_arrays(
        [rgb for rgb, _ in decoded], sha256s=[sha for _, sha in decoded]
    )
    for result in results:
        if result.error:
            raise _StepFailed(f"the model could not grade the image: {result.error}")
        for name, head in result.heads.items():
            total = sum(head.probabilities)
            if not abs(total - 1.0) < 1e-6 or not 0 <= head.grade < len(head.probabilities):
                raise _StepFailed(f"head {name}: probabilities sum to {total}, grade {head.grade}")
    run.state["prediction"] = results[0]
    first = results[0]
    shown = ", ".join(
        f"{name} grade {head.grade} (p={head.confidence:.2f})" for name, head in first.heads.items()
    )
    return f"{len(results)} images graded; first: {shown}"


def _attention(run: _Run) -> str:
    from model_zoo.explain import GradCAM

    predictor = run.state["predictor"]
    rgb, _ = run.state["decoded"][0]
    x = predictor.transform(rgb).unsqueeze(0).to(predictor.device)
    head = (
        "dr" if any(t.name == "dr" for t in predictor.card.tasks) else predictor.card.tasks[0].name
    )
    with GradCAM(predictor.model) as cam:
        (attention,) = cam(x, head=head, output_size=(rgb.shape[0], rgb.shape[1]))
    values = attention.cam
    if values.shape != rgb.shape[:2]:
        raise _StepFailed(f"the map is {values.shape}, expected {rgb.shape[:2]}")
    low, high = float(values.min()), float(values.max())
    if not (0.0 <= low <= high <= 1.0):
        raise _StepFailed(f"map values outside [0, 1]: {low}..{high}")
    size = f"{values.shape[1]}x{values.shape[0]}"
    return f"Attention map for {head} class {attention.target_class}: {size}"


def _store(run: _Run, folder: Path) -> str:
    from sall_desktop.domain.grades import Grading, GradingSource
    from sall_desktop.store import open_store

    prediction = run.state["prediction"]
    _, sha256 = run.state["decoded"][0]
    heads = prediction.heads
    store = open_store(folder / "self-test.sqlite", startup_check="full")
    try:
        if store.read_only:
            raise _StepFailed(f"the scratch database opened read-only: {store.read_only_reason}")
        store.add_grading(
            Grading(
                image_sha256=sha256,
                grader="self-test",
                dr_grade=heads["dr"].grade if "dr" in heads else None,
                amd_grade=heads["amd"].grade if "amd" in heads else None,
                model_version=prediction.model_id,
                source=GradingSource.ACCEPTED_PREDICTION,
            )
        )
        chain = store.verify_chain()
        if not chain.ok:
            raise _StepFailed(f"the audit chain does not verify: {chain.message}")
        integrity = store.integrity_check()
        if integrity != "ok":
            raise _StepFailed(f"integrity_check: {integrity}")
        stored = store.current_grading(sha256, "self-test")
        if stored is None:
            raise _StepFailed("the grading just written cannot be read back")
    finally:
        store.close()
    return f"scratch database: 1 grading written, audit chain of {chain.checked} rows verified"


def _qt_command() -> list[str] | None:
    if is_frozen():
        return [sys.executable, _FROZEN_PROBE_ARG]
    if util.find_spec("PySide6") is None:
        return None
    return [sys.executable, "-c", _QT_PROBE_SOURCE]


def _qt(run: _Run, folder: Path) -> str:
    argv = _qt_command()
    if argv is None:
        return "skipped: PySide6 is not installed (headless install)"
    result = folder / "qt-probe.txt"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env[QT_PROBE_ENV] = str(result)
    env[QT_PROBE_JPEG_ENV] = _TINY_JPEG.hex()
    try:
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=QT_PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise _StepFailed(f"the Qt probe did not finish within {QT_PROBE_TIMEOUT_S:.0f} s") from exc
    line = result.read_text(encoding="utf-8").strip() if result.is_file() else ""
    if done.returncode == 0 and line.startswith("ok "):
        return line.removeprefix("ok ")
    if line:
        why = line.removeprefix("error ")
    elif is_frozen():
        why = "this bundle was built without the Qt probe hook (pyi_rth_sall_qt_probe)"
    else:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise _StepFailed(f"Qt could not start offscreen (exit {done.returncode}): {why}")


# ---------------------------------------------------------------------------- entry point


@contextmanager
def _scratch_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sall-self-test-") as name:
        yield Path(name)


def run_self_test(
    model_dir: Path | None = None, *, device: str | None = None, qt: bool = True
) -> SelfTestReport:
    """Run every self-test step and report; never raises for a failing check.

    Args:
        model_dir: a model folder (``card.json`` + ``weights.safetensors``) to check instead
            of the bundled demo model.
        device: ``None`` picks as the app does (CUDA, MPS, else CPU); ``"cpu"`` forces the CPU.
        qt: run the Qt probe (when PySide6 is installed); False skips it.

    Returns:
        The report; ``report.ok`` is the verdict and ``report.format()`` the text to print.

    Example:
        >>> report = run_self_test()
        >>> print(report.format())
        >>> sys.exit(0 if report.ok else 1)
    """
    run = _Run()
    with _scratch_folder() as folder:
        run.step("environment", (), lambda: _environment(run))
        run.step("load model", ("environment",), lambda: _load_model(run, model_dir, device))
        run.step("write images", ("environment",), lambda: _write_images(run, folder))
        run.step("decode", ("write images",), lambda: _decode(run))
        run.step("decode processes", ("decode",), lambda: _decode_processes(run))
        run.step("grade", ("load model", "decode"), lambda: _grade(run))
        run.step("attention map", ("load model", "decode"), lambda: _attention(run))
        run.step("store", ("grade",), lambda: _store(run, folder))
        if qt:
            run.step("qt", (), lambda: _qt(run, folder))
        run.state.clear()  # drop the model before the folder goes
    steps = tuple(run.steps)
    return SelfTestReport(all(step.ok for step in steps), steps, _header())
