-- A request's deadline, said once: its extension when it has one, else one month after
-- receipt. The hourly check finds the open requests near theirs by this index.

ALTER TABLE privacy_requests
    ADD COLUMN deadline timestamptz GENERATED ALWAYS AS (coalesce(extended_until, due_at)) STORED;

DROP INDEX privacy_requests_open_idx;
CREATE INDEX privacy_requests_open_idx ON privacy_requests (deadline) WHERE state = 'open';
