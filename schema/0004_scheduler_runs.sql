-- When a scheduled run's actor started (its lag is started_at - slot), and whether the
-- slot came from cron or from `bindery scheduler run-now`.

ALTER TABLE schedule_runs
    ADD COLUMN started_at timestamptz,
    ADD COLUMN trigger text NOT NULL DEFAULT 'cron' CHECK (trigger IN ('cron', 'manual'));
