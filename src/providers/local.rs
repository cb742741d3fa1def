//! The offline publishing side: a hosting folder, a drafts folder, a log line.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;

use super::{
    DraftReceipt, DraftRequest, Drafts, EffectLog, EffectProgress, Host, HostRequest, Hosted,
    Notice, Notifier, ProviderError,
};

const SERVICE: &str = "local";

fn io(e: &std::io::Error, path: &Path) -> ProviderError {
    ProviderError::permanent(SERVICE, format!("`{}`: {e}", path.display()))
}

/// "Hosting" in a folder: the link is a `file://` URL; expiry is kept in a sidecar.
pub struct LocalHost {
    pub dir: PathBuf,
}

#[async_trait]
impl Host for LocalHost {
    async fn put(&self, r: &HostRequest) -> Result<Hosted, ProviderError> {
        let dest = self.dir.join(&r.key);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io(&e, parent))?;
        }
        let tmp = dest.with_extension("part");
        tokio::fs::copy(&r.path, &tmp)
            .await
            .map_err(|e| io(&e, &tmp))?;
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| io(&e, &dest))?;
        let abs = dest.canonicalize().unwrap_or(dest.clone());
        Ok(Hosted {
            location: abs.to_string_lossy().into_owned(),
            url: format!("file://{}", abs.display()),
            expires_at: r.expires_at,
        })
    }

    async fn delete(&self, location: &str) -> Result<(), ProviderError> {
        match tokio::fs::remove_file(location).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&e, Path::new(location))),
        }
    }

    async fn expired(&self, _now: i64) -> Result<Vec<String>, ProviderError> {
        // Local copies are tracked through the artifact index; nothing extra to list.
        Ok(Vec::new())
    }
}

/// Drafts in `drafts/<recipe>/<job-id>.mp4`, with a sidecar JSON holding the title,
/// caption and credits the creator pastes when posting by hand.
pub struct LocalDrafts {
    pub dir: PathBuf,
}

#[async_trait]
impl Drafts for LocalDrafts {
    async fn send(
        &self,
        r: &DraftRequest,
        log: &dyn EffectLog,
    ) -> Result<DraftReceipt, ProviderError> {
        let dir = self.dir.join(&r.recipe);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io(&e, &dir))?;
        // Absolute, so retention and purge find the files whatever directory they run from.
        let dir = dir.canonicalize().unwrap_or(dir);
        let video = dir.join(format!("{}.mp4", r.job_id));
        let sidecar = dir.join(format!("{}.json", r.job_id));
        log.record(&EffectProgress {
            external_id: Some(video.to_string_lossy().into_owned()),
            phase: "initialized".into(),
            data: serde_json::Value::Null,
        })
        .await?;
        let tmp = dir.join(format!(".{}.mp4.part", r.job_id));
        tokio::fs::copy(&r.video, &tmp)
            .await
            .map_err(|e| io(&e, &tmp))?;
        let hashtags: Vec<String> = r.hashtags.iter().map(|h| format!("#{h}")).collect();
        let meta = json!({
            "job_id": r.job_id,
            "recipe": r.recipe,
            "title": r.title,
            "caption": r.caption,
            "hashtags": hashtags,
            "caption_text": format!("{} {}", r.caption, hashtags.join(" ")).trim().to_owned(),
            "credits": r.credits,
            "video": video.file_name().map(|n| n.to_string_lossy().into_owned()),
        });
        let side_tmp = dir.join(format!(".{}.json.part", r.job_id));
        tokio::fs::write(
            &side_tmp,
            serde_json::to_string_pretty(&meta).unwrap_or_default(),
        )
        .await
        .map_err(|e| io(&e, &side_tmp))?;
        restrict(&tmp);
        restrict(&side_tmp);
        tokio::fs::rename(&side_tmp, &sidecar)
            .await
            .map_err(|e| io(&e, &sidecar))?;
        tokio::fs::rename(&tmp, &video)
            .await
            .map_err(|e| io(&e, &video))?;
        Ok(DraftReceipt {
            external_id: video.to_string_lossy().into_owned(),
            status: "SAVED_LOCALLY".into(),
        })
    }
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// The notice as a log line.
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    #[expect(
        clippy::print_stderr,
        reason = "to move behind an event: nothing below `cli/` prints"
    )]
    async fn send(&self, n: &Notice) -> Result<String, ProviderError> {
        eprintln!("notice: {}", n.text.replace('\n', " | "));
        Ok("log".into())
    }
}
