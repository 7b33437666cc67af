"""The teacher-output cache: keyed by image, teacher and preprocessing; partial recomputation."""

from __future__ import annotations

import dataclasses

import torch

from training.engine.data import ImageDataset
from training.engine.models import build_card, build_model
from training.engine.sall.soft_labels import (
    cache_path,
    ensure_outputs,
    load_outputs,
    preprocessing_digest,
)
from training.protocol.config import TaskConfig

TASK = TaskConfig("dr", ("0", "1", "2", "3", "4"))


def _teacher(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, [TASK]).eval()
    card = build_card(cfg, [TASK], name="t", run_id="r", manifest_digest="")
    return model, card.replace(id="a" * 64)


def test_cache_round_trip_and_partial_recompute(tmp_path, images, tiny_cfg) -> None:
    model, card = _teacher(tiny_cfg)
    cache = tmp_path / "cache"
    first = ImageDataset(images.rows[:3], images.folder, card)
    out, computed = ensure_outputs(
        cache, model, card, first, device=torch.device("cpu"), batch_size=2
    )
    assert (
        computed == 3 and out.logits["dr"].shape == (3, 5) and out.features.dtype == torch.float16
    )
    assert out.sha256 == tuple(r.sha256 for r in images.rows[:3])
    # Logits equal a direct eval-mode forward of the preprocessed images.
    x = torch.stack([first[i][0] for i in range(3)])
    with torch.no_grad():
        direct = model(x).logits["dr"]
    torch.testing.assert_close(out.logits["dr"], direct, rtol=1e-5, atol=1e-5)

    everything = ImageDataset(list(reversed(images.rows)), images.folder, card)
    out2, computed2 = ensure_outputs(
        cache, model, card, everything, device=torch.device("cpu"), batch_size=2
    )
    assert computed2 == 2  # only the two new images
    assert out2.sha256 == tuple(r.sha256 for r in reversed(images.rows))
    torch.testing.assert_close(out2.logits["dr"][2:], torch.flip(out.logits["dr"], [0]))


def test_another_teacher_or_preprocessing_misses_the_cache(tmp_path, images, tiny_cfg) -> None:
    model, card = _teacher(tiny_cfg)
    cache = tmp_path / "cache"
    ds = ImageDataset(images.rows, images.folder, card)
    ensure_outputs(cache, model, card, ds, device=torch.device("cpu"), batch_size=4)
    digest = preprocessing_digest(card)
    assert load_outputs(cache, card.id, digest) is not None
    assert load_outputs(cache, "b" * 64, digest) is None
    resized = card.replace(input_size=40)
    assert preprocessing_digest(resized) != digest
    cropped = card.replace(preprocessing={"fundus_crop": True})
    assert preprocessing_digest(cropped) != digest
    assert load_outputs(cache, card.id, preprocessing_digest(resized)) is None


def test_a_damaged_cache_is_ignored(tmp_path, images, tiny_cfg) -> None:
    model, card = _teacher(tiny_cfg)
    cache = tmp_path / "cache"
    ds = ImageDataset(images.rows[:2], images.folder, card)
    ensure_outputs(cache, model, card, ds, device=torch.device("cpu"), batch_size=4)
    path = cache_path(cache, card.id, preprocessing_digest(card))
    path.write_bytes(path.read_bytes()[:100])
    assert load_outputs(cache, card.id, preprocessing_digest(card)) is None
    _, computed = ensure_outputs(cache, model, card, ds, device=torch.device("cpu"), batch_size=4)
    assert computed == 2


def test_dataset_refuses_a_changed_image(images, tiny_cfg) -> None:
    import pytest

    from training.engine.data import DataIntegrityError

    _, card = _teacher(tiny_cfg)
    (images.folder / "eye0.png").write_bytes((images.folder / "eye1.png").read_bytes())
    with pytest.raises(DataIntegrityError):
        ImageDataset(images.rows, images.folder, card, preload=True)
    with pytest.raises(DataIntegrityError):
        ImageDataset(images.rows, images.folder, card, preload=False)
    ok = [dataclasses.replace(r) for r in images.rows[1:]]
    assert len(ImageDataset(ok, images.folder, card, preload=True)) == 4
