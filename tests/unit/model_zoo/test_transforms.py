"""Card-defined preprocessing: fundus crop, resize, normalisation, augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from model_zoo.transforms import (
    _as_block,
    choose_reduce,
    eval_transform,
    fundus_crop,
    load_for_model,
    train_transform,
)


def _disc(height: int, width: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    inside = (yy - centre[1]) ** 2 + (xx - centre[0]) ** 2 <= radius**2
    image = np.zeros((height, width, 3), np.uint8)
    image[inside] = (180, 80, 40)
    return image


def test_fundus_crop_finds_the_circle_and_ignores_stray_pixels() -> None:
    image = _disc(200, 300, centre=(170, 95), radius=60)
    image[2, 2] = image[195, 290] = (255, 255, 255)  # hot pixels in the surround
    image[190, 10:25] = (90, 90, 90)  # a short burnt-in mark
    out = fundus_crop(image)
    # The 121-px disc, give or take its one-pixel tips (below the 5 % noise threshold).
    side = out.shape[0]
    assert out.shape == (side, side, 3) and 117 <= side <= 121
    assert (out[side // 2, side // 2] == (180, 80, 40)).all()  # disc centre = crop centre
    assert (out[0, 0] == 0).all() and (out[-1, -1] == 0).all()  # corners are outside the circle
    for edge in (out[0], out[-1], out[:, 0], out[:, -1]):
        assert edge.any()  # the circle touches every side: no surround left


def test_fundus_crop_pads_a_clipped_circle_to_a_centred_square() -> None:
    image = _disc(200, 300, centre=(150, 100), radius=130)  # camera clipped top and bottom
    out = fundus_crop(image)
    side = out.shape[0]
    assert out.shape == (side, side, 3) and 257 <= side <= 261
    rows = np.flatnonzero(out.max(axis=(1, 2)) > 0)
    assert len(rows) == 200  # every image row kept
    assert abs(rows[0] - (side - 1 - rows[-1])) <= 1  # equal black bands above and below


def test_fundus_crop_of_a_black_image_only_pads() -> None:
    out = fundus_crop(np.zeros((40, 60, 3), np.uint8))
    assert out.shape == (60, 60, 3) and not out.any()


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 5, 3))]
)
def test_non_rgb_input_is_refused(bad, tiny_card) -> None:
    with pytest.raises(ValueError, match="RGB"):
        eval_transform(tiny_card)(bad)


def test_eval_transform_resizes_and_normalises_with_the_card(tiny_card) -> None:
    colour = np.array([200, 100, 50], np.uint8)
    image = np.broadcast_to(colour, (90, 130, 3)).copy()
    x = eval_transform(tiny_card)(image)
    assert x.dtype == torch.float32 and x.shape == (3, 64, 64) and x.is_contiguous()
    expected = (colour / 255.0 - np.array(tiny_card.mean)) / np.array(tiny_card.std)
    torch.testing.assert_close(
        x.mean(dim=(1, 2)), torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0
    )
    assert float(x.std(dim=(1, 2)).max()) < 1e-5


def test_a_batch_is_normalised_bit_for_bit_as_each_image_and_laid_out_channels_last(
    tiny_card,
) -> None:
    transform = eval_transform(tiny_card)
    rng = np.random.default_rng(0)
    prepared = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    batch = transform.normalise_batch(prepared)
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)  # what the fast model takes
    assert torch.equal(batch, torch.stack([transform.normalise(p) for p in prepared]))
    assert transform.normalise_batch([]).shape == (0, 3, 64, 64)
    with pytest.raises(ValueError, match="64×64×3 uint8"):
        transform.normalise_batch([prepared[0], prepared[1][:32]])


def test_a_batch_of_consecutive_rows_of_one_block_is_taken_as_it_is(tiny_card) -> None:
    # The input cache reads a forward pass's images as rows of one block: they are normalised
    # from the block itself, and anything else is stacked first, with equal values either way.
    transform = eval_transform(tiny_card)
    block = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    other = block.copy()
    arrangements = {
        "consecutive": [block[1], block[2], block[3]],
        "reversed": [block[3], block[2], block[1]],
        "gap": [block[0], block[2]],
        "transposed": [block[1].transpose(1, 0, 2), block[2]],
        "two blocks": [block[1], other[2]],
    }
    for name, images in arrangements.items():
        expected = torch.stack([transform.normalise(np.ascontiguousarray(i)) for i in images])
        assert torch.equal(transform.normalise_batch(images), expected), name
        as_one = _as_block(images, 64)
        assert np.array_equal(as_one, np.stack(images)), name
        assert np.shares_memory(as_one, block) == (name == "consecutive"), name


def test_eval_transform_crops_when_the_card_says_so(card_factory) -> None:
    image = _disc(200, 300, centre=(60, 100), radius=40)
    cropped = eval_transform(card_factory(fundus_crop=True))(image)
    plain = eval_transform(card_factory(fundus_crop=False))(image)
    black = cropped[:, 0, 0]
    # Cropped: the disc fills the frame (centre pixel is fundus, corners are black);
    # uncropped: the left-centre disc is squeezed and the frame centre is black surround.
    assert not torch.allclose(cropped[:, 32, 32], black)
    torch.testing.assert_close(plain[:, 32, 32], black)


def test_train_transform_without_augment_equals_eval(tiny_card, fundus_image) -> None:
    image = fundus_image()
    torch.testing.assert_close(
        train_transform(tiny_card, augment=False)(image), eval_transform(tiny_card)(image)
    )


def test_augmentation_is_random_reproducible_and_bounded(tiny_card, fundus_image) -> None:
    image = fundus_image()
    augment = train_transform(tiny_card, augment=True)
    torch.manual_seed(3)
    first = [augment(image) for _ in range(4)]
    torch.manual_seed(3)
    again = [augment(image) for _ in range(4)]
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(first[0], first[1])
    plain = eval_transform(tiny_card)(image)
    low = (0 - torch.tensor(tiny_card.mean)) / torch.tensor(tiny_card.std)
    high = (1 - torch.tensor(tiny_card.mean)) / torch.tensor(tiny_card.std)
    for x in first:
        assert x.shape == plain.shape and x.dtype == torch.float32
        assert (x >= low[:, None, None] - 1e-5).all() and (x <= high[:, None, None] + 1e-5).all()


def test_transforms_survive_pickling_for_spawned_dataloader_workers(tiny_card) -> None:
    transform = train_transform(tiny_card, augment=True)
    assert pickle.loads(pickle.dumps(transform)) == transform


@pytest.mark.parametrize(
    ("size", "input_size", "factor"),
    [((3000, 2000), 512, 2), ((3000, 2000), 299, 4), ((3000, 2000), 224, 8), ((100, 80), 224, 1)],
)
def test_choose_reduce(size, input_size, factor) -> None:
    assert choose_reduce(*size, input_size) == factor


def test_load_for_model_decodes_at_the_chosen_reduction(
    tmp_path, tiny_card, write_jpeg, fundus_image
):
    path = write_jpeg(tmp_path / "a.jpg", fundus_image(192, 256))
    for hint in (1, 2, 8):
        loaded = load_for_model(path, tiny_card, reduce_hint=hint)
        assert loaded.rgb.shape == (96, 128, 3)  # 192 / 2 >= 64 > 192 / 4
        assert (loaded.meta.width, loaded.meta.height) == (256, 192)
