"""Predictor: calibrated per-head outputs, referable DR, batch files with errors and cancel."""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo.architectures.tasks import DEFAULT_TASKS
from model_zoo.checkpoints import save_checkpoint
from model_zoo.io import read_image
from model_zoo.predictor import Predictor
from model_zoo.registry import get_model
from model_zoo.transforms import eval_transform, load_for_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sall-decode")]


@pytest.fixture
def predictor(tiny_model, tiny_card) -> Predictor:
    return Predictor(tiny_model, tiny_card.replace(id="f" * 64), device="cpu", fast=False)


@pytest.fixture
def folder(tmp_path, write_jpeg, fundus_image) -> list[Path]:
    """Six readable JPEGs and, at positions 2 and 4, an unreadable file and a missing one."""
    paths = [write_jpeg(tmp_path / f"img{i}.jpg", fundus_image(192, 256, seed=i)) for i in range(6)]
    broken = tmp_path / "broken.jpg"
    broken.write_text("this is not an image", encoding="utf-8")
    paths.insert(2, broken)
    paths.insert(4, tmp_path / "gone.jpg")
    return paths


def test_head_outputs_are_consistent_calibrated_distributions(predictor, fundus_image) -> None:
    images = [fundus_image(seed=s) for s in range(3)]
    results = predictor.predict_arrays(images, sha256s=["a", "b", "c"], batch_size=2)
    assert [r.sha256 for r in results] == ["a", "b", "c"]
    for result in results:
        assert result.error is None and result.model_id == "f" * 64
        assert list(result.heads) == ["dr", "amd"]
        for task in DEFAULT_TASKS:
            head = result.heads[task.name]
            p = head.probabilities
            assert len(p) == task.num_classes == len(head.logits)
            assert math.isclose(sum(p), 1.0, abs_tol=1e-9)
            assert head.grade == int(np.argmax(head.logits)) == int(np.argmax(p))
            assert head.confidence == max(p)
            assert math.isclose(head.expected_grade, sum(i * q for i, q in enumerate(p)))
            assert math.isclose(head.entropy, -sum(q * math.log(q) for q in p if q > 0))
            assert 0 <= head.entropy <= math.log(task.num_classes) + 1e-12
        dr = result.heads["dr"].probabilities
        assert math.isclose(result.referable_dr_probability, dr[2] + dr[3] + dr[4])


def test_probabilities_are_softmax_of_logits_over_the_card_temperature(
    tiny_model, tiny_card, fundus_image
) -> None:
    image = fundus_image()
    x = eval_transform(tiny_card)(image)[None]
    with torch.inference_mode():
        logits = tiny_model(x).logits
    card = tiny_card.replace(temperatures={"dr": 2.5, "amd": 0.5})
    predictor = Predictor(tiny_model, card, device="cpu", fast=False)
    (result,) = predictor.predict_arrays([image], sha256s=["x"])
    for name, temperature in card.temperatures.items():
        expected = torch.softmax(logits[name][0].double() / temperature, dim=0)
        np.testing.assert_allclose(result.heads[name].probabilities, expected.numpy(), atol=1e-6)
    uncalibrated = Predictor(tiny_model, tiny_card, device="cpu", fast=False)
    (plain,) = uncalibrated.predict_arrays([image], sha256s=["x"])
    assert result.heads["dr"].entropy > plain.heads["dr"].entropy  # T > 1 softens
    assert result.heads["amd"].entropy < plain.heads["amd"].entropy  # T < 1 sharpens
    assert result.heads["dr"].grade == plain.heads["dr"].grade


def test_referable_dr_needs_a_five_class_dr_head(card_factory, fundus_image) -> None:
    card = card_factory(tasks=(DEFAULT_TASKS[1],))
    model = get_model("sall_student", tasks=card.tasks)
    (result,) = Predictor(model, card, device="cpu").predict_arrays([fundus_image()], sha256s=["x"])
    assert list(result.heads) == ["amd"] and result.referable_dr_probability is None


def test_model_and_card_heads_must_agree(tiny_model, card_factory) -> None:
    with pytest.raises(ValueError, match="heads"):
        Predictor(tiny_model, card_factory(tasks=(DEFAULT_TASKS[0],)), device="cpu")


def test_bad_arrays_give_error_entries(predictor, fundus_image) -> None:
    with pytest.raises(ValueError, match="2 images but 1"):
        predictor.predict_arrays([fundus_image(), fundus_image()], sha256s=["a"])
    results = predictor.predict_arrays(
        [fundus_image(), np.zeros((5, 5), np.uint8)], sha256s=["a", "b"]
    )
    assert results[0].error is None
    assert results[1].heads == {} and "RGB" in (results[1].error or "")


def test_fast_cpu_mode_stays_close_to_fp32(tiny_model, tiny_card, fundus_image) -> None:
    images = [fundus_image(seed=s) for s in range(2)]
    exact = Predictor(tiny_model, tiny_card, device="cpu", fast=False)
    reference = exact.predict_arrays(images, sha256s=["a", "b"])
    fast = Predictor(tiny_model, tiny_card, device="cpu", fast=True)
    assert fast.fast and "bf16" in fast.device_note
    assert fast.model.backbone.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for ref, got in zip(reference, fast.predict_arrays(images, sha256s=["a", "b"]), strict=True):
        for name in ("dr", "amd"):
            assert math.isclose(sum(got.heads[name].probabilities), 1.0, abs_tol=1e-9)
            np.testing.assert_allclose(
                got.heads[name].probabilities, ref.heads[name].probabilities, atol=0.05
            )


def test_predict_paths_reports_bad_files_and_keeps_going(predictor, folder, tiny_card) -> None:
    results = list(predictor.predict_paths(folder, batch_size=3, workers=2))
    assert [r.path for r in results] == [str(p) for p in folder]
    broken, missing = results[2], results[4]
    assert broken.heads == {} and "broken.jpg" in (broken.error or "")
    assert broken.sha256 == hashlib.sha256(folder[2].read_bytes()).hexdigest()
    assert missing.heads == {} and "gone.jpg" in (missing.error or "") and missing.sha256 == ""
    good = [r for i, r in enumerate(results) if i not in (2, 4)]
    assert all(r.error is None and set(r.heads) == {"dr", "amd"} for r in good)
    # Same numbers as decoding by hand at the card's resolution and predicting the arrays.
    first = load_for_model(folder[0], tiny_card)
    assert first.meta.sha256 == good[0].sha256
    (by_hand,) = predictor.predict_arrays([first.rgb], sha256s=[first.meta.sha256])
    np.testing.assert_allclose(
        good[0].heads["dr"].probabilities, by_hand.heads["dr"].probabilities, atol=1e-6
    )
    # ... and decoding at full size would have given different pixels: the reduction matters.
    assert read_image(folder[0]).rgb.shape[0] == 2 * first.rgb.shape[0]
    assert not _decode_threads()


def test_cancel_stops_cleanly(predictor, folder) -> None:
    paths = [p for p in folder if p.exists()] * 4
    cancel = threading.Event()
    seen = []
    for result in predictor.predict_paths(paths, batch_size=2, workers=2, cancel=cancel):
        seen.append(result)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3
    assert not _decode_threads()
    cancel_first = threading.Event()
    cancel_first.set()
    assert list(predictor.predict_paths(paths, cancel=cancel_first)) == []


def test_closing_the_generator_early_releases_the_workers(predictor, folder) -> None:
    stream = predictor.predict_paths(folder * 3, batch_size=2)
    next(stream)
    stream.close()
    assert not _decode_threads()


def test_from_checkpoint(tmp_path, tiny_model, tiny_card, fundus_image) -> None:
    card = save_checkpoint(tiny_model, tiny_card, tmp_path / "m")
    predictor = Predictor.from_checkpoint(tmp_path / "m", device="cpu", fast=False)
    assert predictor.card == card and predictor.device == torch.device("cpu")
    assert predictor.device_note == "CPU (as requested)"
    (result,) = predictor.predict_arrays([fundus_image()], sha256s=["x"])
    assert result.model_id == card.id


class _MemoryInputs:
    """A :class:`model_zoo.prepare.PreparedInputs` in a dict (the app's lives in SQLite)."""

    def __init__(self, spec) -> None:
        self.spec = spec
        self.entries: dict[str, np.ndarray] = {}
        self.reads: list[int] = []

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self.entries

    def get(self, sha256: str):
        return self.entries.get(sha256)

    def get_many(self, sha256s) -> dict[str, np.ndarray]:
        self.reads.append(len(sha256s))
        return {sha: self.entries[sha] for sha in sha256s if sha in self.entries}

    def put(self, sha256: str, prepared) -> bool:
        self.entries[sha256] = prepared.copy()
        return True


def test_cached_inputs_give_the_same_predictions_without_decoding(
    predictor, folder, monkeypatch
) -> None:
    inputs = _MemoryInputs(predictor.transform.input_spec)
    first = list(predictor.predict_paths(folder, batch_size=3, inputs=inputs))
    readable = [r for r in first if r.error is None]
    assert len(readable) == 6 and set(inputs.entries) == {r.sha256 for r in readable}
    known = {r.path: r.sha256 for r in readable}

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached input was decoded again")

    monkeypatch.setattr("model_zoo.predictor.load_for_model", no_decoding)
    again = list(predictor.predict_paths(folder[:2], sha256s=known, inputs=inputs))
    for old, new in zip(first[:2], again, strict=True):
        assert new.sha256 == old.sha256 and new.error is None
        for head in ("dr", "amd"):
            assert new.heads[head].logits == old.heads[head].logits  # bit for bit


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_cached_inputs_are_read_a_forward_pass_at_a_time(predictor, folder, batch_size) -> None:
    # Each read is one forward pass's images (the app's cache returns them as one block, which
    # is normalised without stacking), so no read may straddle two passes.
    inputs = _MemoryInputs(predictor.transform.input_spec)
    first = list(predictor.predict_paths(folder, inputs=inputs))
    known = {r.path: r.sha256 for r in first if r.error is None}
    inputs.reads.clear()
    again = list(
        predictor.predict_paths(folder, batch_size=batch_size, sha256s=known, inputs=inputs)
    )
    assert [r.sha256 for r in again] == [r.sha256 for r in first]
    readable = [i for i, r in enumerate(first) if r.error is None]  # files with a SHA-256
    start = 0
    for n in inputs.reads:
        assert len({i // batch_size for i in readable[start : start + n]}) == 1
        start += n
    assert start == len(readable)


def test_a_missing_cached_input_is_decoded_and_prepared_again(predictor, folder) -> None:
    inputs = _MemoryInputs(predictor.transform.input_spec)
    [first] = list(predictor.predict_paths(folder[:1], inputs=inputs))
    inputs.entries.clear()  # e.g. pruned, or damaged on disk
    known = {first.path: first.sha256}
    [again] = list(predictor.predict_paths(folder[:1], sha256s=known, inputs=inputs))
    assert again.error is None and again.heads["dr"].logits == first.heads["dr"].logits
    assert first.sha256 in inputs


def test_inputs_of_another_preprocessing_are_refused(predictor, folder) -> None:
    from model_zoo.prepare import InputSpec

    other = _MemoryInputs(InputSpec(predictor.card.input_size + 8, "bilinear"))
    with pytest.raises(ValueError, match="another model"):
        list(predictor.predict_paths(folder, inputs=other))
