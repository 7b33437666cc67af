"""SQL text shared by the SQLite repository, and conversions between rows and domain values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    Grading,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
    utc_now,
)
from sall_desktop.domain.predictions import Prediction
from sall_desktop.store.sql import SqlConnection

GRADING_FIELDS = (
    "role, source, gradable, ungradable_reason, dr_grade, amd_grade, dme, notes, model_version,"
    " created_at"
)
GRADING_SELECT = (
    "SELECT g.id, i.sha256, gr.name, g.retracted, "
    + ", ".join(f"g.{c.strip()}" for c in GRADING_FIELDS.split(","))
    + " FROM gradings AS g JOIN images AS i ON i.id = g.image_id"
    " JOIN graders AS gr ON gr.id = g.grader_id"
)
CURRENT_SELECT = f"SELECT id, image_sha256, grader, 0, {GRADING_FIELDS} FROM current_gradings"
IMAGE_SELECT = (
    "SELECT i.sha256, i.width, i.height, i.file_format, i.laterality, i.laterality_source,"
    " i.patient_id, i.patient_id_source, i.study_date, i.modality, i.sop_instance_uid, i.frames,"
    " (SELECT l.path FROM image_locations AS l WHERE l.image_id = i.id"
    "  ORDER BY l.last_seen DESC, l.id DESC LIMIT 1)"
    " FROM images AS i"
)
# A rescan must not erase what is known (blank values keep the old ones) nor overrule a
# grader's own laterality or patient id with a file-name guess.
UPSERT_IMAGE = """
INSERT INTO images (sha256, sop_instance_uid, width, height, file_format, laterality,
    laterality_source, patient_id, patient_id_source, study_date, modality, frames,
    created_at, updated_at)
VALUES (:sha256, :sop_instance_uid, :width, :height, :file_format, :laterality,
    :laterality_source, :patient_id, :patient_id_source, :study_date, :modality, :frames,
    :now, :now)
ON CONFLICT (sha256) DO UPDATE SET
    sop_instance_uid = coalesce(nullif(excluded.sop_instance_uid, ''), images.sop_instance_uid),
    width = CASE WHEN excluded.width > 0 THEN excluded.width ELSE images.width END,
    height = CASE WHEN excluded.height > 0 THEN excluded.height ELSE images.height END,
    file_format = coalesce(nullif(excluded.file_format, ''), images.file_format),
    laterality = CASE WHEN excluded.laterality_source = ''
        OR (images.laterality_source = 'user' AND excluded.laterality_source <> 'user')
        THEN images.laterality ELSE excluded.laterality END,
    laterality_source = CASE WHEN excluded.laterality_source = ''
        OR (images.laterality_source = 'user' AND excluded.laterality_source <> 'user')
        THEN images.laterality_source ELSE excluded.laterality_source END,
    patient_id = CASE WHEN excluded.patient_id = ''
        OR (images.patient_id_source = 'user' AND excluded.patient_id_source <> 'user')
        THEN images.patient_id ELSE excluded.patient_id END,
    patient_id_source = CASE WHEN excluded.patient_id = ''
        OR (images.patient_id_source = 'user' AND excluded.patient_id_source <> 'user')
        THEN images.patient_id_source ELSE excluded.patient_id_source END,
    study_date = coalesce(nullif(excluded.study_date, ''), images.study_date),
    modality = coalesce(nullif(excluded.modality, ''), images.modality),
    frames = CASE WHEN excluded.frames > 1 THEN excluded.frames ELSE images.frames END,
    updated_at = excluded.updated_at
"""


def grading_from_row(row: Sequence[Any]) -> Grading:
    # row: id, sha256, grader, retracted, then GRADING_FIELDS in order.
    return Grading(
        image_sha256=row[1],
        grader=row[2],
        role=GraderRole(row[4]),
        source=GradingSource(row[5]),
        gradable=bool(row[6]),
        ungradable_reason=UngradableReason(row[7]) if row[7] is not None else None,
        dr_grade=row[8],
        amd_grade=row[9],
        dme=row[10],
        notes=row[11],
        model_version=row[12],
        created_at=row[13],
    )


def image_from_row(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(
        sha256=row[0],
        width=row[1],
        height=row[2],
        file_format=row[3],
        laterality=Laterality(row[4]),
        laterality_source=FieldSource(row[5]),
        patient_id=row[6],
        patient_id_source=FieldSource(row[7]),
        study_date=row[8],
        modality=row[9],
        sop_instance_uid=row[10],
        frames=row[11],
        path=row[12] or "",
    )


def prediction_from_row(row: Sequence[Any]) -> Prediction:
    probabilities = {head: tuple(float(p) for p in v) for head, v in json.loads(row[2]).items()}
    return Prediction(
        image_sha256=row[0],
        model_id=row[1],
        probabilities=probabilities,
        gradable_probability=row[3],
        created_at=row[4],
    )


IN_VALUES = 500
"""Values per ``IN (...)`` list in one query, well under SQLite's limit on parameters."""


def in_parts(values: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """The distinct ``values`` in parts of :data:`IN_VALUES`, each with its ``?,?,...`` marks."""
    wanted = list(dict.fromkeys(values))
    for start in range(0, len(wanted), IN_VALUES):
        part = wanted[start : start + IN_VALUES]
        yield ",".join("?" * len(part)), part


PREDICTION_SELECT = (
    "SELECT i.sha256, p.model_id, p.probabilities, p.gradable_probability, p.created_at "
    "FROM predictions AS p JOIN images AS i ON i.id = p.image_id"
)


def image_row_id(conn: SqlConnection, sha256: str, *, create: bool) -> int | None:
    """The ``images`` row id of ``sha256``; with ``create``, a bare row is added when missing."""
    row = conn.execute("SELECT id FROM images WHERE sha256 = ?", (sha256,)).fetchone()
    if row is not None:
        return int(row[0])
    if not create:
        return None
    now = utc_now()
    cur = conn.execute(
        "INSERT INTO images (sha256, created_at, updated_at) VALUES (?, ?, ?) RETURNING id",
        (sha256, now, now),
    )
    return int(cur.fetchone()[0])
