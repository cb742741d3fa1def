//! Deletion on request: a job's metadata, its artifacts (the cache, hosted copies, local
//! drafts) and its ledger rows, then compaction so the content leaves the file's bytes.

use std::path::{Path, PathBuf};

use super::paths::{Places, resolve};
use crate::providers::Host;
use crate::store::{Store, StoreError};

/// Which jobs to delete.
pub use crate::store::JobScope as Scope;

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Recorded files outside the state and cache directories, left alone.
    pub kept: Vec<String>,
}

/// Deletes the jobs `ids` and everything made for them, inside `places` only. `remote`
/// deletes hosted copies that are not local files (R2 objects).
pub async fn purge(
    store: &Store,
    places: &Places,
    ids: &[String],
    remote: Option<&dyn Host>,
) -> Result<Purged, PurgeError> {
    let mut purged = Purged::default();
    for id in ids {
        for effect in store.effects_of_job(id).await? {
            // What `gc` already removed is not counted again.
            if effect.status == crate::store::EffectStatus::Expired.as_str() {
                continue;
            }
            let detail: serde_json::Value = effect
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            match effect.kind.as_str() {
                "host" => {
                    if let Some(location) = detail["location"].as_str() {
                        delete_hosted(location, places, remote, &mut purged.kept).await?;
                        purged.hosted += 1;
                    }
                }
                "draft" => {
                    // Local drafts are files (a sidecar, a cover); TikTok drafts live in the
                    // creator's inbox, which only the creator can clear.
                    if let Some(video) = local_draft(places, effect.external_id.as_deref()) {
                        if delete_file(places, &video, &mut purged.kept).await? {
                            purged.drafts += 1;
                        }
                        delete_file(places, &video.with_extension("json"), &mut purged.kept)
                            .await?;
                        // The cover is a frame of the video: it goes with it.
                        delete_file(places, &video.with_extension("jpg"), &mut purged.kept).await?;
                    }
                }
                _ => {}
            }
        }
        for artifact in store.artifacts_only_of_job(id).await? {
            let dir = places.cache_dir.join(&artifact.stage).join(&artifact.key);
            let there = dir.exists();
            delete_dir(places, &dir, &mut purged.kept).await?;
            store.delete_artifact(&artifact.key).await?;
            if there {
                purged.artifacts += 1;
            }
        }
        store.delete_job(id).await?;
        purged.jobs += 1;
    }
    store.forget_recipes_without_jobs().await?;
    store.compact().await?;
    Ok(purged)
}

/// The local file a draft's external id names, if it is one: an absolute path (older
/// stores) or a path relative to the state directory that names a file there. A TikTok
/// `publish_id` is neither.
pub fn local_draft(places: &Places, external_id: Option<&str>) -> Option<PathBuf> {
    let stored = external_id.filter(|s| !s.is_empty())?;
    let path = resolve(&places.state_dir, stored);
    (Path::new(stored).is_absolute() || path.is_file()).then_some(path)
}

/// Deletes one hosted copy: a local file directly (inside `places` only, otherwise it is
/// added to `kept`), anything else through `remote`.
pub async fn delete_hosted(
    location: &str,
    places: &Places,
    remote: Option<&dyn Host>,
    kept: &mut Vec<String>,
) -> Result<(), PurgeError> {
    // Hosted copies are either R2 objects (`r2://bucket/key`) or files of the local host.
    if !location.starts_with("r2://") {
        let path = resolve(&places.state_dir, location);
        delete_file(places, &path, kept).await?;
        return Ok(());
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

/// Removes a file inside `places`; whether there was one. A path outside is left alone
/// and added to `kept`.
pub async fn delete_file(
    places: &Places,
    path: &Path,
    kept: &mut Vec<String>,
) -> Result<bool, PurgeError> {
    let Ok(path) = places.deletable(path) else {
        keep(path, kept);
        return Ok(false);
    };
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PurgeError::Io { path, source }),
    }
}

/// Removes a folder and its files inside `places`; one outside is added to `kept`.
pub async fn delete_dir(
    places: &Places,
    path: &Path,
    kept: &mut Vec<String>,
) -> Result<(), PurgeError> {
    let Ok(path) = places.deletable(path) else {
        keep(path, kept);
        return Ok(());
    };
    match tokio::fs::remove_dir_all(&path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PurgeError::Io { path, source }),
    }
}

fn keep(path: &Path, kept: &mut Vec<String>) {
    let text = path.display().to_string();
    if !kept.contains(&text) {
        kept.push(text);
    }
}
