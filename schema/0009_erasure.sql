-- Account erasure (tasks/erasure/): a request per account, its steps, and a ledger of
-- what was erased. Ids and keyed hashes only: nothing here is personal data.

CREATE TABLE erasure_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key: deleting the account row is the saga's last step; its id stays here.
    account_id     bigint NOT NULL,
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'running', 'done', 'cancelled')),
    requested_by   text NOT NULL,                -- 'token:<id>', 'cli', 'reapply'
    requested_at   timestamptz NOT NULL DEFAULT now(),
    run_after      timestamptz NOT NULL,         -- requested_at + ERASURE_GRACE
    notice_sent_at timestamptz,
    lease_until    timestamptz,                  -- while a worker runs it
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,                         -- a step name and an error type or our message
    report         jsonb NOT NULL DEFAULT '{}',
    finished_at    timestamptz
);

-- At most one open request per account: a second request returns the first.
CREATE UNIQUE INDEX erasure_requests_open_idx ON erasure_requests (account_id)
    WHERE state IN ('pending', 'running');
CREATE INDEX erasure_requests_due_idx ON erasure_requests (run_after)
    WHERE state IN ('pending', 'running');

CREATE TABLE erasure_steps (
    request_id  bigint NOT NULL REFERENCES erasure_requests ON DELETE CASCADE,
    step        text NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    error       text,
    counts      jsonb NOT NULL DEFAULT '{}',     -- what the step deleted, per table or bucket
    PRIMARY KEY (request_id, step)
);

-- HMAC-SHA256 (ERASURE_LEDGER_KEY) of each erased account's id, lower-cased email and
-- Stripe customer id: a restored database can be erased again without keeping who it was.
CREATE TABLE erasure_ledger (
    kind      text NOT NULL CHECK (kind IN ('account_id', 'email', 'stripe_customer_id')),
    digest    bytea NOT NULL CHECK (length(digest) = 32),
    erased_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, digest)
);

-- A retained invoice is unlinked from the erased customer (only its own fields stay).
ALTER TABLE invoices ALTER COLUMN customer_id DROP NOT NULL;

-- Erasure finds the inbox events about a customer or its objects by this expression:
-- the customer an event's object names, else the object itself (a customer, a mandate…).
CREATE INDEX stripe_events_about_idx ON stripe_events ((coalesce(payload #>> '{data,object,customer}', object_id)));
