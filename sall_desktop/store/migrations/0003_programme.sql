-- SALL Desktop label store, schema version 3: screening-programme grading
-- (docs/adr/0012-double-grading-levels-routing-final-grade.md).
-- Roles per folder, routing decisions, test sets and their answers. Everything here is
-- append-only; the final grade is derived from gradings and routing, never stored.

-- A grant or revocation of a programme role. scope: a folder (absolute path) or '' for all.
-- The latest row per (grader, role, scope) says whether the grader holds it.
CREATE TABLE programme_roles (
    id        INTEGER PRIMARY KEY,
    grader_id INTEGER NOT NULL REFERENCES graders (id),
    role      TEXT    NOT NULL CHECK (role IN ('primary', 'secondary', 'arbiter', 'qa')),
    scope     TEXT    NOT NULL DEFAULT '',
    granted   INTEGER NOT NULL CHECK (granted IN (0, 1)),
    actor     TEXT    NOT NULL CHECK (length(trim(actor)) > 0),
    at_utc    TEXT    NOT NULL
);
CREATE INDEX programme_roles_grader ON programme_roles (grader_id, role, scope, id);

-- The image is queued for a level ('single': a normal the sample left with one grading).
-- One decision per image and stage; never withdrawn.
CREATE TABLE routing_decisions (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images (id),
    stage      TEXT    NOT NULL CHECK (stage IN ('secondary', 'arbitration', 'single')),
    reason     TEXT    NOT NULL CHECK (reason <> ''),
    rules_json TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    at_utc     TEXT    NOT NULL,
    UNIQUE (image_id, stage)
);

-- The routing rules in force, and the sample's bookkeeping, as one settings-like row per key.
CREATE TABLE programme_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Test sets: images with known answers, served to graders; their answers never touch gradings.
CREATE TABLE test_sets (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
    unannounced INTEGER NOT NULL DEFAULT 0 CHECK (unannounced IN (0, 1)),
    created_by  TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
CREATE TABLE test_set_items (
    id                INTEGER PRIMARY KEY,
    test_set_id       INTEGER NOT NULL REFERENCES test_sets (id),
    image_id          INTEGER NOT NULL REFERENCES images (id),
    gradable          INTEGER NOT NULL CHECK (gradable IN (0, 1)),
    ungradable_reason TEXT,
    dr_grade          INTEGER CHECK (dr_grade BETWEEN 0 AND 4),
    amd_grade         INTEGER CHECK (amd_grade BETWEEN 0 AND 3),
    dme               INTEGER CHECK (dme BETWEEN 0 AND 2),
    source            TEXT    NOT NULL,
    UNIQUE (test_set_id, image_id)
);
CREATE TABLE test_set_assignments (
    id          INTEGER PRIMARY KEY,
    test_set_id INTEGER NOT NULL REFERENCES test_sets (id),
    grader_id   INTEGER NOT NULL REFERENCES graders (id),
    actor       TEXT    NOT NULL,
    at_utc      TEXT    NOT NULL,
    UNIQUE (test_set_id, grader_id)
);
-- A grader's answer to a test item: like a gradings row, kept apart so it can never become
-- (or change) an image's final grade, an export or training data.
CREATE TABLE test_answers (
    id                INTEGER PRIMARY KEY,
    test_set_id       INTEGER NOT NULL REFERENCES test_sets (id),
    image_id          INTEGER NOT NULL REFERENCES images (id),
    grader_id         INTEGER NOT NULL REFERENCES graders (id),
    retracted         INTEGER NOT NULL DEFAULT 0 CHECK (retracted IN (0, 1)),
    gradable          INTEGER CHECK (gradable IN (0, 1)),
    ungradable_reason TEXT,
    dr_grade          INTEGER CHECK (dr_grade BETWEEN 0 AND 4),
    amd_grade         INTEGER CHECK (amd_grade BETWEEN 0 AND 3),
    dme               INTEGER CHECK (dme BETWEEN 0 AND 2),
    created_at        TEXT    NOT NULL
);
CREATE INDEX test_answers_grader ON test_answers (test_set_id, grader_id, image_id, id);

CREATE TRIGGER programme_roles_no_update BEFORE UPDATE ON programme_roles
BEGIN SELECT RAISE(ABORT, 'programme_roles are append-only'); END;
CREATE TRIGGER programme_roles_no_delete BEFORE DELETE ON programme_roles
BEGIN SELECT RAISE(ABORT, 'programme_roles are append-only'); END;
CREATE TRIGGER routing_decisions_no_update BEFORE UPDATE ON routing_decisions
BEGIN SELECT RAISE(ABORT, 'routing decisions are append-only'); END;
CREATE TRIGGER routing_decisions_no_delete BEFORE DELETE ON routing_decisions
BEGIN SELECT RAISE(ABORT, 'routing decisions are append-only'); END;
CREATE TRIGGER test_set_items_no_update BEFORE UPDATE ON test_set_items
BEGIN SELECT RAISE(ABORT, 'test sets are append-only'); END;
CREATE TRIGGER test_set_items_no_delete BEFORE DELETE ON test_set_items
BEGIN SELECT RAISE(ABORT, 'test sets are append-only'); END;
CREATE TRIGGER test_answers_no_update BEFORE UPDATE ON test_answers
BEGIN SELECT RAISE(ABORT, 'test answers are append-only'); END;
CREATE TRIGGER test_answers_no_delete BEFORE DELETE ON test_answers
BEGIN SELECT RAISE(ABORT, 'test answers are append-only'); END;
