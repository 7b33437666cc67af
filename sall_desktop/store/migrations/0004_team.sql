-- SALL Desktop label store, schema version 4: the columns and table the team store has, so one
-- set of queries serves both backends (docs/adr/0013-team-store-one-query-set-two-connections.md).

-- A workstation names each grading it makes (a UUID), so sending it again is harmless; NULL for
-- gradings saved directly.
ALTER TABLE gradings ADD COLUMN client_uuid TEXT;
CREATE UNIQUE INDEX gradings_client_uuid ON gradings (client_uuid) WHERE client_uuid IS NOT NULL;

-- A test answer made at a workstation is named the same way.
ALTER TABLE test_answers ADD COLUMN client_uuid TEXT;
CREATE UNIQUE INDEX test_answers_client_uuid ON test_answers (client_uuid)
    WHERE client_uuid IS NOT NULL;

-- On a team store, the workstation's own clock (at_utc is the server's); NULL here, where the
-- workstation's clock is at_utc.
ALTER TABLE audit_log ADD COLUMN client_at_utc TEXT;

-- Who is grading which image at which level now. On one workstation it only mirrors the team
-- store's table; leases are mutable (taken, renewed, released).
CREATE TABLE leases (
    image_sha256 TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('primary', 'secondary', 'arbiter', 'reference')),
    grader       TEXT NOT NULL,
    workstation  TEXT NOT NULL DEFAULT '',
    acquired_at  TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (image_sha256, role)
);
