-- The backups catalog (tasks/backups/): one row per attempt at an instance's backup of a
-- local day. Sizes, hashes and times only: nothing of the instance's data.

CREATE TABLE backups (
    id           uuid PRIMARY KEY,
    instance_id  bigint NOT NULL REFERENCES instances,
    day          date NOT NULL,                   -- the local (Europe/Paris) day it is for
    generation   integer NOT NULL DEFAULT 1,      -- `--force` makes a new one deliberately
    state        text NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'complete', 'failed', 'verified', 'expired')),
    object_key   text NOT NULL,
    manifest_key text NOT NULL,
    dump_bytes   bigint,
    object_bytes bigint,
    sha256       text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    parts        integer,
    pg_version   text,
    -- Rows per table in the snapshot the dump was taken from: what the restore test compares.
    table_counts jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz,
    finished_at  timestamptz,
    error        text,                            -- which stage failed, never its output
    UNIQUE (instance_id, day, generation)
);

CREATE INDEX backups_state_idx ON backups (state, finished_at);
