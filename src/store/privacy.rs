//! The queries behind `export`, `purge` and `gc`: what the privacy policy promises, as
//! store methods, so `crate::privacy` decides and deletes files while the SQL stays here.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use super::{AccountSummary, Effect, EffectStatus, Store, StoreError};

/// Which jobs a purge deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobScope {
    /// One job, by its full id.
    Job(String),
    Recipe(String),
    All,
}

/// Every row the export shows, as JSON objects keyed by column; the document is shaped
/// by [`crate::privacy::export`].
#[derive(Debug, Clone, Default)]
pub struct ExportRows {
    pub accounts: Vec<AccountSummary>,
    pub jobs: Vec<ExportJob>,
    /// The whole side-effect ledger.
    pub effects: Vec<Map<String, Value>>,
}

/// One job's row with the rows that hang off it.
#[derive(Debug, Clone, Default)]
pub struct ExportJob {
    pub row: Map<String, Value>,
    pub stages: Vec<Map<String, Value>>,
    /// The artifacts its stages produced or reused.
    pub artifacts: Vec<Map<String, Value>>,
    pub events: Vec<Map<String, Value>>,
    pub effects: Vec<Map<String, Value>>,
}

/// A cached artifact by the stage that made it and its key: its files are in
/// `<cache>/<stage>/<key>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    pub stage: String,
    pub key: String,
}

impl Store {
    /// Rewrites the database so deleted content is gone from its files: SQLite keeps
    /// deleted rows in free pages and, in WAL mode, in the log, and Postgres keeps them
    /// as dead row versions, so a `DELETE` alone leaves the content in the bytes.
    /// Postgres rewrites the store's tables (`VACUUM FULL`, one short exclusive lock per
    /// table); its server's write-ahead log and backups are the operator's to keep.
    pub async fn compact(&self) -> Result<(), StoreError> {
        if self.is_postgres() {
            // One statement: VACUUM refuses to run inside a (multi-statement) transaction.
            sqlx::raw_sql(
                "VACUUM FULL recipes, jobs, stages, events, artifacts, effects, accounts",
            )
            .execute(self.pool())
            .await?;
            return Ok(());
        }
        sqlx::query("VACUUM").execute(self.pool()).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn export_rows(&self) -> Result<ExportRows, StoreError> {
        let accounts = self.account_summaries().await?;
        let mut jobs = Vec::new();
        for job in sqlx::query(
            "SELECT id, recipe, cell, spec, topic, voice, status, stage, attempts, error, \
                    created_at, updated_at, finished_at FROM jobs ORDER BY recipe, created_at, id",
        )
        .fetch_all(self.pool())
        .await?
        {
            let id: String = job.try_get("id")?;
            jobs.push(ExportJob {
                row: row_object(&job),
                stages: self
                    .objects(
                        "SELECT stage, key, status, attempt, artifact, error, cost, started_at, \
                         finished_at FROM stages WHERE job_id = $1 ORDER BY started_at, stage",
                        &id,
                    )
                    .await?,
                artifacts: self
                    .objects(
                        "SELECT a.key, a.stage, a.meta, a.created_at, a.expires_at, a.expired_at \
                         FROM artifacts a JOIN stages s ON s.artifact = a.key WHERE s.job_id = $1 \
                         ORDER BY a.created_at, a.stage",
                        &id,
                    )
                    .await?,
                events: self
                    .objects(
                        "SELECT seq, stage, status, detail, at FROM events WHERE job_id = $1 \
                         ORDER BY seq",
                        &id,
                    )
                    .await?,
                effects: self
                    .objects(
                        "SELECT key, kind, status, external_id, detail, started_at, finished_at \
                         FROM effects WHERE job_id = $1 ORDER BY started_at, key",
                        &id,
                    )
                    .await?,
            });
        }
        let effects = sqlx::query(
            "SELECT key, job_id, kind, status, external_id, detail, started_at, finished_at \
             FROM effects ORDER BY started_at, key",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(row_object)
        .collect();
        Ok(ExportRows {
            accounts,
            jobs,
            effects,
        })
    }

    async fn objects(&self, sql: &str, id: &str) -> Result<Vec<Map<String, Value>>, StoreError> {
        Ok(sqlx::query(sql)
            .bind(id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(row_object)
            .collect())
    }

    /// The ids of the jobs in `scope`, sorted.
    pub async fn job_ids(&self, scope: &JobScope) -> Result<Vec<String>, StoreError> {
        let rows = match scope {
            JobScope::Job(id) => {
                sqlx::query("SELECT id FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_all(self.pool())
                    .await?
            }
            JobScope::Recipe(name) => {
                sqlx::query("SELECT id FROM jobs WHERE recipe = $1 ORDER BY id")
                    .bind(name)
                    .fetch_all(self.pool())
                    .await?
            }
            JobScope::All => {
                sqlx::query("SELECT id FROM jobs ORDER BY id")
                    .fetch_all(self.pool())
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    /// Every ledger row of one job.
    pub async fn effects_of_job(&self, job: &str) -> Result<Vec<Effect>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, job_id, kind, status, external_id, detail FROM effects \
             WHERE job_id = $1 ORDER BY started_at, key",
        )
        .bind(job)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Effect {
                    key: r.try_get("key")?,
                    job_id: r.try_get("job_id")?,
                    kind: r.try_get("kind")?,
                    status: {
                        let status: String = r.try_get("status")?;
                        EffectStatus::from_column("effects", &status)?;
                        status
                    },
                    external_id: r.try_get("external_id")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The artifacts of `job` that no other job uses: a shared script or footage stays
    /// for its other jobs.
    pub async fn artifacts_only_of_job(&self, job: &str) -> Result<Vec<ArtifactRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.key, a.stage FROM artifacts a \
             WHERE a.key IN (SELECT artifact FROM stages WHERE job_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM stages s WHERE s.artifact = a.key AND s.job_id <> $1) \
             ORDER BY a.stage, a.key",
        )
        .bind(job)
        .fetch_all(self.pool())
        .await?;
        refs(&rows)
    }

    pub async fn delete_artifact(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM artifacts WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes a job with its stages, history and ledger rows, in one transaction.
    pub async fn delete_job(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for statement in [
            "DELETE FROM effects WHERE job_id = $1",
            "DELETE FROM events WHERE job_id = $1",
            "DELETE FROM stages WHERE job_id = $1",
            "DELETE FROM jobs WHERE id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets where recipes live once none of their jobs is left.
    pub async fn forget_recipes_without_jobs(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recipes WHERE name NOT IN (SELECT recipe FROM jobs)")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Rendered videos whose retention ended at `now` and that are not collected yet.
    pub async fn expired_renders(&self, now: i64) -> Result<Vec<ArtifactRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, stage FROM artifacts \
             WHERE expires_at IS NOT NULL AND expires_at <= $1 AND expired_at IS NULL ORDER BY key",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        refs(&rows)
    }

    /// The jobs whose stages produced or reused the artifact `key`.
    pub async fn jobs_using_artifact(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT job_id FROM stages WHERE artifact = $1 ORDER BY job_id")
            .bind(key)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("job_id"))
            .collect::<Result<_, _>>()?)
    }

    /// The live artifacts of `job`'s `stage` that no render still within retention at
    /// `now` was made from: the footage and narration that expire with a video.
    pub async fn inputs_of_expired_renders(
        &self,
        job: &str,
        stage: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.key FROM artifacts a JOIN stages s ON s.artifact = a.key \
             WHERE s.job_id = $1 AND s.stage = $2 AND a.expired_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM stages o JOIN stages r ON r.job_id = o.job_id \
                 JOIN artifacts ra ON ra.key = r.artifact \
                 WHERE o.artifact = a.key AND r.stage = 'render' \
                 AND ra.expired_at IS NULL AND (ra.expires_at IS NULL OR ra.expires_at > $3)) \
             ORDER BY a.key",
        )
        .bind(job)
        .bind(stage)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("key"))
            .collect::<Result<_, _>>()?)
    }

    /// Marks a ledger row `expired`: the hosted copy is gone, so a rerun hosts again.
    pub async fn expire_effect(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE effects SET status = $2 WHERE key = $1")
            .bind(key)
            .bind(EffectStatus::Expired.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Marks an artifact collected at `now`; its row stays for the history.
    pub async fn expire_artifact(&self, key: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE artifacts SET expired_at = $1 WHERE key = $2")
            .bind(now)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

fn refs(rows: &[AnyRow]) -> Result<Vec<ArtifactRef>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(ArtifactRef {
                stage: r.try_get("stage")?,
                key: r.try_get("key")?,
            })
        })
        .collect()
}

/// A row as a JSON object, by the type of each value (the same on both backends: the
/// schema has integers, doubles and text only).
fn row_object(row: &AnyRow) -> Map<String, Value> {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else {
            row.try_get::<Option<String>, _>(i)
                .ok()
                .flatten()
                .map_or(Value::Null, Value::from)
        };
        object.insert(column.name().to_owned(), value);
    }
    object
}
