//! The content-addressed artifact cache. A stage's output lives in
//! `cache/<stage>/<key>/`; it is built in a temporary directory beside it, verified,
//! then renamed into place, and only then indexed in the store. A crash at any point
//! leaves either nothing or a complete artifact — never a truncated one that looks done.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::{Artifact, Store, StoreError};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A finished artifact: its directory and the stage output recorded with it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub dir: PathBuf,
    pub meta: serde_json::Value,
    pub key: String,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    /// The artifact for `key`, if the store indexes it and its main file is intact.
    pub async fn get(
        &self,
        store: &Store,
        stage: &str,
        key: &str,
    ) -> Result<Option<Hit>, StoreError> {
        let Some(a) = store.artifact(key).await? else {
            return Ok(None);
        };
        let main = self.root.join(&a.location);
        let intact = tokio::fs::metadata(&main)
            .await
            .is_ok_and(|m| i64::try_from(m.len()).ok() == Some(a.bytes));
        if !intact {
            return Ok(None);
        }
        Ok(Some(Hit {
            dir: self.dir(stage, key),
            meta: serde_json::from_str(&a.meta).unwrap_or_default(),
            key: key.to_owned(),
        }))
    }

    /// A fresh, empty work directory for building the artifact of `key`.
    pub async fn workdir(&self, stage: &str, key: &str) -> std::io::Result<PathBuf> {
        // Unique per attempt: two jobs may build the same key at once (they share a script).
        let dir = self.root.join(stage).join(format!(
            ".tmp-{key}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await?;
        }
        tokio::fs::create_dir_all(&dir).await?;
        Ok(dir)
    }

    /// Moves a finished work directory into place and indexes it. `main` is the file, inside
    /// `work`, whose size and hash identify the artifact.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        store: &Store,
        stage: &str,
        key: &str,
        work: &Path,
        main: &str,
        meta: &serde_json::Value,
        expires_at: Option<i64>,
    ) -> Result<Hit, CacheError> {
        let file = work.join(main);
        let (bytes, sha256) = hash_file(&file)
            .await
            .map_err(|e| CacheError::Io(file.clone(), e))?;
        if bytes == 0 {
            return Err(CacheError::Empty(file));
        }
        let dest = self.dir(stage, key);
        if dest.exists() {
            // Another job built the same artifact first, or an unindexed leftover of a
            // crash sits there: only an indexed, intact artifact is reused.
            if let Some(hit) = self.get(store, stage, key).await? {
                let _ = tokio::fs::remove_dir_all(work).await;
                return Ok(hit);
            }
            tokio::fs::remove_dir_all(&dest)
                .await
                .map_err(|e| CacheError::Io(dest.clone(), e))?;
        }
        tokio::fs::rename(work, &dest)
            .await
            .map_err(|e| CacheError::Io(dest.clone(), e))?;
        // The meta stored may name files by their work path; rewrite them to the final one.
        let meta_text = serde_json::to_string(meta)
            .unwrap_or_default()
            .replace(&*work.to_string_lossy(), &dest.to_string_lossy());
        let location = Path::new(stage).join(key).join(main);
        store
            .put_artifact(&Artifact {
                key: key.to_owned(),
                stage: stage.to_owned(),
                location: location.to_string_lossy().into_owned(),
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                sha256,
                meta: meta_text.clone(),
                expires_at,
            })
            .await?;
        Ok(Hit {
            dir: dest,
            meta: serde_json::from_str(&meta_text).unwrap_or_default(),
            key: key.to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache file `{0}`: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("stage produced an empty file `{0}`")]
    Empty(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// A stage key: hash of everything that affects the stage's result.
pub fn stage_key(stage: &str, version: u32, parts: &[&serde_json::Value]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("tiktok-factory/stage/{stage}/v{version}\n").as_bytes());
    for p in parts {
        hasher.update(crate::expand::canonical_json(p).as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(&hasher.finalize()[..16])
}
