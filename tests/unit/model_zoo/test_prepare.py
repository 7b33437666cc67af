"""The torch-free model-input spec: keys, the card's spec, decoding at the right reduction."""

from __future__ import annotations

from pathlib import Path

from model_zoo.prepare import InputSpec, read_for_model
from model_zoo.transforms import eval_transform


def test_specs_that_change_the_pixels_have_their_own_keys() -> None:
    base = InputSpec(224, "bilinear", fundus_crop=True, crop_threshold=10)
    variants = [
        InputSpec(256, "bilinear", fundus_crop=True, crop_threshold=10),
        InputSpec(224, "bicubic", fundus_crop=True, crop_threshold=10),
        InputSpec(224, "bilinear", fundus_crop=False, crop_threshold=10),
        InputSpec(224, "bilinear", fundus_crop=True, crop_threshold=20),
    ]
    keys = {base.key, *(v.key for v in variants)}
    assert len(keys) == 5
    assert InputSpec(224, "bilinear", True, 10).key == base.key  # deterministic


def test_the_spec_of_a_card_is_the_transform_s(card_factory) -> None:
    card = card_factory(input_size=96, fundus_crop=True)
    card = card.replace(preprocessing={**card.preprocessing, "crop_threshold": 12})
    spec = InputSpec.of(card)
    assert spec == eval_transform(card).input_spec
    assert (spec.input_size, spec.fundus_crop, spec.crop_threshold) == (96, True, 12)


def test_a_fine_tuned_version_shares_its_parent_s_inputs(card_factory) -> None:
    parent = card_factory(input_size=64)
    child = parent.replace(id="e" * 64, version="2", mean=(0.4, 0.4, 0.4))
    # Normalisation is applied after the cache, so it does not split the key.
    assert InputSpec.of(parent).key == InputSpec.of(child).key


def test_read_for_model_decodes_at_the_reduction_the_size_calls_for(
    tmp_path: Path, write_jpeg, fundus_image
) -> None:
    path = write_jpeg(tmp_path / "a.jpg", fundus_image(400, 600))
    # Short side 400: 1/4 gives 100 >= 96; 1/8 would give 50.
    for hint in (8, 4, 1):
        loaded = read_for_model(path, 96, reduce_hint=hint)
        assert loaded.rgb.shape == (100, 150, 3)
        assert loaded.meta.width == 600 and loaded.meta.height == 400
