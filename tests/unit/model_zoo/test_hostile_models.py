"""Hostile model folders (issue 22, item 6): one clear error, bounded time and memory.

Each reproduction of the hostile-input campaign is refused with the module's own error type and a
message that names the file or the limit: deeply nested JSON in the card or in the safetensors
header (was an uncaught RecursionError), ``weights.safetensors`` linked to ``/dev/zero`` (was read
without limit) or made a FIFO (blocked forever), a card with 300,000 class names (built a 2.2 GB
model before the shapes were checked) and ``input_size: 4096`` (grading died in an allocation).
The CLI turns each into one line on stderr and exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from model_zoo.cards import (
    CARD_FILENAME,
    MAX_CARD_BYTES,
    WEIGHTS_FILENAME,
    CardError,
    ModelCard,
    card_from_dict,
    card_to_dict,
    card_to_json,
    read_card,
)
from model_zoo.checkpoints import (
    MAX_HEADER_BYTES,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")
FAKE_ID = "ab" * 32
QUICK_S = 5.0


def _write_card(folder: Path, card: dict[str, Any] | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = card if isinstance(card, str) else json.dumps(card)
    (folder / CARD_FILENAME).write_text(text, encoding="utf-8")


def _card_dict(card: ModelCard, **changes: Any) -> dict[str, Any]:
    return {**card_to_dict(card.replace(id=FAKE_ID)), **changes}


def _signed(folder: Path, card: ModelCard, weights: bytes) -> None:
    """Weights plus a card vouching for them, as an attacker who edits both files could write."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WEIGHTS_FILENAME).write_bytes(weights)
    signed = card.replace(id=hashlib.sha256(weights).hexdigest())
    (folder / CARD_FILENAME).write_text(card_to_json(signed), encoding="utf-8")


def _refused(folder: Path, error: type[Exception] = CheckpointError) -> str:
    """The message of ``load_checkpoint(folder)``'s refusal, which must come quickly."""
    started = time.monotonic()
    with pytest.raises(error) as info:
        load_checkpoint(folder)
    assert time.monotonic() - started < QUICK_S
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and forbid) every model the loader builds with real memory."""
    import model_zoo.checkpoints as checkpoints

    real, built = checkpoints.get_model, []

    def spy(name: str, **kwargs: Any) -> Any:
        import torch

        if torch.get_default_device().type != "meta":
            built.append(name)
            raise AssertionError("a real model was built for a hostile card")
        return real(name, **kwargs)

    monkeypatch.setattr(checkpoints, "get_model", spy)
    return built


# ---------------------------------------------------------------- nested JSON


def test_deeply_nested_card_is_refused(tmp_path: Path, tiny_card: ModelCard) -> None:
    folder = tmp_path / "m"
    _write_card(folder, '{"schema": "sall-model-card", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    message = _refused(folder)
    assert "card.json" in message and "nested deeper than the 32-level limit" in message
    with pytest.raises(CardError, match="nested deeper than the 32-level limit"):
        read_card(folder)


def test_nesting_inside_a_valid_card_is_refused_past_the_limit(
    tmp_path: Path, tiny_card: ModelCard
) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"d": deep}
    provenance = {**card_to_dict(tiny_card)["provenance"], "config": deep}
    _write_card(tmp_path / "m", _card_dict(tiny_card, provenance=provenance))
    assert "nested deeper than the 32-level limit" in _refused(tmp_path / "m")


def test_deeply_nested_safetensors_header_is_refused(
    tmp_path: Path, tiny_card: ModelCard, no_build: list[str]
) -> None:
    header = b"[" * 200_000 + b"]" * 200_000
    _signed(tmp_path / "m", tiny_card, struct.pack("<Q", len(header)) + header)
    message = _refused(tmp_path / "m")
    assert WEIGHTS_FILENAME in message and "nested deeper than the 8-level limit" in message
    assert no_build == []


def test_absurd_header_length_is_refused_before_the_file_is_read(
    tmp_path: Path, tiny_card: ModelCard
) -> None:
    # The length prefix claims 2**63 bytes: refused from the first 8 bytes, named with its limit.
    _signed(tmp_path / "m", tiny_card, struct.pack("<Q", 2**63) + b"{}")
    message = _refused(tmp_path / "m")
    assert f"{MAX_HEADER_BYTES:,}-byte (1 MiB) limit" in message


# ---------------------------------------------------------------- not regular files


@posix_only
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("target", [WEIGHTS_FILENAME, CARD_FILENAME])
def test_link_to_dev_zero_is_refused_quickly(
    tmp_path: Path, tiny_card: ModelCard, target: str
) -> None:
    folder = tmp_path / "m"
    _write_card(folder, _card_dict(tiny_card))
    (folder / target).unlink(missing_ok=True)
    (folder / target).symlink_to("/dev/zero")
    message = _refused(folder)
    assert f"{target} is a character device; only a regular file is read" in message


def _must_not_block(fifo: Path, action: Callable[[], None]) -> None:
    """Run ``action`` in a thread; if it blocks on the FIFO, free it and fail."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    if not done.wait(QUICK_S):
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a writer lets the blocked open return
        os.close(fd)
        worker.join(QUICK_S)
        pytest.fail(f"reading {fifo.name} blocked")
    if failure:
        raise failure[0]


@posix_only
@pytest.mark.parametrize("target", [WEIGHTS_FILENAME, CARD_FILENAME])
def test_fifo_is_refused_without_blocking(
    tmp_path: Path, tiny_card: ModelCard, target: str
) -> None:
    folder = tmp_path / "m"
    _write_card(folder, _card_dict(tiny_card))
    (folder / target).unlink(missing_ok=True)
    os.mkfifo(folder / target)
    messages: list[str] = []
    _must_not_block(folder / target, lambda: messages.append(_refused(folder)))
    assert f"{target} is a FIFO (named pipe); only a regular file is read" in messages[0]


def test_folder_in_place_of_the_weights_is_refused(tmp_path: Path, tiny_card: ModelCard) -> None:
    folder = tmp_path / "m"
    _write_card(folder, _card_dict(tiny_card))
    (folder / WEIGHTS_FILENAME).mkdir()
    message = _refused(folder)
    assert WEIGHTS_FILENAME in message and ("a folder" in message or "denied" in message)


@posix_only
def test_socket_in_place_of_the_weights_is_refused(tmp_path: Path, tiny_card: ModelCard) -> None:
    folder = tmp_path / "m"
    _write_card(folder, _card_dict(tiny_card))
    server = socket.socket(socket.AF_UNIX)
    try:
        try:
            server.bind(str(folder / WEIGHTS_FILENAME))
        except OSError:
            pytest.skip("socket path too long here")
        message = _refused(folder)
    finally:
        server.close()
    assert f"cannot read the weights file {folder / WEIGHTS_FILENAME}" in message


@posix_only
def test_links_to_regular_files_are_followed(
    tmp_path: Path, tiny_model: Any, tiny_card: ModelCard
) -> None:
    # What is read is checked, not how it is named: a model cache may link files to blobs kept
    # elsewhere, and the card's SHA-256 still authenticates the weights.
    store = tmp_path / "blobs"
    save_checkpoint(tiny_model, tiny_card, store)
    folder = tmp_path / "m"
    folder.mkdir()
    for name in (CARD_FILENAME, WEIGHTS_FILENAME):
        (folder / name).symlink_to(store / name)
    _model, card = load_checkpoint(folder)
    assert card.id == read_card(store).id


# ---------------------------------------------------------------- sizes a card may ask for


def test_card_with_300000_class_names_is_refused_before_building(
    tmp_path: Path, tiny_card: ModelCard, no_build: list[str]
) -> None:
    names = [f"c{i}" for i in range(300_000)]
    tasks = [{"name": "dr", "classes": names}, {"name": "amd", "classes": names[:4]}]
    _write_card(tmp_path / "m", _card_dict(tiny_card, tasks=tasks))
    assert (tmp_path / "m" / CARD_FILENAME).stat().st_size > MAX_CARD_BYTES
    message = _refused(tmp_path / "m")
    assert "larger than the 1,048,576-byte (1 MiB) limit for a model card" in message
    # The same card decoded some other way is refused by the class cap, before any TaskSpec.
    started = time.monotonic()
    with pytest.raises(CardError, match="tasks\\[0\\] has 300,000 classes; at most 16 per head"):
        card_from_dict(_card_dict(tiny_card, tasks=tasks))
    assert time.monotonic() - started < QUICK_S
    assert no_build == []


def test_card_over_the_class_and_head_caps_is_refused_before_building(
    tmp_path: Path, tiny_card: ModelCard, no_build: list[str]
) -> None:
    seventeen = {"name": "dr", "classes": [f"g{i}" for i in range(17)]}
    _write_card(tmp_path / "a", _card_dict(tiny_card, tasks=[seventeen]))
    assert "17 classes; at most 16 per head" in _refused(tmp_path / "a")
    heads = [{"name": f"h{i}", "classes": ["a", "b"]} for i in range(9)]
    _write_card(tmp_path / "b", _card_dict(tiny_card, tasks=heads))
    assert "9 tasks; at most 8 heads" in _refused(tmp_path / "b")
    assert no_build == []


@pytest.mark.parametrize("size", [4096, 16])
def test_input_size_outside_32_to_1024_is_refused(
    tmp_path: Path, tiny_card: ModelCard, size: int
) -> None:
    _write_card(tmp_path / "m", _card_dict(tiny_card, input_size=size))
    message = _refused(tmp_path / "m")
    assert "input_size must be an integer from 32 to 1024 pixels (the limit)" in message
    assert f"got {size}" in message


def test_weights_bigger_than_the_architecture_needs_are_refused_unread(
    tmp_path: Path, tiny_card: ModelCard
) -> None:
    # resnet18 with two small heads: 11.2 M elements, at most ~90 MB even as F64. A sparse 1 GB
    # file costs no disk, and reading it would take seconds; the size check takes none.
    folder = tmp_path / "m"
    _write_card(folder, _card_dict(tiny_card))
    with (folder / WEIGHTS_FILENAME).open("wb") as handle:
        handle.truncate(1 << 30)
    message = _refused(folder)
    assert "weights.safetensors is 1,073,741,824 bytes, over the" in message
    assert "limit for sall_student(backbone=resnet18" in message


# ---------------------------------------------------------------- what must keep working


def test_the_bundled_demo_model_still_loads() -> None:
    from model_zoo.weights import demo_model_dir

    model, card = load_checkpoint(demo_model_dir())
    assert card.input_size == 128 and [t.num_classes for t in card.tasks] == [5, 4]
    assert not model.training


# ---------------------------------------------------------------- the command line


def _hostile_folders(root: Path, card: ModelCard) -> dict[str, Path]:
    folders = {name: root / name for name in ("nested-card", "input-4096", "classes-17")}
    _write_card(folders["nested-card"], "[" * 100_000 + "]" * 100_000)
    _write_card(folders["input-4096"], _card_dict(card, input_size=4096))
    tasks = [{"name": "dr", "classes": [f"g{i}" for i in range(17)]}]
    _write_card(folders["classes-17"], _card_dict(card, tasks=tasks))
    header = b"[" * 200_000 + b"]" * 200_000
    _signed(root / "nested-header", card, struct.pack("<Q", len(header)) + header)
    folders["nested-header"] = root / "nested-header"
    if sys.platform != "win32":
        for name in ("fifo-weights", "dev-zero-weights"):
            _write_card(root / name, _card_dict(card))
            folders[name] = root / name
        os.mkfifo(root / "fifo-weights" / WEIGHTS_FILENAME)
        (root / "dev-zero-weights" / WEIGHTS_FILENAME).symlink_to("/dev/zero")
    return folders


def test_grade_with_a_hostile_model_prints_one_line_and_exits_1(
    tmp_path: Path,
    tiny_card: ModelCard,
    write_jpeg: Callable[[Path, Any], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from sall_desktop.__main__ import main

    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    images = tmp_path / "images"
    images.mkdir()
    write_jpeg(images / "10_left.jpeg", np.full((40, 40, 3), 90, np.uint8))
    db = str(tmp_path / "labels.sqlite")
    assert main(["--db", db, "scan", str(images)]) == 0
    capsys.readouterr()
    for name, folder in _hostile_folders(tmp_path / "models", tiny_card).items():
        fifo = folder / WEIGHTS_FILENAME
        argv = ["--db", db, "grade", str(images), "--model", str(folder)]
        codes: list[int] = []
        _must_not_block(fifo, lambda argv=argv, codes=codes: codes.append(main(argv)))
        out, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert codes == [1], (name, out, err)
        assert "Traceback" not in out + err, name
        assert len(lines) == 1 and lines[0].startswith("sall-desktop: "), (name, err)
        assert "the model could not be loaded" in lines[0], (name, err)


def test_json_depth_limit_is_exact() -> None:
    from model_zoo.fileio import loads_json

    value = loads_json("[" * 32 + "]" * 32, 32)
    for _ in range(31):
        value = value[0]
    assert value == []
    with pytest.raises(ValueError, match="deeper than the 32-level limit"):
        loads_json("[" * 33 + "]" * 33, 32)
    with pytest.raises(ValueError, match="deeper than the 32-level limit"):
        loads_json('{"a": ' * 33 + "1" + "}" * 33, 32)
