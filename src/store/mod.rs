//! The job store: sqlx's `Any` driver over SQLite (WAL, the default) or Postgres (a store
//! many machines share), chosen by URL ([`StoreUrl`]), with embedded migrations per
//! backend. Statements use `$n` placeholders, integer timestamps and JSON as text, so one
//! set of SQL serves both; the few that differ ask [`Store::is_postgres`].

mod accounts;
mod artifacts;
mod budgets;
mod inputs;
mod migrations;
mod privacy;
pub mod queue;
mod status;
mod url;

pub use accounts::{AccountRow, AccountSummary};
pub use artifacts::{Artifact, Effect};
pub use inputs::RecordedInputs;
pub use privacy::{ArtifactRef, ExportJob, ExportRows, JobScope};
pub use status::{EffectStatus, StageStatus, Status, UnknownStatus};
pub use url::{BadStoreUrl, StoreUrl, scrub};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Row};

use crate::stages::Stage;

pub const DB_FILE: &str = "factory.db";

/// Space kept in the state directory so the store can still record a failure when the
/// disk fills: given back a slice at a time when SQLite reports a full disk (other work
/// may take what was freed before the store writes), made whole again at the next open
/// when there is room.
pub const RESERVE_FILE: &str = "space.reserve";

/// How much the reserve holds: room for many failure records and their WAL frames.
const RESERVE_BYTES: u64 = 4 << 20;

/// How much of the reserve one full write gives back.
const RESERVE_SLICE: u64 = 1 << 20;

/// SQLite's primary result code for a full disk (`SQLITE_FULL`).
const SQLITE_FULL: i64 = 13;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory `{path}`: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the job store file `{path}`: {source}")]
    DbFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the job store at `{path}`: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the job store `{path}` is not a file; move it away or choose another `--state-dir`")]
    NotAFile { path: PathBuf },
    #[error("cannot open the job store file `{path}`: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot migrate the job store `{path}`: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    /// `url` is shown without credentials ([`StoreUrl`]'s `Display`).
    #[error("cannot connect to the job store `{url}`: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate the job store `{url}`: {source}")]
    MigrateShared {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("job store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(
        "the job store holds `{value}` in `{table}`, which this version does not know; the store is damaged or from a newer version"
    )]
    Corrupt { table: &'static str, value: String },
    #[error("job `{0}` is not in the store")]
    NoSuchJob(String),
    #[error(
        "job id prefix `{prefix}` matches several jobs: {}; give more of its digits",
        list_ids(matches)
    )]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    #[error(
        "`{0}` is not a job id: give at least {MIN_PREFIX} of its hex digits (`factory jobs list` shows them)"
    )]
    BadPrefix(String),
}

/// A job row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredJob {
    pub id: String,
    pub recipe: String,
    pub cell: String,
    pub topic: String,
    pub voice: String,
    pub status: Status,
    pub stage: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// For a deferred job: when its window opens (unix seconds).
    pub deferred_until: Option<i64>,
}

/// A stage row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredStage {
    pub stage: String,
    pub key: String,
    pub status: StageStatus,
    pub attempt: i64,
    pub artifact: Option<String>,
    pub error: Option<String>,
    pub cost: Option<f64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// Filters for `jobs list`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub recipe: Option<String>,
    pub status: Option<Status>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    url: StoreUrl,
}

/// Per SQLite connection: the `Any` driver takes its options from a URL, which cannot
/// carry these. WAL is kept in the file; the rest hold per connection.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                              PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";
const SQLITE_READ_PRAGMAS: &str = "PRAGMA busy_timeout = 10000;";

/// How long a Postgres store may take to answer the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per process to a Postgres store.
const POSTGRES_CONNECTIONS: u32 = 8;

pub use crate::clock::now;

/// The fewest hex digits that name a job: shorter prefixes match too much by accident.
pub const MIN_PREFIX: usize = 4;

/// How many matches an ambiguous prefix lists (one more tells there are more).
const AMBIGUOUS_SHOWN: usize = 10;

/// A job id prefix as typed, checked and lowercased: hex digits only, at least
/// [`MIN_PREFIX`] of them.
pub fn job_prefix(typed: &str) -> Result<String, StoreError> {
    let trimmed = typed.trim();
    if trimmed.len() < MIN_PREFIX || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::BadPrefix(typed.to_owned()));
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Where a stage name sits in the pipeline; unknown names after every stage.
pub fn pipeline_position(stage: &str) -> usize {
    Stage::ALL
        .iter()
        .position(|s| s.as_str() == stage)
        .unwrap_or(Stage::ALL.len())
}

impl StoreError {
    /// Whether a write failed because the disk under the store is full (SQLite's code or
    /// the operating system's, never the message).
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::Query(e) | Self::Open { source: e, .. } => is_full(e),
            Self::DbFile { source, .. } | Self::StateDir { source, .. } => {
                crate::disk::is_full(source)
            }
            _ => false,
        }
    }
}

/// Whether sqlx reports a full disk: `SQLITE_FULL` (by its primary code), or `ENOSPC`.
fn is_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                && db
                    .code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(|c| c & 0xff == SQLITE_FULL)
        }
        sqlx::Error::Io(io) => crate::disk::is_full(io),
        _ => false,
    }
}

fn list_ids(ids: &[String]) -> String {
    let mut text = ids
        .iter()
        .take(AMBIGUOUS_SHOWN)
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > AMBIGUOUS_SHOWN {
        text.push_str(" and more");
    }
    text
}

impl Store {
    /// Opens (creating when needed) the store at `at`: a state directory stands for its
    /// SQLite file. SQLite: the directory user-only (0700), the database file 0600.
    /// Postgres: connected, named without credentials when it cannot be. Migrations
    /// applied either way.
    pub async fn open(at: impl Into<StoreUrl>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        match at.into() {
            StoreUrl::Sqlite(path) => Self::open_sqlite(path).await,
            url @ StoreUrl::Postgres { .. } => {
                let pool = connect_postgres(&url).await?;
                migrations::run(&pool, true)
                    .await
                    .map_err(|source| StoreError::MigrateShared {
                        url: url.to_string(),
                        source,
                    })?;
                Ok(Self { pool, url })
            }
        }
    }

    async fn open_sqlite(path: PathBuf) -> Result<Self, StoreError> {
        let dir = parent_dir(&path);
        create_private_dir(dir)?;
        locate(&path)?;
        create_private_file(&path).map_err(|source| StoreError::DbFile {
            path: path.clone(),
            source,
        })?;
        let pool = connect_sqlite(&path, "rwc", SQLITE_PRAGMAS, 4).await?;
        // Processes opening one store together (a machine's workers) migrate it one after
        // another: an exclusive `flock` on the file, which SQLite's own locks (`fcntl`)
        // leave alone.
        let migrating = lock_file(&path)
            .await
            .map_err(|source| StoreError::DbFile {
                path: path.clone(),
                source,
            })?;
        migrations::run(&pool, false)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.clone(),
                source,
            })?;
        drop(migrating);
        tighten(&path);
        let store = Self {
            pool,
            url: StoreUrl::Sqlite(path),
        };
        store.keep_reserve();
        Ok(store)
    }

    /// The reserve beside a SQLite file; a Postgres store keeps none.
    fn reserve_path(&self) -> Option<PathBuf> {
        self.path().map(|p| p.with_file_name(RESERVE_FILE))
    }

    /// Makes the reserve when it is missing and the disk has room for it and as much
    /// again; without room the store runs without one (a failure record may then be
    /// lost to a full disk, and the next run still resumes the job).
    fn keep_reserve(&self) {
        let Some(path) = self.reserve_path() else {
            return;
        };
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return;
        }
        let dir = path.parent().unwrap_or(&path);
        if crate::disk::free_bytes(dir).map_or(true, |free| free < RESERVE_BYTES * 2) {
            return;
        }
        if write_reserve(&path).is_err() {
            std::fs::remove_file(&path).ok();
        }
    }

    /// Gives a slice of the reserve back to the filesystem (the last one deletes it);
    /// `false` when there is nothing left to give.
    fn release_reserve(&self) -> bool {
        let Some(path) = self.reserve_path() else {
            return false;
        };
        let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else {
            return false;
        };
        if len <= RESERVE_SLICE {
            return std::fs::remove_file(&path).is_ok();
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(len - RESERVE_SLICE))
            .is_ok()
    }

    /// Runs one write; while the disk is full, gives back a slice of the reserve and
    /// runs it again, so the failure that filled the disk can still be recorded.
    pub(crate) async fn write<T, F, Fut>(&self, mut write: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        loop {
            match write().await {
                Err(e) if is_full(&e) && self.release_reserve() => {}
                result => return result,
            }
        }
    }

    /// Whether there is a store at `at`: `false` only when a SQLite file does not exist
    /// yet; one that cannot be read is an error, never "no store". A Postgres store is
    /// there once its server is (opening it says when it is not).
    pub fn exists(at: impl Into<StoreUrl>) -> Result<bool, StoreError> {
        match at.into() {
            StoreUrl::Sqlite(path) => locate(&path).map(|found| found.is_some()),
            StoreUrl::Postgres { .. } => Ok(true),
        }
    }

    /// Opens an existing store without writing to it; `None` when there is none yet (no
    /// SQLite file, or a Postgres database without the store's tables), an error when
    /// there is one that cannot be read.
    /// `plan`, `validate` and `jobs` use this: they never create or change the store.
    pub async fn open_read_only(at: impl Into<StoreUrl>) -> Result<Option<Self>, StoreError> {
        sqlx::any::install_default_drivers();
        let url = at.into();
        let pool = match &url {
            StoreUrl::Sqlite(path) => {
                let Some(path) = locate(path)? else {
                    return Ok(None);
                };
                let pool = connect_sqlite(&path, "ro", SQLITE_READ_PRAGMAS, 2).await?;
                // SQLite reads the header only on first use: ask now, so a file that is
                // not a database fails here, named, and not in some later query.
                if let Err(source) = sqlx::query("SELECT count(*) FROM sqlite_master")
                    .fetch_one(&pool)
                    .await
                {
                    pool.close().await;
                    return Err(StoreError::Open { path, source });
                }
                pool
            }
            StoreUrl::Postgres { .. } => {
                let pool = connect_postgres(&url).await?;
                let tables: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = 'jobs'",
                )
                .fetch_one(&pool)
                .await?
                .try_get("n")?;
                if tables == 0 {
                    pool.close().await;
                    return Ok(None);
                }
                pool
            }
        };
        Ok(Some(Self { pool, url }))
    }

    /// The SQLite file; `None` for a Postgres store.
    pub fn path(&self) -> Option<&Path> {
        match &self.url {
            StoreUrl::Sqlite(path) => Some(path),
            StoreUrl::Postgres { .. } => None,
        }
    }

    /// The directory a full disk is reported in: the SQLite file's (a Postgres store
    /// never reports one).
    pub fn dir_of(file: Option<&Path>) -> &Path {
        file.map_or(Path::new("."), parent_dir)
    }

    /// Where the store is, for messages: shown without credentials.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        self.url.is_postgres()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// All jobs of one recipe.
    pub async fn jobs_of_recipe(&self, recipe: &str) -> Result<Vec<StoredJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE recipe = $1 ORDER BY created_at, id"
        ))
        .bind(recipe)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<StoredJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE ($1 IS NULL OR recipe = $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY recipe, created_at, id"
        ))
        .bind(filter.recipe.as_deref())
        .bind(filter.status.map(Status::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// A job by its id or an unambiguous prefix of it: at least [`MIN_PREFIX`] hex
    /// digits, compared as a plain prefix (no pattern characters), an ambiguous one an
    /// error that lists the matches.
    pub async fn find_job(&self, prefix: &str) -> Result<StoredJob, StoreError> {
        let prefix = job_prefix(prefix)?;
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE substr(id, 1, CAST($2 AS INTEGER)) = $1 ORDER BY id LIMIT $3"
        ))
        .bind(&prefix)
        .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
        .bind(i64::try_from(AMBIGUOUS_SHOWN + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: Vec<StoredJob> = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        match jobs.len() {
            0 => Err(StoreError::NoSuchJob(prefix)),
            1 => Ok(jobs.remove(0)),
            _ => Err(StoreError::Ambiguous {
                prefix,
                matches: jobs.into_iter().map(|j| j.id).collect(),
            }),
        }
    }

    /// Where a recipe was loaded from when its jobs were last recorded.
    pub async fn recipe_path(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT path FROM recipes WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("path")).transpose()?)
    }

    pub async fn job_spec(&self, id: &str) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT spec FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NoSuchJob(id.to_owned()))?;
        Ok(row.try_get("spec")?)
    }

    /// A job's stages in pipeline order ([`Stage::ALL`]); names it does not know last.
    pub async fn stages(&self, job_id: &str) -> Result<Vec<StoredStage>, StoreError> {
        let rows = sqlx::query(
            "SELECT stage, key, status, attempt, artifact, error, cost, started_at, finished_at \
             FROM stages WHERE job_id = $1 ORDER BY stage",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        let mut stages = rows
            .iter()
            .map(|r| {
                Ok(StoredStage {
                    stage: r.try_get("stage")?,
                    key: r.try_get("key")?,
                    status: StageStatus::from_column("stages", &r.try_get::<String, _>("status")?)?,
                    attempt: r.try_get("attempt")?,
                    artifact: r.try_get("artifact")?,
                    error: r.try_get("error")?,
                    cost: r.try_get("cost")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        stages.sort_by_key(|s| pipeline_position(&s.stage));
        Ok(stages)
    }

    /// Inserts a job, or refreshes the spec of one already known.
    pub async fn upsert_job(&self, job: &NewJob<'_>) -> Result<(), StoreError> {
        let now = now();
        self.write(|| sqlx::query(
            "INSERT INTO recipes (name, path, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET path = excluded.path, updated_at = excluded.updated_at",
        )
        .bind(job.recipe)
        .bind(job.recipe_path)
        .bind(now)
        .execute(&self.pool))
        .await?;
        self.write(|| sqlx::query(
            "INSERT INTO jobs (id, recipe, cell, spec, topic, voice, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) \
             ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
        )
        .bind(job.id)
        .bind(job.recipe)
        .bind(job.cell)
        .bind(job.spec)
        .bind(job.topic)
        .bind(job.voice)
        .bind(job.status.as_str())
        .bind(now)
        .execute(&self.pool))
        .await?;
        Ok(())
    }

    pub async fn set_status(
        &self,
        id: &str,
        status: Status,
        stage: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.set_status_until(id, status, stage, error, None).await
    }

    /// Like [`Store::set_status`]; `until` is when a deferred job may continue.
    pub async fn set_status_until(
        &self,
        id: &str,
        status: Status,
        stage: Option<&str>,
        error: Option<&str>,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = now();
        let finished = matches!(status, Status::Done | Status::Failed).then_some(now);
        let done = self.write(|| sqlx::query(
            "UPDATE jobs SET status = $2, stage = $3, error = $4, updated_at = $5, \
             finished_at = $6, deferred_until = $7, \
             attempts = attempts + CASE WHEN $2 = 'running' AND status <> 'running' THEN 1 ELSE 0 END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(stage)
        .bind(error)
        .bind(now)
        .bind(finished)
        .bind(until)
        .execute(&self.pool))
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchJob(id.to_owned()));
        }
        self.event(id, stage, status.as_str(), error).await
    }

    /// Imports finished jobs recorded beside the artifacts that this store does not know
    /// (a fresh state directory over a kept artifact store): the index is rebuilt.
    pub async fn import_done(
        &self,
        jobs: &[crate::artifacts::JobRecord],
        recipe_path: impl Fn(&str) -> Option<String>,
    ) -> Result<usize, StoreError> {
        let mut imported = 0;
        for j in jobs {
            let known = sqlx::query("SELECT 1 FROM jobs WHERE id = $1")
                .bind(&j.id)
                .fetch_optional(&self.pool)
                .await?
                .is_some();
            if known {
                continue;
            }
            let path = recipe_path(&j.recipe).unwrap_or_default();
            self.upsert_job(&NewJob {
                id: &j.id,
                recipe: &j.recipe,
                recipe_path: &path,
                cell: &j.cell,
                spec: &j.spec,
                topic: &j.topic,
                voice: &j.voice,
                status: Status::Done,
            })
            .await?;
            sqlx::query("UPDATE jobs SET finished_at = $2, updated_at = $2 WHERE id = $1")
                .bind(&j.id)
                .bind(j.finished_at)
                .execute(&self.pool)
                .await?;
            self.event(&j.id, None, "imported", Some("from the artifact store"))
                .await?;
            imported += 1;
        }
        Ok(imported)
    }

    /// Appends to a job's status history.
    pub async fn event(
        &self,
        id: &str,
        stage: Option<&str>,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.event_at(id, stage, status, detail, now()).await
    }

    /// Appends to a job's status history, at `at` (unix seconds).
    pub async fn event_at(
        &self,
        id: &str,
        stage: Option<&str>,
        status: &str,
        detail: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO events (job_id, seq, stage, status, detail, at) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM events WHERE job_id = $1",
            )
            .bind(id)
            .bind(stage)
            .bind(status)
            .bind(detail)
            .bind(at)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }
}

/// What `upsert_job` writes.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub id: &'a str,
    pub recipe: &'a str,
    pub recipe_path: &'a str,
    pub cell: &'a str,
    pub spec: &'a str,
    pub topic: &'a str,
    pub voice: &'a str,
    pub status: Status,
}

const JOB_COLUMNS: &str = "SELECT id, recipe, cell, topic, voice, status, stage, attempts, error, \
                           created_at, updated_at, finished_at, deferred_until FROM jobs";

fn job_from_row(r: &AnyRow) -> Result<StoredJob, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(StoredJob {
        id: r.try_get("id")?,
        recipe: r.try_get("recipe")?,
        cell: r.try_get("cell")?,
        topic: r.try_get("topic")?,
        voice: r.try_get("voice")?,
        status: Status::from_column("jobs", &status)?,
        stage: r.try_get("stage")?,
        attempts: r.try_get("attempts")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
        deferred_until: r.try_get("deferred_until")?,
    })
}

/// The SQLite file at `path`: `None` when neither it nor its directory exists yet (or the
/// directory exists without it); an error when either cannot be read or the store's path
/// is not a file.
fn locate(path: &Path) -> Result<Option<PathBuf>, StoreError> {
    let dir = parent_dir(path);
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(path.to_owned())),
        Ok(_) => Err(StoreError::NotAFile {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_dir(dir) {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Unreadable {
                path: dir.to_owned(),
                source,
            }),
        },
        Err(source) => Err(StoreError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parent_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A pool over the SQLite file at `path` in `mode` (`rwc`, `ro`), each connection set up
/// with `pragmas`.
async fn connect_sqlite(
    path: &Path,
    mode: &str,
    pragmas: &'static str,
    max: u32,
) -> Result<AnyPool, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let absolute = std::path::absolute(path).map_err(|e| open_err(sqlx::Error::Io(e)))?;
    let url = format!("sqlite://{}?mode={mode}", encode_path(&absolute));
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute(pragmas).await.map(|_| ())
            })
        })
        .connect(&url)
        .await
        .map_err(open_err)
}

async fn connect_postgres(url: &StoreUrl) -> Result<AnyPool, StoreError> {
    let StoreUrl::Postgres { url: given, .. } = url else {
        unreachable!("called for a Postgres URL")
    };
    let failed = |source| StoreError::Connect {
        url: url.to_string(),
        source,
    };
    // One connection first: the pool retries a refused one until its timeout and then
    // reports only that it timed out; this reports why.
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(given))
        .await
        .map_err(|_| failed(sqlx::Error::PoolTimedOut))?
        .map_err(failed)?;
    probe.close().await.ok();
    AnyPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(given)
        .await
        .map_err(failed)
}

/// A path as the SQLite URL's file part: every byte but unreserved ones and `/`
/// percent-encoded (the driver decodes it), so `?`, `#` and `%` in a folder name stay
/// part of the file name.
fn encode_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| StoreError::StateDir {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(err)?;
    }
    let mode = std::fs::metadata(path).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Writes the reserve with real blocks (a sparse file would give nothing back).
fn write_reserve(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let chunk = vec![0u8; 1 << 16];
    let mut left = RESERVE_BYTES;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
    }
    Ok(())
}

/// `path` opened and locked exclusively, waiting for another holder without blocking the
/// runtime; unlocked when dropped.
async fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::File::open(path)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(std::io::Error::other)?
}

/// The WAL and shared-memory files appear with the process umask; make them private.
fn tighten(db: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(PathBuf::from(p), std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one_job(dir: &Path) -> Store {
        let store = Store::open(dir).await.unwrap();
        store
            .upsert_job(&NewJob {
                id: "abcd000011112222",
                recipe: "r",
                recipe_path: "r.yaml",
                cell: "{}",
                spec: "{}",
                topic: "t",
                voice: "v",
                status: Status::Pending,
            })
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn an_unknown_job_status_is_corrupt_never_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = one_job(dir.path()).await;
        sqlx::query("UPDATE jobs SET status = 'finished'")
            .execute(store.pool())
            .await
            .unwrap();
        for result in [
            store.list_jobs(&JobFilter::default()).await.map(|_| ()),
            store.jobs_of_recipe("r").await.map(|_| ()),
            store.find_job("abcd").await.map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { table: "jobs", value } if value == "finished"),
                "{err:?}"
            );
            assert!(err.to_string().contains("`finished` in `jobs`"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_unknown_stage_status_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = one_job(dir.path()).await;
        store
            .stage_finished("abcd000011112222", "script", "k", "weird", None, None, None)
            .await
            .unwrap();
        assert!(matches!(
            store.stages("abcd000011112222").await,
            Err(StoreError::Corrupt { table: "stages", ref value }) if value == "weird"
        ));
    }

    /// `jobs show` showed a reused stage with the time since the job's first attempt.
    #[tokio::test]
    async fn a_cached_stage_takes_no_time_even_after_an_earlier_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = one_job(dir.path()).await;
        let job = "abcd000011112222";
        store.stage_started(job, "script", "k").await.unwrap();
        store
            .stage_finished(job, "script", "k", "done", None, None, None)
            .await
            .unwrap();
        // The earlier attempt was an hour ago.
        sqlx::query("UPDATE stages SET started_at = started_at - 3600")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .stage_finished(job, "script", "k", "cached", None, None, None)
            .await
            .unwrap();
        let s = &store.stages(job).await.unwrap()[0];
        assert_eq!(s.started_at, s.finished_at, "{s:?}");
        // An executed stage keeps its own start.
        store.stage_started(job, "voice", "v").await.unwrap();
        sqlx::query("UPDATE stages SET started_at = started_at - 5 WHERE stage = 'voice'")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .stage_finished(job, "voice", "v", "done", None, None, None)
            .await
            .unwrap();
        let voice = store
            .stages(job)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.stage == "voice")
            .unwrap();
        assert_eq!(voice.finished_at.unwrap() - voice.started_at.unwrap(), 5);
    }

    #[tokio::test]
    async fn stages_come_in_pipeline_order_from_one_definition() {
        let dir = tempfile::tempdir().unwrap();
        let store = one_job(dir.path()).await;
        for stage in [
            "notify",
            "zzz-unknown",
            "captions",
            "script",
            "draft",
            "footage",
        ] {
            store
                .stage_finished("abcd000011112222", stage, "k", "done", None, None, None)
                .await
                .unwrap();
        }
        let order: Vec<String> = store
            .stages("abcd000011112222")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.stage)
            .collect();
        assert_eq!(
            order,
            [
                "script",
                "footage",
                "captions",
                "draft",
                "notify",
                "zzz-unknown"
            ]
        );
    }
}
