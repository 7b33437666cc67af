"""Which grading of each image an export writes, and how it becomes a (de-identified) record."""

from __future__ import annotations

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.services.adapters.base import Adapter, ExportItem, LabelRecord
from sall_desktop.services.adapters.privacy import pseudonym
from sall_desktop.services.adapters.resolve import file_name, file_stem
from sall_desktop.store.repository import LabelRepository


def choose_gradings(store: LabelRepository, grader: str | None) -> dict[str, Grading]:
    """Each image's exported grading: ``grader``'s current one, else the latest human one.

    "Human" means any role but REFERENCE. Among those, an arbiter's grading wins; otherwise
    the most recent (``created_at``) current grading of any grader.
    """
    if grader is not None:
        return {g.image_sha256: g for g in store.current_gradings(grader=grader)}
    chosen: dict[str, Grading] = {}
    for grading in store.current_gradings():
        if grading.role is GraderRole.REFERENCE:
            continue
        held = chosen.get(grading.image_sha256)
        key = (grading.role is GraderRole.ARBITER, grading.created_at)
        if held is None or key > (held.role is GraderRole.ARBITER, held.created_at):
            chosen[grading.image_sha256] = grading
    return chosen


def missing_gradings(store: LabelRepository, grader: str | None) -> tuple[int, tuple[str, ...]]:
    """Why an export may write fewer rows than the store has images.

    Returns:
        The number of stored images (by content) without a grading the export would write (see
        :func:`choose_gradings`), and the reference sources (``reference:<name>``) holding
        labels for some of them (they are exported only when asked for with ``grader``).
    """
    chosen = choose_gradings(store, grader)
    missing = {image.sha256 for image in store.list_images()} - chosen.keys()
    references = set()
    if grader is None and missing:
        references = {
            g.grader
            for g in store.current_gradings()
            if g.role is GraderRole.REFERENCE and g.image_sha256 in missing
        }
    return len(missing), tuple(sorted(references))


def export_id(adapter: Adapter, image: ImageRecord) -> str:
    """The image's id in an identified export: its stem, file name or path (``id_style``)."""
    if adapter.id_style == "path":
        return image.path
    return file_name(image.path) if adapter.id_style == "name" else file_stem(image.path)


def export_record(
    adapter: Adapter,
    grading: Grading,
    image: ImageRecord,
    *,
    identified: bool,
    key: bytes,
    include_notes: bool,
    split: str,
) -> LabelRecord:
    """The record an export writes for ``grading`` of ``image``.

    Identified: the native id, path, content hash, patient id and full timestamp. De-identified
    (R19): an HMAC pseudonym of the content hash as id (keeping the file suffix where the format
    ids carry one), a pseudonymous patient id, no path or hash, the year only, no notes.

    Args:
        adapter: the target format (decides the id style).
        grading: the grading to write.
        image: where the image is now (R6: paths come from the catalogue, not the store).
        identified: write identifying columns (an explicit, recorded choice).
        key: site key for pseudonyms (unused when identified).
        include_notes: write the free-text notes (callers allow this only when identified).
        split: the image's split ("" when none).
    """
    if identified:
        image_id, sha, path = export_id(adapter, image), image.sha256, image.path
        patient, stamp = image.patient_id, grading.created_at
    else:
        image_id = pseudonym(key, image.sha256, kind="image")
        if adapter.id_style == "name":
            suffix = file_name(image.path)[len(file_stem(image.path)) :]
            image_id += suffix
        sha = path = ""
        patient = pseudonym(key, image.patient_id, kind="patient") if image.patient_id else ""
        stamp = grading.created_at[:4]
    return LabelRecord(
        image_id=image_id,
        sha256=sha,
        file_path=path,
        patient_id=patient,
        laterality=image.laterality,
        laterality_source=image.laterality_source,
        gradable=grading.gradable,
        ungradable_reason=grading.ungradable_reason,
        dr_grade=grading.dr_grade,
        amd_grade=grading.amd_grade,
        dme=grading.dme,
        grader=grading.grader,
        grader_role=grading.role,
        source=grading.source,
        timestamp=stamp,
        model_version=grading.model_version or "",
        notes=grading.notes.replace("\0", "\ufffd") if include_notes else "",
        split=split,
    )


def unique_ids(
    items: list[ExportItem], adapter: Adapter
) -> tuple[list[ExportItem], list[tuple[str, str]]]:
    """Drop rows whose id would name two different images (the consumer could not tell)."""
    if adapter.id_style == "path" or not adapter.columns:
        return items, []
    counts: dict[str, int] = {}
    for item in items:
        counts[item.record.image_id.casefold()] = counts.get(item.record.image_id.casefold(), 0) + 1
    kept = [i for i in items if counts[i.record.image_id.casefold()] == 1]
    skipped = [
        (
            i.image.sha256,
            f"id {i.record.image_id!r} would name {counts[i.record.image_id.casefold()]}"
            " different images",
        )
        for i in items
        if counts[i.record.image_id.casefold()] > 1
    ]
    return kept, skipped
