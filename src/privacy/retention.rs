//! Retention: rendered videos — the cached render, hosted copies, local drafts — are
//! deleted once their `expires_at` (set at render from `publish.retention_days`) has
//! passed, and the footage and narration they were made from follow on the same clock.
//! Job rows stay, with an `expired` event noting it; the script stays, so a rerun
//! re-renders without a new paid script call.

use std::path::Path;

use super::purge::{PurgeError, delete_hosted};
use crate::providers::Host;
use crate::store::{EffectStatus, Store};

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
    store: &Store,
    state_dir: &Path,
    now: i64,
    dry_run: bool,
    remote: Option<&dyn Host>,
) -> Result<GcReport, PurgeError> {
    let mut report = GcReport::default();
    let mut due: Vec<(String, String)> = store
        .expired_renders(now)
        .await?
        .into_iter()
        .map(|a| (a.stage, a.key))
        .collect();
    let render_keys: Vec<String> = due.iter().map(|(_, k)| k.clone()).collect();
    for key in &render_keys {
        for job in store.jobs_using_artifact(key).await? {
            // Inputs used only by jobs whose video has expired too.
            for stage in INPUT_STAGES {
                for key in store.inputs_of_expired_renders(&job, stage, now).await? {
                    if !due.iter().any(|(_, k)| *k == key) {
                        due.push((stage.to_owned(), key));
                    }
                }
            }
            for effect in store.effects_of_job(&job).await? {
                if effect.status != EffectStatus::Done.as_str() {
                    continue;
                }
                let detail: serde_json::Value = effect
                    .detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                if effect.kind == "host" {
                    let Some(location) = detail["location"].as_str() else {
                        continue;
                    };
                    if !dry_run {
                        delete_hosted(location, remote).await?;
                        // Not `done` any more, so a rerun hosts the new render again.
                        store.expire_effect(&effect.key).await?;
                    }
                    report.hosted.push(location.to_owned());
                } else if effect.kind == "draft"
                    && let Some(path) = effect
                        .external_id
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
            store.expire_artifact(key, now).await?;
        }
        report.artifacts.push(format!("{stage}/{key}"));
    }
    if !dry_run {
        for job in &report.jobs {
            store
                .event_at(
                    job,
                    Some("render"),
                    "expired",
                    Some("the video expired under the retention policy and was deleted; rerun the job to render it again"),
                    now,
                )
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
