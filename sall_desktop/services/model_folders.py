"""A model version's folder on disk: where versions are kept, verifying one without loading its
weights, and copying one in (card, weights and its ``sets/``) so that it is never half there.

Every read is of regular files only (``model_zoo.fileio.open_regular``): a model folder comes
from outside, and a FIFO or a link to a device in it must not block or fill the workstation.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import uuid
from pathlib import Path

from model_zoo.cards import CARD_FILENAME, WEIGHTS_FILENAME, CardError, ModelCard, read_card
from model_zoo.fileio import open_regular
from sall_desktop.services.paths import data_dir

SETS_DIRNAME = "sets"
"""The replay and reference sets a model folder may carry (``training.engine.model_sets``)."""


class ModelError(Exception):
    """A model version cannot be registered, verified, promoted or rolled back (says why)."""


def models_dir() -> Path:
    """``data_dir()/models``: where registered versions are kept (created on demand)."""
    folder = data_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    # A FIFO would block this read forever and /dev/zero never end it: regular files only.
    with open_regular(path) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model_folder(folder: Path) -> ModelCard:
    """Check a ``card.json`` + ``weights.safetensors`` folder without loading the weights.

    Returns:
        The card, whose id equals the SHA-256 of the weights file.

    Raises:
        ModelError: missing file, invalid card, or weights that do not hash to the card's id.
    """
    try:
        card = read_card(folder / CARD_FILENAME)
    except CardError as exc:
        raise ModelError(f"The model card is not usable: {exc}") from exc
    if not card.id:
        raise ModelError("The model card has no id: the model was never saved completely.")
    weights = folder / WEIGHTS_FILENAME
    try:
        digest = _sha256_file(weights)
    except OSError as exc:
        raise ModelError(f"The weights file of model {card.id[:12]} cannot be read: {exc}") from exc
    if digest != card.id:
        raise ModelError(
            f"The weights of model {card.id[:12]} were changed or damaged (SHA-256 "
            f"{digest[:12]}); it will not be used."
        )
    return card


def _copy_regular(source: str, dest: str) -> None:
    """``copytree``'s file copy, for regular files only: a ``sets/`` entry that is a FIFO or a
    link to a device would otherwise block the import or fill the disk."""
    with open_regular(source) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)


def _copy_sets(source: Path, dest: Path) -> None:
    try:
        shutil.copytree(source, dest, copy_function=_copy_regular)
    except OSError as exc:
        raise ModelError(f"The model's sets/ folder cannot be copied: {exc}") from exc


def add_sets(source: Path, dest: Path) -> None:
    """Give ``dest`` the ``sets/`` of ``source`` if it has none (a copy made before models
    carried their sets); temp folder + rename."""
    if not (source / SETS_DIRNAME).is_dir() or (dest / SETS_DIRNAME).exists():
        return
    tmp = dest / f".incoming-{SETS_DIRNAME}-{uuid.uuid4().hex}"
    try:
        with contextlib.suppress(OSError, ModelError):  # the model works without its sets
            _copy_sets(source / SETS_DIRNAME, tmp)
            tmp.rename(dest / SETS_DIRNAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_in(folder: Path, card: ModelCard) -> Path:
    """Copy a verified folder (card, weights and its ``sets/`` if any) to ``models_dir()/<id>``
    (temp folder + rename: never half there)."""
    dest = models_dir() / card.id
    if dest.is_dir():
        try:
            verify_model_folder(dest)
            add_sets(folder, dest)
            return dest
        except ModelError:
            shutil.rmtree(dest)  # a damaged earlier copy of the same id: replace it
    tmp = models_dir() / f".incoming-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for name in (WEIGHTS_FILENAME, CARD_FILENAME):
            shutil.copyfile(folder / name, tmp / name)
        if (folder / SETS_DIRNAME).is_dir():
            _copy_sets(folder / SETS_DIRNAME, tmp / SETS_DIRNAME)
        if verify_model_folder(tmp).id != card.id:
            raise ModelError("The model changed while it was being copied.")
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


__all__ = ["SETS_DIRNAME", "ModelError", "add_sets", "copy_in", "models_dir", "verify_model_folder"]
