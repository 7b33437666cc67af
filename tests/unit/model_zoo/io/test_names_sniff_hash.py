"""File-name rules, the magic-byte allowlist and content hashing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from model_zoo.io import SUPPORTED_SUFFIXES, hash_bytes, hash_file, name_rules, sniff_format


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("10_left", ("L", "10")),
        ("10_right", ("R", "10")),
        ("15731_LEFT", ("L", "15731")),
        ("patient_7_right", ("R", "patient_7")),
        ("1_l1", ("L", "1")),
        ("316_r2", ("R", "316")),
        ("316_R1", ("R", "316")),
        ("IDRiD_001", None),
        ("0a4e1a29ffff", None),
        ("_left", None),
        ("left", None),
        ("10_leftover", None),
        ("10_l", None),
    ],
)
def test_name_rules(stem: str, expected: tuple[str, str] | None) -> None:
    assert name_rules(stem) == expected


def _dicom_head(preamble: bytes = b"\0" * 128) -> bytes:
    return preamble + b"DICM" + b"\x02\x00"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"II+\x00\x08\x00\x00\x00", "tiff"),
        (b"BM" + b"\0" * 12 + b"\x28\0\0\0" + b"\0" * 8, "bmp"),
        (_dicom_head(), "dicom"),
        (_dicom_head(b"II*\x00" + b"\0" * 124), "dicom"),  # dual-personality preamble
        (b"BM is a text line that starts like a bitmap", None),
        (b"GIF89a", None),
        (b"P6\n16 16\n255\n", None),
        (b"\xff\x4f\xff\x51", None),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_hashes_agree_with_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert hash_file(path) == hash_bytes(data) == expected


def test_supported_suffixes() -> None:
    assert SUPPORTED_SUFFIXES == {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm"}
