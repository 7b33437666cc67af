"""Safe checkpoints: ``weights.safetensors`` + ``card.json`` in one directory (R12, R13).

Loading can never execute code: weights are safetensors (a JSON header and raw tensor bytes),
metadata is JSON, and nothing is unpickled. The card is read first (a regular file of bounded
size, bounded JSON nesting, capped heads, classes and input size) and the model it describes is
built on the "meta" device, which allocates nothing, to learn the tensor shapes and so how big the
weights file may be. The weights file (a regular file, within that size) is read once into memory,
its SHA-256 checked against the card's id, its header validated against the file size and the
meta model, and only then is the real model built and the tensors parsed; so a tampered,
truncated or hostile folder is refused with one clear message and bounded memory and time. A
legacy PyTorch ``.pt`` is converted once, in a separate process, with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import multiprocessing
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from model_zoo.cards import (
    CARD_FILENAME,
    WEIGHTS_FILENAME,
    CardError,
    ModelCard,
    card_to_json,
    read_card,
)
from model_zoo.fileio import (
    TEMP_PREFIX,
    atomic_write_bytes,
    atomic_write_text,
    format_bytes,
    loads_json,
    open_regular,
    read_limited,
)
from model_zoo.registry import get_model

MAX_HEADER_BYTES = 1024 * 1024
"""A safetensors header longer than this is refused from its 8-byte length prefix, before the rest
is read (ours are 10-100 KB: resnet50's is ~30 KB, densenet121's ~100 KB)."""

MAX_HEADER_DEPTH = 8
"""JSON nesting of a safetensors header (the format uses 3 levels)."""

MAX_WEIGHTS_BYTES = 2 * 1024 * 1024 * 1024
"""Absolute cap on a weights file, whatever its card says (the largest backbone is ~100 MB)."""

_WIDEST_ITEMSIZE = 8
"""A weights file may store any tensor as F64: its size limit allows 8 bytes per element."""

_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


class CheckpointError(Exception):
    """A checkpoint cannot be saved or loaded; the message says why in plain words."""


class ChecksumError(CheckpointError):
    """The weights file's SHA-256 differs from the id in its card (changed or damaged file)."""


TensorInfo = tuple[str, tuple[int, ...]]
"""(safetensors dtype code, shape) of one tensor."""


def _build_from_card(card: ModelCard, *, meta: bool = False) -> nn.Module:
    kwargs: dict[str, Any] = dict(card.architecture_kwargs)
    # A card may record that training started from ImageNet weights; rebuilding for a load must
    # never fetch them (the checkpoint overwrites every parameter anyway).
    if "pretrained" in kwargs:
        kwargs["pretrained"] = False
    try:
        if meta:
            # Parameters without storage: checking shapes costs no memory and no init time.
            with torch.device("meta"):
                return get_model(card.architecture, tasks=card.tasks, **kwargs)
        return get_model(card.architecture, tasks=card.tasks, **kwargs)
    except (ValueError, TypeError, RuntimeError, MemoryError, RecursionError) as exc:
        # A card's kwargs reach the builder: any failure there is a bad model, not a crash.
        raise CheckpointError(
            f"cannot build {card.architecture!r} with {card.architecture_kwargs}: {exc}"
        ) from exc


def _describe(card: ModelCard) -> str:
    heads = ", ".join(f"{t.name}({t.num_classes})" for t in card.tasks)
    kwargs = ", ".join(f"{k}={v}" for k, v in sorted(card.architecture_kwargs.items()))
    return f"{card.architecture}({kwargs}; heads {heads})"


def _compare(found: Mapping[str, TensorInfo], expected: Mapping[str, torch.Tensor]) -> list[str]:
    problems = []
    for key in sorted(expected.keys() - found.keys()):
        problems.append(f"missing {key}")
    for key in sorted(found.keys() - expected.keys()):
        problems.append(f"unexpected {key}")
    for key in sorted(found.keys() & expected.keys()):
        want = tuple(expected[key].shape)
        if found[key][1] != want:
            problems.append(f"{key} has shape {list(found[key][1])}, expected {list(want)}")
    return problems


def _mismatch_message(problems: list[str], what: str, card: ModelCard) -> str:
    shown = "; ".join(problems[:6])
    more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
    return f"{what} do not fit the model the card describes, {_describe(card)}: {shown}{more}"


def save_checkpoint(
    model: nn.Module, card: ModelCard, out_dir: str | os.PathLike[str]
) -> ModelCard:
    """Write ``weights.safetensors`` then ``card.json`` (each atomically) into ``out_dir``.

    The card is written last, with ``id`` set to the SHA-256 of the weights file, so an
    interrupted save leaves either the previous checkpoint or one whose hash check fails, never
    a card that vouches for the wrong weights.

    Args:
        model: the trained module; its state dict must match what ``card`` rebuilds.
        card: the card, usually with ``id=""`` (any id is replaced).
        out_dir: checkpoint directory (created if missing).

    Returns:
        The card as written, with its id.

    Raises:
        CheckpointError: the model does not match the card's architecture and tasks.
    """
    state = model.state_dict()
    reference = _build_from_card(card, meta=True).state_dict()
    found = {k: (str(v.dtype), tuple(v.shape)) for k, v in state.items()}
    problems = _compare(found, reference)
    if problems:
        raise CheckpointError(_mismatch_message(problems, "The model's weights", card))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    data: bytes = safetensors.torch.save(tensors, metadata={"format": "pt"})
    final = card.replace(id=hashlib.sha256(data).hexdigest())
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS_FILENAME, data)
    atomic_write_text(directory / CARD_FILENAME, card_to_json(final))
    return final


def _checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    card_path = path if path.is_file() else directory / CARD_FILENAME
    return card_path, directory / WEIGHTS_FILENAME


def weights_limit(reference: Mapping[str, torch.Tensor]) -> int:
    """Largest weights file the model with state dict ``reference`` can need, in bytes.

    Every tensor at the widest dtype, plus the length prefix and the largest header allowed,
    and never more than :data:`MAX_WEIGHTS_BYTES`. ``reference`` may live on the meta device.
    """
    elements = sum(t.numel() for t in reference.values())
    return min(MAX_WEIGHTS_BYTES, 8 + MAX_HEADER_BYTES + elements * _WIDEST_ITEMSIZE)


def _read_weights(path: Path, limit: int, card: ModelCard) -> bytes:
    """The whole weights file, read only if it is a regular file within ``limit`` bytes whose
    header length prefix is plausible (an absurd one is refused before the rest is read)."""
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                why = (
                    f"the {format_bytes(MAX_WEIGHTS_BYTES)} limit for a weights file"
                    if limit == MAX_WEIGHTS_BYTES
                    else f"the {format_bytes(limit)} limit for {_describe(card)}"
                )
                raise CheckpointError(f"{path.name} is {size:,} bytes, over {why}")
            _check_header_length(handle.read(8), size, path.name)
            handle.seek(0)
            return read_limited(handle, limit, path.name, "this model's weights")
    except FileNotFoundError:
        raise CheckpointError(f"the weights file {path} is missing") from None
    except MemoryError:
        raise CheckpointError(f"{path.name}: not enough memory to read it") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read the weights file {path}: {exc}") from exc


def _check_header_length(prefix: bytes, size: int, name: str) -> int:
    """The header length from a safetensors file's first 8 bytes, checked against the cap and
    the file's ``size``, before anything that long is read or decoded."""
    bad = f"{name} is not a valid safetensors file"
    if len(prefix) < 8:
        raise CheckpointError(f"{bad}: it is only {size} bytes long")
    header_len = int.from_bytes(prefix[:8], "little")
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{bad}: its header claims {header_len:,} bytes, more than the "
            f"{format_bytes(MAX_HEADER_BYTES)} limit (damaged or hostile file)"
        )
    if 8 + header_len > size:
        raise CheckpointError(
            f"{name} is truncated: its header claims {header_len:,} bytes but the file has only "
            f"{size - 8:,} after the length field"
        )
    return header_len


def parse_safetensors_header(data: bytes, name: str = WEIGHTS_FILENAME) -> dict[str, TensorInfo]:
    """Validate a safetensors file's header against its length; return ``{key: (dtype, shape)}``.

    Checks the 8-byte header length (≤ :data:`MAX_HEADER_BYTES` and within the file), the JSON
    (nested at most :data:`MAX_HEADER_DEPTH` levels), every dtype, shape and byte range, and that
    the ranges tile the data section exactly. Nothing proportional to a size *claimed* by the file
    is allocated.

    Raises:
        CheckpointError: with the reason (truncated, oversized header, malformed entry...).
    """
    bad = f"{name} is not a valid safetensors file"
    header_len = _check_header_length(data[:8], len(data), name)
    try:
        header = loads_json(data[8 : 8 + header_len].decode("utf-8"), MAX_HEADER_DEPTH)
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, nesting, memory
        raise CheckpointError(f"{bad}: its header is not usable JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad}: its header is not a JSON object")
    data_len = len(data) - 8 - header_len
    infos: dict[str, TensorInfo] = {}
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        infos[key] = _check_entry(key, entry, bad)
        begin, end = entry["data_offsets"]
        spans.append((begin, end, key))
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            raise CheckpointError(f"{bad}: the bytes of {key} overlap or leave a gap")
        position = end
    if position > data_len:
        raise CheckpointError(
            f"{name} is truncated: its tensors need {position:,} bytes of data, "
            f"the file holds {data_len:,}"
        )
    if position < data_len:
        raise CheckpointError(f"{bad}: {data_len - position:,} unexplained bytes after the tensors")
    return infos


def _check_entry(key: str, entry: Any, bad: str) -> TensorInfo:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{bad}: entry {key} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _ITEMSIZE:
        raise CheckpointError(f"{bad}: tensor {key} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise CheckpointError(f"{bad}: tensor {key} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CheckpointError(f"{bad}: tensor {key} has invalid data offsets {offsets!r}")
    if offsets[1] - offsets[0] != math.prod(shape) * _ITEMSIZE[dtype]:
        raise CheckpointError(f"{bad}: tensor {key}'s byte range does not match its shape")
    return dtype, tuple(shape)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Load a checkpoint directory (or its ``card.json``) safely.

    Order: read and validate the card (bounded, see :func:`~model_zoo.cards.read_card`); build
    its model on the meta device (no memory) for the expected names and shapes; read the weights
    once, refusing a non-regular file or one bigger than those shapes can need (see
    :func:`weights_limit`) or with an absurd header length; compare their SHA-256 with the card's
    id (before any parsing); validate the safetensors header; compare names and shapes; only then
    build the real model and parse the tensors; ``load_state_dict(strict=True)``; move to
    ``device``; ``eval()``.

    Args:
        path: checkpoint directory or its ``card.json``.
        device: where the model goes.

    Returns:
        ``(model in eval mode, card)``.

    Raises:
        ChecksumError: the weights differ from what the card identifies (even by one byte).
        CheckpointError: anything else (bad card, missing/truncated/malformed file, shape or key
            mismatch), with a message a user can act on.
    """
    card_path, weights_path = _checkpoint_paths(path)
    try:
        card = read_card(card_path)
    except CardError as exc:
        raise CheckpointError(f"cannot use the model card {card_path}: {exc}") from exc
    if not card.id:
        raise CheckpointError(f"the model card {card_path} has no id (it was never saved)")
    reference = _build_from_card(card, meta=True).state_dict()
    data = _read_weights(weights_path, weights_limit(reference), card)
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.id:
        raise ChecksumError(
            f"{weights_path.name} does not match its model card: SHA-256 {digest[:12]}… instead of "
            f"{card.id[:12]}…. The file was changed or damaged; it will not be loaded."
        )
    infos = parse_safetensors_header(data, weights_path.name)
    problems = _compare(infos, reference)
    if problems:
        raise CheckpointError(_mismatch_message(problems, f"The tensors in {weights_path}", card))
    # Real memory only now: the file's tensors match the model, so it costs what the file holds.
    model = _build_from_card(card)
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # the Rust parser's own errors are not a documented type
        raise CheckpointError(f"{weights_path.name} could not be parsed: {exc}") from exc
    del data
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_path} does not fit {_describe(card)}: {exc}") from exc
    return model.to(device).eval(), card


_ONLY_STATE_DICTS = "only a state_dict saved with torch.save(model.state_dict()) can be imported"
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _refusal(exc: Exception) -> str:
    text = str(exc)
    if type(exc).__name__ == "UnpicklingError":
        found = _UNSUPPORTED_GLOBAL.search(text)
        what = f"it asks to call or build {found.group(1)}" if found else "it holds objects"
        return f"refused: {what}, which is not tensor data ({_ONLY_STATE_DICTS})"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"it is not a readable PyTorch weights file ({type(exc).__name__}: {first})"


def _convert_legacy(pt_path: str, out_path: str) -> str | None:
    """Child-process half of :func:`import_legacy_pt`; returns an error message or None."""
    try:
        obj = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, KeyError, OSError, ...
        return _refusal(exc)
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj:
        return f"it does not hold a state dict of named tensors ({_ONLY_STATE_DICTS})"
    tensors = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            return f"entry {key!r} is not a named tensor"
        # DataParallel prefixes every key; clone() breaks storage sharing safetensors refuses.
        name = key.removeprefix("module.")
        tensors[name] = value.detach().clone().contiguous()
    safetensors.torch.save_file(tensors, out_path)
    return None


def import_legacy_pt(
    pt_path: str | os.PathLike[str],
    card_template: ModelCard,
    out_dir: str | os.PathLike[str],
    *,
    isolate: bool = True,
) -> ModelCard:
    """Convert a legacy PyTorch state-dict file into a safe checkpoint.

    The ``.pt`` is opened only with ``torch.load(weights_only=True)`` (which refuses any pickled
    code or object), and by default in a separate ``spawn`` process, so even a flaw in torch's
    restricted unpickler cannot touch this process (R13). The tensors travel back as a
    safetensors file, are loaded strictly into the model ``card_template`` describes, and saved
    with :func:`save_checkpoint`.

    Args:
        pt_path: the legacy file.
        card_template: the card for the converted model (its id is replaced).
        out_dir: checkpoint directory to write.
        isolate: run the unpickling in a child process (default); False runs it here.

    Returns:
        The saved card.

    Raises:
        CheckpointError: the file is refused (not a plain state dict) or does not fit the card.
    """
    source = Path(pt_path)
    if not source.is_file():
        raise CheckpointError(f"{source} does not exist")
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    scratch = directory / f"{TEMP_PREFIX}legacy-{uuid.uuid4().hex}.safetensors"
    try:
        if isolate:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                try:
                    error = pool.submit(_convert_legacy, str(source), str(scratch)).result()
                except concurrent.futures.process.BrokenProcessPool as exc:
                    raise CheckpointError(
                        f"{source.name}: the conversion process crashed; file refused"
                    ) from exc
        else:
            error = _convert_legacy(str(source), str(scratch))
        if error is not None:
            raise CheckpointError(f"{source.name} cannot be imported: {error}")
        data = scratch.read_bytes()
    finally:
        scratch.unlink(missing_ok=True)
    infos = parse_safetensors_header(data, source.name)
    problems = _compare(infos, _build_from_card(card_template, meta=True).state_dict())
    if problems:
        raise CheckpointError(
            _mismatch_message(problems, f"The tensors in {source.name}", card_template)
        )
    model = _build_from_card(card_template)
    model.load_state_dict(load_safetensors(data), strict=True)
    return save_checkpoint(model, card_template, directory)
