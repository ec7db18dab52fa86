-- The job API: bearer tokens, the requests made through it, and an audit trail.

CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    -- sha256 of the secret part; the token itself is shown once and never stored.
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text[] NOT NULL CHECK (cardinality(scopes) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    -- Arguments are ids and flags (validated per job), never personal data.
    arguments       jsonb NOT NULL,
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    token_id        bigint REFERENCES api_tokens,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    result          jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    UNIQUE (token_id, idempotency_key)
);

-- The reconciler looks for unfinished jobs nobody touched lately.
CREATE INDEX jobs_unfinished_idx ON jobs (updated_at) WHERE status IN ('queued', 'running');

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    -- Who: 'token:<id>', 'cli', 'system', 'scheduler'. Ids only, never a person's name.
    actor        text NOT NULL,
    action       text NOT NULL,
    subject_type text,
    subject_id   text,
    details      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_subject_idx ON audit_log (subject_type, subject_id);
