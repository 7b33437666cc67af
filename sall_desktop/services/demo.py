"""The demo folder: synthetic fundus photographs generated on first run into the data folder.

Public fundus datasets cannot ship with the app, so a fresh install opens on images drawn by
``model_zoo.datasets.benchmark``. They are generated once (a few seconds, off the GUI thread)
into a temporary folder that is renamed into place only when complete, so an interrupted first
run never leaves a half-filled demo behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sall_desktop.services.paths import data_dir

DEMO_DIR_NAME = "demo"
DEMO_IMAGES = 60
DEMO_SIZE = 896
"""Long side of the demo images in pixels: large enough to zoom into, fast to generate."""
DEMO_SEED = 20260101
DEMO_WORKERS = 2
"""Render threads; the images do not depend on it."""
READY_MARKER = ".sall-demo-ready"
_TEMP_PREFIX = ".demo-partial-"


def demo_folder(root: Path | None = None) -> Path:
    """Where the demo folder lives (``<data dir>/demo`` unless ``root`` is given)."""
    return (root if root is not None else data_dir()) / DEMO_DIR_NAME


def demo_ready(folder: Path | None = None) -> bool:
    """True when the demo folder was generated completely."""
    return (folder if folder is not None else demo_folder()).joinpath(READY_MARKER).is_file()


def ensure_demo_folder(
    folder: Path | None = None,
    *,
    n: int = DEMO_IMAGES,
    seed: int = DEMO_SEED,
    size: int = DEMO_SIZE,
) -> Path:
    """Return the demo folder, generating it first if it is missing or incomplete.

    Args:
        folder: where the demo goes (default ``<data dir>/demo``).
        n: number of images (> 0).
        seed: generator seed; the same seed gives the same images.
        size: long side of each image in pixels.

    Raises:
        OSError: the data folder is not writable (the message names the folder).

    Example:
        >>> folder = ensure_demo_folder()  # a few seconds on first run, instant afterwards
    """
    target = folder if folder is not None else demo_folder()
    if demo_ready(target):
        return target
    if n <= 0:
        raise ValueError("the demo needs at least one image")
    # Imported here: the generator pulls in drawing code the window does not need to start.
    from model_zoo.datasets.benchmark import write_synthetic_dataset

    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(_TEMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted first run
    partial = parent / f"{_TEMP_PREFIX}{os.getpid()}"
    write_synthetic_dataset(partial, n, seed=seed, size=size, workers=DEMO_WORKERS)
    (partial / READY_MARKER).write_text("complete\n", encoding="utf-8")
    if target.exists():
        # An incomplete demo from an older run (no marker): it holds only generated images.
        shutil.rmtree(target)
    os.replace(partial, target)
    return target
