-- Where each pass over Stripe's APIs got to, so a crash or a restart resumes there.

CREATE TABLE stripe_sync_state (
    name       text PRIMARY KEY,  -- 'events' for the Events API reconcile
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
