"""Safe checkpoints (R12, R13): hash-verified safetensors, strict loads, no unpickling."""

from __future__ import annotations

import builtins
import hashlib
import json
import pickle
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch

from model_zoo.architectures.tasks import TaskSpec
from model_zoo.cards import CARD_FILENAME, WEIGHTS_FILENAME, ModelCard, card_to_json, read_card
from model_zoo.checkpoints import (
    CheckpointError,
    ChecksumError,
    import_legacy_pt,
    load_checkpoint,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PEAK_LIMIT = 200 * 1024 * 1024


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        out = model(x)
    return {**out.logits, "features": out.features}


def _rewrite(directory: Path, weights: bytes, card: ModelCard) -> None:
    """Replace the weights and re-sign the card with their hash, as an attacker could."""
    (directory / WEIGHTS_FILENAME).write_bytes(weights)
    signed = card.replace(id=hashlib.sha256(weights).hexdigest())
    (directory / CARD_FILENAME).write_text(card_to_json(signed), encoding="utf-8")


@pytest.fixture
def saved(tmp_path, tiny_model, tiny_card) -> tuple[Path, ModelCard]:
    directory = tmp_path / "ckpt"
    return directory, save_checkpoint(tiny_model, tiny_card, directory)


def test_save_load_round_trip(saved, tiny_model, tiny_card) -> None:
    directory, card = saved
    weights = (directory / WEIGHTS_FILENAME).read_bytes()
    assert card.id == hashlib.sha256(weights).hexdigest()
    assert card == tiny_card.replace(id=card.id)
    assert read_card(directory) == card
    assert not list(directory.glob(".sall-tmp-*"))

    model, loaded_card = load_checkpoint(directory / CARD_FILENAME)
    assert loaded_card == card
    assert not model.training
    x = torch.randn(2, 3, 64, 64)
    expected, got = _outputs(tiny_model, x), _outputs(model, x)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_one_changed_byte_is_refused(saved) -> None:
    directory, _card = saved
    path = directory / WEIGHTS_FILENAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match its model card"):
        load_checkpoint(directory)


def _peak_during(fn) -> tuple[BaseException, int]:
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            fn()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_truncated_weights_fail_cleanly(saved) -> None:
    directory, card = saved
    weights = (directory / WEIGHTS_FILENAME).read_bytes()
    _rewrite(directory, weights[: len(weights) // 2], card)
    error, peak = _peak_during(lambda: load_checkpoint(directory))
    assert "truncated" in str(error)
    assert peak < PEAK_LIMIT


def test_header_claiming_200_mb_fails_with_bounded_memory(saved) -> None:
    directory, card = saved
    claimed = 200 * 1024 * 1024
    hostile = struct.pack("<Q", claimed) + b'{"w": {"dtype": "F32", "shape": [1], '
    _rewrite(directory, hostile, card)
    error, peak = _peak_during(lambda: load_checkpoint(directory))
    assert "header claims 209,715,200 bytes" in str(error)
    assert peak < PEAK_LIMIT


def test_header_with_lying_offsets_is_refused(saved) -> None:
    directory, card = saved
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4]}})
    blob = struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4
    _rewrite(directory, blob, card)
    with pytest.raises(CheckpointError, match="byte range does not match its shape"):
        load_checkpoint(directory)


def test_shape_mismatch_is_refused_with_the_key_and_shapes(saved) -> None:
    directory, card = saved
    three_grades = TaskSpec("dr", ("none", "some", "severe"))
    wrong = card.replace(tasks=(three_grades, card.tasks[1]), grading_scales={})
    (directory / CARD_FILENAME).write_text(card_to_json(wrong), encoding="utf-8")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(directory)
    message = str(info.value)
    assert "heads.dr.1.weight has shape [5, 512], expected [3, 512]" in message
    assert "heads dr(3), amd(4)" in message


def test_architecture_mismatch_lists_missing_keys(saved) -> None:
    directory, card = saved
    other = card.replace(architecture_kwargs={"backbone": "resnet34", "dropout": 0.5})
    (directory / CARD_FILENAME).write_text(card_to_json(other), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"missing backbone\.net\.layer1\.2\.bn1\.bias"):
        load_checkpoint(directory)


def test_save_refuses_a_model_that_does_not_match_its_card(tmp_path, tiny_model, tiny_card):
    one_head = tiny_card.replace(
        tasks=(tiny_card.tasks[0],), temperatures={"dr": 1.0}, grading_scales={}
    )
    with pytest.raises(CheckpointError, match="unexpected heads.amd.1.weight"):
        save_checkpoint(tiny_model, one_head, tmp_path / "x")
    assert not (tmp_path / "x" / CARD_FILENAME).exists()


def test_missing_weights_and_unsaved_card(tmp_path, saved, tiny_card) -> None:
    directory, _card = saved
    (directory / WEIGHTS_FILENAME).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(directory)
    (tmp_path / "unsaved").mkdir()
    (tmp_path / "unsaved" / CARD_FILENAME).write_text(card_to_json(tiny_card), encoding="utf-8")
    with pytest.raises(CheckpointError, match="has no id"):
        load_checkpoint(tmp_path / "unsaved")


# ---------------------------------------------------------------- legacy .pt import


class _CreatesFile:
    """Unpickling this calls open(path, "w"): a file appears if the unpickler runs code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (builtins.open, (str(self.path), "w"))


def _malicious_files(tmp_path: Path, sentinel: Path) -> dict[str, Path]:
    raw = tmp_path / "raw_pickle.pt"
    raw.write_bytes(pickle.dumps({"conv.weight": _CreatesFile(sentinel)}, protocol=2))
    zipped = tmp_path / "torch_save.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _CreatesFile(sentinel)}, zipped)
    return {"raw": raw, "zip": zipped}


def test_the_malicious_payload_really_runs_code_when_unpickled(tmp_path) -> None:
    """Guards the next tests: plain unpickling of the payload does create the file."""
    proof = tmp_path / "proof"
    files = _malicious_files(tmp_path, proof)
    pickle.loads(files["raw"].read_bytes())  # noqa: S301 - the test's own payload
    assert proof.exists()


@pytest.mark.parametrize("kind", ["raw", "zip"])
def test_malicious_pickle_is_refused_in_process(tmp_path, tiny_card, kind: str) -> None:
    sentinel = tmp_path / "pwned"
    path = _malicious_files(tmp_path, sentinel)[kind]
    out = tmp_path / "out"
    with pytest.raises(
        CheckpointError, match=r"refused: it asks to call or build (io|builtins)\.open"
    ):
        import_legacy_pt(path, tiny_card, out, isolate=False)
    assert not sentinel.exists()
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_malicious_pickle_is_refused_in_a_child_process(tmp_path, tiny_card) -> None:
    sentinel = tmp_path / "pwned"
    path = _malicious_files(tmp_path, sentinel)["zip"]
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="refused"):
        import_legacy_pt(path, tiny_card, out)
    assert not sentinel.exists()
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_legacy_state_dict_is_converted(tmp_path, tiny_model, tiny_card, isolate: bool) -> None:
    legacy = tmp_path / "old.pt"
    # DataParallel-style prefixes inside a {"state_dict": ...} wrapper, as old scripts saved.
    state = {f"module.{k}": v for k, v in tiny_model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, legacy)
    card = import_legacy_pt(legacy, tiny_card, tmp_path / "converted", isolate=isolate)
    model, loaded = load_checkpoint(tmp_path / "converted")
    assert loaded == card and len(card.id) == 64
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(_outputs(model, x)["dr"], _outputs(tiny_model, x)["dr"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some text", "not a readable PyTorch weights file"),
        (None, "does not hold a state dict"),
    ],
)
def test_legacy_files_that_are_not_state_dicts(tmp_path, tiny_card, content, message) -> None:
    legacy = tmp_path / "old.pt"
    if content is None:
        torch.save([torch.zeros(2)], legacy)
    else:
        legacy.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        import_legacy_pt(legacy, tiny_card, tmp_path / "out", isolate=False)


def test_legacy_state_dict_with_wrong_shapes_is_refused(tmp_path, tiny_model, tiny_card) -> None:
    legacy = tmp_path / "old.pt"
    state = dict(tiny_model.state_dict())
    state["heads.dr.1.weight"] = torch.zeros(3, 512)
    torch.save(state, legacy)
    with pytest.raises(CheckpointError, match=r"heads\.dr\.1\.weight has shape \[3, 512\]"):
        import_legacy_pt(legacy, tiny_card, tmp_path / "converted", isolate=False)
    assert not (tmp_path / "converted" / CARD_FILENAME).exists()
