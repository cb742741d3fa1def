-- The shared queue's own state, beside the queue library's `apalis` schema. Lease and
-- deferral times are milliseconds and seconds on the database's clock, so workers on
-- different machines agree on when a lease ends.

-- One lease per job: the worker holding it, its fencing token (the attempt number, one
-- more at every take-over) and when it ends unless renewed. Every state write of a job
-- names its token; a write with an older token, or after the lease ended, changes nothing.
CREATE TABLE factory_queue.leases (
    job_id      TEXT PRIMARY KEY,
    worker      TEXT NOT NULL,
    token       BIGINT NOT NULL,
    stage       TEXT,
    since_ms    BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

-- What `factory status` shows: every job put on the queue and how it stands.
CREATE TABLE factory_queue.jobs (
    job_id      TEXT PRIMARY KEY,
    recipe      TEXT NOT NULL,
    recipe_path TEXT NOT NULL,
    topic       TEXT NOT NULL,
    state       TEXT NOT NULL,          -- waiting | running | deferred | done | failed
    phase       TEXT NOT NULL,          -- render | network: the capacity it waits for
    worker      TEXT,
    stage       TEXT,
    token       BIGINT NOT NULL DEFAULT 0,
    since       BIGINT NOT NULL,        -- unix seconds: when it entered this state
    until       BIGINT,                 -- deferred: when its window opens
    why         TEXT,                   -- deferred: the budget it waits for; failed: the error
    enqueued_at BIGINT NOT NULL
);
CREATE INDEX jobs_state ON factory_queue.jobs (state);

-- Shared rate budgets: the takes of each key inside its window (unix seconds, oldest
-- first) and a block until a time (a 429 with Retry-After). One row per key, so one
-- `INSERT … ON CONFLICT DO UPDATE … RETURNING` takes a unit or refuses it atomically.
CREATE TABLE factory_queue.budgets (
    key           TEXT PRIMARY KEY,
    takes         BIGINT[] NOT NULL,
    blocked_until BIGINT NOT NULL DEFAULT 0
);
