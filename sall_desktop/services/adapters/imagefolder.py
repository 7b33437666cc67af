"""ImageFolder export (torchvision / RETFound fine-tuning): ``<out>/<split>/<class>/<file>``.

Export only, for ONE task (``dr``: classes ``0``-``4``; ``amd``: ``0``-``3``). ``<split>`` is the
record's split, or ``all``. Image files are copied (or hard-linked on request), never the
database. Ungradable images and images without a grade for the task are refused (listed as
skipped): an ImageFolder tree has no place for "unknown", and 0 would be a lie.

Safety:
- every target is checked to stay inside the chosen folder (R18); names are sanitised;
- each file is written atomically (R3) and its bytes are re-hashed, so a file that changed since
  it was catalogued is refused rather than exported under the old label (R6);
- DICOM files are refused (their headers carry patient data and ImageFolder readers cannot
  open them); in de-identified exports JPEG/PNG metadata (EXIF, text chunks) is removed
  losslessly and TIFF is refused, because its tags cannot be stripped without re-encoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from model_zoo.fileio import TEMP_PREFIX, atomic_write_bytes
from sall_desktop.services.adapters.base import (
    Adapter,
    ExportItem,
    ExportOptions,
    ExportResult,
    LabelFileError,
    LabelRecord,
    register_adapter,
)
from sall_desktop.services.adapters.privacy import (
    PrivacyError,
    safe_file_name,
    safe_target,
    sniff_image_format,
    strip_jpeg_metadata,
    strip_png_metadata,
)
from sall_desktop.services.adapters.resolve import file_stem

TASKS: dict[str, int] = {"dr": 5, "amd": 4}
"""Task -> number of classes (folder names ``0`` .. ``n-1``)."""
_SUFFIX = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif"}
MAX_IMAGE_BYTES = 512 * 1024 * 1024


def class_of(record: LabelRecord, task: str) -> int | None:
    """The record's class for ``task``, or None when it has none (ungradable or blank)."""
    if record.gradable is False:
        return None
    return record.dr_grade if task == "dr" else record.amd_grade


def _payload(source: Path, expected_sha: str, strip: bool) -> tuple[bytes, str]:
    size = source.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise PrivacyError("the file is too large to export")
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha:
        raise PrivacyError("the file changed since it was catalogued; rescan the folder")
    kind = sniff_image_format(data[:132])
    if kind == "dicom":
        raise PrivacyError("DICOM files cannot go into an ImageFolder tree (patient data)")
    if kind not in _SUFFIX:
        raise PrivacyError("not a JPEG, PNG, BMP or TIFF file")
    if strip:
        if kind == "jpeg":
            data = strip_jpeg_metadata(data)
        elif kind == "png":
            data = strip_png_metadata(data)
        elif kind == "tiff":
            raise PrivacyError("TIFF metadata cannot be removed losslessly; export identified")
    return data, _SUFFIX[kind]


def _link(source: Path, target: Path) -> None:
    # Link to a temporary name, then replace: the target never exists half-made (R3).
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.link(source, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@register_adapter
class ImageFolderAdapter(Adapter):
    """ImageFolder trees for one task (see the module docstring)."""

    name: ClassVar[str] = "imagefolder"
    columns: ClassVar[tuple[str, ...]] = ()
    can_read: ClassVar[bool] = False
    id_style: ClassVar[str] = "name"

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        raise LabelFileError("imagefolder writes a folder tree, not a CSV file")

    def export(
        self, items: Sequence[ExportItem], out_path: Path, options: ExportOptions
    ) -> ExportResult:
        """Build the tree under ``out_path`` (a folder).

        Raises:
            LabelFileError: unknown task, ``out_path`` is a file, or it is a non-empty folder
                and ``options.overwrite`` is False.
        """
        if options.task not in TASKS:
            raise LabelFileError(f"unknown ImageFolder task {options.task!r}; use dr or amd")
        if out_path.exists() and not out_path.is_dir():
            raise LabelFileError(f"{out_path} is a file; an ImageFolder export needs a folder")
        if out_path.is_dir() and any(out_path.iterdir()) and not options.overwrite:
            raise LabelFileError(f"{out_path} is not empty; confirm writing into it")
        if not out_path.parent.is_dir():  # a mistyped path is reported, never made
            raise LabelFileError(f"cannot write {out_path}: there is no folder {out_path.parent}")
        out_path.mkdir(exist_ok=True)
        used: set[tuple[str, str, str]] = set()
        written = 0
        skipped: list[tuple[str, str]] = []
        for item in items:
            label = class_of(item.record, options.task)
            if label is None:
                why = "ungradable" if item.record.gradable is False else f"no {options.task} grade"
                skipped.append((item.image.sha256, why))
                continue
            split = safe_file_name(item.record.split or "all")
            try:
                data, suffix = _payload(
                    Path(item.image.path), item.image.sha256, options.strip_metadata
                )
                stem = safe_file_name(file_stem(item.record.image_id), fallback="image")
                name, counter = stem + suffix, 1
                while (split, str(label), name.casefold()) in used:
                    counter += 1
                    name = f"{stem}_{counter}{suffix}"
                used.add((split, str(label), name.casefold()))
                target = safe_target(out_path, split, str(label), name)
                target.parent.mkdir(parents=True, exist_ok=True)
                if options.hardlink and not options.strip_metadata:
                    try:
                        _link(Path(item.image.path), target)
                    except OSError:
                        atomic_write_bytes(target, data)
                else:
                    atomic_write_bytes(target, data)
            except (PrivacyError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                skipped.append((item.image.sha256, reason))
                continue
            written += 1
        return ExportResult(written=written, skipped=tuple(skipped))
