"""Model versions that ship inside the package (and the frozen bundle): the demo model.

The weights are package data (``pyproject.toml`` ``[tool.setuptools.package-data]``) and are
collected by the PyInstaller spec into ``_internal/model_zoo/weights/``, so one path rule, the
folder next to this file, holds for a source checkout, an editable install, a wheel install and
the one-folder bundle (PyInstaller gives frozen modules a ``__file__`` inside ``sys._MEIPASS``).
No weights are ever downloaded (docs/architecture.md, Storage).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_MODEL_NAME = "demo"
"""Folder name of the bundled demo model, next to this module."""

CARD_FILENAME = "card.json"
WEIGHTS_FILENAME = "weights.safetensors"


def _package_folder() -> Path:
    # importlib.resources first: it also knows namespace and frozen importers. A zip import
    # (no real folder) falls back to __file__, which then fails the is_file() checks with the
    # same clear message as a missing model.
    root = resources.files(__name__)
    return root if isinstance(root, Path) else Path(__file__).resolve().parent


def demo_model_dir() -> Path:
    """The folder of the bundled demo model (``card.json`` + ``weights.safetensors``).

    Only checks that both files exist; loading (with the SHA-256 check of the weights against
    the card) is :func:`model_zoo.checkpoints.load_checkpoint`'s job.

    Returns:
        The absolute path of ``model_zoo/weights/demo/``.

    Raises:
        FileNotFoundError: the folder or one of its two files is missing; the message names
            the folder and how to produce the model in a source checkout (``make demo-model``).

    Example:
        >>> from model_zoo.predictor import Predictor
        >>> predictor = Predictor.from_checkpoint(demo_model_dir(), device="cpu")
    """
    folder = _package_folder() / DEMO_MODEL_NAME
    missing = [name for name in (CARD_FILENAME, WEIGHTS_FILENAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the bundled demo model is missing {' and '.join(missing)} in {folder}. "
            "In a source checkout, build it with `make demo-model`; an installed or bundled "
            "app without it was packaged incompletely (reinstall it)."
        )
    return folder
