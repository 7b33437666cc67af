"""Which grading of each image an export writes, and how it becomes a (de-identified) record.

Without a screening programme an export writes each image's latest human grading
(:func:`choose_gradings`). With one, and no grader chosen, it writes each image's *final grade*
(:func:`choose_final_gradings`): the arbiter's, the secondary grader's when the two levels
agreed, the primary grader's for a normal the sample did not pick; an image still waiting for a
level is left out and reported. Each record also carries the derived columns
(:class:`~.derived.DerivedColumns`) that the canonical format writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource, ImageRecord
from sall_desktop.domain.nhs import nhs_code
from sall_desktop.domain.programme import FinalGrade, HowReached, Levels
from sall_desktop.services.adapters.base import Adapter, ExportItem, LabelRecord
from sall_desktop.services.adapters.derived import DerivedColumns
from sall_desktop.services.adapters.privacy import pseudonym
from sall_desktop.services.adapters.resolve import file_name, file_stem
from sall_desktop.services.programme import ProgrammeState, load_state, visit_outcomes
from sall_desktop.store import PgLabelStore, SqliteLabelStore
from sall_desktop.store.repository import LabelRepository

LATEST_RULE = "latest human grading per image"
FINAL_RULE = "final grade per image (screening programme)"
WAITING_SECOND = "waiting for second grading"
WAITING_ARBITRATION = "waiting for arbitration"


def _arbitrated(grading: Grading) -> bool:
    return grading.role is GraderRole.ARBITER and grading.source is not GradingSource.IMPORT


def choose_gradings(store: LabelRepository, grader: str | None) -> dict[str, Grading]:
    """Each image's exported grading: ``grader``'s current one, else the latest human one.

    "Human" means any role but REFERENCE. Among those, an arbiter's grading typed in the app
    wins (an imported row never takes that precedence); otherwise the most recent
    (``created_at``) current grading of any grader.
    """
    if grader is not None:
        return {g.image_sha256: g for g in store.current_gradings(grader=grader)}
    chosen: dict[str, Grading] = {}
    for grading in store.current_gradings():
        if grading.role is GraderRole.REFERENCE:
            continue
        held = chosen.get(grading.image_sha256)
        key = (_arbitrated(grading), grading.created_at)
        if held is None or key > (_arbitrated(held), held.created_at):
            chosen[grading.image_sha256] = grading
    return chosen


@dataclass(frozen=True, slots=True)
class ExportChoice:
    """Which grading of each image an export writes, and why some images are held back.

    Attributes:
        gradings: image SHA-256 -> the grading to write.
        rule: which grading is written, in words (the export summary's grader rule).
        finals: image SHA-256 -> its final grade (programme exports only).
        pending: image SHA-256 -> why it waits (programme exports only): left out, reported.
        visits: image SHA-256 -> its visit's NHS outcome text (programme exports only; absent
            while an image of the visit waits, or when the image has no patient id).
    """

    gradings: Mapping[str, Grading]
    rule: str
    finals: Mapping[str, FinalGrade] = field(default_factory=dict)
    pending: Mapping[str, str] = field(default_factory=dict)
    visits: Mapping[str, str] = field(default_factory=dict)


def waiting_reason(levels: Levels) -> str:
    """Why an image has no final grade yet: the level it waits for."""
    return WAITING_ARBITRATION if levels.to_arbitration else WAITING_SECOND


def choose_final_gradings(state: ProgrammeState) -> ExportChoice:
    """Each image's final grade (see the module docstring); pending images are held back."""
    gradings: dict[str, Grading] = {}
    finals: dict[str, FinalGrade] = {}
    pending: dict[str, str] = {}
    for sha, final in state.finals().items():
        if final.how is HowReached.PENDING or final.grading is None:
            pending[sha] = waiting_reason(state.levels_of(sha))
        else:
            gradings[sha], finals[sha] = final.grading, final
    return ExportChoice(gradings, FINAL_RULE, finals, pending)


def visit_texts(images: Iterable[ImageRecord], finals: Mapping[str, FinalGrade]) -> dict[str, str]:
    """Image SHA-256 -> the NHS outcome text of its visit (the worse eye), for settled visits.

    ``finals`` must include the pending final grades (``ProgrammeState.finals()``): a visit
    with an image still waiting for a level has no outcome yet. Images without a patient id
    belong to no visit.
    """
    known = [image for image in images if image.patient_id]
    outcomes = {(o.patient_id, o.visit): o for o in visit_outcomes(known, finals)}
    out: dict[str, str] = {}
    for image in known:
        visit = outcomes[(image.patient_id, image.study_date)]
        if visit.outcome is not None and not visit.pending:
            out[image.sha256] = visit.outcome.text
    return out


def choose_export(
    store: LabelRepository, grader: str | None, images: Sequence[ImageRecord] | None = None
) -> ExportChoice:
    """The export's choice: final grades when a programme is set up and no grader is chosen
    (:func:`choose_final_gradings`), else :func:`choose_gradings`.

    Args:
        store: the label store.
        grader: the chosen grader, or None.
        images: the exported images; given, programme exports also get the visit outcomes
            (visits are grouped over these and every stored image).
    """
    if grader is None and isinstance(store, SqliteLabelStore | PgLabelStore):
        state = load_state(store)
        if state.active:
            choice = choose_final_gradings(state)
            if images is None:
                return choice
            catalogue = {image.sha256: image for image in store.list_images()}
            catalogue.update((image.sha256, image) for image in images)
            return replace(choice, visits=visit_texts(catalogue.values(), state.finals()))
    rule = f"grader {grader}" if grader is not None else LATEST_RULE
    return ExportChoice(choose_gradings(store, grader), rule)


def missing_gradings(store: LabelRepository, grader: str | None) -> tuple[int, tuple[str, ...]]:
    """Why an export may write fewer rows than the store has images.

    Returns:
        The number of stored images (by content) without a grading the export would write (see
        :func:`choose_export`; images waiting for a programme level are not counted, the
        export reports them), and the reference sources (``reference:<name>``) holding labels
        for some of them (they are exported only when asked for with ``grader``).
    """
    choice = choose_export(store, grader)
    stored = {image.sha256 for image in store.list_images()}
    missing = stored - choice.gradings.keys() - choice.pending.keys()
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
    final: FinalGrade | None = None,
    visit: str = "",
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
        final: the image's final grade when ``grading`` is one (programme exports).
        visit: the NHS outcome text of the image's visit ("" when unknown).
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

    def who(name: str) -> str:
        return grader_label(name, identified=identified, key=key)

    grader = grading.grader if grading.role is GraderRole.REFERENCE else who(grading.grader)
    nhs_r, nhs_m, nhs_lossy = nhs_cells(grading)
    derived = DerivedColumns(
        how_reached=final.how.value if final else "",
        primary_grader=who(final.primary) if final else "",
        secondary_grader=who(final.secondary) if final else "",
        arbiter=who(final.arbiter) if final else "",
        nhs_r=nhs_r,
        nhs_m=nhs_m,
        nhs_lossy=nhs_lossy,
        visit_outcome=visit,
    )
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
        grader=grader,
        grader_role=grading.role,
        source=grading.source,
        timestamp=stamp,
        model_version=grading.model_version or "",
        notes=grading.notes.replace("\0", "\ufffd") if include_notes else "",
        split=split,
        derived=derived,
    )


def grader_label(name: str, *, identified: bool, key: bytes) -> str:
    """A grader's name as an export writes it: itself when identified, else a keyed pseudonym
    (grader names may be personal data, R19); "" stays ""."""
    if identified or not name:
        return name
    return pseudonym(key, name, kind="grader")


def nhs_cells(grading: Grading) -> tuple[str, str, str]:
    """``nhs_r``, ``nhs_m`` and ``nhs_lossy`` of one grading (U: blank codes, gradable is 0)."""
    code = nhs_code(grading)
    if not code.ungradable and not code.r and not code.m:
        return "", "", ""
    return code.r, code.m, "1" if code.lossy else "0"


def nhs_lossy_note(adapter: Adapter, records: Iterable[LabelRecord]) -> str:
    """The export note counting rows whose NHS code is lossy ("" when none, or no NHS column)."""
    if "nhs_lossy" not in adapter.columns:
        return ""
    count = sum(1 for record in records if record.derived.nhs_lossy == "1")
    if not count:
        return ""
    rows = "1 row carries" if count == 1 else f"{count} rows carry"
    return (
        f"{rows} an NHS code that ICDR cannot give exactly (ICDR 2 -> R1/R2, DME 1 -> M0); "
        "nhs_lossy is 1 on those rows"
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
