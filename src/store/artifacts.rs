//! Stage records, the artifact index and the side-effect ledger.

use sqlx::Row;

use super::{Store, StoreError, now};

/// An artifact the cache holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub key: String,
    pub stage: String,
    /// Path relative to the cache directory.
    pub location: String,
    pub bytes: i64,
    pub sha256: String,
    /// The stage's output, as JSON.
    pub meta: String,
    pub expires_at: Option<i64>,
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub key: String,
    pub job_id: String,
    pub kind: String,
    pub status: String,
    pub external_id: Option<String>,
    pub detail: Option<String>,
}

impl Store {
    pub async fn artifact(&self, key: &str) -> Result<Option<Artifact>, StoreError> {
        let row = sqlx::query(
            "SELECT key, stage, location, bytes, sha256, meta, expires_at FROM artifacts \
             WHERE key = $1 AND expired_at IS NULL",
        )
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Artifact {
                key: r.try_get("key")?,
                stage: r.try_get("stage")?,
                location: r.try_get("location")?,
                bytes: r.try_get("bytes")?,
                sha256: r.try_get("sha256")?,
                meta: r.try_get("meta")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn put_artifact(&self, a: &Artifact) -> Result<(), StoreError> {
        self.write(|| sqlx::query(
            "INSERT INTO artifacts (key, stage, location, bytes, sha256, meta, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (key) DO UPDATE SET location = excluded.location, bytes = excluded.bytes, \
             sha256 = excluded.sha256, meta = excluded.meta, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, expired_at = NULL",
        )
        .bind(&a.key)
        .bind(&a.stage)
        .bind(&a.location)
        .bind(a.bytes)
        .bind(&a.sha256)
        .bind(&a.meta)
        .bind(now())
        .bind(a.expires_at)
        .execute(self.pool()))
        .await?;
        Ok(())
    }

    /// Records that a stage started (a new attempt).
    pub async fn stage_started(
        &self,
        job: &str,
        stage: &str,
        key: &str,
    ) -> Result<i64, StoreError> {
        let row = self.write(|| sqlx::query(
            "INSERT INTO stages (job_id, stage, key, status, attempt, started_at) \
             VALUES ($1, $2, $3, 'running', 1, $4) \
             ON CONFLICT (job_id, stage) DO UPDATE SET key = excluded.key, status = 'running', \
             attempt = stages.attempt + 1, error = NULL, started_at = excluded.started_at, finished_at = NULL \
             RETURNING attempt",
        )
        .bind(job)
        .bind(stage)
        .bind(key)
        .bind(now())
        .fetch_one(self.pool()))
        .await?;
        self.event(job, Some(stage), "running", None).await?;
        Ok(row.try_get("attempt")?)
    }

    /// Records how a stage ended: `done`, `cached`, `failed` or `interrupted`. A cached
    /// stage took no time of its own: its start is its end, whatever an earlier attempt
    /// of the job left in the row.
    #[allow(clippy::too_many_arguments)]
    pub async fn stage_finished(
        &self,
        job: &str,
        stage: &str,
        key: &str,
        status: &str,
        artifact: Option<&str>,
        error: Option<&str>,
        cost: Option<f64>,
    ) -> Result<(), StoreError> {
        let now = now();
        self.write(|| sqlx::query(
            "INSERT INTO stages (job_id, stage, key, status, attempt, artifact, error, cost, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $8) \
             ON CONFLICT (job_id, stage) DO UPDATE SET key = excluded.key, status = excluded.status, \
             artifact = excluded.artifact, error = excluded.error, cost = excluded.cost, \
             started_at = CASE WHEN excluded.status = 'cached' THEN excluded.started_at \
                          ELSE COALESCE(stages.started_at, excluded.started_at) END, \
             finished_at = excluded.finished_at",
        )
        .bind(job)
        .bind(stage)
        .bind(key)
        .bind(status)
        .bind(artifact)
        .bind(error)
        .bind(cost)
        .bind(now)
        .execute(self.pool()))
        .await?;
        self.event(job, Some(stage), status, error).await
    }

    /// Records a stage reused by a later phase of the same job on a worker: a row the job
    /// already has `done` under `key` is left as it is; anything else is recorded
    /// `cached`, as [`Store::stage_finished`] does.
    pub async fn stage_reused_in_phase(
        &self,
        job: &str,
        stage: &str,
        key: &str,
        artifact: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now();
        let written = self.write(|| sqlx::query(
            "INSERT INTO stages (job_id, stage, key, status, attempt, artifact, error, cost, started_at, finished_at) \
             VALUES ($1, $2, $3, 'cached', 0, $4, NULL, NULL, $5, $5) \
             ON CONFLICT (job_id, stage) DO UPDATE SET key = excluded.key, status = excluded.status, \
             artifact = excluded.artifact, error = NULL, cost = NULL, \
             started_at = excluded.started_at, finished_at = excluded.finished_at \
             WHERE NOT (stages.status = 'done' AND stages.key = excluded.key)",
        )
        .bind(job)
        .bind(stage)
        .bind(key)
        .bind(artifact)
        .bind(now)
        .execute(self.pool()))
        .await?;
        if written.rows_affected() == 0 {
            return Ok(());
        }
        self.event(job, Some(stage), "cached", None).await
    }

    /// Records a failed attempt that is tried again: the attempt count grows and the
    /// history says why.
    pub async fn stage_retry(&self, job: &str, stage: &str, error: &str) -> Result<(), StoreError> {
        self.write(|| {
            sqlx::query(
            "UPDATE stages SET attempt = attempt + 1, error = $3 WHERE job_id = $1 AND stage = $2",
        )
        .bind(job)
        .bind(stage)
        .bind(error)
        .execute(self.pool())
        })
        .await?;
        self.event(job, Some(stage), "retry", Some(error)).await
    }

    /// Marks every running stage and job as interrupted (after Ctrl-C or a crash).
    pub async fn interrupt_running(&self) -> Result<u64, StoreError> {
        let now = now();
        self.write(|| {
            sqlx::query(
            "UPDATE stages SET status = 'interrupted', finished_at = $1 WHERE status = 'running'",
        )
        .bind(now)
        .execute(self.pool())
        })
        .await?;
        let done = self
            .write(|| {
                sqlx::query(
            "UPDATE jobs SET status = 'interrupted', updated_at = $1 WHERE status = 'running'",
        )
        .bind(now)
        .execute(self.pool())
            })
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn effect(&self, key: &str) -> Result<Option<Effect>, StoreError> {
        let row = sqlx::query(
            "SELECT key, job_id, kind, status, external_id, detail FROM effects WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Effect {
                key: r.try_get("key")?,
                job_id: r.try_get("job_id")?,
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                external_id: r.try_get("external_id")?,
                detail: r.try_get("detail")?,
            })
        })
        .transpose()
    }

    /// Writes a ledger row before (status `started`) and after (`done`/`failed`) an effect.
    pub async fn record_effect(
        &self,
        key: &str,
        job: &str,
        kind: &str,
        status: &str,
        external_id: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now();
        let finished = (status != "started").then_some(now);
        self.write(|| sqlx::query(
            "INSERT INTO effects (key, job_id, kind, status, external_id, detail, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (key) DO UPDATE SET status = excluded.status, \
             external_id = COALESCE(excluded.external_id, effects.external_id), \
             detail = COALESCE(excluded.detail, effects.detail), finished_at = excluded.finished_at",
        )
        .bind(key)
        .bind(job)
        .bind(kind)
        .bind(status)
        .bind(external_id)
        .bind(detail)
        .bind(now)
        .bind(finished)
        .execute(self.pool()))
        .await?;
        Ok(())
    }
}
