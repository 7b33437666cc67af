"""ImageFolder export and export privacy helpers (R18 safe names, R19 pseudonyms/metadata)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from sall_desktop.domain.grades import ImageRecord
from sall_desktop.services.adapters import (
    ExportItem,
    ExportOptions,
    LabelFileError,
    LabelRecord,
    get_adapter,
)
from sall_desktop.services.adapters.privacy import (
    PrivacyError,
    load_or_create_site_key,
    pseudonym,
    safe_file_name,
    safe_target,
    strip_jpeg_metadata,
    strip_png_metadata,
)

PHI = "SMITH^JOHN-1234"


def jpeg_with_exif(seed: int) -> bytes:
    image = Image.new("RGB", (16, 12), (seed * 40 % 256, 80, 120))
    exif = Image.Exif()
    exif[0x010E] = PHI  # ImageDescription
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), comment=PHI.encode())
    return buffer.getvalue()


def png_with_text(seed: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", PHI)
    info.add_itxt("Comment", PHI)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed, 1, 2)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def make(folder: Path, name: str, data: bytes) -> ImageRecord:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ImageRecord(hashlib.sha256(data).hexdigest(), str(path))


def item(image: ImageRecord, **kwargs: object) -> ExportItem:
    stem = Path(image.path).name
    return ExportItem(LabelRecord(image_id=stem, **kwargs), image)  # type: ignore[arg-type]


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_layout_one_task_and_refusals(tmp_path: Path) -> None:
    src = tmp_path / "src"
    a = make(src, "a.jpg", jpeg_with_exif(1))
    b = make(src, "b.png", png_with_text(2))
    c = make(src, "c.jpg", jpeg_with_exif(3))
    d = make(src, "d.jpg", jpeg_with_exif(4))
    dcm = make(src, "e.dcm", b"\0" * 128 + b"DICM" + b"\0" * 64)
    items = [
        item(a, dr_grade=2, amd_grade=1, split="train"),
        item(b, dr_grade=0, split="val"),
        item(c, gradable=False),
        item(d, amd_grade=3),  # no DR grade: unknown, not class 0
        item(dcm, dr_grade=1),
    ]
    out = tmp_path / "out"
    result = get_adapter("imagefolder").export(items, out, ExportOptions(strip_metadata=False))
    assert tree(out) == ["train/2/a.jpg", "val/0/b.png"]
    assert (out / "train/2/a.jpg").read_bytes() == Path(a.path).read_bytes()
    reasons = dict(result.skipped)
    assert result.written == 2
    assert reasons[c.sha256] == "ungradable"
    assert reasons[d.sha256] == "no dr grade"
    assert "DICOM" in reasons[dcm.sha256]

    amd = tmp_path / "amd"
    get_adapter("imagefolder").export(items, amd, ExportOptions(task="amd", strip_metadata=False))
    assert tree(amd) == ["all/3/d.jpg", "train/1/a.jpg"]


def test_never_writes_into_a_non_empty_folder_without_consent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    a = make(tmp_path / "src", "a.jpg", jpeg_with_exif(1))
    with pytest.raises(LabelFileError, match="not empty"):
        get_adapter("imagefolder").export(
            [item(a, dr_grade=1)], out, ExportOptions(overwrite=False)
        )
    with pytest.raises(LabelFileError, match="task"):
        get_adapter("imagefolder").export([], tmp_path / "x", ExportOptions(task="dme"))
    assert tree(out) == ["keep.txt"]


def test_a_missing_parent_folder_is_reported_not_made(tmp_path: Path) -> None:
    a = make(tmp_path / "src", "a.jpg", jpeg_with_exif(1))
    target = tmp_path / "typo" / "out"
    with pytest.raises(LabelFileError, match="there is no folder"):
        get_adapter("imagefolder").export([item(a, dr_grade=1)], target, ExportOptions())
    assert not (tmp_path / "typo").exists()


def test_de_identified_tree_strips_metadata_losslessly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    a = make(src, f"{PHI}.jpg", jpeg_with_exif(1))
    b = make(src, "b.png", png_with_text(2))
    items = [
        ExportItem(LabelRecord("pseudo1", dr_grade=1), a),
        ExportItem(LabelRecord("pseudo2", dr_grade=4), b),
    ]
    out = tmp_path / "out"
    result = get_adapter("imagefolder").export(items, out, ExportOptions(strip_metadata=True))
    assert result.written == 2
    assert tree(out) == ["all/1/pseudo1.jpg", "all/4/pseudo2.png"]
    for exported, original in ((out / "all/1/pseudo1.jpg", a), (out / "all/4/pseudo2.png", b)):
        data = exported.read_bytes()
        assert PHI.encode() not in data
        with Image.open(exported) as new, Image.open(original.path) as old:
            assert new.tobytes() == old.tobytes()


def test_changed_file_and_tiff_are_refused_in_de_identified_exports(tmp_path: Path) -> None:
    src = tmp_path / "src"
    a = make(src, "a.jpg", jpeg_with_exif(1))
    Path(a.path).write_bytes(jpeg_with_exif(9))  # changed after cataloguing
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "TIFF")
    t = make(src, "t.tif", buffer.getvalue())
    result = get_adapter("imagefolder").export(
        [item(a, dr_grade=1), item(t, dr_grade=1)], tmp_path / "out", ExportOptions()
    )
    reasons = dict(result.skipped)
    assert "changed" in reasons[a.sha256]
    assert "TIFF" in reasons[t.sha256]
    assert result.written == 0


def test_hardlinks_when_asked(tmp_path: Path) -> None:
    a = make(tmp_path / "src", "a.jpg", jpeg_with_exif(1))
    out = tmp_path / "out"
    options = ExportOptions(strip_metadata=False, hardlink=True)
    get_adapter("imagefolder").export([item(a, dr_grade=1)], out, options)
    assert os.path.samefile(out / "all/1/a.jpg", a.path)


@pytest.mark.parametrize(
    "raw",
    ["../../x", "C:\\Windows\\x", "CON", "con.txt", "a/b", "a\0b", "x" * 300, "..", "", " . "],
)
def test_safe_file_names_stay_inside_the_folder(tmp_path: Path, raw: str) -> None:
    name = safe_file_name(raw)
    assert name and len(name) <= 120
    assert "/" not in name and "\\" not in name and "\0" not in name and ":" not in name
    assert name.split(".")[0].casefold() not in {"con", "prn", "aux", "nul"}
    target = safe_target(tmp_path, name)
    assert target.resolve().parent == tmp_path.resolve()


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "export"
    root.mkdir()
    (root / "all").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PrivacyError, match="outside"):
        safe_target(root, "all", "x.jpg")
    with pytest.raises(PrivacyError, match="safe"):
        safe_target(root, "..", "x.jpg")


def test_pseudonyms_are_stable_per_site_and_differ_across_sites(tmp_path: Path) -> None:
    key = load_or_create_site_key(tmp_path)
    assert load_or_create_site_key(tmp_path) == key
    other = load_or_create_site_key(tmp_path / "other")
    sha = "ab" * 32
    assert pseudonym(key, sha, kind="image") == pseudonym(key, sha, kind="image")
    assert pseudonym(key, sha, kind="image") != pseudonym(other, sha, kind="image")
    assert pseudonym(key, "P1", kind="patient") != pseudonym(key, "P1", kind="image")
    with pytest.raises(PrivacyError):
        pseudonym(b"short", sha, kind="image")


def test_strippers_refuse_malformed_files() -> None:
    with pytest.raises(PrivacyError):
        strip_jpeg_metadata(b"\xff\xd8\xff\xe1\xff\xff")
    with pytest.raises(PrivacyError):
        strip_png_metadata(b"\x89PNG\r\n\x1a\n\0\0\0\xffIHDR")
    with pytest.raises(PrivacyError):
        strip_jpeg_metadata(b"GIF89a")
