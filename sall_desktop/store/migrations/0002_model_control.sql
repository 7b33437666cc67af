-- SALL Desktop label store, schema version 2: model change control and the locked hold-out
-- (docs/architecture.md, Training runs; R12).

-- Where a model version came from, its gate verdict and who approved it.
ALTER TABLE models ADD COLUMN source TEXT NOT NULL DEFAULT ''
    CHECK (source IN ('', 'bundled', 'training', 'import'));
ALTER TABLE models ADD COLUMN run_id TEXT;
ALTER TABLE models ADD COLUMN gate_passed INTEGER CHECK (gate_passed IN (0, 1));
ALTER TABLE models ADD COLUMN approved_at TEXT;
ALTER TABLE models ADD COLUMN approval_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE models ADD COLUMN was_active INTEGER NOT NULL DEFAULT 0 CHECK (was_active IN (0, 1));

-- At most one active model: promotion and rollback are one pointer change.
CREATE UNIQUE INDEX models_one_active ON models (status) WHERE status = 'active';

-- Append-only history of model control: who registered, promoted, rolled back or discarded what.
CREATE TABLE model_events (
    id          INTEGER PRIMARY KEY,
    model_id    TEXT NOT NULL REFERENCES models (id),
    action      TEXT NOT NULL
                     CHECK (action IN ('register', 'promote', 'rollback', 'discard')),
    actor       TEXT NOT NULL CHECK (length(trim(actor)) > 0),
    reason      TEXT NOT NULL DEFAULT '',
    previous_id TEXT,
    at_utc      TEXT NOT NULL
);
CREATE INDEX model_events_model ON model_events (model_id, id);
CREATE TRIGGER model_events_no_update BEFORE UPDATE ON model_events
BEGIN SELECT RAISE(ABORT, 'model_events are append-only'); END;
CREATE TRIGGER model_events_no_delete BEFORE DELETE ON model_events
BEGIN SELECT RAISE(ABORT, 'model_events are append-only'); END;

-- The locked hold-out: images that never enter a training manifest (nor do their patients').
-- Locked means append-only: an image, once held out, stays held out.
CREATE TABLE holdout_images (
    id         INTEGER PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE
                    CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    patient_id TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL CHECK (source IN ('designated', 'sampled')),
    added_by   TEXT NOT NULL CHECK (length(trim(added_by)) > 0),
    added_at   TEXT NOT NULL
);
CREATE TRIGGER holdout_images_no_update BEFORE UPDATE ON holdout_images
BEGIN SELECT RAISE(ABORT, 'the hold-out is locked'); END;
CREATE TRIGGER holdout_images_no_delete BEFORE DELETE ON holdout_images
BEGIN SELECT RAISE(ABORT, 'the hold-out is locked'); END;

-- The candidate a training run produced.
ALTER TABLE training_runs ADD COLUMN model_id TEXT;
