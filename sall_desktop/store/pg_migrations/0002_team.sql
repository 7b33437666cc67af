-- SALL Desktop team store, schema version 2: what sharing one store between workstations needs
-- (offline gradings sent later, image leases) and the server-side privileges of graders.

-- A workstation names each grading it makes, so sending it again after a lost reply is harmless:
-- the sync inserts with ON CONFLICT (client_uuid) DO NOTHING. NULL for gradings made on the
-- server side (several NULLs do not conflict). The constraint's index bears the name of the
-- SQLite store's partial unique index (its 0004_team.sql); being total, it also serves an
-- ON CONFLICT (client_uuid) WHERE client_uuid IS NOT NULL written for that partial index.
ALTER TABLE gradings ADD COLUMN client_uuid UUID CONSTRAINT gradings_client_uuid UNIQUE;
ALTER TABLE test_answers ADD COLUMN client_uuid UUID;
ALTER TABLE test_answers ADD CONSTRAINT test_answers_client_uuid UNIQUE (client_uuid);

-- The workstation's own clock when a grading was made offline; at_utc stays the server's time of
-- arrival, so the trail's order is the server's and the grader's moment is kept as well.
ALTER TABLE audit_log ADD COLUMN client_at_utc TEXT COLLATE "C";

-- Who is grading which image at which level now: one holder per image and role. Mutable: taken,
-- renewed (expires_at moves on) and released (deleted); expired rows may be taken over.
CREATE TABLE leases (
    image_sha256 TEXT COLLATE "C" NOT NULL,
    role         TEXT COLLATE "C" NOT NULL
                      CHECK (role IN ('primary', 'secondary', 'arbiter', 'reference')),
    grader       TEXT COLLATE "C" NOT NULL,
    workstation  TEXT COLLATE "C" NOT NULL DEFAULT '',
    acquired_at  TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (image_sha256, role)
);

-- Graders log in as their own LOGIN role, a member of sall_grader (CREATE ROLE alice LOGIN
-- IN ROLE sall_grader). Roles are per server, not per database, so the role may already exist
-- (another store on the same server); two stores migrating at once may race to create it, and the
-- loser's error is harmless.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sall_grader') THEN
        CREATE ROLE sall_grader NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END;
$$;

-- Nothing for anyone by default (tables grant nothing to PUBLIC today; this keeps it so if a
-- server's defaults were loosened).
REVOKE ALL ON TABLE
    images, image_locations, graders, grader_roles, models, predictions, gradings, audit_log,
    training_runs, import_extras, settings, model_events, holdout_images, programme_roles,
    routing_decisions, programme_settings, test_sets, test_set_items, test_set_assignments,
    test_answers, leases, current_gradings, schema_version
FROM PUBLIC;

-- Every grader reads everything and adds rows anywhere (INSERT ... ON CONFLICT DO NOTHING, the
-- port of INSERT OR IGNORE, needs no more). schema_version is the migration runner's: read only.
GRANT SELECT ON TABLE current_gradings, schema_version TO sall_grader;
GRANT SELECT, INSERT ON TABLE
    images, image_locations, graders, grader_roles, models, predictions, gradings, audit_log,
    training_runs, import_extras, settings, model_events, holdout_images, programme_roles,
    routing_decisions, programme_settings, test_sets, test_set_items, test_set_assignments,
    test_answers, leases
TO sall_grader;

-- UPDATE only where the repository code changes rows in place (an upsert's DO UPDATE needs it
-- too): images (metadata upsert), image_locations (last_seen), models (promote, retire),
-- training_runs (status, report), import_extras, settings and programme_settings (upserts).
-- DELETE only on leases (release): no repository code deletes anything else. The append-only
-- tables get neither, so the server refuses a grader's UPDATE, DELETE and TRUNCATE with
-- insufficient_privilege before their triggers would.
GRANT UPDATE ON TABLE
    images, image_locations, models, training_runs, import_extras, settings, programme_settings,
    leases
TO sall_grader;
GRANT DELETE ON TABLE leases TO sall_grader;

-- The identity columns' sequences (an identity insert does not check them, but currval() and
-- any explicit nextval() do), and the schema when it is not one PUBLIC may already use.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO sall_grader', current_schema());
    IF NOT has_schema_privilege('sall_grader', current_schema(), 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO sall_grader', current_schema());
    END IF;
END;
$$;
