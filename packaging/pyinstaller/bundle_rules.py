"""What the SALL Desktop bundle keeps: Qt plugin allow-list, CUDA trimming, ELF dependency closure.

Imported by ``sall_desktop.spec`` (PyInstaller executes the spec with its own globals; this
module is plain Python so that ``tests/packaging`` can check the rules without building).

Trimming works on PyInstaller's TOC entries ``(dest_name, src_name, typecode)`` after Analysis:

* Qt plugins: only the folders and files in :data:`QT_PLUGINS` are kept; a plugin we drop
  would otherwise drag in its libraries (the virtual keyboard plugin alone pulls QtQuick + QtQml).
* Prunable libraries (Qt's ``Qt/lib``, ICU, the ``nvidia/*`` CUDA wheels in a CPU bundle) are kept
  only if another kept binary needs them at load time (ELF ``DT_NEEDED``, transitively). Everything
  else (extension modules, kept plugins, ``torch/lib``) is a root of that closure.
* CPU bundle: torch's lazily ``dlopen``-ed CUDA-only libraries are dropped by name
  (:data:`TORCH_CUDA_LAZY`), and so is everything of the CUDA wheels that no load-time chain needs
  (cuDNN's engine libraries, cuSOLVER, NVRTC builtins, profilers, nvshmem transports).

The closure is computed on Linux only (ELF); elsewhere only the allow-lists apply.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath

TocEntry = tuple[str, str, str]

QT_PLUGINS: dict[str, frozenset[str] | None] = {
    # Linux desktop (xcb, also under XWayland), headless tests/self-test, and a last resort.
    "platforms": frozenset({"qxcb", "qoffscreen", "qminimal", "qwindows", "qcocoa"}),
    "xcbglintegrations": None,
    # PNG and BMP are built into QtGui; fundus photographs also come as JPEG and TIFF; SVG icons.
    "imageformats": frozenset({"qjpeg", "qtiff", "qsvg", "qico"}),
    "iconengines": frozenset({"qsvgicon"}),
    # Dead keys and input methods in the notes field (graders type in many languages).
    "platforminputcontexts": frozenset(
        {"composeplatforminputcontextplugin", "ibusplatforminputcontextplugin"}
    ),
    # Native file dialogs through the XDG portal (D-Bus only). Not qgtk3: it links the system's
    # GTK 3, and PyInstaller would bundle half of GTK's dependencies next to it.
    "platformthemes": frozenset({"qxdgdesktopportal"}),
    # Windows and macOS look and feel.
    "styles": None,
}
"""Plugin folder -> kept plugin base names (``None``: the whole folder). Others are dropped."""

QT_TRANSLATIONS_KEEP = ("qtbase_",)
"""Qt translation files kept (standard dialog buttons); QML/Designer/WebEngine ones are dropped."""

TORCH_CUDA_LAZY = frozenset({"libtorch_cuda_linalg.so", "libcaffe2_nvrtc.so"})
"""torch/lib files that torch ``dlopen``s only when a CUDA op needs them: dropped on CPU."""

EXCLUDED_MODULES = (
    # GUI toolkits and dev tools we never use in the app.
    "tkinter",
    "_tkinter",
    "IPython",
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "importlinter",
    "sklearn",
    "scipy",
    "pandas",
    # torch extras: Triton (~0.9 GB, only for torch.compile on GPU) and TensorBoard. (Not
    # torch.testing._internal: torch 2.14 imports parts of it at `import torch`.)
    "triton",
    "torch.utils.tensorboard",
    "tensorboard",
    # Qt modules outside PySide6-Essentials' core three (QtSvg stays for SVG icons).
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtQuickWidgets",
    "PySide6.QtQuickControls2",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.QtWebEngineQuick",
    "PySide6.QtWebChannel",
    "PySide6.QtWebSockets",
    "PySide6.Qt3DCore",
    "PySide6.Qt3DRender",
    "PySide6.QtMultimedia",
    "PySide6.QtMultimediaWidgets",
    "PySide6.QtDesigner",
    "PySide6.QtUiTools",
    "PySide6.QtTest",
    "PySide6.QtSql",
    "PySide6.QtNetwork",
    "PySide6.QtPdf",
    "PySide6.QtPdfWidgets",
    "PySide6.QtHelp",
    "PySide6.QtCharts",
    "PySide6.QtGraphs",
    "PySide6.QtDataVisualization",
    "PySide6.QtBluetooth",
    "PySide6.QtPositioning",
    "PySide6.QtLocation",
    "PySide6.QtSerialPort",
    "PySide6.QtTextToSpeech",
    "PySide6.QtRemoteObjects",
    "PySide6.QtScxml",
    "PySide6.QtStateMachine",
    "PySide6.QtHttpServer",
)
"""Modules never collected (``Analysis(excludes=...)``)."""

_DT_NEEDED = 1
_SHT_DYNAMIC = 6


def elf_needed(path: str | os.PathLike[str]) -> list[str] | None:
    """The ``DT_NEEDED`` entries (sonames) of a 64-bit little-endian ELF file.

    Reads only the headers, the dynamic section and its string table (libtorch_cuda is 0.5 GB).

    Args:
        path: a shared library or executable.

    Returns:
        The needed sonames in file order, ``[]`` for an ELF without them, or ``None`` when the
        file is not a 64-bit little-endian ELF (callers then keep it: unknown means needed).
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4:6] != b"\x02\x01":
                return None
            (shoff,) = struct.unpack_from("<Q", header, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
            handle.seek(shoff)
            table = handle.read(shentsize * shnum)
            if shentsize < 64 or len(table) < shentsize * shnum:
                return None
            sections = [
                struct.unpack_from("<4xI16xQQI", table, i * shentsize) for i in range(shnum)
            ]
            needed: list[str] = []
            for kind, offset, size, link in sections:
                if kind != _SHT_DYNAMIC or link >= len(sections):
                    continue
                handle.seek(offset)
                dynamic = handle.read(size)
                _, str_offset, str_size, _ = sections[link]
                handle.seek(str_offset)
                strings = handle.read(str_size)
                for tag, value in struct.iter_unpack("<qQ", dynamic[: len(dynamic) // 16 * 16]):
                    if tag == 0:
                        break
                    if tag == _DT_NEEDED and value < len(strings):
                        end = strings.find(b"\0", value)
                        needed.append(strings[value : end if end >= 0 else None].decode())
            return needed
    except (OSError, struct.error, UnicodeDecodeError):
        return None


def _plugin_name(file_name: str) -> str:
    stem = file_name.split(".")[0]
    return stem.removeprefix("lib")


def keep_qt_plugin(dest: str) -> bool:
    """False for a Qt plugin outside :data:`QT_PLUGINS`; True for every non-plugin file."""
    parts = PurePosixPath(dest.replace("\\", "/")).parts
    if "plugins" not in parts:
        return True
    at = parts.index("plugins")
    if at == 0 or parts[at - 1] not in ("Qt", "PySide6") or len(parts) < at + 3:
        return True
    folder, file_name = parts[at + 1], parts[-1]
    if folder not in QT_PLUGINS:
        return False
    allowed = QT_PLUGINS[folder]
    return allowed is None or _plugin_name(file_name) in allowed


def keep_qt_translation(dest: str) -> bool:
    """False for a Qt translation (``.qm``) other than :data:`QT_TRANSLATIONS_KEEP`."""
    path = PurePosixPath(dest.replace("\\", "/"))
    if path.suffix != ".qm" or "translations" not in path.parts:
        return True
    return path.name.startswith(QT_TRANSLATIONS_KEEP)


def is_prunable(dest: str, *, cpu_only: bool) -> bool:
    """True for a library kept only when some kept binary needs it (see module docstring)."""
    path = PurePosixPath(dest.replace("\\", "/"))
    parts = path.parts
    if "Qt" in parts and "lib" in parts and path.name.startswith(("libQt6", "libicu")):
        return True
    return cpu_only and len(parts) > 1 and parts[0] == "nvidia"


def _resolve_symlink(dest: str, target: str) -> str:
    joined = PurePosixPath(dest).parent / target
    return os.path.normpath(str(joined)).replace("\\", "/")


def trim_binaries(
    binaries: Sequence[TocEntry],
    *,
    cpu_only: bool,
    needed_of: Callable[[str], list[str] | None] = elf_needed,
    log: Callable[[str], None] = print,
) -> list[TocEntry]:
    """Apply the plugin allow-list, the CPU-only drops and the load-time closure.

    Args:
        binaries: ``Analysis.binaries``.
        cpu_only: drop what only a CUDA run needs (see module docstring).
        needed_of: ``src path -> sonames`` (tests pass a fake).
        log: receives one summary line per dropped group.

    Returns:
        The kept entries, in the original order.
    """
    files = [e for e in binaries if e[2] != "SYMLINK"]
    kept: dict[str, TocEntry] = {}
    dropped_plugins: list[str] = []
    for entry in files:
        dest = entry[0].replace("\\", "/")
        if not keep_qt_plugin(dest):
            dropped_plugins.append(dest)
        elif cpu_only and PurePosixPath(dest).name in TORCH_CUDA_LAZY:
            dropped_plugins.append(dest)
        else:
            kept[dest] = entry
    roots = [d for d in kept if not is_prunable(d, cpu_only=cpu_only)]
    by_name: dict[str, list[str]] = {}
    for dest in kept:
        by_name.setdefault(PurePosixPath(dest).name, []).append(dest)
    reachable: set[str] = set()
    queue = list(roots)
    while queue:
        dest = queue.pop()
        if dest in reachable:
            continue
        reachable.add(dest)
        needed = needed_of(kept[dest][1])
        for soname in needed or ():
            queue.extend(d for d in by_name.get(soname, ()) if d not in reachable)
    pruned = [d for d in kept if d not in reachable]
    for dest in pruned:
        del kept[dest]
    if dropped_plugins:
        log(f"bundle_rules: dropped {len(dropped_plugins)} Qt plugins / lazy CUDA libraries")
    if pruned:
        sources = files_by_dest(files)
        size = sum(_size(sources[d]) for d in pruned)
        log(f"bundle_rules: dropped {len(pruned)} unneeded libraries ({size / 2**20:,.0f} MiB)")
    out: list[TocEntry] = []
    for entry in binaries:
        dest = entry[0].replace("\\", "/")
        if entry[2] == "SYMLINK":
            if _resolve_symlink(dest, entry[1]) in kept:
                out.append(entry)
        elif dest in kept:
            out.append(entry)
    return out


def files_by_dest(entries: Iterable[TocEntry]) -> dict[str, str]:
    """``dest -> src`` for TOC entries (``dest`` with forward slashes)."""
    return {e[0].replace("\\", "/"): e[1] for e in entries}


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def drop_dangling_symlinks(
    binaries: Sequence[TocEntry], datas: Sequence[TocEntry]
) -> tuple[list[TocEntry], list[TocEntry]]:
    """Remove ``SYMLINK`` entries (in either list) whose target is no longer collected.

    PyInstaller records the top-level aliases it creates for libraries in sub-folders
    (``libcusolver.so.12 -> nvidia/cu13/lib/...``) as ``SYMLINK`` entries, in ``datas`` as well.
    """
    targets = {e[0].replace("\\", "/") for e in (*binaries, *datas) if e[2] != "SYMLINK"}
    links = {e[0].replace("\\", "/"): e for e in (*binaries, *datas) if e[2] == "SYMLINK"}
    alive: set[str] = set()
    changed = True
    while changed:  # a link may point at another link
        changed = False
        for dest, entry in links.items():
            if dest not in alive and _resolve_symlink(dest, entry[1]) in targets | alive:
                alive.add(dest)
                changed = True

    def keep(entry: TocEntry) -> bool:
        return entry[2] != "SYMLINK" or entry[0].replace("\\", "/") in alive

    return [e for e in binaries if keep(e)], [e for e in datas if keep(e)]


def trim_datas(datas: Sequence[TocEntry]) -> list[TocEntry]:
    """Drop Qt translations outside :data:`QT_TRANSLATIONS_KEEP` and C/C++ build files."""
    drop_suffixes = (".h", ".hpp", ".cuh", ".cpp", ".cmake", ".a", ".lib", ".pyi")
    out = []
    for entry in datas:
        dest = entry[0].replace("\\", "/")
        if not keep_qt_translation(dest) or dest.endswith(drop_suffixes):
            continue
        if dest.startswith(("nvidia/", "triton/")) and "/include/" in dest:
            continue
        out.append(entry)
    return out
