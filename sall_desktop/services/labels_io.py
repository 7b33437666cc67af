"""Import label files into the store and export current labels (issue 2, point 5).

**Import** (:func:`import_labels`) reads a file with its adapter, resolves dataset ids to image
content once (R6), and appends gradings for ONE grader: a named grader (``as_grader``) or a
reference source (``as_reference``, role REFERENCE, source IMPORT, grader ``reference:<name>``).
It never writes under any other grader's name, so it can never change another grader's grades
(R5). For its own grader it adds what is new, leaves equal grades alone, and reports different
ones as conflicts; ``replace=True`` supersedes only grades that an *import* wrote: a grade a
person entered in the app (source human or accepted prediction) is never superseded by a file.
Every write goes through ``add_grading(..., reason="import <file>")`` and is therefore audited.

Formats that carry only some fields (EyePACS: DR only) merge into the grader's current grading:
fields the format does not carry are absent, not blank, so they neither conflict nor get erased.

**Export** (:func:`export_labels`) writes each image's current grading: the chosen ``grader``'s,
or else the *latest human grading* across graders (roles primary/secondary/arbiter; an arbiter's
grading wins over the others because arbitration settles disagreements; reference labels are
never picked implicitly); in a screening programme, each image's *final grade*, images still
waiting for a level left out and reported (``adapters.export_rows.choose_export``). Files are
replaced atomically (R3), free text is formula-escaped (R17), ungradable is blank (never 0),
names stay inside the chosen folder (R18), and exports are de-identified by default (R19): keyed
pseudonyms instead of ids, paths, hashes and grader names, year-only dates, no notes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sall_desktop.domain.grades import (
    GraderRole,
    ImageRecord,
    utc_now,
)
from sall_desktop.services import import_rules as rules
from sall_desktop.services.adapters import (
    Adapter,
    ExportItem,
    ExportOptions,
    LabelFileError,
    LabelRecord,
    get_adapter,
    resolve_ids,
)
from sall_desktop.services.adapters.export_rows import (
    choose_export,
    choose_gradings,
    export_record,
    nhs_lossy_note,
    unique_ids,
)
from sall_desktop.services.adapters.privacy import load_or_create_site_key
from sall_desktop.services.adapters.report import (
    GRADE_FIELDS,
    INFO_KINDS,
    REPORT_COLUMNS,
    ImportIssue,
    ImportReport,
    IssueKind,
    describe_values,
)
from sall_desktop.services.paths import data_dir, refuse_protected_target, store_file
from sall_desktop.store.repository import LabelRepository
from training.protocol.csvsafe import CsvFormatError, read_csv_text

REFERENCE_PREFIX = "reference:"


def _grader_and_role(
    store: LabelRepository, as_grader: str | None, as_reference: str | None
) -> tuple[str, GraderRole]:
    if (as_grader is None) == (as_reference is None):
        raise ValueError("import as exactly one of a named grader or a reference source")
    if as_reference is not None:
        name = as_reference.strip()
        if not name.removeprefix(REFERENCE_PREFIX).strip():
            raise ValueError("a reference import needs a source name, e.g. eyepacs")
        grader = name if name.startswith(REFERENCE_PREFIX) else REFERENCE_PREFIX + name
        store.add_grader(grader, GraderRole.REFERENCE)
        return grader, GraderRole.REFERENCE
    grader = (as_grader or "").strip()
    if not grader:
        raise ValueError("an import needs a named grader")
    roles = store.grader_roles(grader)
    if not roles:
        store.add_grader(grader, GraderRole.PRIMARY)
        return grader, GraderRole.PRIMARY
    # An import is never an arbiter's word: the arbiter's grade is final, and a file cannot
    # say who decided. A grader who grades only at the secondary level imports there.
    if roles & {GraderRole.PRIMARY, GraderRole.SECONDARY} == {GraderRole.SECONDARY}:
        return grader, GraderRole.SECONDARY
    return grader, GraderRole.PRIMARY


def _resolve(
    records: Sequence[LabelRecord], adapter: Adapter, images: Sequence[ImageRecord]
) -> tuple[list[tuple[LabelRecord, str]], list[ImportIssue]]:
    known = {image.sha256 for image in images}
    by_id = [r for r in records if not r.sha256]
    resolution = resolve_ids(
        (r.image_id for r in by_id), images, with_extension=adapter.id_has_extension
    )
    out: list[tuple[LabelRecord, str]] = []
    issues: list[ImportIssue] = []
    for record in records:
        if record.sha256:
            if record.sha256 in known:
                out.append((record, record.sha256))
            else:
                issues.append(
                    ImportIssue(
                        IssueKind.UNMATCHED,
                        record.line,
                        record.image_id,
                        "no image with this content (sha256) in the folder",
                        sha256=record.sha256,
                    )
                )
            continue
        key = record.image_id.strip()
        if key in resolution.matched:
            out.append((record, resolution.matched[key]))
        elif key in resolution.ambiguous:
            shas = resolution.ambiguous[key]
            issues.append(
                ImportIssue(
                    IssueKind.AMBIGUOUS,
                    record.line,
                    record.image_id,
                    f"{len(shas)} different images have this name; rename or remove one",
                )
            )
        else:
            issues.append(
                ImportIssue(
                    IssueKind.UNMATCHED,
                    record.line,
                    record.image_id,
                    "no image file with this name in the folder",
                )
            )
    return out, issues


def import_labels(  # noqa: C901, PLR0915 - the import rules in order; not split yet
    store: LabelRepository,
    path: Path,
    fmt: str,
    images: Sequence[ImageRecord],
    *,
    as_grader: str | None = None,
    replace: bool = False,
    as_reference: str | None = None,
) -> ImportReport:
    """Import a label file as one grader's gradings (see the module docstring for the rules).

    Args:
        store: the label store.
        path: the label file.
        fmt: format name (``canonical``, ``eyepacs``, ``aptos``, ``idrid``, ``messidor2``,
            ``manifest``).
        images: the catalogue of the labelled folder (ids are resolved against it).
        as_grader: write the gradings as this named grader.
        replace: supersede this grader's earlier *imported* grades that differ (never a grade
            entered in the app).
        as_reference: write reference labels of this source (``eyepacs`` ->
            ``reference:eyepacs``, role REFERENCE). Exactly one of ``as_grader``/``as_reference``.

    Returns:
        The report: counts, issues (malformed rows with line numbers, unmatched and ambiguous
        ids, duplicates with different values, conflicts with existing grades) and extras.

    Raises:
        LabelFileError: the file as a whole is unreadable (not CSV, wrong header, unknown or
            export-only format).
        ValueError: neither or both of ``as_grader``/``as_reference``, or an empty name.
        StoreWriteError: the store refused a write (rows written before it stay, each audited;
            re-running the import is safe, equal rows are not written twice).
    """
    adapter = get_adapter(fmt)
    try:
        text = read_csv_text(path)
    except CsvFormatError as exc:
        raise LabelFileError(str(exc)) from exc
    parsed = adapter.parse(text, source=path.name)
    grader, role = _grader_and_role(store, as_grader, as_reference)
    import_id = f"{fmt}:{path.name}:{utc_now()}"
    issues = [
        ImportIssue(IssueKind.MALFORMED, i.line, i.image_id, i.message) for i in parsed.issues
    ]
    labelled = []
    for record in parsed.records:
        if record.has_label:
            labelled.append(record)
        else:
            issues.append(
                ImportIssue(
                    IssueKind.NO_LABEL,
                    record.line,
                    record.image_id,
                    "no grade and no gradability in this row (blank is not 0)",
                )
            )
    resolved, resolve_issues = _resolve(labelled, adapter, images)
    issues += resolve_issues

    # Group rows by image: the same content listed twice (same id twice, or two ids of one
    # image) must agree, or none of them is applied.
    groups: dict[str, list[tuple[LabelRecord, dict[str, object]]]] = {}
    for record, sha in resolved:
        groups.setdefault(sha, []).append((record, rules.incoming(record, adapter)))
    extras: list[tuple[str, str, str]] = []
    for record, sha in resolved:
        extras += [(sha, header, value) for header, value in record.extras]
        if record.dme is not None and "dme" not in adapter.label_fields:
            extras.append((sha, adapter.native_dme_column, str(record.dme)))
            issues.append(
                ImportIssue(
                    IssueKind.NOT_MAPPED,
                    record.line,
                    record.image_id,
                    f"{adapter.native_dme_column.strip()} ({record.dme_scale.value}) "
                    "has no mapping to the DME 0-2 risk scale; kept as an extra",
                    sha256=sha,
                )
            )

    added = replaced = unchanged = 0
    reason = f"import {path.name}"
    images_by_sha = {image.sha256: image for image in images}
    for sha, rows in groups.items():
        values = rows[0][1]
        if any(other != values for _, other in rows[1:]):
            lines = ", ".join(str(r.line) for r, _ in rows)
            for record, other in rows:
                issues.append(
                    ImportIssue(
                        IssueKind.DUPLICATE_CONFLICT,
                        record.line,
                        record.image_id,
                        f"this image is listed on lines {lines} with different values; "
                        "none of them was imported",
                        sha256=sha,
                        incoming=describe_values(other),
                    )
                )
            continue
        existing = store.current_grading(sha, grader)
        try:
            incoming = rules.merged(existing, values, sha, grader, role)
        except ValueError as exc:
            issues += [
                ImportIssue(IssueKind.MALFORMED, r.line, r.image_id, str(exc), sha256=sha)
                for r, _ in rows
            ]
            continue
        if existing is not None and rules.same(existing, incoming):
            unchanged += 1
            continue
        refusal = rules.refusal(existing, grader, replace=replace)
        if refusal is not None:
            kind, why = refusal
            detail = {n: getattr(existing, n) for n in GRADE_FIELDS}
            issues += [
                ImportIssue(
                    kind,
                    r.line,
                    r.image_id,
                    why,
                    sha256=sha,
                    existing=describe_values(detail),
                    incoming=describe_values(values),
                )
                for r, _ in rows
            ]
            continue
        if store.get_image(sha) is None and sha in images_by_sha:
            store.upsert_image(images_by_sha[sha])
        store.add_grading(incoming, reason=reason + (" (replace)" if existing else ""))
        if existing is None:
            added += 1
        else:
            replaced += 1

    extras_stored = False
    if extras:
        table: dict[str, dict[str, str]] = {}
        for sha, header, value in extras:
            table.setdefault(sha, {})[header] = value
        store.add_import_extras(import_id, table)
        extras_stored = True
    issues.sort(key=lambda i: (i.line, i.kind.value))
    return ImportReport(
        source=path.name,
        fmt=fmt,
        grader=grader,
        import_id=import_id,
        rows_read=parsed.rows_read,
        added=added,
        replaced=replaced,
        unchanged=unchanged,
        issues=tuple(issues),
        extras=tuple(extras),
        extras_stored=extras_stored,
        store_file=store_file(store),
    )


# --------------------------------------------------------------------------------- export


class ExportError(Exception):
    """An export that did not happen; the previous file (if any) is unchanged."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """The outcome of an export.

    Attributes:
        fmt: format name.
        path: the file (or folder, for ImageFolder) written.
        rows: rows (or image files) written.
        skipped: images not written, as (sha256, reason).
        identified: False for a de-identified export (pseudonyms, no paths).
        grader_rule: which grading was exported per image, in words.
        notes: mappings applied and other remarks.
        sha256: SHA-256 of the written file ("" for folders).
    """

    fmt: str
    path: Path
    rows: int
    skipped: tuple[tuple[str, str], ...] = ()
    identified: bool = False
    grader_rule: str = ""
    notes: tuple[str, ...] = field(default=())
    sha256: str = ""

    def format(self) -> str:
        """One summary line, then the notes and skipped images."""
        kind = "identified" if self.identified else "de-identified"
        lines = [
            f"{self.path}: {self.rows} written ({self.fmt}, {kind}, {self.grader_rule}), "
            f"{len(self.skipped)} skipped"
        ]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  skipped {sha[:12]}: {why}" for sha, why in self.skipped]
        return "\n".join(lines)


def export_labels(
    store: LabelRepository,
    fmt: str,
    out_path: Path,
    *,
    grader: str | None = None,
    images: Sequence[ImageRecord] | None = None,
    identified: bool = False,
    site_key: bytes | None = None,
    include_notes: bool = False,
    accept_lossy: bool = False,
    overwrite: bool = True,
    task: str = "dr",
    splits: Mapping[str, str] | None = None,
    hardlink: bool = False,
    db: Path | None = None,
) -> ExportSummary:
    """Export each image's current grading (see ``export_rows.choose_export``) in format ``fmt``.

    Args:
        store: the label store (read only).
        fmt: format name; ``imagefolder`` writes a folder tree at ``out_path``.
        out_path: target file (replaced atomically) or folder.
        grader: export this grader's grades; None = the latest human grading per image, or
            the final grade per image in a screening programme.
        images: the images to export with their current paths (default: every stored image).
            Labels follow content: pass records with new paths after a rename or move (R6).
        identified: write real ids, paths, hashes and full timestamps. Default False
            (de-identified, R19). The training manifest is always identified (training must
            open the files); it is an internal file, not for sharing.
        site_key: the pseudonym key; default: the site key in the app's data folder.
        include_notes: export the free-text notes (identified exports only).
        accept_lossy: allow documented lossy mappings (Messidor-2 DME 0-2 -> 0/1).
        overwrite: replace an existing file; False refuses (the GUI asks first, R18).
        task: ImageFolder task, ``dr`` or ``amd``.
        splits: sha256 -> split for the manifest and ImageFolder trees.
        hardlink: ImageFolder: hard-link identified image files instead of copying.
        db: the database file to protect from being overwritten (default: the store's own
            file, when it has one).

    Raises:
        LabelFileError: unknown format; target exists and ``overwrite`` is False.
        ExportError: the file could not be written (e.g. locked by Excel); the old file is
            unchanged.
        ValueError: notes requested in a de-identified export.
        ProtectedTargetError: ``out_path`` is the database, one of its files, or inside the
            app's data folder (where the site key lives); nothing is written.
        PrivacyError: an unreadable site key.
    """
    adapter = get_adapter(fmt)
    identified = identified or adapter.internal_only
    if include_notes and not identified:
        raise ValueError("notes may contain patient details; export them only when identified")
    # Before anything is read: an export must never replace the database it reads, nor the
    # site key or anything else in the data folder (identified or not).
    refuse_protected_target(out_path, db=db if db is not None else store_file(store))
    key = b""
    if not identified:
        if site_key is None:
            site_key = load_or_create_site_key(data_dir())
        key = site_key
    listed = list(images) if images is not None else store.list_images()
    choice = choose_export(store, grader, listed)
    items: list[ExportItem] = []
    notes: list[str] = []
    waiting: list[tuple[str, str]] = []
    seen: set[str] = set()
    for image in sorted(listed, key=lambda i: i.path):
        grading = choice.gradings.get(image.sha256)
        if image.sha256 in seen or (grading is None and image.sha256 not in choice.pending):
            continue
        seen.add(image.sha256)
        if grading is None:
            waiting.append((image.sha256, choice.pending[image.sha256]))
            continue
        record = export_record(
            adapter,
            grading,
            image,
            identified=identified,
            key=key,
            include_notes=include_notes,
            split=(splits or {}).get(image.sha256, ""),
            final=choice.finals.get(image.sha256),
            visit=choice.visits.get(image.sha256, ""),
        )
        record, note = adapter.prepare_export(record, accept_lossy=accept_lossy)
        if note and note not in notes:
            notes.append(note)
        items.append(ExportItem(record=record, image=image))
    items, skipped = unique_ids(items, adapter)
    lossy = nhs_lossy_note(adapter, (item.record for item in items))
    notes += [lossy] if lossy else []
    options = ExportOptions(
        overwrite=overwrite, strip_metadata=not identified, task=task, hardlink=hardlink
    )
    try:
        result = adapter.export(items, out_path, options)
    except OSError as exc:
        raise ExportError(
            f"could not write {out_path.name}: {exc.strerror or exc}. If the file is open in "
            "another program (such as Excel), close it and export again; the previous file is "
            "unchanged."
        ) from exc
    digest = ""
    if out_path.is_file():
        digest = hashlib.sha256(out_path.read_bytes()).hexdigest()
    return ExportSummary(
        fmt=fmt,
        path=out_path,
        rows=result.written,
        skipped=tuple(waiting) + tuple(skipped) + result.skipped,
        identified=identified,
        grader_rule=choice.rule,
        notes=tuple(notes),
        sha256=digest,
    )


__all__ = [
    "INFO_KINDS",
    "REPORT_COLUMNS",
    "ExportError",
    "ExportSummary",
    "ImportIssue",
    "ImportReport",
    "IssueKind",
    "choose_gradings",
    "export_labels",
    "import_labels",
]
