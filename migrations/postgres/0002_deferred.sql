-- A deferred job waits for a rate window or a cap (TikTok's pending drafts, a 429 without
-- a reset) until this time; `plan` and `jobs` show it, and runs after it continue the job.
ALTER TABLE jobs ADD COLUMN deferred_until BIGINT;
UPDATE jobs SET status = 'deferred' WHERE status = 'queued';
