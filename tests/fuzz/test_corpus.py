"""Issue 22, item 1: every decoder failure is a ``LoadError``.

The regression corpus (``tests/fuzz/corpus/``), the issue's reproduction (one byte of a VR
changed) on every transfer syntax that has VRs, a data set nested deeper than Python's recursion
limit, and each exception type a decoder can raise, forced at the decode boundary.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

import model_zoo.io.decode as decode_module
from model_zoo.io import LoadedImage, LoadError, read_image
from tests.fuzz.hostile import CORPUS, damaged_vr, dicom_bytes

CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.suffix != ".md")


def test_the_corpus_is_there() -> None:
    assert len([p for p in CORPUS_FILES if p.name.startswith("vr-")]) == 22
    assert sum(p.stat().st_size for p in CORPUS_FILES) < 400_000  # small enough to commit


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_loads_or_raises_load_error(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    try:
        loaded = read_image(copy)
    except LoadError as error:
        assert str(error).startswith(copy.name + " ")
        if path.name.startswith("vr-"):
            assert error.reason == "corrupt", str(error)
        if path.name.startswith("bomb-"):
            assert error.reason == "deflate_bomb", str(error)
        if path.name.startswith("j2k-size-"):  # 1.4 GB before the SIZ marker was checked
            assert error.reason == "corrupt" and "JPEG 2000 frame" in str(error), str(error)
        return
    assert isinstance(loaded, LoadedImage)
    assert not path.name.startswith(("vr-", "bomb-", "j2k-size-")), "expected a refusal"


VR_CASES = [
    ((0x0028, 0x0002), b"US"),  # Samples per Pixel: the example
    ((0x0028, 0x0010), b"US"),  # Rows
    ((0x0028, 0x0100), b"US"),  # Bits Allocated
    ((0x0028, 0x0004), b"CS"),  # Photometric Interpretation
    ((0x0008, 0x0016), b"UI"),  # SOP Class UID
]


@pytest.mark.parametrize(
    "syntax", ["explicit_le", "jpeg_baseline", "rle", "jpeg2000", "jpeg_lossless", "deflated"]
)
@pytest.mark.parametrize(("tag", "vr"), VR_CASES, ids=lambda v: str(v))
def test_one_byte_of_a_vr_changed_is_a_load_error(
    tmp_path: Path, syntax: str, tag: tuple[int, int], vr: bytes
) -> None:
    rgb = np.random.default_rng(22).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / f"{syntax}.dcm"
    if syntax == "deflated":  # the VR sits inside the deflated stream: damage it there
        plain = damaged_vr(rgb, "explicit_le", tag, vr)
        path.write_bytes(_deflated(plain))
    else:
        path.write_bytes(damaged_vr(rgb, syntax, tag, vr))
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert caught.value.reason in ("corrupt", "unsupported_sop_class"), str(caught.value)


def _deflated(explicit: bytes) -> bytes:
    """An Explicit VR LE file as the same data set under Deflated Explicit VR LE."""
    meta_end = 132 + 12 + struct.unpack("<I", explicit[140:144])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the damaged VR: pydicom warns, the meta group is fine
        meta = pydicom.dcmread(io.BytesIO(explicit), stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    out = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_file_meta_info(out, meta, enforce_standard=True)
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = packer.compress(explicit[meta_end:]) + packer.flush()
    return explicit[:128] + b"DICM" + out.getvalue() + body


def _nested(depth: int) -> bytes:
    """Explicit VR LE elements: ``depth`` sequences of undefined length, each in the last."""
    opening = b"\x40\x00\x30\xa7SQ\0\0\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0"
    return opening * depth + closing * depth


def test_a_data_set_nested_too_deeply_is_a_load_error(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    data = dicom_bytes(rgb, "explicit_le")
    at = data.find(b"\xe0\x7f\x10\x00")  # the nesting goes just before Pixel Data
    path = tmp_path / "nested.dcm"
    path.write_bytes(data[:at] + _nested(5000) + data[at:])
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert caught.value.reason == "corrupt"


def _raiser(error: BaseException) -> Callable[..., object]:
    def raise_it(*_args: object, **_kwargs: object) -> object:
        raise error

    return raise_it


@pytest.mark.parametrize(
    ("error", "reason", "words"),
    [
        (NotImplementedError("Unknown Value Representation"), "corrupt", "NotImplementedError"),
        (RecursionError("maximum recursion depth exceeded"), "corrupt", "nested too deeply"),
        (MemoryError(), "too_large", "more memory"),
        (struct.error("unpack requires a buffer of 4 bytes"), "corrupt", "error: unpack"),
        (zlib.error("invalid stored block lengths"), "corrupt", "invalid stored block"),
        (AttributeError("'NoneType' object has no attribute 'value'"), "corrupt", "Attribute"),
        (OverflowError("Python int too large to convert to C long"), "corrupt", "Overflow"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
@pytest.mark.parametrize("fmt", ["png", "dicom"])
def test_any_decoder_exception_becomes_a_load_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    error: BaseException,
    reason: str,
    words: str,
) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    path = tmp_path / ("a.dcm" if fmt == "dicom" else "a.png")
    if fmt == "dicom":
        path.write_bytes(dicom_bytes(rgb, "explicit_le"))
        monkeypatch.setattr(decode_module, "decode_dicom", _raiser(error))
    else:
        import cv2

        path.write_bytes(cv2.imencode(".png", rgb)[1].tobytes())
        monkeypatch.setattr(decode_module, "_decode_raster", _raiser(error))
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert caught.value.reason == reason
    assert words in str(caught.value) and str(caught.value).startswith("a.")
