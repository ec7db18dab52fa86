-- One row per (scheduled job, slot): the row is the claim, so only one scheduler fires a slot.

CREATE TABLE schedule_runs (
    job         text NOT NULL,
    slot        timestamptz NOT NULL,   -- the slot's time, in UTC
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    enqueued_at timestamptz,            -- NULL: claimed but not yet sent (the sweeper sends it)
    PRIMARY KEY (job, slot)
);

CREATE INDEX schedule_runs_unsent_idx ON schedule_runs (claimed_at) WHERE enqueued_at IS NULL;
