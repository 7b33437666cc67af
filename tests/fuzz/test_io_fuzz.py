"""R16 for the image loaders: mutated valid files give a LoadedImage or a LoadError, nothing else.

Seeds cover every decoder path: JPEG, PNG 8/16-bit, TIFF, BMP, and DICOM as explicit LE,
JPEG Baseline (OpenCV fast path), RLE, JPEG 2000 and Deflated. Mutations: byte overwrites,
a truncation, an insertion, and header-field "lies" (large integers written over a 2/4-byte
field). 100 examples here; the nightly job raises ``max_examples``.
"""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from model_zoo.io import LoadedImage, LoadError, read_image
from model_zoo.io.dicom_write import write_dicom


def _seed_files() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(16)
    rgb = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
    seeds: list[tuple[str, bytes]] = []
    arrays: list[tuple[str, str, np.ndarray]] = [
        ("JPEG", ".jpg", rgb),
        ("PNG", ".png", rgb),
        ("PNG", ".png", (rgb[:, :, 0].astype(np.uint16) * 257)),
        ("TIFF", ".tif", rgb),
        ("BMP", ".bmp", rgb),
    ]
    for fmt, suffix, array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, fmt)
        seeds.append((suffix, buffer.getvalue()))
    with tempfile.TemporaryDirectory() as folder:
        for syntax in ("explicit_le", "jpeg_baseline", "rle", "jpeg2000", "deflated"):
            path = Path(folder) / f"{syntax}.dcm"
            write_dicom(path, rgb, transfer_syntax=syntax, frames=2, laterality="L")
            seeds.append((".dcm", path.read_bytes()))
    return seeds


SEEDS = _seed_files()

mutation = st.one_of(
    st.tuples(st.just("set"), st.floats(0, 1), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("lie"), st.floats(0, 1), st.sampled_from([0xFFFF, 0xFFFFFFFF, 65535 * 4])),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("cut"), st.floats(0, 1), st.just(b"")),
)


def _mutate(data: bytes, edits: list[tuple[str, float, object]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        # Bias toward headers, where lies do the most damage.
        at = int((where**3) * max(len(out) - 1, 0))
        if kind == "set" and isinstance(value, bytes):
            out[at : at + len(value)] = value
        elif kind == "lie" and isinstance(value, int):
            out[at : at + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif kind == "insert" and isinstance(value, bytes):
            out[at:at] = value
        elif kind == "cut":
            del out[max(at, 1) :]
    return bytes(out)


@settings(
    max_examples=100,
    deadline=None,  # no per-example time limit: a busy machine is not a bug
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    edits=st.lists(mutation, min_size=1, max_size=4),
    reduce=st.sampled_from([1, 2, 8]),
)
def test_mutated_files_load_or_raise_load_error(
    seed: int, edits: list[tuple[str, float, object]], reduce: int
) -> None:
    suffix, data = SEEDS[seed]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"10_left{suffix}"
        path.write_bytes(_mutate(data, edits))
        try:
            loaded = read_image(path, reduce=reduce, max_pixels=4_000_000)
        except LoadError as error:
            assert str(error).startswith(path.name)
            return
    assert isinstance(loaded, LoadedImage)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3
    assert loaded.rgb.flags["C_CONTIGUOUS"]
    assert loaded.rgb.shape[0] >= 1 and loaded.rgb.shape[1] >= 1


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_seeds_are_valid(index: int) -> None:
    suffix, data = SEEDS[index]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"seed{suffix}"
        path.write_bytes(data)
        assert read_image(path).rgb.shape == (36, 40, 3)
