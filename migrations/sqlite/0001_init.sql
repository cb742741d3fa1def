-- The job store. Integer timestamps (unix seconds), JSON as text, no engine-specific
-- types, so the same statements serve SQLite and Postgres.

CREATE TABLE recipes (
    name        TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,       -- JobId: hash of the canonical spec
    recipe      TEXT NOT NULL,
    cell        TEXT NOT NULL,          -- the matrix cell (axis values), stable across edits
    spec        TEXT NOT NULL,          -- canonical JSON of the resolved JobSpec
    topic       TEXT NOT NULL,
    voice       TEXT NOT NULL,
    status      TEXT NOT NULL,          -- pending | running | queued | done | failed | interrupted
    stage       TEXT,                   -- the stage running, or the one that failed
    attempts    BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX jobs_recipe ON jobs (recipe, cell);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE stages (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage       TEXT NOT NULL,
    key         TEXT NOT NULL,          -- stage key: hash of stage, version, provider, inputs
    status      TEXT NOT NULL,          -- running | done | cached | failed | interrupted
    attempt     BIGINT NOT NULL,
    artifact    TEXT,                   -- artifact key this stage produced or reused
    error       TEXT,
    cost        DOUBLE PRECISION,
    started_at  BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (job_id, stage)
);

-- Every transition, in order: the status history that `jobs show` and `export` print.
CREATE TABLE events (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    stage   TEXT,
    status  TEXT NOT NULL,
    detail  TEXT,
    at      BIGINT NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE artifacts (
    key         TEXT PRIMARY KEY,       -- the stage key that produced it
    stage       TEXT NOT NULL,
    location    TEXT NOT NULL,          -- path inside the cache directory
    bytes       BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    meta        TEXT NOT NULL,          -- stage output as JSON
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,                 -- rendered media expires; scripts do not
    expired_at  BIGINT
);

-- The side-effect ledger: written before and after each external effect, keyed by
-- the content sent, so a rerun or a crash never sends the same thing twice.
CREATE TABLE effects (
    key         TEXT PRIMARY KEY,       -- hash of (kind, target, content)
    job_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,          -- host | draft | notify
    status      TEXT NOT NULL,          -- started | done | failed
    external_id TEXT,                   -- publish_id, object key, message id
    detail      TEXT,                   -- JSON
    started_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX effects_job ON effects (job_id);

CREATE TABLE accounts (
    provider            TEXT NOT NULL,  -- tiktok
    name                TEXT NOT NULL,  -- the recipe's `publish.tiktok.account`
    open_id             TEXT NOT NULL,
    access_token_enc    TEXT NOT NULL,  -- authenticated encryption, base64
    refresh_token_enc   TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    access_expires_at   BIGINT NOT NULL,
    refresh_expires_at  BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (provider, name)
);
