-- The operator console's people and their sessions (workers/console/). Operators are
-- staff, apart from API tokens: a name, a role, an argon2id hash of their password.
-- A session is known by the sha256 of its cookie's value (a stolen table opens nothing);
-- failed logins are kept a day, to slow guessing per operator name and per address.

CREATE TABLE operators (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

CREATE TABLE operator_sessions (
    token_digest bytea PRIMARY KEY,
    operator_id  bigint NOT NULL REFERENCES operators ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_sessions_operator_idx ON operator_sessions (operator_id);

CREATE TABLE console_login_failures (
    at            timestamptz NOT NULL DEFAULT now(),
    operator_name text NOT NULL,
    client_ip     inet
);
CREATE INDEX console_login_failures_name_idx ON console_login_failures (operator_name, at);
CREATE INDEX console_login_failures_ip_idx ON console_login_failures (client_ip, at);
