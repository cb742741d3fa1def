//! The shared queue on Postgres: the queue library's tables (`apalis`, for claiming with
//! `FOR UPDATE SKIP LOCKED`, retries and the re-queueing of a dead worker's tasks) and what
//! it does not give, in the schema `factory_queue`: a lease per job with a fencing token,
//! the queue's view for `factory status`, and rate budgets shared by every worker.

use std::time::Duration;

use apalis_core::task::Task;
use apalis_postgres::{CompactType, Config, PgContext, PgTask, PostgresStorage};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::providers::{Budgets, ProviderError};

/// The schema of the queue's own tables (and of the bookkeeping of both migrations).
const SCHEMA: &str = "factory_queue";

/// One key for the advisory lock that serialises set-up across workers starting at once.
const SETUP_LOCK: i64 = 0x0066_6163_7175_6575;

/// How many times a task is tried before the library gives it up (`Killed`).
pub const MAX_ATTEMPTS: i32 = 25;

const MIGRATIONS: super::migrations::List = &[(
    900,
    "queue",
    include_str!("../../migrations/postgres/0900_queue.sql"),
)];

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot connect to the queue at `{url}`: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot set up the queue's tables: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("queue query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot encode a queue task: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "the lease on job `{job}` was lost (this worker holds attempt {token}; {holder}); the job is stopped here and its work left to the holder"
    )]
    LeaseLost {
        job: String,
        token: i64,
        holder: String,
    },
    #[error(
        "`{0}` is not a queue state the store knows; the queue is damaged or from a newer version"
    )]
    Corrupt(String),
    #[error("a task on the queue cannot be read: {0}")]
    Unreadable(String),
}

/// Which capacity a task waits for: a render slot, or a network slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Render,
    Network,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Render => "render",
            Self::Network => "network",
        }
    }

    /// The library's queue this phase's tasks wait in.
    pub fn queue(self) -> &'static str {
        match self {
            Self::Render => "factory-render",
            Self::Network => "factory-network",
        }
    }

    fn parse(s: &str) -> Result<Self, QueueError> {
        match s {
            "render" => Ok(Self::Render),
            "network" => Ok(Self::Network),
            other => Err(QueueError::Corrupt(other.to_owned())),
        }
    }
}

/// A task on the queue: one phase of one job; the worker loads the job from its recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTask {
    pub job: String,
    pub recipe: String,
    pub recipe_path: String,
    pub topic: String,
    pub phase: Phase,
}

/// How a job stands on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Waiting,
    Running,
    Deferred,
    Done,
    Failed,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Deferred => "deferred",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, QueueError> {
        Ok(match s {
            "waiting" => Self::Waiting,
            "running" => Self::Running,
            "deferred" => Self::Deferred,
            "done" => Self::Done,
            "failed" => Self::Failed,
            other => return Err(QueueError::Corrupt(other.to_owned())),
        })
    }
}

/// One row of `factory status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedJob {
    pub job: String,
    pub recipe: String,
    pub topic: String,
    pub state: QueueState,
    pub phase: Phase,
    pub worker: Option<String>,
    pub stage: Option<String>,
    /// The attempt number of the lease that last wrote this row.
    pub attempt: i64,
    pub since: i64,
    pub until: Option<i64>,
    pub why: Option<String>,
}

/// How a leased phase ended: what the queue records, and which task follows.
#[derive(Debug, Clone, PartialEq)]
pub enum PhaseEnd {
    Done,
    Failed(String),
    /// Continues in `phase` now (the other capacity, or handed back on shutdown).
    Next(Phase),
    /// Continues in `phase` at `until` (unix seconds), for `why`.
    Deferred {
        phase: Phase,
        until: i64,
        why: String,
    },
}

/// What taking a job's lease for a task gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The lease, under this fencing token (the attempt number).
    Held(i64),
    /// A live worker holds it: the task waits for that lease to end.
    Busy,
    /// The task is one the job has moved past: nothing to do, and nothing taken.
    Stale(String),
}

/// The queue's tables over one pool.
#[derive(Debug, Clone)]
pub struct QueueStore {
    pool: PgPool,
}

/// Now on the database's clock, in milliseconds: one clock for every worker's lease.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl QueueStore {
    /// Connects and sets up the library's tables and ours. The bookkeeping of both lives
    /// in `factory_queue`, apart from the store's own migrations.
    pub async fn connect(url: &str, connections: u32) -> Result<Self, QueueError> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(|source| QueueError::Connect {
                url: redact(url),
                source,
            })?;
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *conn)
            .await?;
        let migrated = async {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                .execute(&mut *conn)
                .await?;
            sqlx::query(&format!("SET search_path TO {SCHEMA}, public"))
                .execute(&mut *conn)
                .await?;
            let mut library = PostgresStorage::<(), (), ()>::migrations();
            library.set_ignore_missing(true);
            library.run(&mut *conn).await?;
            let mut ours = Migrator::new(super::migrations::Embedded(MIGRATIONS)).await?;
            ours.set_ignore_missing(true);
            ours.run(&mut *conn).await?;
            Ok::<_, QueueError>(())
        }
        .await;
        sqlx::query("RESET search_path").execute(&mut *conn).await?;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *conn)
            .await?;
        migrated?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The library's configuration for one phase's queue: its heartbeat, and when a
    /// worker not seen has its tasks re-queued. (Claims are the worker's own, see
    /// [`QueueStore::claim`].)
    pub fn config(phase: Phase, keep_alive: Duration, orphaned_after: Duration) -> Config {
        Config::new(phase.queue())
            .set_buffer_size(1)
            .set_keep_alive(keep_alive)
            .set_reenqueue_orphaned_after(orphaned_after)
    }

    /// Registers `worker` as the queue library's worker on `phase`'s queue: the row its
    /// claims point to, and whose `last_seen` its heartbeat renews (a worker not seen for
    /// long has its tasks re-queued). A name registered before is taken over.
    pub async fn register_worker(&self, worker: &str, phase: Phase) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen, started_at) \
             VALUES ($1, $2, 'factory', '', now(), now()) \
             ON CONFLICT (id) DO UPDATE SET worker_type = excluded.worker_type, \
             storage_name = excluded.storage_name, last_seen = now(), started_at = now()",
        )
        .bind(worker)
        .bind(phase.queue())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims the next task of `phase` that is due (`FOR UPDATE SKIP LOCKED`, through the
    /// library's own function), for `worker`; `None` when none is.
    pub async fn claim(
        &self,
        worker: &str,
        phase: Phase,
    ) -> Result<Option<PgTask<QueueTask>>, QueueError> {
        let Some(row) = sqlx::query(
            "SELECT job, id, job_type, status, attempts, max_attempts, \
             extract(epoch FROM run_at)::bigint AS run_at_s, last_result, lock_by, priority, \
             metadata, idempotency_key FROM apalis.get_jobs($1, $2, 1)",
        )
        .bind(worker)
        .bind(phase.queue())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let count = |name: &str| -> Result<Option<usize>, QueueError> {
            Ok(row
                .try_get::<Option<i32>, _>(name)?
                .map(|n| usize::try_from(n).unwrap_or(0)))
        };
        let run_at: i64 = row.try_get("run_at_s")?;
        let task = apalis_sql::from_row::TaskRow {
            job: row.try_get("job")?,
            id: row.try_get("id")?,
            job_type: row.try_get("job_type")?,
            status: row.try_get("status")?,
            attempts: count("attempts")?.unwrap_or(0),
            max_attempts: count("max_attempts")?,
            run_at: apalis_sql::DateTime::from_timestamp(run_at, 0),
            last_result: row.try_get("last_result")?,
            lock_at: None,
            lock_by: row.try_get("lock_by")?,
            done_at: None,
            priority: count("priority")?,
            idempotency_key: row.try_get("idempotency_key")?,
            metadata: row.try_get("metadata")?,
        };
        let task: PgTask<CompactType> = task
            .try_into_task_compact()
            .map_err(|e| QueueError::Unreadable(e.to_string()))?;
        task.try_map(|body| serde_json::from_slice::<QueueTask>(&body))
            .map(Some)
            .map_err(|e| QueueError::Unreadable(e.to_string()))
    }

    /// Puts jobs on the queue; a job already waiting, running or deferred is left as it
    /// is (enqueueing twice never runs a job twice). Returns how many were added.
    pub async fn enqueue(&self, tasks: &[QueueTask]) -> Result<usize, QueueError> {
        let mut tx = self.pool.begin().await?;
        let mut added = Vec::new();
        for t in tasks {
            let fresh = sqlx::query(
                "INSERT INTO factory_queue.jobs \
                 (job_id, recipe, recipe_path, topic, state, phase, since, enqueued_at) \
                 VALUES ($1, $2, $3, $4, 'waiting', $5, $6, $6) \
                 ON CONFLICT (job_id) DO UPDATE SET state = 'waiting', phase = excluded.phase, \
                 recipe_path = excluded.recipe_path, worker = NULL, stage = NULL, until = NULL, \
                 why = NULL, since = excluded.since, enqueued_at = excluded.enqueued_at \
                 WHERE factory_queue.jobs.state IN ('done', 'failed') \
                 RETURNING job_id",
            )
            .bind(&t.job)
            .bind(&t.recipe)
            .bind(&t.recipe_path)
            .bind(&t.topic)
            .bind(t.phase.as_str())
            .bind(crate::clock::now())
            .fetch_optional(&mut *tx)
            .await?;
            if fresh.is_some() {
                added.push(t.clone());
            }
        }
        let count = added.len();
        push(&mut tx, added, 0).await?;
        tx.commit().await?;
        Ok(count)
    }

    /// Takes the lease on `task`'s job for `worker`: a fresh one, or one whose holder let
    /// it end. A task the job has moved past (a phase finished whose worker died before
    /// the queue library heard of it, so the library ran it again) takes nothing: running
    /// it would queue the next phase a second time.
    pub async fn acquire(
        &self,
        task: &QueueTask,
        worker: &str,
        ttl: Duration,
    ) -> Result<Acquired, QueueError> {
        let ttl = millis(ttl);
        let job = task.job.as_str();
        let mut tx = self.pool.begin().await?;
        // The lease row first, then the queue's row: the order `finish` locks them in.
        let token: Option<i64> = sqlx::query(&format!(
            "INSERT INTO factory_queue.leases (job_id, worker, token, since_ms, expires_ms) \
             VALUES ($1, $2, 1, {NOW_MS}, {NOW_MS} + $3) \
             ON CONFLICT (job_id) DO UPDATE SET worker = excluded.worker, \
             token = factory_queue.leases.token + 1, stage = NULL, since_ms = excluded.since_ms, \
             expires_ms = excluded.expires_ms \
             WHERE factory_queue.leases.expires_ms < excluded.since_ms \
             RETURNING token"
        ))
        .bind(job)
        .bind(worker)
        .bind(ttl)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("token"))
        .transpose()?;
        let Some(token) = token else {
            return Ok(Acquired::Busy);
        };
        let row =
            sqlx::query("SELECT state, phase FROM factory_queue.jobs WHERE job_id = $1 FOR UPDATE")
                .bind(job)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Ok(Acquired::Stale(format!("job `{job}` is not on the queue")));
        };
        let state = QueueState::parse(&row.try_get::<String, _>("state")?)?;
        let phase = Phase::parse(&row.try_get::<String, _>("phase")?)?;
        if matches!(state, QueueState::Done | QueueState::Failed) {
            return Ok(Acquired::Stale(format!(
                "job `{job}` is {} already",
                state.as_str()
            )));
        }
        if phase != task.phase {
            return Ok(Acquired::Stale(format!(
                "job `{job}` went on from its {} phase to its {} phase",
                task.phase.as_str(),
                phase.as_str()
            )));
        }
        sqlx::query(
            "UPDATE factory_queue.jobs SET state = 'running', worker = $2, token = $3, \
             stage = NULL, until = NULL, why = NULL, since = $4 WHERE job_id = $1",
        )
        .bind(job)
        .bind(worker)
        .bind(token)
        .bind(crate::clock::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Acquired::Held(token))
    }

    /// Extends a lease still held; a lease that ended or passed to another is lost.
    pub async fn renew(&self, job: &str, token: i64, ttl: Duration) -> Result<(), QueueError> {
        let renewed = sqlx::query(&format!(
            "UPDATE factory_queue.leases SET expires_ms = {NOW_MS} + $3 \
             WHERE job_id = $1 AND token = $2 AND expires_ms >= {NOW_MS}"
        ))
        .bind(job)
        .bind(token)
        .bind(millis(ttl))
        .execute(&self.pool)
        .await?;
        if renewed.rows_affected() == 1 {
            return Ok(());
        }
        Err(self.lost(job, token).await)
    }

    /// A fenced write: records the stage the holder of `token` is at, and fails with
    /// [`QueueError::LeaseLost`] when that lease ended or another took it over.
    pub async fn fence(
        &self,
        job: &str,
        token: i64,
        stage: Option<&str>,
    ) -> Result<(), QueueError> {
        // One statement, one round trip: the lease checked (and the stage recorded on it
        // and on the queue's row) only while `token` holds it.
        let held: i64 = sqlx::query_scalar(&format!(
            "WITH held AS (UPDATE factory_queue.leases SET stage = COALESCE($3, stage) \
               WHERE job_id = $1 AND token = $2 AND expires_ms >= {NOW_MS} RETURNING job_id), \
             shown AS (UPDATE factory_queue.jobs SET stage = $3 \
               WHERE $3 IS NOT NULL AND job_id IN (SELECT job_id FROM held) AND token = $2) \
             SELECT COUNT(*) FROM held"
        ))
        .bind(job)
        .bind(token)
        .bind(stage)
        .fetch_one(&self.pool)
        .await?;
        if held != 1 {
            return Err(self.lost(job, token).await);
        }
        Ok(())
    }

    /// Ends the phase held under `token`, in one transaction: the queue's row, the lease
    /// given up, and the task that follows. Fenced like every other write.
    pub async fn finish(
        &self,
        task: &QueueTask,
        token: i64,
        end: &PhaseEnd,
    ) -> Result<(), QueueError> {
        let now = crate::clock::now();
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(&format!(
            "UPDATE factory_queue.leases SET expires_ms = 0, stage = NULL \
             WHERE job_id = $1 AND token = $2 AND expires_ms >= {NOW_MS}"
        ))
        .bind(&task.job)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() != 1 {
            drop(tx);
            return Err(self.lost(&task.job, token).await);
        }
        let (state, phase, until, why) = match end {
            PhaseEnd::Done => (QueueState::Done, task.phase, None, None),
            PhaseEnd::Failed(e) => (QueueState::Failed, task.phase, None, Some(e.as_str())),
            PhaseEnd::Next(phase) => (QueueState::Waiting, *phase, None, None),
            PhaseEnd::Deferred { phase, until, why } => (
                QueueState::Deferred,
                *phase,
                Some(*until),
                Some(why.as_str()),
            ),
        };
        sqlx::query(
            "UPDATE factory_queue.jobs SET state = $3, phase = $4, until = $5, why = $6, \
             worker = NULL, stage = CASE WHEN $3 = 'failed' THEN stage ELSE NULL END, since = $7 \
             WHERE job_id = $1 AND token = $2",
        )
        .bind(&task.job)
        .bind(token)
        .bind(state.as_str())
        .bind(phase.as_str())
        .bind(until)
        .bind(why)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let next = |phase| QueueTask {
            phase,
            ..task.clone()
        };
        match end {
            PhaseEnd::Next(phase) => push(&mut tx, vec![next(*phase)], 0).await?,
            PhaseEnd::Deferred { phase, until, .. } => {
                push(&mut tx, vec![next(*phase)], *until).await?;
            }
            PhaseEnd::Done | PhaseEnd::Failed(_) => {}
        }
        tx.commit().await?;
        Ok(())
    }

    /// The named failure for a write under `token`, with who holds the lease now.
    async fn lost(&self, job: &str, token: i64) -> QueueError {
        let holder = sqlx::query(&format!(
            "SELECT worker, token, expires_ms >= {NOW_MS} AS live FROM factory_queue.leases \
             WHERE job_id = $1"
        ))
        .bind(job)
        .fetch_optional(&self.pool)
        .await;
        let holder = match holder {
            Ok(Some(row)) => {
                let worker: String = row.try_get("worker").unwrap_or_default();
                let now: i64 = row.try_get("token").unwrap_or_default();
                let live: bool = row.try_get("live").unwrap_or_default();
                if now == token {
                    "it ended before it was renewed".to_owned()
                } else if live {
                    format!("worker `{worker}` holds attempt {now}")
                } else {
                    format!("worker `{worker}` took attempt {now}")
                }
            }
            Ok(None) => "no lease is recorded".to_owned(),
            Err(e) => format!("the holder could not be read: {e}"),
        };
        QueueError::LeaseLost {
            job: job.to_owned(),
            token,
            holder,
        }
    }

    /// A task that failed for the worker's own reason (a store it could not write): the
    /// library retries it after `wait`, not at once.
    pub async fn retry_after(&self, task_id: &str, wait: Duration) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1",
        )
        .bind(task_id)
        .bind(wait.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every job on the queue, waiting first, then running, deferred, failed and done.
    pub async fn jobs(&self) -> Result<Vec<QueuedJob>, QueueError> {
        let rows = sqlx::query(
            "SELECT job_id, recipe, topic, state, phase, worker, stage, token, since, until, why \
             FROM factory_queue.jobs ORDER BY \
             CASE state WHEN 'waiting' THEN 0 WHEN 'running' THEN 1 WHEN 'deferred' THEN 2 \
             WHEN 'failed' THEN 3 ELSE 4 END, enqueued_at, job_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedJob {
                    job: r.try_get("job_id")?,
                    recipe: r.try_get("recipe")?,
                    topic: r.try_get("topic")?,
                    state: QueueState::parse(&r.try_get::<String, _>("state")?)?,
                    phase: Phase::parse(&r.try_get::<String, _>("phase")?)?,
                    worker: r.try_get("worker")?,
                    stage: r.try_get("stage")?,
                    attempt: r.try_get("token")?,
                    since: r.try_get("since")?,
                    until: r.try_get("until")?,
                    why: r.try_get("why")?,
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Pushes tasks through the library in `tx`, to run at `at` (unix seconds; 0 for now).
async fn push(
    tx: &mut sqlx::PgConnection,
    tasks: Vec<QueueTask>,
    at: i64,
) -> Result<(), QueueError> {
    let mut by_phase: Vec<(Phase, Vec<PgTask<CompactType>>)> = Vec::new();
    for t in tasks {
        let body = serde_json::to_vec(&t)?;
        let mut built =
            Task::builder(body).with_ctx(PgContext::new().with_max_attempts(MAX_ATTEMPTS));
        if at > 0 {
            built = built.run_at_timestamp(u64::try_from(at).unwrap_or(0));
        }
        let task = built.build();
        match by_phase.iter_mut().find(|(p, _)| *p == t.phase) {
            Some((_, list)) => list.push(task),
            None => by_phase.push((t.phase, vec![task])),
        }
    }
    for (phase, list) in by_phase {
        apalis_postgres::sink::push_tasks(&mut *tx, Config::new(phase.queue()), list).await?;
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A connection URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Rate budgets shared by every worker, on the queue's database. Takes and blocks are on
/// the engine's clock ([`crate::clock::now`]), like the store's budgets.
#[derive(Debug, Clone)]
pub struct PgBudgets {
    pool: PgPool,
}

impl PgBudgets {
    pub fn new(queue: &QueueStore) -> Self {
        Self {
            pool: queue.pool.clone(),
        }
    }

    /// Takes one unit of `key` (`limit` per `window` seconds) at `now`: one statement,
    /// whose row lock makes concurrent takes wait for each other. When refused, when the
    /// budget has room again.
    ///
    /// The clock is whole seconds, so a take recorded at `t` happened somewhere in
    /// `[t, t + 1)`: it stays in the window through `t + window` and leaves it after, or
    /// a take at `t + window` could fall less than `window` seconds after it (a seventh
    /// TikTok init 59.2 s after the first, refused with a 429).
    pub async fn take_at(
        &self,
        key: &str,
        limit: u32,
        window: i64,
        now: i64,
    ) -> Result<Result<(), i64>, sqlx::Error> {
        let taken = sqlx::query(
            "INSERT INTO factory_queue.budgets AS b (key, takes) VALUES ($1, ARRAY[$2]::bigint[]) \
             ON CONFLICT (key) DO UPDATE SET takes = array_append(\
               ARRAY(SELECT t FROM unnest(b.takes) AS t WHERE t >= $2 - $3 ORDER BY t), $2) \
             WHERE b.blocked_until <= $2 \
               AND cardinality(ARRAY(SELECT t FROM unnest(b.takes) AS t WHERE t >= $2 - $3)) < $4 \
             RETURNING key",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .bind(i64::from(limit))
        .fetch_optional(&self.pool)
        .await?;
        if taken.is_some() && limit > 0 {
            return Ok(Ok(()));
        }
        // Refused: the window opens again when the oldest of its last `limit` takes
        // leaves it (a second after `window` has passed), and never before a block ends.
        let row = sqlx::query(
            "SELECT blocked_until, \
             (SELECT MIN(t) FROM (SELECT t FROM unnest(takes) AS t WHERE t >= $2 - $3 \
              ORDER BY t DESC LIMIT $4) AS last) AS oldest \
             FROM factory_queue.budgets WHERE key = $1",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        let blocked: i64 = row.try_get("blocked_until")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let reopens = oldest.map_or(now, |at| at + window + 1);
        Ok(Err(blocked.max(reopens).max(now + 1)))
    }

    /// Gives back the newest unit taken from `key`.
    pub async fn give_back_at(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE factory_queue.budgets SET takes = takes[1:cardinality(takes) - 1] WHERE key = $1",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Blocks `key` for every worker until `until`; a later block wins.
    pub async fn block_at(&self, key: &str, until: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO factory_queue.budgets AS b (key, takes, blocked_until) \
             VALUES ($1, '{}', $2) \
             ON CONFLICT (key) DO UPDATE SET blocked_until = GREATEST(b.blocked_until, excluded.blocked_until)",
        )
        .bind(key)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn unavailable(e: &sqlx::Error) -> ProviderError {
    ProviderError::retryable(
        "budgets",
        format!("the queue's budgets cannot be read: {e}"),
    )
}

#[async_trait]
impl Budgets for PgBudgets {
    async fn take(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Result<(), i64>, ProviderError> {
        self.take_at(key, limit, window_secs, crate::clock::now())
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn give_back(&self, key: &str) -> Result<(), ProviderError> {
        self.give_back_at(key).await.map_err(|e| unavailable(&e))
    }

    async fn block(&self, key: &str, until: i64) -> Result<(), ProviderError> {
        self.block_at(key, until).await.map_err(|e| unavailable(&e))
    }
}
