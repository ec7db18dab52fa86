-- Backups: what a retake needs to clean up after a dead worker, and the restore test's own mark.

-- The multipart upload of the current attempt: a retake aborts the one a dead worker
-- left, and the attempt that finishes must still own the row (fencing).
ALTER TABLE backups ADD COLUMN upload_id text;

-- `verified` means read back (sha256, decrypt, pg_restore --list), which every run does;
-- this says the nightly restore test also restored it and found the source's row counts.
ALTER TABLE backups ADD COLUMN restore_tested_at timestamptz;

-- The running ones, counted under a lock for BACKUP_CONCURRENCY.
CREATE INDEX backups_running_idx ON backups (lease_until) WHERE state = 'running';
