-- An access export asked for through the job API is one register entry however often its
-- job is retried: the entry names the job that answers it.

ALTER TABLE privacy_requests ADD COLUMN export_job_id uuid UNIQUE REFERENCES jobs ON DELETE SET NULL;
