-- SALL Desktop label store, schema version 1 (docs/architecture.md, The label store).
-- Applied in one transaction by sall_desktop/store/migrations.py; never edit a released file,
-- add NNNN_next.sql instead. Connections run with trusted_schema=OFF, so CHECKs use only
-- innocuous built-ins (no json_valid); JSON columns are written by json.dumps.

CREATE TABLE images (
    id                INTEGER PRIMARY KEY,
    sha256            TEXT    NOT NULL UNIQUE
                              CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    sop_instance_uid  TEXT    NOT NULL DEFAULT '',
    width             INTEGER NOT NULL DEFAULT 0 CHECK (width >= 0),
    height            INTEGER NOT NULL DEFAULT 0 CHECK (height >= 0),
    file_format       TEXT    NOT NULL DEFAULT '',
    laterality        TEXT    NOT NULL DEFAULT '' CHECK (laterality IN ('R', 'L', 'B', '')),
    laterality_source TEXT    NOT NULL DEFAULT '',
    patient_id        TEXT    NOT NULL DEFAULT '',
    patient_id_source TEXT    NOT NULL DEFAULT '',
    visit_id          TEXT    NOT NULL DEFAULT '',
    study_date        TEXT    NOT NULL DEFAULT '',
    modality          TEXT    NOT NULL DEFAULT '',
    frames            INTEGER NOT NULL DEFAULT 1 CHECK (frames >= 1),
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
);
CREATE INDEX images_sop_instance_uid ON images (sop_instance_uid) WHERE sop_instance_uid <> '';

-- A path is metadata only (R6): one image may be seen at several paths over time.
CREATE TABLE image_locations (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images (id),
    path       TEXT    NOT NULL CHECK (path <> ''),
    first_seen TEXT    NOT NULL,
    last_seen  TEXT    NOT NULL,
    UNIQUE (image_id, path)
);
CREATE INDEX image_locations_path ON image_locations (path);

CREATE TABLE graders (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
    created_at TEXT NOT NULL
);

CREATE TABLE grader_roles (
    grader_id INTEGER NOT NULL REFERENCES graders (id),
    role      TEXT    NOT NULL CHECK (role IN ('primary', 'secondary', 'arbiter', 'reference')),
    PRIMARY KEY (grader_id, role)
);

CREATE TABLE models (
    id          TEXT PRIMARY KEY CHECK (id <> ''),
    parent_id   TEXT,
    card_json   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('candidate', 'active', 'retired')),
    approver    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Append-only: a model's output for one image.
CREATE TABLE predictions (
    id                   INTEGER PRIMARY KEY,
    image_id             INTEGER NOT NULL REFERENCES images (id),
    model_id             TEXT    NOT NULL CHECK (model_id <> ''),
    probabilities        TEXT    NOT NULL CHECK (probabilities LIKE '{%}'),
    gradable_probability REAL    CHECK (gradable_probability BETWEEN 0.0 AND 1.0),
    created_at           TEXT    NOT NULL
);
CREATE INDEX predictions_image_model ON predictions (image_id, model_id, id);

-- Append-only: one row per save of one grader's grading of one image. A retraction (undo of a
-- first grading, or deletion) is a row with retracted = 1 and blank grades. Ungradable is
-- gradable = 0 with blank (NULL) disease grades, never 0.
CREATE TABLE gradings (
    id                INTEGER PRIMARY KEY,
    image_id          INTEGER NOT NULL REFERENCES images (id),
    grader_id         INTEGER NOT NULL REFERENCES graders (id),
    role              TEXT    NOT NULL
                              CHECK (role IN ('primary', 'secondary', 'arbiter', 'reference')),
    source            TEXT    NOT NULL
                              CHECK (source IN ('human', 'accepted_prediction', 'import')),
    retracted         INTEGER NOT NULL DEFAULT 0 CHECK (retracted IN (0, 1)),
    gradable          INTEGER CHECK (gradable IN (0, 1)),
    ungradable_reason TEXT    CHECK (ungradable_reason IN
                              ('blur', 'exposure', 'artefact', 'field', 'media_opacity', 'other')),
    dr_grade          INTEGER CHECK (typeof(dr_grade) IN ('integer', 'null')
                                     AND dr_grade BETWEEN 0 AND 4),
    amd_grade         INTEGER CHECK (typeof(amd_grade) IN ('integer', 'null')
                                     AND amd_grade BETWEEN 0 AND 3),
    dme               INTEGER CHECK (typeof(dme) IN ('integer', 'null') AND dme BETWEEN 0 AND 2),
    notes             TEXT    NOT NULL DEFAULT '',
    model_version     TEXT,
    prediction_id     INTEGER REFERENCES predictions (id),
    created_at        TEXT    NOT NULL,
    CHECK (retracted = 1 OR gradable IS NOT NULL),
    CHECK (retracted = 0 OR (gradable IS NULL AND ungradable_reason IS NULL AND dr_grade IS NULL
                             AND amd_grade IS NULL AND dme IS NULL)),
    CHECK (gradable IS NOT 0 OR (ungradable_reason IS NOT NULL AND dr_grade IS NULL
                                 AND amd_grade IS NULL AND dme IS NULL)),
    CHECK (gradable IS NOT 1 OR ungradable_reason IS NULL)
);
CREATE INDEX gradings_image_grader ON gradings (image_id, grader_id, id);
CREATE INDEX gradings_grader ON gradings (grader_id, id);

-- Append-only, hash-chained audit trail (R8); written in the same transaction as the change.
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    at_utc        TEXT    NOT NULL,
    local_offset  TEXT    NOT NULL,
    grader        TEXT    NOT NULL CHECK (length(trim(grader)) > 0),
    image_sha256  TEXT,
    action        TEXT    NOT NULL CHECK (action IN ('create', 'modify', 'confirm', 'delete')),
    field         TEXT    NOT NULL,
    old_value     TEXT,
    new_value     TEXT,
    reason        TEXT    NOT NULL DEFAULT '',
    app_version   TEXT    NOT NULL,
    model_version TEXT,
    grading_id    INTEGER REFERENCES gradings (id),
    prev_hash     TEXT    NOT NULL CHECK (length(prev_hash) = 64),
    row_hash      TEXT    NOT NULL UNIQUE CHECK (length(row_hash) = 64)
);
CREATE INDEX audit_log_image ON audit_log (image_sha256);
CREATE INDEX audit_log_grading ON audit_log (grading_id);

CREATE TABLE training_runs (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL UNIQUE,
    config_json     TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    status          TEXT NOT NULL
                         CHECK (status IN ('pending', 'running', 'finished', 'cancelled', 'failed')),
    run_dir         TEXT NOT NULL,
    report_json     TEXT,
    started_at      TEXT,
    ended_at        TEXT
);

-- Unknown columns of imported label files, never dropped (docs/grading-conventions.md, Import rules).
CREATE TABLE import_extras (
    id          INTEGER PRIMARY KEY,
    import_id   TEXT    NOT NULL CHECK (import_id <> ''),
    image_id    INTEGER NOT NULL REFERENCES images (id),
    column_name TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    UNIQUE (import_id, image_id, column_name)
);
CREATE INDEX import_extras_image ON import_extras (image_id);

-- UI state such as the last image shown; not audited.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TRIGGER gradings_no_update BEFORE UPDATE ON gradings
BEGIN SELECT RAISE(ABORT, 'gradings are append-only'); END;
CREATE TRIGGER gradings_no_delete BEFORE DELETE ON gradings
BEGIN SELECT RAISE(ABORT, 'gradings are append-only'); END;
CREATE TRIGGER predictions_no_update BEFORE UPDATE ON predictions
BEGIN SELECT RAISE(ABORT, 'predictions are append-only'); END;
CREATE TRIGGER predictions_no_delete BEFORE DELETE ON predictions
BEGIN SELECT RAISE(ABORT, 'predictions are append-only'); END;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- The current grading of each grader for each image: the latest row, unless it is a retraction.
CREATE VIEW current_gradings AS
SELECT g.id, i.sha256 AS image_sha256, gr.name AS grader, g.role, g.source, g.gradable,
       g.ungradable_reason, g.dr_grade, g.amd_grade, g.dme, g.notes, g.model_version,
       g.prediction_id, g.created_at
FROM gradings AS g
JOIN images AS i ON i.id = g.image_id
JOIN graders AS gr ON gr.id = g.grader_id
WHERE g.retracted = 0
  AND g.id = (SELECT max(h.id) FROM gradings AS h
              WHERE h.image_id = g.image_id AND h.grader_id = g.grader_id);
