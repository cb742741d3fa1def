//! Deletion on request: a job's metadata, its artifacts (the cache, hosted copies, local
//! drafts) and its ledger rows, then compaction so the content leaves the file's bytes.

use std::path::{Path, PathBuf};

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
}

/// Deletes the jobs `ids` and everything made for them. `remote` deletes hosted copies
/// that are not local files (R2 objects); local ones are removed directly.
pub async fn purge(
    store: &Store,
    state_dir: &Path,
    ids: &[String],
    remote: Option<&dyn Host>,
) -> Result<Purged, PurgeError> {
    let mut purged = Purged::default();
    for id in ids {
        for effect in store.effects_of_job(id).await? {
            let detail: serde_json::Value = effect
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            match effect.kind.as_str() {
                "host" => {
                    if let Some(location) = detail["location"].as_str() {
                        delete_hosted(location, remote).await?;
                        purged.hosted += 1;
                    }
                }
                "draft" => {
                    // Local drafts are files (and a sidecar); TikTok drafts live in the
                    // creator's inbox, which only the creator can clear.
                    if let Some(path) = effect.external_id.filter(|p| Path::new(p).is_absolute()) {
                        let video = PathBuf::from(path);
                        remove_file(&video).await?;
                        remove_file(&video.with_extension("json")).await?;
                        purged.drafts += 1;
                    }
                }
                _ => {}
            }
        }
        for artifact in store.artifacts_only_of_job(id).await? {
            remove_dir(
                &state_dir
                    .join("cache")
                    .join(&artifact.stage)
                    .join(&artifact.key),
            )
            .await?;
            store.delete_artifact(&artifact.key).await?;
            purged.artifacts += 1;
        }
        store.delete_job(id).await?;
        purged.jobs += 1;
    }
    store.forget_recipes_without_jobs().await?;
    store.compact().await?;
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
