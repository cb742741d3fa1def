-- Shared rate budgets: every unit taken from a budget (TikTok's 6 inits per minute per
-- token, 5 pending drafts per 24 h per account, Pexels' hourly window), and keys blocked
-- until a time (a 429 with Retry-After). Kept here, not in a process, so the next run and
-- every worker honour them. Keys name a service and an account id, never a credential.
CREATE TABLE budget_takes (
    key  TEXT NOT NULL,
    seq  BIGINT NOT NULL,
    at   BIGINT NOT NULL,
    PRIMARY KEY (key, seq)
);

CREATE TABLE budget_blocks (
    key   TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
