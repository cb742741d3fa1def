//! Retention: rendered videos — the cached render, hosted copies, local drafts — are
//! deleted once their `expires_at` (set at render from `publish.retention_days`) has
//! passed, and the footage and narration they were made from follow on the same clock.
//! Job rows stay, with an `expired` event noting it; the script stays, so a rerun
//! re-renders without a new paid script call.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::paths::Places;
use super::purge::{PurgeError, delete_dir, delete_file, delete_hosted, local_draft};
use crate::providers::Host;
use crate::store::{EffectStatus, JobFilter, Store, StoredJob};

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
    /// Recorded files outside the state and cache directories, left alone.
    pub kept: Vec<String>,
    /// Jobs whose video expired.
    pub jobs: Vec<String>,
}

impl GcReport {
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty()
            && self.hosted.is_empty()
            && self.drafts.is_empty()
            && self.kept.is_empty()
    }
}

/// Deletes everything due at `now` (unix seconds), inside `places` only. `remote` is
/// the R2 host when configured: its own expired objects are swept as well.
pub async fn collect(
    store: &Store,
    places: &Places,
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
                        delete_hosted(location, places, remote, &mut report.kept).await?;
                        // Not `done` any more, so a rerun hosts the new render again.
                        store.expire_effect(&effect.key).await?;
                    }
                    report.hosted.push(location.to_owned());
                } else if effect.kind == "draft"
                    && let Some(video) = local_draft(places, effect.external_id.as_deref())
                    && video.exists()
                {
                    // The draft ledger row stays `done`: the draft was sent and must
                    // never be sent twice. Only the local file goes.
                    if !dry_run {
                        delete_file(places, &video, &mut report.kept).await?;
                        delete_file(places, &video.with_extension("json"), &mut report.kept)
                            .await?;
                    }
                    report.drafts.push(video.display().to_string());
                }
            }
            if !report.jobs.contains(&job) {
                report.jobs.push(job);
            }
        }
    }
    for (stage, key) in &due {
        if !dry_run {
            let dir = places.cache_dir.join(stage).join(key);
            delete_dir(places, &dir, &mut report.kept).await?;
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
                delete_hosted(&object, places, Some(remote), &mut report.kept).await?;
            }
            report.hosted.push(object);
        }
    }
    Ok(report)
}

pub use crate::clock::now;

/// The line that tells a creator when the video's local files and hosted copies go.
pub fn deletion_notice(expires_at: i64) -> String {
    format!(
        "The video and its copies are deleted on {} (retention); post or save it before then.",
        crate::clock::format(expires_at)
    )
}

/// Removes the local drafts of superseded jobs: in each matrix cell (the same topic,
/// voice and template of one recipe), the job delivered last keeps its draft and every
/// older version's draft file and sidecar go. The ledger rows stay `done`, so nothing
/// is sent again; only the files a creator would mistake for current go. Returns the
/// drafts removed (or, on a dry run, that would be).
pub async fn superseded(
    store: &Store,
    places: &Places,
    dry_run: bool,
) -> Result<GcReport, PurgeError> {
    let mut report = GcReport::default();
    let jobs = store.list_jobs(&JobFilter::default()).await?;
    let mut cells: BTreeMap<(&str, &str), Vec<&StoredJob>> = BTreeMap::new();
    for job in jobs.iter().filter(|j| j.finished_at.is_some()) {
        cells.entry((&job.recipe, &job.cell)).or_default().push(job);
    }
    for versions in cells.values().filter(|v| v.len() > 1) {
        let mut delivered = Vec::new();
        for job in versions {
            let drafts: Vec<PathBuf> = store
                .effects_of_job(&job.id)
                .await?
                .into_iter()
                .filter(|e| e.kind == "draft" && e.status == EffectStatus::Done.as_str())
                .filter_map(|e| local_draft(places, e.external_id.as_deref()))
                .collect();
            if !drafts.is_empty() {
                delivered.push((job.finished_at.unwrap_or_default(), &job.id, drafts));
            }
        }
        // The latest delivery is the current version; ties go to the larger id, so
        // the choice is the same on every run.
        delivered.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let Some((_, _, current)) = delivered.pop() else {
            continue;
        };
        for (_, job, drafts) in delivered {
            let mut removed = false;
            for video in drafts.iter().filter(|d| !current.contains(d) && d.exists()) {
                if !dry_run {
                    delete_file(places, video, &mut report.kept).await?;
                    delete_file(places, &video.with_extension("json"), &mut report.kept).await?;
                }
                report.drafts.push(video.display().to_string());
                removed = true;
            }
            if removed {
                report.jobs.push(job.clone());
            }
        }
    }
    Ok(report)
}
