"""The PyInstaller bundle: trimming rules (fast, always) and the built bundle (long, if built).

The rules in ``packaging/pyinstaller/bundle_rules.py`` decide what the bundle keeps; they are
checked here on real files of this environment. The bundle checks run ``dist/sall-desktop``'s
own ``--self-test`` and ``sall-train --help`` and look at what was collected; they are skipped
unless ``make package`` has built the bundle.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from model_zoo.io.limits import DEFAULT_MAX_PIXELS

ROOT = Path(__file__).resolve().parents[2]
PYINSTALLER = ROOT / "packaging" / "pyinstaller"
BUNDLE = ROOT / "dist" / "sall-desktop"
GUI = BUNDLE / ("sall-desktop.exe" if sys.platform == "win32" else "sall-desktop")
TRAIN = BUNDLE / ("sall-train.exe" if sys.platform == "win32" else "sall-train")


def _rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_rules", PYINSTALLER / "bundle_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = _rules()


# ------------------------------------------------------------------ rules (fast)


def test_runtime_hook_pixel_cap_matches_model_zoo() -> None:
    hook = (PYINSTALLER / "runtime_hooks" / "pyi_rth_sall_env.py").read_text(encoding="utf-8")
    assert f'"OPENCV_IO_MAX_IMAGE_PIXELS", str({DEFAULT_MAX_PIXELS:_})' in hook


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", False),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
        ("PySide6/Qt/plugins/imageformats/libqjpeg.so", True),
        ("PySide6/Qt/plugins/imageformats/libqtiff.so", True),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
        ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", False),
        ("PySide6/Qt/plugins/qmltooling/libqmldbg_tcp.so", False),
        ("PySide6/Qt/plugins/sqldrivers/libqsqlite.so", False),
        ("PySide6/plugins/platforms/qwindows.dll", True),
        ("PySide6/plugins/imageformats/qjpeg.dll", True),
        ("PySide6/Qt/lib/libQt6Core.so.6", True),  # not a plugin: the closure decides
        ("torch/lib/libtorch_cpu.so", True),
    ],
)
def test_qt_plugin_allow_list(dest: str, kept: bool) -> None:
    assert rules.keep_qt_plugin(dest) is kept


def test_elf_needed_reads_a_real_library() -> None:
    spec = importlib.util.find_spec("torch")  # its location only: no 3-s import
    assert spec is not None and spec.origin is not None
    lib = Path(spec.origin).parent / "lib"
    found = rules.elf_needed(sorted(lib.glob("libtorch_cpu.*"))[0])
    assert found is not None and "libc10.so" in found
    assert rules.elf_needed(ROOT / "pyproject.toml") is None


def test_trim_keeps_the_load_time_closure_only() -> None:
    graph = {
        "/src/_C.so": ["libtorch_cuda.so"],
        "/src/libtorch_cuda.so": ["libcudart.so.13", "libcudnn.so.9"],
        "/src/libcudart.so.13": [],
        "/src/libcudnn.so.9": [],
        "/src/libcudnn_engines.so.9": [],  # dlopen-ed by cuDNN at run time only
        "/src/libtorch_cuda_linalg.so": ["libcusolver.so.12"],
        "/src/libcusolver.so.12": [],
        "/src/QtWidgets.abi3.so": ["libQt6Widgets.so.6"],
        "/src/libQt6Widgets.so.6": [],
        "/src/libQt6Quick.so.6": [],
        "/src/libqxcb.so": ["libQt6XcbQpa.so.6"],
        "/src/libQt6XcbQpa.so.6": [],
        "/src/libqvnc.so": ["libQt6Network.so.6"],
        "/src/libQt6Network.so.6": [],
    }
    toc = [
        ("torch/_C.so", "/src/_C.so", "EXTENSION"),
        ("torch/lib/libtorch_cuda.so", "/src/libtorch_cuda.so", "BINARY"),
        ("torch/lib/libtorch_cuda_linalg.so", "/src/libtorch_cuda_linalg.so", "BINARY"),
        ("nvidia/cu13/lib/libcudart.so.13", "/src/libcudart.so.13", "BINARY"),
        ("nvidia/cu13/lib/libcusolver.so.12", "/src/libcusolver.so.12", "BINARY"),
        ("nvidia/cudnn/lib/libcudnn.so.9", "/src/libcudnn.so.9", "BINARY"),
        ("nvidia/cudnn/lib/libcudnn_engines.so.9", "/src/libcudnn_engines.so.9", "BINARY"),
        ("libcudnn.so.9", "nvidia/cudnn/lib/libcudnn.so.9", "SYMLINK"),
        ("libcusolver.so.12", "nvidia/cu13/lib/libcusolver.so.12", "SYMLINK"),
        ("PySide6/QtWidgets.abi3.so", "/src/QtWidgets.abi3.so", "EXTENSION"),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", "/src/libQt6Widgets.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6Quick.so.6", "/src/libQt6Quick.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6XcbQpa.so.6", "/src/libQt6XcbQpa.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6Network.so.6", "/src/libQt6Network.so.6", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/src/libqxcb.so", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", "/src/libqvnc.so", "BINARY"),
    ]
    logged: list[str] = []

    cpu = rules.trim_binaries(toc, cpu_only=True, needed_of=graph.get, log=logged.append)
    gpu = rules.trim_binaries(toc, cpu_only=False, needed_of=graph.get, log=logged.append)

    assert {e[0] for e in cpu} == {
        "torch/_C.so",
        "torch/lib/libtorch_cuda.so",
        "nvidia/cu13/lib/libcudart.so.13",
        "nvidia/cudnn/lib/libcudnn.so.9",
        "libcudnn.so.9",  # a symlink follows its target
        "PySide6/QtWidgets.abi3.so",
        "PySide6/Qt/lib/libQt6Widgets.so.6",
        "PySide6/Qt/lib/libQt6XcbQpa.so.6",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
    }
    gpu_names = {e[0] for e in gpu}
    assert {"nvidia/cudnn/lib/libcudnn_engines.so.9", "libcusolver.so.12"} <= gpu_names
    assert "torch/lib/libtorch_cuda_linalg.so" in gpu_names
    assert "PySide6/Qt/lib/libQt6Quick.so.6" not in gpu_names  # Qt is trimmed in both
    assert "PySide6/Qt/lib/libQt6Network.so.6" not in gpu_names  # only the dropped vnc used it
    assert any("unneeded libraries" in line for line in logged)


def test_trim_datas_drops_translations_and_headers() -> None:
    toc = [
        ("PySide6/Qt/translations/qtbase_de.qm", "/s/a", "DATA"),
        ("PySide6/Qt/translations/qtdeclarative_de.qm", "/s/b", "DATA"),
        ("torch/include/ATen/ATen.h", "/s/c", "DATA"),
        ("nvidia/cu13/include/cuda.h", "/s/d", "DATA"),
        ("sall_desktop/store/migrations/0001_initial.sql", "/s/e", "DATA"),
    ]
    kept = {e[0] for e in rules.trim_datas(toc)}
    assert kept == {
        "PySide6/Qt/translations/qtbase_de.qm",
        "sall_desktop/store/migrations/0001_initial.sql",
    }


# ------------------------------------------------------------------ the built bundle (long)

needs_bundle = pytest.mark.skipif(not GUI.is_file(), reason="no bundle: run `make package`")


def _run(argv: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SALL_DESKTOP_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.long
@needs_bundle
def test_bundle_self_test_passes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    started = time.perf_counter()
    done = _run([str(GUI), "--self-test"], home)
    seconds = time.perf_counter() - started

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "(bundle" in lines[0]
    for step in ("load model", "decode", "grade", "attention map", "store", "qt"):
        assert any(f"[ ok ] {step}" in line for line in lines), done.stdout
    assert lines[-1].startswith("self-test PASSED")
    assert list(home.iterdir()) == []
    print(f"bundle self-test: {seconds:.1f} s wall")


@pytest.mark.long
@needs_bundle
def test_bundle_rejects_tampered_weights(tmp_path: Path) -> None:
    demo = BUNDLE / "_internal" / "model_zoo" / "weights" / "demo"
    if not (demo / "card.json").is_file():
        pytest.skip("the bundle has no demo model")
    tampered = tmp_path / "tampered"
    shutil.copytree(demo, tampered)
    weights = tampered / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    home = tmp_path / "home"
    home.mkdir()

    done = _run([str(GUI), "--self-test", "--model", str(tampered)], home)

    assert done.returncode == 1
    assert "self-test FAILED at 'load model'" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.long
@needs_bundle
def test_bundle_train_cli_is_a_console_sibling(tmp_path: Path) -> None:
    done = _run([str(TRAIN), "--help"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
    assert TRAIN.parent == GUI.parent  # the frozen GUI finds it next to sys.executable


@pytest.mark.long
@needs_bundle
def test_bundle_contents_are_trimmed() -> None:
    internal = BUNDLE / "_internal"
    names = {p.relative_to(internal).as_posix() for p in internal.rglob("*")}
    assert "torchvision/_C_stable.so" in names or sys.platform != "linux"
    assert "sall_desktop/store/migrations/0001_initial.sql" in names
    assert not any(n.startswith("triton/") for n in names)
    assert not any("tkinter" in n for n in names)
    assert not any("libQt6Quick" in n or "libQt6Qml" in n for n in names)
    plugins = {n.split("/")[-2:][0] for n in names if "/plugins/" in n and n.count("/") >= 4}
    assert not plugins & {"qmltooling", "sqldrivers", "wayland-shell-integration", "tls"}
    info = json.loads((internal / "sall-bundle.json").read_text(encoding="utf-8"))
    assert info["version"] and info["flavour"] in ("cpu", "cuda")
    if info["flavour"] == "cpu":
        assert not any("libcudnn_engines" in n or "libcusolver" in n for n in names)


def test_dangling_symlinks_are_dropped_from_both_lists() -> None:
    binaries = [
        ("nvidia/cu13/lib/libcudart.so.13", "/s/cudart", "BINARY"),
        ("libcudart.so.13", "nvidia/cu13/lib/libcudart.so.13", "SYMLINK"),
    ]
    datas = [
        ("libcusolver.so.12", "nvidia/cu13/lib/libcusolver.so.12", "SYMLINK"),  # target pruned
        ("alias.so", "libcudart.so.13", "SYMLINK"),  # a link to a live link
        ("share/icons/sall-desktop.png", "/s/png", "DATA"),
    ]
    kept_binaries, kept_datas = rules.drop_dangling_symlinks(binaries, datas)
    assert kept_binaries == binaries
    assert [e[0] for e in kept_datas] == ["alias.so", "share/icons/sall-desktop.png"]


TINY_TRAIN_CONFIG = """
[model]
backbone = "resnet18"
input_size = 64

[optim]
batch_size = 8
max_epochs = 1
steps_per_epoch = 2
lr = 1e-3

[runtime]
device = "cpu"
seed = 3
num_workers = 2
progress_interval_s = 0.0
"""


@pytest.mark.long
@needs_bundle
def test_bundle_trains_with_dataloader_workers(tmp_path: Path) -> None:
    """The frozen console trainer runs with worker processes (freeze_support in the bundle)."""
    from model_zoo.datasets.benchmark import write_synthetic_dataset
    from model_zoo.fileio import atomic_write_text
    from training.protocol.events import parse_stream
    from training.protocol.manifest import format_manifest
    from training.synth import manifest_rows

    data = tmp_path / "data"
    samples = write_synthetic_dataset(data, 24, seed=5, size=64, dicom_fraction=0.0)
    rows = manifest_rows(samples)
    manifest = data / "manifest.csv"
    atomic_write_text(manifest, format_manifest(rows))
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TRAIN_CONFIG, encoding="utf-8")
    out = tmp_path / "run"
    argv = [str(TRAIN), "train-teacher", "--task", "dr", "--manifest", str(manifest)]
    argv += ["--out", str(out), "--config", str(config)]

    done = _run(argv, tmp_path, timeout=400)

    assert done.returncode == 0, done.stderr[-3000:]
    events, errors = parse_stream(done.stdout)
    assert not errors, errors
    kinds = [type(e).__name__ for e in events]
    assert any("Finished" in k for k in kinds), kinds
    assert any((out).rglob("card.json"))
