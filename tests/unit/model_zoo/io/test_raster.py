"""JPEG, PNG, TIFF and BMP decoding against reference decoders (Pillow, or the source array)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from model_zoo.io import LoadedImage, read_image

Encode = Callable[..., bytes]
Reference = Callable[[Path], np.ndarray]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _check_output(loaded: LoadedImage, height: int, width: int) -> None:
    assert loaded.rgb.dtype == np.uint8
    assert loaded.rgb.shape == (height, width, 3)
    assert loaded.rgb.flags["C_CONTIGUOUS"]


def _scale16(values: np.ndarray) -> np.ndarray:
    """Independent statement of the 16 -> 8-bit rule: nearest of v * 255 / 65535."""
    return np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


def _ramp16(height: int, width: int) -> np.ndarray:
    ramp = np.linspace(0, 65535, height * width).round().astype(np.uint16).reshape(height, width)
    ramp.flat[:4] = [0, 65535, 257 * 7, 128]  # extremes, an exact multiple, a rounding case
    return ramp


@pytest.mark.parametrize(
    ("fmt", "suffix", "mode", "params"),
    [
        ("PNG", ".png", "RGB", {}),
        ("PNG", ".png", "L", {}),
        ("PNG", ".png", "RGBA", {}),
        ("PNG", ".png", "LA", {}),
        ("PNG", ".png", "P", {}),
        ("TIFF", ".tif", "RGB", {}),
        ("TIFF", ".tiff", "RGB", {"compression": "tiff_lzw"}),
        ("TIFF", ".tif", "RGB", {"compression": "tiff_adobe_deflate"}),
        ("TIFF", ".tif", "L", {}),
        ("BMP", ".bmp", "RGB", {}),
        ("BMP", ".bmp", "L", {}),
        ("BMP", ".bmp", "RGBA", {}),
    ],
)
def test_lossless_8bit_matches_pillow_pixel_for_pixel(
    tmp_path: Path,
    fundus: np.ndarray,
    encode: Encode,
    pil_rgb: Reference,
    fmt: str,
    suffix: str,
    mode: str,
    params: dict[str, object],
) -> None:
    image = Image.fromarray(fundus).convert(mode)
    if "A" in mode:
        alpha = np.full(fundus.shape[:2], 255, np.uint8)
        alpha[:, ::3] = 0  # transparent columns must keep their colour: alpha is dropped
        image.putalpha(Image.fromarray(alpha))
    if mode == "P":
        image = Image.fromarray(fundus).quantize(64)
    path = _write(tmp_path / f"img{suffix}", encode(np.asarray(image), fmt, image.mode, **params))
    loaded = read_image(path)
    _check_output(loaded, *fundus.shape[:2])
    np.testing.assert_array_equal(loaded.rgb, pil_rgb(path))
    assert loaded.meta.file_format == {"PNG": "png", "TIFF": "tiff", "BMP": "bmp"}[fmt]
    assert (loaded.meta.width, loaded.meta.height) == (fundus.shape[1], fundus.shape[0])
    assert loaded.meta.bit_depth == 8


def test_tiff_with_unassociated_alpha_comes_back_composited_on_black(
    tmp_path: Path, fundus: np.ndarray
) -> None:
    # libtiff's RGBA interface (OpenCV's 8-bit TIFF path) premultiplies unassociated alpha;
    # documented in model_zoo.io.decode. On a fundus' black background that is what a viewer
    # shows anyway.
    alpha = np.tile(np.arange(fundus.shape[1], dtype=np.uint16) * 2, (fundus.shape[0], 1))
    alpha = alpha.clip(0, 255).astype(np.uint8)
    image = Image.fromarray(fundus)
    image.putalpha(Image.fromarray(alpha))
    path = tmp_path / "alpha.tif"
    image.save(path)
    expected = (fundus.astype(np.uint32) * alpha[:, :, None] + 127) // 255
    np.testing.assert_array_equal(read_image(path).rgb, expected.astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grey_is_scaled_from_the_pillow_reference(
    tmp_path: Path, encode: Encode, suffix: str
) -> None:
    grey16 = _ramp16(40, 50)
    fmt = "PNG" if suffix == ".png" else "TIFF"
    path = _write(tmp_path / f"g{suffix}", encode(grey16, fmt))
    with Image.open(path) as reference:
        raw = np.asarray(reference).astype(np.uint16)  # Pillow keeps the 16-bit samples
    np.testing.assert_array_equal(raw, grey16)
    loaded = read_image(path)
    expected = _scale16(raw)
    np.testing.assert_array_equal(loaded.rgb, np.repeat(expected[:, :, None], 3, axis=2))
    assert loaded.rgb[0, 0, 0] == 0 and loaded.rgb[0, 1, 0] == 255 and loaded.rgb[0, 2, 0] == 7
    assert loaded.meta.bit_depth == 16


@pytest.mark.parametrize(("suffix", "alpha"), [(".png", False), (".png", True), (".tif", False)])
def test_16bit_colour_is_scaled_from_the_source_array(
    tmp_path: Path, suffix: str, alpha: bool
) -> None:
    # Pillow cannot write 16-bit colour, so OpenCV writes it and the source array is the
    # reference (the formats are lossless).
    ramp = _ramp16(30, 40)
    rgb16 = np.stack([ramp, ramp[::-1], np.roll(65535 - ramp, 7, axis=1)], axis=-1)
    bgr = rgb16[:, :, ::-1]
    if alpha:
        bgr = np.concatenate([bgr, np.full((30, 40, 1), 1000, np.uint16)], axis=2)
    ok, data = cv2.imencode(suffix, np.ascontiguousarray(bgr))
    assert ok
    path = _write(tmp_path / f"c{suffix}", data.tobytes())
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.rgb, _scale16(rgb16))
    assert loaded.meta.bit_depth == 16


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        ("RGB", {"quality": 92}),
        ("RGB", {"quality": 75, "subsampling": 0}),
        ("RGB", {"quality": 85, "progressive": True}),
        ("L", {"quality": 90}),
    ],
)
def test_jpeg_within_tolerance_of_pillow(
    tmp_path: Path,
    fundus: np.ndarray,
    encode: Encode,
    pil_rgb: Reference,
    mode: str,
    params: dict[str, object],
) -> None:
    array = np.asarray(Image.fromarray(fundus).convert(mode))
    path = _write(tmp_path / "photo.jpg", encode(array, "JPEG", mode, **params))
    loaded = read_image(path)
    _check_output(loaded, *fundus.shape[:2])
    diff = np.abs(loaded.rgb.astype(np.int16) - pil_rgb(path).astype(np.int16))
    assert diff.mean() < 1.0
    # The decode is of *this* image (guards against a constant or wrong-channel output).
    assert (
        np.abs(
            loaded.rgb.astype(np.int16) - array.astype(np.int16).reshape(*fundus.shape[:2], -1)
        ).mean()
        < 6
    )


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_jpeg_reduce_matches_libjpeg_scaled_decode(
    tmp_path: Path, make_fundus: Callable[..., np.ndarray], encode: Encode, factor: int
) -> None:
    array = make_fundus(101, 133, seed=3)  # odd sizes: reduced size rounds up
    path = _write(tmp_path / "r.jpg", encode(array, "JPEG", quality=92))
    loaded = read_image(path, reduce=factor)
    height, width = math.ceil(101 / factor), math.ceil(133 / factor)
    _check_output(loaded, height, width)
    with Image.open(path) as reference:
        # Pillow's libjpeg DCT scaling; it picks the scale from the floor sizes.
        reference.draft("RGB", (133 // factor, 101 // factor))
        expected = np.asarray(reference.convert("RGB"))
    assert expected.shape == loaded.rgb.shape
    assert np.abs(loaded.rgb.astype(np.int16) - expected.astype(np.int16)).mean() < 1.0
    assert (loaded.meta.width, loaded.meta.height) == (133, 101)  # meta keeps the full size


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduce_other_formats_is_area_average(
    tmp_path: Path, fundus: np.ndarray, encode: Encode, factor: int
) -> None:
    path = _write(tmp_path / "r.png", encode(fundus, "PNG"))
    loaded = read_image(path, reduce=factor)
    h, w = fundus.shape[0] // factor, fundus.shape[1] // factor
    blocks = fundus.reshape(h, factor, w, factor, 3).astype(np.float64).mean(axis=(1, 3))
    _check_output(loaded, h, w)
    assert np.abs(loaded.rgb.astype(np.float64) - blocks).max() <= 1.0


def test_reduce_rounds_odd_sizes_up(tmp_path: Path, encode: Encode) -> None:
    path = _write(tmp_path / "odd.bmp", encode(np.zeros((9, 17, 3), np.uint8), "BMP"))
    _check_output(read_image(path, reduce=4), 3, 5)
    with pytest.raises(ValueError, match="reduce"):
        read_image(path, reduce=3)


def test_exif_orientation_is_ignored(tmp_path: Path, fundus: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(fundus).save(path, "JPEG", quality=95, exif=exif)
    for factor in (1, 2):
        loaded = read_image(path, reduce=factor)
        assert loaded.rgb.shape[:2] == (fundus.shape[0] // factor, fundus.shape[1] // factor)
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == 6
        reference = np.asarray(stored.convert("RGB"))  # stored order, no transpose
    assert np.abs(read_image(path).rgb.astype(np.int16) - reference).mean() < 1.0


def test_meta_hash_format_and_name_rules(
    tmp_path: Path, fundus: np.ndarray, encode: Encode
) -> None:
    data = encode(fundus, "PNG")
    left = _write(tmp_path / "10_left.png", data)
    meta = read_image(left).meta
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    assert (meta.laterality, meta.laterality_source) == ("L", "filename_rule")
    assert (meta.patient_id, meta.patient_id_source) == ("10", "filename_rule")
    assert meta.modality == meta.sop_instance_uid == meta.study_date == ""
    plain = read_image(_write(tmp_path / "IDRiD_001.png", data)).meta
    assert (plain.laterality, plain.laterality_source, plain.patient_id) == ("", "", "")
    deep = read_image(_write(tmp_path / "316_r2.png", data)).meta
    assert (deep.laterality, deep.patient_id) == ("R", "316")
    # Identity is content: same bytes under another name, same hash.
    assert plain.sha256 == meta.sha256


def test_format_is_taken_from_content_not_suffix(
    tmp_path: Path, fundus: np.ndarray, encode: Encode, pil_rgb: Reference
) -> None:
    path = _write(tmp_path / "actually_png.jpg", encode(fundus, "PNG"))
    loaded = read_image(path)
    assert loaded.meta.file_format == "png"
    np.testing.assert_array_equal(loaded.rgb, pil_rgb(path))
