-- What the operator console reads at every page view, indexed so that a page stays fast
-- however large the inbox and the catalog grow: failed inbox events, the latest backup
-- day, failed job requests.

CREATE INDEX stripe_events_failed_idx ON stripe_events (received_at) WHERE state = 'failed';
CREATE INDEX backups_day_idx ON backups (day);
CREATE INDEX jobs_failed_idx ON jobs (finished_at) WHERE status = 'failed';
