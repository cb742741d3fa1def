//! The offline publishing side: a hosting folder, a drafts folder, a notices file. Each is
//! idempotent by content, like the services it stands in for: a second put or send of
//! the same thing finds it there and writes nothing.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        if !same_content(&r.path, &dest).await? {
            let tmp = dest.with_extension("part");
            link_or_copy(&r.path, &tmp).await?;
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(|e| io(&e, &dest))?;
        }
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

/// Drafts in `drafts/<recipe>/<topic-slug>-<voice>-<short id>.mp4`, with a sidecar
/// JSON beside it holding the title, caption and credits the creator pastes when posting
/// by hand. The video is a hard link to the render where the filesystem allows: one copy
/// on disk, not one per folder.
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
        let video = dir.join(format!("{}.mp4", r.name));
        let sidecar = dir.join(format!("{}.json", r.name));
        let receipt = DraftReceipt {
            external_id: video.to_string_lossy().into_owned(),
            status: "SAVED_LOCALLY".into(),
        };
        if same_content(&r.video, &video).await? && sidecar_ok(&sidecar, &r.job_id).await {
            return Ok(receipt);
        }
        log.record(&EffectProgress {
            external_id: Some(video.to_string_lossy().into_owned()),
            phase: "initialized".into(),
            data: serde_json::Value::Null,
        })
        .await?;
        let tmp = dir.join(format!(".{}.mp4.part", r.name));
        link_or_copy(&r.video, &tmp).await?;
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
        let side_tmp = dir.join(format!(".{}.json.part", r.name));
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
        Ok(receipt)
    }

    async fn verify(
        &self,
        r: &DraftRequest,
        receipt: &DraftReceipt,
    ) -> Result<Option<String>, ProviderError> {
        let video = PathBuf::from(&receipt.external_id);
        // Gone is not broken: retention (or the creator) removed it, and a draft is not
        // delivered a second time for that.
        if !tokio::fs::try_exists(&video).await.unwrap_or(false) {
            return Ok(None);
        }
        if !same_content(&r.video, &video).await? {
            return Ok(Some(format!(
                "the draft `{}` no longer matches its render",
                video.display()
            )));
        }
        let sidecar = video.with_extension("json");
        Ok((!sidecar_ok(&sidecar, &r.job_id).await).then(|| {
            format!(
                "the draft's sidecar `{}` is missing or broken",
                sidecar.display()
            )
        }))
    }
}

/// Puts `from`'s bytes at `to` as a hard link (one copy on disk), or as a copy where no
/// link can be made (another filesystem, or one without links).
async fn link_or_copy(from: &Path, to: &Path) -> Result<(), ProviderError> {
    // A part left by an attempt that was stopped.
    match tokio::fs::remove_file(to).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&e, to)),
    }
    if tokio::fs::hard_link(from, to).await.is_ok() {
        return Ok(());
    }
    tokio::fs::copy(from, to)
        .await
        .map(|_| ())
        .map_err(|e| io(&e, to))
}

/// Whether a draft's sidecar is there, readable, and about this job.
async fn sidecar_ok(sidecar: &Path, job_id: &str) -> bool {
    tokio::fs::read(sidecar)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["job_id"] == job_id)
}

/// Whether `copy` exists and holds the same bytes as `original`; a hard link to it does.
async fn same_content(original: &Path, copy: &Path) -> Result<bool, ProviderError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(copy_meta) = tokio::fs::metadata(copy).await else {
        return Ok(false);
    };
    let original_meta = tokio::fs::metadata(original)
        .await
        .map_err(|e| io(&e, original))?;
    if (copy_meta.dev(), copy_meta.ino()) == (original_meta.dev(), original_meta.ino()) {
        return Ok(true);
    }
    if copy_meta.len() != original_meta.len() {
        return Ok(false);
    }
    Ok(sha256_file(original).await? == sha256_file(copy).await?)
}

/// The hex SHA-256 of a file, read in pieces.
pub(crate) async fn sha256_hex(path: &Path) -> Result<String, ProviderError> {
    sha256_file(path).await.map(hex::encode)
}

async fn sha256_file(path: &Path) -> Result<[u8; 32], ProviderError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io(&e, path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = file.read(&mut buffer).await.map_err(|e| io(&e, path))?;
        if read == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buffer[..read]);
    }
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// The notice as a line in a file (e.g. `<state>/notices.log`, mode 0600), never on the
/// terminal, where it would tear the progress bars. Like the chat it stands in for, it
/// cannot be asked what it holds: every send is a line, so a notice sent twice shows
/// twice (the engine sends each at most once).
pub struct LogNotifier {
    pub path: PathBuf,
}

impl LogNotifier {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

#[async_trait]
impl Notifier for LogNotifier {
    async fn send(&self, n: &Notice) -> Result<String, ProviderError> {
        let digest = Sha256::new()
            .chain_update(n.chat.as_bytes())
            .chain_update([0])
            .chain_update(n.text.as_bytes())
            .finalize();
        let id = format!("log:{}", &hex::encode(digest)[..16]);
        if let Some(parent) = self.path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io(&e, parent))?;
        }
        let line = format!(
            "{id}\t{}\t{}\t{}\n",
            crate::clock::now(),
            n.chat,
            n.text.replace('\n', " | ")
        );
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .await
            .map_err(|e| io(&e, &self.path))?;
        file.write_all(line.as_bytes())
            .await
            .map_err(|e| io(&e, &self.path))?;
        file.sync_data().await.map_err(|e| io(&e, &self.path))?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(text: &str) -> Notice {
        Notice {
            chat: "@me".to_owned(),
            text: text.to_owned(),
        }
    }

    #[tokio::test]
    async fn the_log_notifier_appends_every_notice_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let notifier = LogNotifier::new(dir.path().join("state/notices.log"));
        let first = notifier
            .send(&notice("draft ready\nsecond line"))
            .await
            .unwrap();
        let again = notifier
            .send(&notice("draft ready\nsecond line"))
            .await
            .unwrap();
        let other = notifier.send(&notice("another")).await.unwrap();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let text = std::fs::read_to_string(&notifier.path).unwrap();
        assert_eq!(
            text.lines().count(),
            3,
            "a notice sent twice shows twice: {text}"
        );
        assert!(text.contains("draft ready | second line"));
        let mode = std::fs::metadata(&notifier.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    struct NoLog;

    #[async_trait]
    impl EffectLog for NoLog {
        async fn progress(&self) -> Result<Option<EffectProgress>, ProviderError> {
            Ok(None)
        }
        async fn record(&self, _: &EffectProgress) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn local_hosting_and_drafts_write_the_same_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("v.mp4");
        std::fs::write(&video, b"video bytes").unwrap();
        let host = LocalHost {
            dir: dir.path().join("hosted"),
        };
        let request = HostRequest {
            path: video.clone(),
            key: "r/abc.mp4".to_owned(),
            content_type: "video/mp4".to_owned(),
            expires_at: 1,
        };
        let first = host.put(&request).await.unwrap();
        let stamp = std::fs::metadata(&first.location)
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(host.put(&request).await.unwrap(), first);
        assert_eq!(
            std::fs::metadata(&first.location)
                .unwrap()
                .modified()
                .unwrap(),
            stamp,
            "not written again"
        );

        let drafts = LocalDrafts {
            dir: dir.path().join("drafts"),
        };
        let draft = DraftRequest {
            video,
            job_id: "job1".to_owned(),
            recipe: "r".to_owned(),
            name: "owls-a-job1".to_owned(),
            account: String::new(),
            title: "t".to_owned(),
            caption: "c".to_owned(),
            hashtags: Vec::new(),
            credits: Vec::new(),
        };
        let receipt = drafts.send(&draft, &NoLog).await.unwrap();
        let stamp = std::fs::metadata(&receipt.external_id)
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(drafts.send(&draft, &NoLog).await.unwrap(), receipt);
        assert_eq!(
            std::fs::metadata(&receipt.external_id)
                .unwrap()
                .modified()
                .unwrap(),
            stamp
        );
    }

    #[tokio::test]
    async fn the_hosted_copy_and_the_draft_are_links_to_the_render_not_copies() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let render = dir.path().join("cache/render/k/video.mp4");
        std::fs::create_dir_all(render.parent().unwrap()).unwrap();
        std::fs::write(&render, b"video bytes").unwrap();
        let hosted = LocalHost {
            dir: dir.path().join("hosted"),
        }
        .put(&HostRequest {
            path: render.clone(),
            key: "r/abc.mp4".to_owned(),
            content_type: "video/mp4".to_owned(),
            expires_at: 1,
        })
        .await
        .unwrap();
        let receipt = LocalDrafts {
            dir: dir.path().join("drafts"),
        }
        .send(
            &DraftRequest {
                video: render.clone(),
                job_id: "0123456789abcdef".to_owned(),
                recipe: "r".to_owned(),
                name: "owls-a-01234567".to_owned(),
                account: String::new(),
                title: "t".to_owned(),
                caption: "c".to_owned(),
                hashtags: Vec::new(),
                credits: Vec::new(),
            },
            &NoLog,
        )
        .await
        .unwrap();
        assert!(
            receipt
                .external_id
                .ends_with("drafts/r/owls-a-01234567.mp4")
        );
        assert!(
            Path::new(&receipt.external_id)
                .with_extension("json")
                .is_file()
        );
        let render_meta = std::fs::metadata(&render).unwrap();
        for copy in [&hosted.location, &receipt.external_id] {
            assert_eq!(
                std::fs::metadata(copy).unwrap().ino(),
                render_meta.ino(),
                "{copy}"
            );
        }
        assert_eq!(std::fs::metadata(&render).unwrap().nlink(), 3);
    }

    #[tokio::test]
    async fn across_filesystems_the_draft_is_a_copy() {
        let shm = Path::new("/dev/shm");
        let other = tempfile::tempdir().unwrap();
        let here = tempfile::tempdir_in(shm).unwrap();
        let from = here.path().join("video.mp4");
        std::fs::write(&from, b"video bytes").unwrap();
        let to = other.path().join("copy.mp4");
        std::fs::write(&to, b"a stale part").unwrap();
        link_or_copy(&from, &to).await.unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"video bytes");
        assert!(same_content(&from, &to).await.unwrap());
    }
}
