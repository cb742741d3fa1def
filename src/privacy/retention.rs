//! Retention: rendered videos — the cached render, hosted copies, local drafts — are
//! deleted once their `expires_at` (set at render from `publish.retention_days`) has
//! passed, and the footage and narration they were made from follow on the same clock.
//! Job rows stay, with an `expired` event noting it; the script stays, so a rerun
//! re-renders without a new paid script call.

use std::path::Path;

use sqlx::{Row, SqlitePool};

use super::purge::{PurgeError, delete_hosted};
use crate::providers::Host;

/// Stages whose artifacts are media and expire with the render made from them.
const INPUT_STAGES: [&str; 2] = ["footage", "voice"];

/// What a collection deleted (or, on a dry run, would delete).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// `stage/key` of each cached artifact.
    pub artifacts: Vec<String>,
    /// Hosted copies: local paths or object keys.
    pub hosted: Vec<String>,
    pub drafts: Vec<String>,
    /// Jobs whose video expired.
    pub jobs: Vec<String>,
}

impl GcReport {
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty() && self.hosted.is_empty() && self.drafts.is_empty()
    }
}

/// Deletes everything due at `now` (unix seconds). `remote` is the R2 host when
/// configured: its own expired objects are swept as well.
pub async fn collect(
    pool: &SqlitePool,
    state_dir: &Path,
    now: i64,
    dry_run: bool,
    remote: Option<&dyn Host>,
) -> Result<GcReport, PurgeError> {
    let mut report = GcReport::default();
    let renders = sqlx::query(
        "SELECT key, stage FROM artifacts \
         WHERE expires_at IS NOT NULL AND expires_at <= $1 AND expired_at IS NULL ORDER BY key",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut due: Vec<(String, String)> = Vec::new();
    for r in &renders {
        due.push((r.try_get("stage")?, r.try_get("key")?));
    }
    let render_keys: Vec<String> = due.iter().map(|(_, k)| k.clone()).collect();
    for key in &render_keys {
        let jobs = sqlx::query("SELECT job_id FROM stages WHERE artifact = $1 ORDER BY job_id")
            .bind(key)
            .fetch_all(pool)
            .await?;
        for job in &jobs {
            let job: String = job.try_get("job_id")?;
            // Inputs used only by jobs whose video has expired too.
            for stage in INPUT_STAGES {
                let inputs = sqlx::query(
                    "SELECT a.key FROM artifacts a JOIN stages s ON s.artifact = a.key \
                     WHERE s.job_id = $1 AND s.stage = $2 AND a.expired_at IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM stages o JOIN stages r ON r.job_id = o.job_id \
                         JOIN artifacts ra ON ra.key = r.artifact \
                         WHERE o.artifact = a.key AND r.stage = 'render' \
                         AND ra.expired_at IS NULL AND (ra.expires_at IS NULL OR ra.expires_at > $3))",
                )
                .bind(&job)
                .bind(stage)
                .bind(now)
                .fetch_all(pool)
                .await?;
                for input in &inputs {
                    let key: String = input.try_get("key")?;
                    if !due.iter().any(|(_, k)| *k == key) {
                        due.push((stage.to_owned(), key));
                    }
                }
            }
            let effects = sqlx::query(
                "SELECT key, kind, external_id, detail FROM effects \
                 WHERE job_id = $1 AND status = 'done' AND kind IN ('host', 'draft')",
            )
            .bind(&job)
            .fetch_all(pool)
            .await?;
            for effect in &effects {
                let kind: String = effect.try_get("kind")?;
                let detail: Option<String> = effect.try_get("detail")?;
                let detail: serde_json::Value = detail
                    .and_then(|d| serde_json::from_str(&d).ok())
                    .unwrap_or_default();
                if kind == "host" {
                    let Some(location) = detail["location"].as_str() else {
                        continue;
                    };
                    if !dry_run {
                        delete_hosted(location, remote).await?;
                        // Not `done` any more, so a rerun hosts the new render again.
                        sqlx::query("UPDATE effects SET status = 'expired' WHERE key = $1")
                            .bind(effect.try_get::<String, _>("key")?)
                            .execute(pool)
                            .await?;
                    }
                    report.hosted.push(location.to_owned());
                } else if let Some(path) = effect
                    .try_get::<Option<String>, _>("external_id")?
                    .filter(|p| Path::new(p).is_absolute() && Path::new(p).exists())
                {
                    // The draft ledger row stays `done`: the draft was sent and must
                    // never be sent twice. Only the local file goes.
                    if !dry_run {
                        remove(Path::new(&path)).await?;
                        remove(&Path::new(&path).with_extension("json")).await?;
                    }
                    report.drafts.push(path);
                }
            }
            if !report.jobs.contains(&job) {
                report.jobs.push(job);
            }
        }
    }
    for (stage, key) in &due {
        if !dry_run {
            let dir = state_dir.join("cache").join(stage).join(key);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(PurgeError::Io { path: dir, source }),
            }
            sqlx::query("UPDATE artifacts SET expired_at = $1 WHERE key = $2")
                .bind(now)
                .bind(key)
                .execute(pool)
                .await?;
        }
        report.artifacts.push(format!("{stage}/{key}"));
    }
    if !dry_run {
        for job in &report.jobs {
            sqlx::query(
                "INSERT INTO events (job_id, seq, stage, status, detail, at) \
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, 'render', 'expired', $2, $3 \
                 FROM events WHERE job_id = $1",
            )
            .bind(job)
            .bind("the video expired under the retention policy and was deleted; rerun the job to render it again")
            .bind(now)
            .execute(pool)
            .await?;
        }
    }
    if let Some(remote) = remote {
        let objects = remote.expired(now).await.map_err(|e| PurgeError::Hosted {
            location: "the bucket".to_owned(),
            message: e.to_string(),
        })?;
        for object in objects {
            if report.hosted.contains(&object) {
                continue;
            }
            if !dry_run {
                delete_hosted(&object, Some(remote)).await?;
            }
            report.hosted.push(object);
        }
    }
    Ok(report)
}

async fn remove(path: &Path) -> Result<(), PurgeError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PurgeError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

pub use crate::clock::now;
