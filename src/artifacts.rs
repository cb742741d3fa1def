//! The artifact store: content-addressed and self-describing, so it is enough on its own.
//!
//! ```text
//! <root>/<stage>/<key>/manifest.json   files, sizes, digests and the stage output
//! <root>/<stage>/<key>/…               the files, named relative to the entry
//! <root>/<stage>/.tmp-<key>-…/         work in progress (removed when found stale)
//! <root>/effects/<key>.json            the side-effect ledger: intent → done | unknown
//! <root>/jobs/<job-id>.json            finished jobs, so an empty database can be rebuilt
//! ```
//!
//! An entry is built in a temporary directory, hashed, described by its manifest and only
//! then renamed into place; a crash leaves either nothing or a complete entry. Every
//! lookup verifies the digests of the files before the entry is used, so a corrupted or
//! truncated file is rebuilt, never delivered. The database is an index and a history;
//! a CI runner that keeps only this folder repeats no paid call and no side effect.
//!
//! With `--artifacts s3://bucket/prefix` ([`s3`]) the folder is a cache in front of the
//! bucket: a lookup missing here is downloaded and verified, a commit is uploaded, and
//! effect and job records live in the bucket, so runners that share it share all this.

pub mod s3;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::providers::EffectProgress;
pub use crate::store::EffectStatus;

const MANIFEST: &str = "manifest.json";
const MANIFEST_VERSION: u32 = 1;
const EFFECTS: &str = "effects";
const JOBS: &str = "jobs";
const WORK_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact store `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("artifact record `{path}` is unreadable: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("stage produced an empty file `{0}`")]
    Empty(PathBuf),
    #[error("stage output names `{0}`, which is not inside its work directory")]
    Outside(PathBuf),
    #[error("`{0}` is not an artifact store; use a folder or `s3://<bucket>/<prefix>`")]
    BadUrl(String),
    #[error("the S3 artifact store is not configured: {0}")]
    Config(String),
    #[error("artifact store `{location}`: {message}")]
    Remote { location: String, message: String },
    #[error(
        "the side effect `{key}` was claimed by another runner sharing the artifact store; it is not sent twice"
    )]
    Claimed { key: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the entry's directory.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What an entry holds and what its stage returned; paths relative to the entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub stage: String,
    pub key: String,
    /// The file that identifies the artifact (the video of a render).
    pub main: String,
    pub files: Vec<FileEntry>,
    pub output: Value,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Manifest {
    pub fn main_file(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == self.main)
    }
}

/// A verified entry.
#[derive(Debug, Clone)]
pub struct Hit {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Hit {
    /// A file of the entry by its relative name.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.join(relative)
    }

    /// The stage output, typed.
    pub fn output<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArtifactError> {
        serde_json::from_value(self.manifest.output.clone()).map_err(|e| {
            ArtifactError::Unreadable {
                path: self.dir.join(MANIFEST),
                message: e.to_string(),
            }
        })
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Hit),
    Miss,
    /// An entry was there but failed verification; it has been removed and must be
    /// rebuilt. The reason says what was wrong, for the output.
    Corrupt(String),
}

/// One side effect's ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    pub key: String,
    /// The stage that performs it (`host`, `draft`, `notify`).
    pub kind: String,
    pub job: String,
    pub status: EffectStatus,
    /// Attempts that reached the service, this one included.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<EffectProgress>,
    /// The service's receipt once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub updated_at: i64,
    /// The runner that wrote it ([`ArtifactStore::owner`]): an unfinished record of
    /// another runner may be in flight there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A finished job, kept beside its artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub recipe: String,
    pub cell: String,
    pub topic: String,
    pub voice: String,
    /// The canonical JSON of the resolved spec.
    pub spec: String,
    /// Stage name → key, in pipeline order.
    pub stages: Vec<(String, String)>,
    pub finished_at: i64,
}

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    /// The shared copy on S3, when there is one; `root` is then its cache.
    remote: Option<Arc<s3::Remote>>,
    /// The effects this process claimed in the remote ledger (its first intent written
    /// create-only); its later records of them overwrite.
    claimed: Arc<Mutex<HashSet<String>>>,
}

impl ArtifactStore {
    /// The store at `root`, created user-only when missing.
    pub fn open(root: &Path) -> Result<Self, ArtifactError> {
        create_private_dir(root).map_err(io(root))?;
        Ok(Self::at(root))
    }

    /// The store at `root` for reading only; nothing is created. The root is made
    /// absolute, so the paths stages return are recognised as inside their entries.
    pub fn at(root: &Path) -> Self {
        Self {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_owned()),
            remote: None,
            claimed: Arc::default(),
        }
    }

    /// The same store with `remote` behind it.
    #[must_use]
    pub fn with_remote(mut self, remote: s3::Remote) -> Self {
        self.remote = Some(Arc::new(remote));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Who writes through this store: the machine and the local folder. Two processes
    /// with one owner cannot run at once (the state lock), so an unfinished record of
    /// this owner is an attempt that ended; one of another owner may still be in flight.
    pub fn owner(&self) -> String {
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned())
        });
        format!("{host}:{}", self.root.display())
    }

    /// With an S3 store behind it whose service ignores create-only writes, the warning
    /// to show: runners sharing that bucket cannot claim a side effect from each other.
    pub async fn remote_warning(&self) -> Result<Option<String>, ArtifactError> {
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        if remote.honours_create_only().await? {
            return Ok(None);
        }
        Ok(Some(format!(
            "the S3 service ignores create-only writes (`If-None-Match: *`): `{}` was written \
             twice, so runners sharing the bucket cannot claim a draft or notice from each \
             other, and two runs of one job at once could both send it\n  help: use a \
             service that honours conditional writes (R2 and AWS S3 do); workers on a queue \
             are kept apart by their leases",
            remote.probe_location()
        )))
    }

    fn entry(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    /// Whether an entry is there (its manifest), without verifying it: for `plan`.
    pub fn contains(&self, stage: &str, key: &str) -> bool {
        self.entry(stage, key).join(MANIFEST).is_file()
    }

    /// The entry for `key`, verified file by file against its manifest; one that fails is
    /// removed, so it is built again. Only writers (holding the state lock) call this.
    /// With a remote, an entry missing (or corrupt) here is downloaded and verified.
    pub async fn get(&self, stage: &str, key: &str) -> Result<Lookup, ArtifactError> {
        let found = self.inspect(stage, key).await?;
        if let Lookup::Corrupt(_) = &found {
            let dir = self.entry(stage, key);
            tokio::fs::remove_dir_all(&dir).await.map_err(io(&dir))?;
        }
        if matches!(found, Lookup::Hit(_)) {
            return Ok(found);
        }
        match &self.remote {
            Some(remote) => match self.download(remote, stage, key).await? {
                Lookup::Miss => Ok(found),
                downloaded => Ok(downloaded),
            },
            None => Ok(found),
        }
    }

    /// Whether an entry for `key` is here or, with a remote, in the bucket: what `plan`
    /// asks. Nothing is downloaded, verified or removed; a bucket that cannot be asked
    /// counts as not holding it, so the plan errs towards work.
    pub async fn holds(&self, stage: &str, key: &str) -> bool {
        if self.contains(stage, key) {
            return true;
        }
        match &self.remote {
            Some(remote) => remote
                .exists(&Self::remote_entry(stage, key))
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    /// The entry for `key` for a reader: verified here, or downloaded from the remote
    /// and verified when it is not here. Unlike [`Self::get`] it never removes a corrupt
    /// local entry, so a reader holding no lock can call it.
    pub async fn fetch(&self, stage: &str, key: &str) -> Result<Lookup, ArtifactError> {
        let found = self.inspect(stage, key).await?;
        match (&found, &self.remote) {
            (Lookup::Miss, Some(remote)) => self.download(remote, stage, key).await,
            _ => Ok(found),
        }
    }

    fn remote_entry(stage: &str, key: &str) -> String {
        format!("{stage}/{key}/{MANIFEST}")
    }

    fn remote_blob(stage: &str, key: &str, sha256: &str) -> String {
        format!("{stage}/{key}/blobs/{sha256}")
    }

    /// The remote entry, downloaded into place and verified; `Corrupt` when its files
    /// do not match its manifest (nothing is kept), `Miss` when there is none.
    async fn download(
        &self,
        remote: &s3::Remote,
        stage: &str,
        key: &str,
    ) -> Result<Lookup, ArtifactError> {
        let Some(bytes) = remote.get(&Self::remote_entry(stage, key)).await? else {
            return Ok(Lookup::Miss);
        };
        let location = format!("{}{}", remote.url(), Self::remote_entry(stage, key));
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Lookup::Corrupt(format!("`{location}` is unreadable: {e}"))),
        };
        if manifest.stage != stage || manifest.key != key {
            return Ok(Lookup::Corrupt(format!(
                "`{location}` describes another entry"
            )));
        }
        let work = self.workdir(stage, key).await?;
        for f in &manifest.files {
            let path = work.join(&f.path);
            if !path.starts_with(&work) || f.path.contains("..") {
                tokio::fs::remove_dir_all(&work).await.map_err(io(&work))?;
                return Ok(Lookup::Corrupt(format!("`{location}` names `{}`", f.path)));
            }
            let Some(data) = remote
                .get(&Self::remote_blob(stage, key, &f.sha256))
                .await?
            else {
                tokio::fs::remove_dir_all(&work).await.map_err(io(&work))?;
                return Ok(Lookup::Corrupt(format!("`{location}` misses `{}`", f.path)));
            };
            if let Some(parent) = path.parent() {
                create_private_dir(parent).map_err(io(parent))?;
            }
            write_atomically(&path, &data)?;
        }
        if let Some(problem) = verify(&work, &manifest).await {
            tokio::fs::remove_dir_all(&work).await.map_err(io(&work))?;
            return Ok(Lookup::Corrupt(format!(
                "downloaded from `{location}`: {problem}"
            )));
        }
        write_atomically(&work.join(MANIFEST), &bytes)?;
        let dest = self.entry(stage, key);
        if dest.exists() {
            tokio::fs::remove_dir_all(&dest).await.map_err(io(&dest))?;
        }
        tokio::fs::rename(&work, &dest).await.map_err(io(&dest))?;
        Ok(Lookup::Hit(Hit {
            dir: dest,
            manifest,
        }))
    }

    /// Uploads a committed entry: its files by content, then its manifest, written once.
    /// When another runner wrote the entry first, theirs replaces ours here.
    async fn publish(&self, remote: &s3::Remote, hit: Hit) -> Result<Hit, ArtifactError> {
        let (stage, key) = (hit.manifest.stage.clone(), hit.manifest.key.clone());
        if remote.exists(&Self::remote_entry(&stage, &key)).await? {
            return self.adopt(remote, hit).await;
        }
        for f in &hit.manifest.files {
            remote
                .put_file(
                    &Self::remote_blob(&stage, &key, &f.sha256),
                    &hit.path(&f.path),
                    false,
                )
                .await?;
        }
        let manifest = tokio::fs::read(hit.path(MANIFEST))
            .await
            .map_err(io(&hit.path(MANIFEST)))?;
        let written = remote
            .put(&Self::remote_entry(&stage, &key), manifest.into(), true)
            .await?;
        if written {
            Ok(hit)
        } else {
            self.adopt(remote, hit).await
        }
    }

    /// Takes the remote entry in place of ours (the first writer's entry is the one every
    /// runner builds on); ours stays when theirs does not verify.
    async fn adopt(&self, remote: &s3::Remote, ours: Hit) -> Result<Hit, ArtifactError> {
        let (stage, key) = (ours.manifest.stage.clone(), ours.manifest.key.clone());
        let keep = self.root.join(&stage).join(format!(
            "{WORK_PREFIX}{key}-ours-{:016x}",
            fastrand::u64(..)
        ));
        tokio::fs::rename(&ours.dir, &keep)
            .await
            .map_err(io(&keep))?;
        match self.download(remote, &stage, &key).await? {
            Lookup::Hit(theirs) => {
                tokio::fs::remove_dir_all(&keep).await.map_err(io(&keep))?;
                Ok(theirs)
            }
            _ => {
                tokio::fs::rename(&keep, &ours.dir)
                    .await
                    .map_err(io(&ours.dir))?;
                Ok(ours)
            }
        }
    }

    /// Like [`ArtifactStore::get`], but changes nothing: for readers (`plan`, `doctor`).
    pub async fn inspect(&self, stage: &str, key: &str) -> Result<Lookup, ArtifactError> {
        let dir = self.entry(stage, key);
        let manifest_path = dir.join(MANIFEST);
        let text = match tokio::fs::read(&manifest_path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(io(&manifest_path)(e)),
        };
        let problem = match serde_json::from_slice::<Manifest>(&text) {
            Ok(manifest) if manifest.key != key || manifest.stage != stage => {
                format!("`{}` describes another entry", manifest_path.display())
            }
            Ok(manifest) => match verify(&dir, &manifest).await {
                None => return Ok(Lookup::Hit(Hit { dir, manifest })),
                Some(problem) => problem,
            },
            Err(e) => format!("`{}` is unreadable: {e}", manifest_path.display()),
        };
        Ok(Lookup::Corrupt(problem))
    }

    /// A fresh, empty work directory for building `key`; unique per attempt.
    pub async fn workdir(&self, stage: &str, key: &str) -> Result<PathBuf, ArtifactError> {
        let parent = self.root.join(stage);
        create_private_dir(&parent).map_err(io(&parent))?;
        let dir = parent.join(format!(
            "{WORK_PREFIX}{key}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        // Not recursive: the directory must be new, and it is user-only from the start.
        tokio::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .await
            .map_err(io(&dir))?;
        Ok(dir)
    }

    /// Describes a finished work directory and moves it into place. Paths inside
    /// `output` that point into `work` are stored relative to the entry.
    pub async fn commit(
        &self,
        stage: &str,
        key: &str,
        work: &Path,
        main: &str,
        output: &Value,
        expires_at: Option<i64>,
    ) -> Result<Hit, ArtifactError> {
        let files = hash_tree(work).await?;
        match files.iter().find(|f| f.path == main) {
            Some(f) if f.bytes > 0 => {}
            _ => return Err(ArtifactError::Empty(work.join(main))),
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            stage: stage.to_owned(),
            key: key.to_owned(),
            main: main.to_owned(),
            files,
            output: relativize(output, work)?,
            created_at: crate::clock::now(),
            expires_at,
        };
        write_atomically(
            &work.join(MANIFEST),
            &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        )?;
        let dest = self.entry(stage, key);
        // No look before the rename: another build of the same key (a job of this run
        // measuring the same voice, another process) may put its entry in place at any
        // moment, and the rename is what decides.
        if let Err(e) = tokio::fs::rename(work, &dest).await {
            if !dest.exists() {
                return Err(io(&dest)(e));
            }
            // Built meanwhile, or left by a crash: a verified entry wins; a corrupt one
            // (which `get` removes) is replaced by ours.
            if let Lookup::Hit(hit) = self.get(stage, key).await? {
                tokio::fs::remove_dir_all(work).await.map_err(io(work))?;
                return Ok(hit);
            }
            tokio::fs::rename(work, &dest).await.map_err(io(&dest))?;
        }
        let hit = Hit {
            dir: dest,
            manifest,
        };
        match &self.remote {
            Some(remote) => self.publish(remote, hit).await,
            None => Ok(hit),
        }
    }

    /// Removes work directories that no live build owns. The caller holds the state
    /// lock, so every one found belongs to a process that is gone.
    pub fn remove_stale_work(&self) -> Result<usize, ArtifactError> {
        let mut removed = 0;
        let Ok(stages) = std::fs::read_dir(&self.root) else {
            return Ok(0);
        };
        for stage in stages.flatten() {
            if !stage.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(stage.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(WORK_PREFIX) {
                    let path = entry.path();
                    std::fs::remove_dir_all(&path).map_err(io(&path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every entry, verified: `(stage, key, problem)` for those that fail.
    pub async fn verify_all(
        &self,
    ) -> Result<(usize, Vec<(String, String, String)>), ArtifactError> {
        let mut checked = 0;
        let mut bad = Vec::new();
        let Ok(stages) = std::fs::read_dir(&self.root) else {
            return Ok((0, bad));
        };
        for stage in stages.flatten() {
            let name = stage.file_name().to_string_lossy().into_owned();
            if name == EFFECTS || name == JOBS || !stage.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(stage.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let key = entry.file_name().to_string_lossy().into_owned();
                if key.starts_with(WORK_PREFIX) || !entry.path().join(MANIFEST).is_file() {
                    continue;
                }
                checked += 1;
                if let Lookup::Corrupt(problem) = self.get(&name, &key).await? {
                    bad.push((name.clone(), key, problem));
                }
            }
        }
        Ok((checked, bad))
    }

    fn effect_path(&self, key: &str) -> PathBuf {
        self.root.join(EFFECTS).join(format!("{key}.json"))
    }

    /// The ledger entry of one side effect, read from disk every time.
    /// With a remote, the remote record is the one that counts.
    pub async fn effect(&self, key: &str) -> Result<Option<EffectRecord>, ArtifactError> {
        match &self.remote {
            Some(remote) => remote_record(remote, &format!("{EFFECTS}/{key}.json")).await,
            None => read_record(&self.effect_path(key)),
        }
    }

    /// Writes a ledger entry durably (temp file, fsync, rename) before returning.
    /// With a remote, the record goes there too; the first intent of an effect is
    /// written only if there is no record yet, so of two runners one claims it and the
    /// other gets [`ArtifactError::Claimed`].
    pub async fn put_effect(&self, record: &EffectRecord) -> Result<(), ArtifactError> {
        let path = self.effect_path(&record.key);
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        if let Some(remote) = &self.remote {
            let claim = record.status == EffectStatus::Intent
                && record.attempts <= 1
                && !self.claimed().contains(&record.key);
            let relative = format!("{EFFECTS}/{}.json", record.key);
            if !remote.put(&relative, bytes.clone().into(), claim).await? {
                return Err(ArtifactError::Claimed {
                    key: record.key.clone(),
                });
            }
            if claim {
                self.claimed().insert(record.key.clone());
            }
        }
        write_atomically(&path, &bytes)
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn job_path(&self, id: &str) -> PathBuf {
        self.root.join(JOBS).join(format!("{id}.json"))
    }

    pub async fn put_job(&self, record: &JobRecord) -> Result<(), ArtifactError> {
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        if let Some(remote) = &self.remote {
            let relative = format!("{JOBS}/{}.json", record.id);
            remote.put(&relative, bytes.clone().into(), false).await?;
        }
        write_atomically(&self.job_path(&record.id), &bytes)
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, ArtifactError> {
        match &self.remote {
            Some(remote) => remote_record(remote, &format!("{JOBS}/{id}.json")).await,
            None => read_record(&self.job_path(id)),
        }
    }

    /// Every finished job recorded here (with a remote: there).
    pub async fn jobs(&self) -> Result<Vec<JobRecord>, ArtifactError> {
        if let Some(remote) = &self.remote {
            let mut jobs = Vec::new();
            for relative in remote.list(&format!("{JOBS}/")).await? {
                if relative.ends_with(".json")
                    && let Some(job) = remote_record(remote, &relative).await?
                {
                    jobs.push(job);
                }
            }
            jobs.sort_by(|a: &JobRecord, b| a.id.cmp(&b.id));
            return Ok(jobs);
        }
        let dir = self.root.join(JOBS);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut jobs: Vec<JobRecord> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(job) = read_record(&path)?
            {
                jobs.push(job);
            }
        }
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    /// Deletes an entry from the shared bucket (its manifest first, so no runner sees it
    /// half gone); the local copy is the caller's. Without a remote, nothing to do.
    pub async fn forget_remote_entry(&self, stage: &str, key: &str) -> Result<(), ArtifactError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        remote.delete(&Self::remote_entry(stage, key)).await?;
        for blob in remote.list(&format!("{stage}/{key}/blobs/")).await? {
            remote.delete(&blob).await?;
        }
        Ok(())
    }

    /// Forgets a job: its record and its ledger entries (for `purge`).
    pub async fn forget_job(&self, id: &str) -> Result<(), ArtifactError> {
        remove_if_there(&self.job_path(id))?;
        if let Some(remote) = &self.remote {
            remote.delete(&format!("{JOBS}/{id}.json")).await?;
            for relative in remote.list(&format!("{EFFECTS}/")).await? {
                if let Some(record) = remote_record::<EffectRecord>(remote, &relative).await?
                    && record.job == id
                {
                    remote.delete(&relative).await?;
                }
            }
        }
        let dir = self.root.join(EFFECTS);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(record) = read_record::<EffectRecord>(&path)?
                && record.job == id
            {
                remove_if_there(&path)?;
            }
        }
        Ok(())
    }
}

async fn remote_record<T: serde::de::DeserializeOwned>(
    remote: &s3::Remote,
    relative: &str,
) -> Result<Option<T>, ArtifactError> {
    let Some(bytes) = remote.get(relative).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ArtifactError::Unreadable {
            path: PathBuf::from(format!("{}{relative}", remote.url())),
            message: e.to_string(),
        })
}

fn remove_if_there(path: &Path) -> Result<(), ArtifactError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ArtifactError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ArtifactError::Unreadable {
                    path: path.to_owned(),
                    message: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Temp file beside `path`, written, synced, renamed over it, the directory synced: the
/// record is either the old one or the new one, whatever happens.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.{:016x}.part",
        path.file_name().unwrap_or_default().to_string_lossy(),
        fastrand::u64(..)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().map_err(io(dir))?;
    }
    Ok(())
}

/// User-only (0700), an existing folder tightened too: the cache holds job content
/// wherever `--cache-dir` puts it.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    crate::privacy::permissions::private_dir(path)
}

/// Every regular file below `dir` (the manifest aside), hashed and made user-only (0600),
/// its folders too (0700): a tool writes with the umask, an entry keeps job content.
async fn hash_tree(dir: &Path) -> Result<Vec<FileEntry>, ArtifactError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let here = dir.join(&rel);
        let mut entries = tokio::fs::read_dir(&here).await.map_err(io(&here))?;
        while let Some(entry) = entries.next_entry().await.map_err(io(&here))? {
            let kind = entry.file_type().await.map_err(io(&entry.path()))?;
            let name = rel.join(entry.file_name());
            let path = entry.path();
            if kind.is_dir() {
                create_private_dir(&path).map_err(io(&path))?;
                pending.push(name);
            } else if kind.is_file() && name != Path::new(MANIFEST) {
                crate::privacy::permissions::private_file(&path).map_err(io(&path))?;
                let (bytes, sha256) = hash_file(&path).await?;
                files.push(FileEntry {
                    path: name.to_string_lossy().into_owned(),
                    bytes,
                    sha256,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// What is wrong with an entry, if anything.
async fn verify(dir: &Path, manifest: &Manifest) -> Option<String> {
    if manifest.main_file().is_none() {
        return Some(format!("`{}` lists no main file", dir.display()));
    }
    for f in &manifest.files {
        let path = dir.join(&f.path);
        match hash_file(&path).await {
            Ok((bytes, _)) if bytes != f.bytes => {
                return Some(format!(
                    "`{}` is {bytes} bytes, {} were recorded",
                    path.display(),
                    f.bytes
                ));
            }
            Ok((_, sha256)) if sha256 != f.sha256 => {
                return Some(format!(
                    "`{}` does not match its recorded digest",
                    path.display()
                ));
            }
            Ok(_) => {}
            Err(_) => return Some(format!("`{}` is missing", path.display())),
        }
    }
    None
}

/// Streams a file through SHA-256: its size and hex digest.
pub async fn hash_file(path: &Path) -> Result<(u64, String), ArtifactError> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await.map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(io(path))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Strings in `output` that name a file inside `work` become relative to it; any other
/// absolute path into the cache is a stage bug and refused.
fn relativize(output: &Value, work: &Path) -> Result<Value, ArtifactError> {
    Ok(match output {
        Value::String(s) => {
            let p = Path::new(s);
            if p.is_absolute() && p.starts_with(work) {
                let rel = p.strip_prefix(work).unwrap_or(p);
                Value::String(rel.to_string_lossy().into_owned())
            } else if p.is_absolute()
                && p.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with(WORK_PREFIX))
            {
                return Err(ArtifactError::Outside(p.to_owned()));
            } else {
                output.clone()
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| relativize(v, work))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), relativize(v, work)?)))
                .collect::<Result<_, ArtifactError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn built(store: &ArtifactStore, stage: &str, key: &str, body: &[u8]) -> Hit {
        let work = store.workdir(stage, key).await.unwrap();
        std::fs::write(work.join("out.bin"), body).unwrap();
        let output = json!({ "file": work.join("out.bin"), "n": 1 });
        store
            .commit(stage, key, &work, "out.bin", &output, None)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_of_one_key_all_return_the_entry_instead_of_directory_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(ArtifactStore::open(dir.path()).unwrap());
        let mut builds = Vec::new();
        for _ in 0..16 {
            let work = store.workdir("pace", "same").await.unwrap();
            std::fs::write(work.join("out.bin"), b"pace").unwrap();
            builds.push(work);
        }
        let commits = builds.into_iter().map(|work| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .commit("pace", "same", &work, "out.bin", &json!({}), None)
                    .await
            })
        });
        for commit in futures_util::future::join_all(commits).await {
            let hit = commit
                .unwrap()
                .expect("every build of the key gets the entry");
            assert_eq!(std::fs::read(hit.path("out.bin")).unwrap(), b"pace");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("pace"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("same")],
            "no work folder left"
        );
    }

    #[tokio::test]
    async fn an_entry_describes_itself_with_paths_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let hit = built(&store, "render", "k1", b"video").await;
        assert_eq!(hit.manifest.output["file"], json!("out.bin"));
        // Moved elsewhere (another runner, another checkout), the entry still resolves.
        let moved = tempfile::tempdir().unwrap();
        std::fs::rename(dir.path().join("render"), moved.path().join("render")).unwrap();
        let Lookup::Hit(hit) = ArtifactStore::at(moved.path())
            .get("render", "k1")
            .await
            .unwrap()
        else {
            panic!("the moved entry is not found");
        };
        assert_eq!(std::fs::read(hit.path("out.bin")).unwrap(), b"video");
    }

    #[tokio::test]
    async fn a_cached_file_corrupted_in_place_is_not_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let hit = built(&store, "render", "k2", b"abcdef").await;
        std::fs::write(hit.path("out.bin"), b"abcdeX").unwrap();
        let found = store.get("render", "k2").await.unwrap();
        assert!(
            matches!(&found, Lookup::Corrupt(why) if why.contains("digest")),
            "{found:?}"
        );
        assert!(matches!(
            store.get("render", "k2").await.unwrap(),
            Lookup::Miss
        ));
    }

    #[tokio::test]
    async fn a_reader_sees_a_corrupt_entry_without_removing_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let hit = built(&store, "script", "k7", b"words").await;
        std::fs::write(hit.path("out.bin"), b"wordz").unwrap();
        assert!(matches!(
            store.inspect("script", "k7").await.unwrap(),
            Lookup::Corrupt(_)
        ));
        assert!(
            store.contains("script", "k7"),
            "plan and doctor write nothing"
        );
    }

    #[tokio::test]
    async fn a_truncated_file_is_not_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let hit = built(&store, "footage", "k3", b"0123456789").await;
        std::fs::write(hit.path("out.bin"), b"01234").unwrap();
        assert!(matches!(
            store.get("footage", "k3").await.unwrap(),
            Lookup::Corrupt(_)
        ));
    }

    #[tokio::test]
    async fn stale_work_directories_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let work = store.workdir("render", "k4").await.unwrap();
        std::fs::write(work.join("partial.mp4"), b"half").unwrap();
        built(&store, "render", "k5", b"whole").await;
        assert_eq!(store.remove_stale_work().unwrap(), 1);
        assert!(!work.exists());
        assert!(store.contains("render", "k5"));
    }

    #[tokio::test]
    async fn an_empty_main_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let work = store.workdir("voice", "k6").await.unwrap();
        std::fs::write(work.join("a.wav"), b"").unwrap();
        let err = store
            .commit("voice", "k6", &work, "a.wav", &json!({}), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::Empty(_)));
    }

    #[tokio::test]
    async fn effect_and_job_records_round_trip_and_are_forgotten_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let record = EffectRecord {
            key: "e1".into(),
            kind: "draft".into(),
            job: "j1".into(),
            status: EffectStatus::Intent,
            attempts: 1,
            progress: None,
            result: None,
            error: None,
            updated_at: 1,
            owner: None,
        };
        store.put_effect(&record).await.unwrap();
        assert_eq!(store.effect("e1").await.unwrap(), Some(record));
        store
            .put_job(&JobRecord {
                id: "j1".into(),
                recipe: "r".into(),
                cell: "c".into(),
                topic: "t".into(),
                voice: "v".into(),
                spec: "{}".into(),
                stages: vec![],
                finished_at: 2,
            })
            .await
            .unwrap();
        assert_eq!(store.jobs().await.unwrap().len(), 1);
        store.forget_job("j1").await.unwrap();
        assert!(store.jobs().await.unwrap().is_empty());
        assert_eq!(store.effect("e1").await.unwrap(), None);
    }
}
