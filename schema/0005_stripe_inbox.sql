-- The inbox of Stripe events: a row per event id, stored before Stripe gets its 200.
-- The payload (masked of anything card-like) is kept only until processed plus a
-- retention; the id stays to recognise Stripe's retries.

CREATE TABLE stripe_events (
    id           text PRIMARY KEY CHECK (id ~ '^evt_[A-Za-z0-9_]+$'),
    type         text NOT NULL,
    object_id    text,
    created      timestamptz NOT NULL,          -- Stripe's event time
    livemode     boolean NOT NULL DEFAULT false,
    received_at  timestamptz NOT NULL DEFAULT now(),
    state        text NOT NULL DEFAULT 'received'
                 CHECK (state IN ('received', 'processing', 'done', 'ignored', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    last_error   text,                          -- an exception type or our own message: no PII
    processed_at timestamptz,
    payload      jsonb
);

CREATE INDEX stripe_events_pending_idx ON stripe_events (received_at) WHERE state IN ('received', 'processing');
CREATE INDEX stripe_events_object_idx ON stripe_events (object_id, created);
