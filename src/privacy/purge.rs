//! Deletion on request: a job's metadata, its artifacts (the cache, hosted copies, local
//! drafts) and its ledger rows, then compaction so the content leaves the file's bytes.

use std::path::{Path, PathBuf};

use sqlx::{Row, SqlitePool};

use crate::providers::Host;

/// Which jobs to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Job(String),
    Recipe(String),
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("job store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot delete `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot delete the hosted copy `{location}`: {message}")]
    Hosted { location: String, message: String },
}

/// What a purge deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub jobs: usize,
    pub artifacts: usize,
    pub hosted: usize,
    pub drafts: usize,
}

/// The ids of the jobs in `scope`.
pub async fn job_ids(pool: &SqlitePool, scope: &Scope) -> Result<Vec<String>, sqlx::Error> {
    let rows = match scope {
        Scope::Job(id) => {
            sqlx::query("SELECT id FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_all(pool)
                .await?
        }
        Scope::Recipe(name) => {
            sqlx::query("SELECT id FROM jobs WHERE recipe = $1 ORDER BY id")
                .bind(name)
                .fetch_all(pool)
                .await?
        }
        Scope::All => {
            sqlx::query("SELECT id FROM jobs ORDER BY id")
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Deletes the jobs `ids` and everything made for them. `remote` deletes hosted copies
/// that are not local files (R2 objects); local ones are removed directly.
pub async fn purge(
    pool: &SqlitePool,
    state_dir: &Path,
    ids: &[String],
    remote: Option<&dyn Host>,
) -> Result<Purged, PurgeError> {
    let mut purged = Purged::default();
    for id in ids {
        let effects =
            sqlx::query("SELECT kind, external_id, detail FROM effects WHERE job_id = $1")
                .bind(id)
                .fetch_all(pool)
                .await?;
        for effect in &effects {
            let kind: String = effect.try_get("kind")?;
            let external: Option<String> = effect.try_get("external_id")?;
            let detail: Option<String> = effect.try_get("detail")?;
            let detail: serde_json::Value = detail
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default();
            match kind.as_str() {
                "host" => {
                    if let Some(location) = detail["location"].as_str() {
                        delete_hosted(location, remote).await?;
                        purged.hosted += 1;
                    }
                }
                "draft" => {
                    // Local drafts are files (and a sidecar); TikTok drafts live in the
                    // creator's inbox, which only the creator can clear.
                    if let Some(path) = external.filter(|p| Path::new(p).is_absolute()) {
                        let video = PathBuf::from(path);
                        remove_file(&video).await?;
                        remove_file(&video.with_extension("json")).await?;
                        purged.drafts += 1;
                    }
                }
                _ => {}
            }
        }
        // Artifacts no other job uses: a shared script or footage stays for its other jobs.
        let artifacts = sqlx::query(
            "SELECT a.key, a.stage FROM artifacts a \
             WHERE a.key IN (SELECT artifact FROM stages WHERE job_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM stages s WHERE s.artifact = a.key AND s.job_id <> $1)",
        )
        .bind(id)
        .fetch_all(pool)
        .await?;
        for artifact in &artifacts {
            let key: String = artifact.try_get("key")?;
            let stage: String = artifact.try_get("stage")?;
            remove_dir(&state_dir.join("cache").join(&stage).join(&key)).await?;
            sqlx::query("DELETE FROM artifacts WHERE key = $1")
                .bind(&key)
                .execute(pool)
                .await?;
            purged.artifacts += 1;
        }
        let mut tx = pool.begin().await?;
        for statement in [
            "DELETE FROM effects WHERE job_id = $1",
            "DELETE FROM events WHERE job_id = $1",
            "DELETE FROM stages WHERE job_id = $1",
            "DELETE FROM jobs WHERE id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        purged.jobs += 1;
    }
    sqlx::query("DELETE FROM recipes WHERE name NOT IN (SELECT recipe FROM jobs)")
        .execute(pool)
        .await?;
    super::compact(pool).await?;
    Ok(purged)
}

/// Deletes one hosted copy: a local file directly, anything else through `remote`.
pub async fn delete_hosted(location: &str, remote: Option<&dyn Host>) -> Result<(), PurgeError> {
    // Hosted copies are either R2 objects (`r2://bucket/key`) or files of the local host.
    if !location.starts_with("r2://") {
        return remove_file(Path::new(location)).await;
    }
    let Some(remote) = remote else {
        return Err(PurgeError::Hosted {
            location: location.to_owned(),
            message: "the R2 settings (`R2_BUCKET` and its keys) are not set".to_owned(),
        });
    };
    remote
        .delete(location)
        .await
        .map_err(|e| PurgeError::Hosted {
            location: location.to_owned(),
            message: e.to_string(),
        })
}

async fn remove_file(path: &Path) -> Result<(), PurgeError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PurgeError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

async fn remove_dir(path: &Path) -> Result<(), PurgeError> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PurgeError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}
