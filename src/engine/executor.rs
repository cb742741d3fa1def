//! The two executors every stage goes through: a cached stage (look up the key, else
//! build in a work directory, verify, commit) and a side effect (ledger `intent → done |
//! unknown`, reconciled before anything is sent again). Both retry under the one policy,
//! record every attempt, and stop on cancellation.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Engine, Event, JobInput, JobRef, Lease, Slot, StageStatus};
use crate::artifacts::{ArtifactError, ArtifactStore, EffectRecord, EffectStatus, Hit, Lookup};
use crate::expand::JobSpec;
use crate::providers::{EffectLog, EffectProgress, ProviderError};
use crate::registry::Services;
use crate::stages::Stage;
use crate::store::Store;

/// Why a job stopped at a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Halt {
    pub stage: Stage,
    pub kind: HaltKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HaltKind {
    Failed(String),
    /// Waiting for a rate window or a cap until `until` (unix seconds).
    Deferred {
        until: i64,
        reason: String,
    },
    Cancelled,
    /// Failed because a disk is full: the job is `failed` at its stage like any other,
    /// and the run ends as an environment failure.
    NoSpace(String),
    /// The stage needs the other slot of a worker (a render on a network slot): the job
    /// continues there.
    Handoff,
    /// The worker's lease on the job was lost: another worker took it over, and this one
    /// writes nothing more.
    LeaseLost(String),
}

impl Halt {
    pub fn failed(stage: Stage, message: impl Into<String>) -> Self {
        Self {
            stage,
            kind: HaltKind::Failed(message.into()),
        }
    }
}

/// Below this much free space, a failed attempt is taken for a full disk, whatever the
/// stage's tool said about it.
const LOW_SPACE: u64 = 1 << 20;

/// A store write that failed: a full disk under the state directory is named as such.
fn store_halt(e: &Engine, stage: Stage, err: &crate::store::StoreError) -> Halt {
    if err.is_no_space() {
        let dir = crate::store::Store::dir_of(e.store.path());
        return Halt {
            stage,
            kind: HaltKind::NoSpace(ProviderError::no_space(dir, err.to_string()).to_string()),
        };
    }
    Halt::failed(stage, err.to_string())
}

/// An artifact store failure as a provider error: a full disk is named as such.
/// How long a job waits for another runner that claimed one of its side effects: longer
/// than a run waits in place, so the job is deferred and says why.
const CLAIMED_WAIT_SECS: i64 = 300;

fn artifact_error(service: &'static str, err: &ArtifactError) -> ProviderError {
    match err {
        ArtifactError::Io { path, source } if crate::disk::is_full(source) => {
            ProviderError::no_space(path, source.to_string())
        }
        other => ProviderError::permanent(service, other.to_string()),
    }
}

/// What a stage body built: the main file (inside the work directory), the stage output
/// (paths into the work directory are stored relative to the entry), and what it cost.
#[derive(Debug, Clone)]
pub struct Built {
    pub main: String,
    pub output: Value,
    pub cost: Option<f64>,
}

/// Whether the service can be asked what became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectKind {
    /// The provider reconciles through the ledger (an upload id it recorded, a HEAD on the
    /// object key): an unfinished attempt is finished or confirmed, never repeated.
    Reconcilable,
    /// Cannot be asked (a chat message): sent at most once; an attempt without a
    /// confirmed answer is reported as unconfirmed and never sent again.
    AtMostOnce,
}

/// How a side effect ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Effected {
    Done(Value),
    Unconfirmed,
}

/// One job's pass through the pipeline: what the stages call.
pub struct JobRun<'a> {
    engine: &'a Engine,
    input: &'a JobInput,
    job: JobRef,
    lease: Option<Arc<dyn Lease>>,
    slot: Option<Slot>,
    keys: Vec<(String, String)>,
    executed: usize,
    reused: usize,
    retries: usize,
    rebuilt: usize,
    unconfirmed: usize,
}

/// What the next step is after a failed attempt.
enum Next {
    Again,
    Stop(Halt),
}

impl<'a> JobRun<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        input: &'a JobInput,
        job: JobRef,
        lease: Option<Arc<dyn Lease>>,
        slot: Option<Slot>,
    ) -> Self {
        Self {
            engine,
            input,
            job,
            lease,
            slot,
            keys: Vec::new(),
            executed: 0,
            reused: 0,
            retries: 0,
            rebuilt: 0,
            unconfirmed: 0,
        }
    }

    pub fn spec(&self) -> &'a JobSpec {
        &self.input.job.spec
    }

    pub fn id(&self) -> String {
        self.input.job.id.to_string()
    }

    pub fn recipe_dir(&self) -> &'a Path {
        &self.input.dir
    }

    pub fn services(&self) -> &'a dyn Services {
        self.engine.services.as_ref()
    }

    /// Where the artifact store keeps its entries (and stages their work).
    pub fn artifacts_dir(&self) -> &'a Path {
        self.engine.artifacts.root()
    }

    pub(super) fn keys(&self) -> &[(String, String)] {
        &self.keys
    }

    pub(super) fn counts(&self) -> super::Counts {
        super::Counts {
            executed: self.executed,
            reused: self.reused,
            retries: self.retries,
            rebuilt: self.rebuilt,
            unconfirmed: self.unconfirmed,
            no_space: false,
        }
    }

    /// A free-form line for the output (through the event sink).
    pub fn note(&self, text: impl Into<String>) {
        self.engine.sink.emit(&Event::Note { text: text.into() });
    }

    /// The artifact for `key`, reused when the store holds a verified one, else built by
    /// `build` in a fresh work directory (one per attempt) and committed.
    pub async fn cached<F, Fut>(
        &mut self,
        stage: Stage,
        key: &str,
        expires_at: Option<i64>,
        mut build: F,
    ) -> Result<Hit, Halt>
    where
        F: FnMut(PathBuf) -> Fut,
        Fut: Future<Output = Result<Built, ProviderError>>,
    {
        let e = self.engine;
        self.keys.push((stage.as_str().to_owned(), key.to_owned()));
        let _flight = e.flights.lock(key).await;
        match e.artifacts.get(stage.as_str(), key).await {
            Ok(Lookup::Hit(hit)) => {
                self.record_cached(stage, key, Some(key)).await?;
                return Ok(hit);
            }
            Ok(Lookup::Corrupt(reason)) => {
                self.rebuilt += 1;
                self.emit(Event::Rebuild {
                    job: self.job.clone(),
                    stage,
                    reason,
                });
            }
            Ok(Lookup::Miss) => {}
            Err(err) => {
                return Err(self
                    .halt_for(stage, key, artifact_error("cache", &err))
                    .await);
            }
        }
        self.in_slot(stage)?;
        let _permit = self.permit(stage).await?;
        self.begin(stage, key).await?;
        let mut attempt = 1;
        loop {
            let work = match e.artifacts.workdir(stage.as_str(), key).await {
                Ok(work) => work,
                Err(err) => {
                    return Err(self
                        .halt_for(stage, key, artifact_error("cache", &err))
                        .await);
                }
            };
            let result = self.guarded(stage, build(work.clone())).await;
            let outcome = match result {
                Ok(built) => {
                    self.fenced(stage).await?;
                    let committed = e
                        .artifacts
                        .commit(
                            stage.as_str(),
                            key,
                            &work,
                            &built.main,
                            &built.output,
                            expires_at,
                        )
                        .await;
                    match committed {
                        Ok(hit) => Ok((hit, built.cost)),
                        Err(err) => Err(artifact_error("cache", &err)),
                    }
                }
                Err(err) => Err(self.classify_space(err)),
            };
            match outcome {
                Ok((hit, cost)) => {
                    self.index(stage, key, &hit).await?;
                    self.end(stage, key, Some(key), cost).await?;
                    return Ok(hit);
                }
                Err(err) => {
                    remove_work(&work).await;
                    match self.after_error(stage, key, attempt, err).await? {
                        Next::Again => attempt += 1,
                        Next::Stop(halt) => return Err(halt),
                    }
                }
            }
        }
    }

    /// Runs a side effect at most once per `key`. The ledger entry (beside the
    /// artifacts) is read afresh before every attempt: `done` is reused; an unfinished
    /// attempt of an [`EffectKind::AtMostOnce`] effect is reported unconfirmed and never
    /// repeated; a reconcilable one hands the provider what was recorded, so it resumes
    /// or confirms instead of sending anew.
    pub async fn effect<F, Fut>(
        &mut self,
        stage: Stage,
        key: &str,
        kind: EffectKind,
        mut send: F,
    ) -> Result<Effected, Halt>
    where
        F: FnMut(Arc<dyn EffectLog>) -> Fut,
        Fut: Future<Output = Result<Value, ProviderError>>,
    {
        let e = self.engine;
        self.keys.push((stage.as_str().to_owned(), key.to_owned()));
        let _flight = e.flights.lock(key).await;
        if let Some(done) = self.recorded_done(stage, key).await? {
            self.record_cached(stage, key, None).await?;
            return Ok(Effected::Done(done));
        }
        self.in_slot(stage)?;
        let _permit = self.permit(stage).await?;
        self.begin(stage, key).await?;
        let mut attempt = 1;
        loop {
            let record = match e.artifacts.effect(key).await {
                Ok(Some(record)) => Some(record),
                Ok(None) => self.unfinished_elsewhere(stage, key).await?,
                Err(err) => {
                    return Err(self
                        .halt_for(stage, key, artifact_error("ledger", &err))
                        .await);
                }
            };
            if let Some(record) = &record {
                if record.status == EffectStatus::Done {
                    self.end(stage, key, None, None).await?;
                    return Ok(Effected::Done(record.result.clone().unwrap_or_default()));
                }
                if let Some((until, reason)) = self.in_flight_elsewhere(stage, record) {
                    return Err(self.defer(stage, key, until, reason).await);
                }
                if kind == EffectKind::AtMostOnce
                    && matches!(record.status, EffectStatus::Intent | EffectStatus::Unknown)
                {
                    return self.unconfirmed(stage, key).await;
                }
            }
            let intent = EffectRecord {
                key: key.to_owned(),
                kind: stage.as_str().to_owned(),
                job: self.job.id.clone(),
                status: EffectStatus::Intent,
                attempts: record.as_ref().map_or(0, |r| r.attempts) + 1,
                progress: record.as_ref().and_then(|r| r.progress.clone()),
                result: None,
                error: None,
                updated_at: crate::clock::now(),
                owner: Some(e.artifacts.owner()),
            };
            self.write_effect(stage, &intent).await?;
            let log: Arc<dyn EffectLog> = Arc::new(Ledger {
                artifacts: e.artifacts.clone(),
                store: e.store.clone(),
                key: key.to_owned(),
                lease: self.lease.clone(),
                stage,
            });
            let result = self.guarded(stage, send(log)).await;
            let mut after = e
                .artifacts
                .effect(key)
                .await
                .map_err(|err| Halt::failed(stage, err.to_string()))?
                .unwrap_or(intent);
            after.updated_at = crate::clock::now();
            match result {
                Ok(value) => {
                    after.status = EffectStatus::Done;
                    after.result = Some(value.clone());
                    after.error = None;
                    self.write_effect(stage, &after).await?;
                    self.end(stage, key, None, None).await?;
                    return Ok(Effected::Done(value));
                }
                Err(err) => {
                    after.status = match (&err, kind) {
                        // Refused by the service, or never sent: a later attempt may send.
                        (
                            ProviderError::Permanent { .. }
                            | ProviderError::Deferred { .. }
                            | ProviderError::NoSpace { .. },
                            _,
                        )
                        | (ProviderError::Retryable { .. }, EffectKind::AtMostOnce) => {
                            EffectStatus::Failed
                        }
                        _ => EffectStatus::Unknown,
                    };
                    after.error = Some(err.to_string());
                    self.write_effect(stage, &after).await?;
                    match self.after_error(stage, key, attempt, err).await? {
                        Next::Again => attempt += 1,
                        Next::Stop(halt) => return Err(halt),
                    }
                }
            }
        }
    }

    /// What a side effect returned, when the ledger says it is done.
    pub async fn effect_result(&self, stage: Stage, key: &str) -> Result<Option<Value>, Halt> {
        Ok(self
            .engine
            .artifacts
            .effect(key)
            .await
            .map_err(|err| Halt::failed(stage, err.to_string()))?
            .filter(|r| r.status == EffectStatus::Done)
            .map(|r| r.result.unwrap_or_default()))
    }

    /// A done side effect whose result no longer holds (a delivered file changed on disk)
    /// is done again: its ledger entry says why, and the output shows it.
    pub async fn redo_effect(
        &mut self,
        stage: Stage,
        key: &str,
        reason: String,
    ) -> Result<(), Halt> {
        let e = self.engine;
        let Some(mut record) = e
            .artifacts
            .effect(key)
            .await
            .map_err(|err| Halt::failed(stage, err.to_string()))?
        else {
            return Ok(());
        };
        record.status = EffectStatus::Failed;
        record.error = Some(reason.clone());
        record.updated_at = crate::clock::now();
        self.write_effect(stage, &record).await?;
        self.rebuilt += 1;
        self.emit(Event::Rebuild {
            job: self.job.clone(),
            stage,
            reason,
        });
        Ok(())
    }

    /// A `done` entry in the ledger beside the artifacts, or (for state written before
    /// the ledger moved there) in the store.
    async fn recorded_done(&self, stage: Stage, key: &str) -> Result<Option<Value>, Halt> {
        let e = self.engine;
        match e.artifacts.effect(key).await {
            Ok(Some(r)) if r.status == EffectStatus::Done => {
                return Ok(Some(r.result.unwrap_or_default()));
            }
            Ok(_) => {}
            Err(err) => return Err(Halt::failed(stage, err.to_string())),
        }
        let legacy = e
            .store
            .effect(key)
            .await
            .map_err(|err| store_halt(self.engine, stage, &err))?;
        Ok(legacy.filter(|x| x.status == "done").map(|x| {
            x.detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default()
        }))
    }

    /// An unfinished attempt another runner sharing the bucket wrote recently: it may be
    /// sending at this moment, so the job waits for its outcome (until the stage's time
    /// would be up) instead of sending too. Under a lease no other holder can be live.
    fn in_flight_elsewhere(&self, stage: Stage, record: &EffectRecord) -> Option<(i64, String)> {
        if self.lease.is_some()
            || !matches!(record.status, EffectStatus::Intent | EffectStatus::Unknown)
        {
            return None;
        }
        let mine = self.engine.artifacts.owner();
        let other = record.owner.as_deref().filter(|o| *o != mine)?;
        let until = record
            .updated_at
            .saturating_add(i64::try_from(stage.timeout().as_secs()).unwrap_or(i64::MAX));
        (crate::clock::now() < until).then(|| {
            (
                until,
                format!(
                    "another runner (`{other}`) is sending it; its outcome decides, and it is \
                     taken over if it has not ended by then"
                ),
            )
        })
    }

    /// The store's row of an effect this artifact store has no ledger entry for. A shared
    /// store (another machine, or a runner whose artifacts were lost) may know of an attempt
    /// that was sent and never confirmed: that attempt is adopted, so it is reconciled with
    /// the service (or reported unconfirmed) instead of being sent anew. Only the service's
    /// id survives in the store, so the phase says to ask the service.
    async fn unfinished_elsewhere(
        &self,
        stage: Stage,
        key: &str,
    ) -> Result<Option<EffectRecord>, Halt> {
        let e = self.engine;
        let Some(row) = e
            .store
            .effect(key)
            .await
            .map_err(|err| store_halt(e, stage, &err))?
        else {
            return Ok(None);
        };
        let status = match row.status.parse::<EffectStatus>() {
            Ok(EffectStatus::Intent) => EffectStatus::Intent,
            Ok(EffectStatus::Unknown | EffectStatus::Started) => EffectStatus::Unknown,
            _ => return Ok(None),
        };
        Ok(Some(EffectRecord {
            key: key.to_owned(),
            kind: row.kind,
            job: row.job_id,
            status,
            attempts: 1,
            progress: Some(EffectProgress {
                external_id: row.external_id,
                phase: EffectProgress::UNRECORDED.to_owned(),
                data: Value::Null,
            }),
            result: None,
            error: None,
            updated_at: crate::clock::now(),
            owner: None,
        }))
    }

    async fn unconfirmed(&mut self, stage: Stage, key: &str) -> Result<Effected, Halt> {
        self.unconfirmed += 1;
        let message =
            "an earlier attempt got no answer; it may have been sent and is not sent again";
        self.finish(stage, key, StageStatus::Unconfirmed, Some(message))
            .await?;
        Ok(Effected::Unconfirmed)
    }

    async fn write_effect(&mut self, stage: Stage, record: &EffectRecord) -> Result<(), Halt> {
        let e = self.engine;
        self.fenced(stage).await?;
        if let Err(err) = e.artifacts.put_effect(record).await {
            if let ArtifactError::Claimed { .. } = err {
                // Another runner sharing the bucket sends it at this moment: its outcome
                // decides, so the job waits for it instead of failing or sending too.
                let until = crate::clock::now() + CLAIMED_WAIT_SECS;
                return Err(self.defer(stage, &record.key, until, err.to_string()).await);
            }
            return Err(match artifact_error("ledger", &err) {
                full @ ProviderError::NoSpace { .. } => {
                    self.halt_for(stage, &record.key, full).await
                }
                _ => Halt::failed(stage, format!("cannot write the ledger: {err}")),
            });
        }
        let external = record
            .progress
            .as_ref()
            .and_then(|p| p.external_id.as_deref());
        let detail = record.result.as_ref().map(Value::to_string);
        e.store
            .record_effect(
                &record.key,
                &record.job,
                &record.kind,
                record.status.as_str(),
                external,
                detail.as_deref(),
            )
            .await
            .map_err(|err| {
                if err.is_no_space() {
                    store_halt(e, stage, &err)
                } else {
                    Halt::failed(stage, format!("cannot write the ledger: {err}"))
                }
            })
    }

    /// Decides what follows a failed attempt: another one (after a recorded, visible
    /// wait), or the end of the stage.
    async fn after_error(
        &mut self,
        stage: Stage,
        key: &str,
        attempt: u32,
        err: ProviderError,
    ) -> Result<Next, Halt> {
        let settings = self.engine.settings;
        let now = crate::clock::now();
        let wait_until = match &err {
            ProviderError::Cancelled => {
                self.finish(stage, key, StageStatus::Interrupted, None)
                    .await?;
                return Ok(Next::Stop(Halt {
                    stage,
                    kind: super::HaltKind::Cancelled,
                }));
            }
            ProviderError::Permanent { .. } | ProviderError::NoSpace { .. } => {
                return Ok(Next::Stop(self.halt_for(stage, key, err).await));
            }
            ProviderError::Deferred { until, .. } => Some(*until),
            ProviderError::Retryable {
                retry_after: Some(after),
                ..
            } if *after > settings.retry.max_retry_after => {
                Some(now.saturating_add(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)))
            }
            ProviderError::Retryable { .. } | ProviderError::Unconfirmed { .. } => None,
        };
        if let Some(until) = wait_until {
            let wait = Duration::from_secs(u64::try_from(until - now).unwrap_or(0));
            if wait > settings.max_wait_in_run || attempt >= settings.retry.attempts * 4 {
                return Ok(Next::Stop(
                    self.defer(stage, key, until, err.to_string()).await,
                ));
            }
            self.emit(Event::Waiting {
                job: self.job.clone(),
                stage,
                until,
                reason: err.to_string(),
            });
            self.record_retry(stage, attempt + 1, wait, &err).await?;
            return self.sleep(stage, key, wait).await;
        }
        let Some(wait) = settings.retry.delay(attempt - 1, &err) else {
            return Ok(Next::Stop(self.fail(stage, key, err.to_string()).await));
        };
        self.record_retry(stage, attempt + 1, wait, &err).await?;
        self.sleep(stage, key, wait).await
    }

    async fn record_retry(
        &mut self,
        stage: Stage,
        attempt: u32,
        wait: Duration,
        err: &ProviderError,
    ) -> Result<(), Halt> {
        self.fenced(stage).await?;
        self.retries += 1;
        self.emit(Event::Retry {
            job: self.job.clone(),
            stage,
            attempt,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            error: err.to_string(),
        });
        self.engine
            .store
            .stage_retry(&self.job.id, stage.as_str(), &err.to_string())
            .await
            .map_err(|e| store_halt(self.engine, stage, &e))
    }

    async fn sleep(&mut self, stage: Stage, key: &str, wait: Duration) -> Result<Next, Halt> {
        let mut cancel = self.engine.cancel.clone();
        let cancelled = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            Ok(_) = cancel.wait_for(|c| *c) => true,
        };
        if !cancelled {
            return Ok(Next::Again);
        }
        self.finish(stage, key, StageStatus::Interrupted, None)
            .await?;
        Ok(Next::Stop(Halt {
            stage,
            kind: HaltKind::Cancelled,
        }))
    }

    /// Records the stage as failed by `err`, which ends it: a full disk halts as
    /// [`HaltKind::NoSpace`], anything else as failed.
    async fn halt_for(&mut self, stage: Stage, key: &str, err: ProviderError) -> Halt {
        let full = matches!(err, ProviderError::NoSpace { .. });
        let halt = self.fail(stage, key, err.to_string()).await;
        match halt.kind {
            HaltKind::Failed(message) if full => Halt {
                stage,
                kind: HaltKind::NoSpace(message),
            },
            _ => halt,
        }
    }

    /// A failed attempt that left the artifact store's disk (nearly) full failed for
    /// that, whatever its tool said: ffmpeg and espeak-ng report a short write in words.
    fn classify_space(&self, err: ProviderError) -> ProviderError {
        if matches!(
            err,
            ProviderError::NoSpace { .. }
                | ProviderError::Cancelled
                | ProviderError::Deferred { .. }
        ) {
            return err;
        }
        let dir = self.engine.artifacts.root();
        match crate::disk::free_bytes(dir) {
            Ok(free) if free < LOW_SPACE => ProviderError::no_space(
                dir,
                format!(
                    "{} left when the attempt failed ({err})",
                    crate::disk::megabytes(free)
                ),
            ),
            _ => err,
        }
    }

    /// Records the stage as failed; the halt carries the recording's own failure if
    /// that write failed too.
    async fn fail(&mut self, stage: Stage, key: &str, message: String) -> Halt {
        match self
            .finish(stage, key, StageStatus::Failed, Some(&message))
            .await
        {
            Ok(()) => Halt::failed(stage, message),
            Err(recording) => recording,
        }
    }

    async fn defer(&mut self, stage: Stage, key: &str, until: i64, reason: String) -> Halt {
        match self
            .finish(stage, key, StageStatus::Deferred, Some(&reason))
            .await
        {
            Ok(()) => Halt {
                stage,
                kind: HaltKind::Deferred { until, reason },
            },
            Err(recording) => recording,
        }
    }

    async fn permit(&self, stage: Stage) -> Result<Option<tokio::sync::SemaphorePermit<'a>>, Halt> {
        let Some(semaphore) = self.engine.limits.lane(stage.lane()) else {
            return Ok(None);
        };
        if let Ok(permit) = semaphore.try_acquire() {
            return Ok(Some(permit));
        }
        self.emit(Event::Queued {
            job: self.job.clone(),
            stage,
        });
        semaphore
            .acquire()
            .await
            .map(Some)
            .map_err(|e| Halt::failed(stage, e.to_string()))
    }

    /// A stage is about to execute: cancellation checked, transition recorded.
    async fn begin(&self, stage: Stage, key: &str) -> Result<(), Halt> {
        let e = self.engine;
        let cancelled = *e.cancel.borrow();
        if cancelled {
            return Err(Halt {
                stage,
                kind: HaltKind::Cancelled,
            });
        }
        self.fenced(stage).await?;
        let fail = |err: crate::store::StoreError| store_halt(e, stage, &err);
        e.store
            .set_status(
                &self.job.id,
                crate::store::Status::Running,
                Some(stage.as_str()),
                None,
            )
            .await
            .map_err(fail)?;
        e.store
            .stage_started(&self.job.id, stage.as_str(), key)
            .await
            .map_err(fail)?;
        self.report(stage, StageStatus::Running, None);
        Ok(())
    }

    /// Runs a stage body until it ends, the run is stopped, or the stage's time is up.
    async fn guarded<T>(
        &self,
        stage: Stage,
        body: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let mut cancel = self.engine.cancel.clone();
        let mut lost = self.lease.as_ref().map(|l| l.lost());
        let lease_lost = async {
            match lost.as_mut() {
                Some(lost) => {
                    if lost.wait_for(|l| *l).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        let limit = stage.timeout();
        tokio::select! {
            () = lease_lost => Err(ProviderError::Cancelled),
            r = tokio::time::timeout(limit, body) => r.unwrap_or_else(|_| Err(ProviderError::retryable(
                "engine",
                format!("`{}` timed out after {} s", stage.as_str(), limit.as_secs()),
            ))),
            // A stop signal that is gone (its sender dropped) is no request to stop.
            Ok(_) = cancel.wait_for(|c| *c) => Err(ProviderError::Cancelled),
        }
    }

    async fn index(&self, stage: Stage, key: &str, hit: &Hit) -> Result<(), Halt> {
        self.fenced(stage).await?;
        let main = hit.manifest.main_file();
        self.engine
            .store
            .put_artifact(&crate::store::Artifact {
                key: key.to_owned(),
                stage: stage.as_str().to_owned(),
                location: format!("{}/{key}/{}", stage.as_str(), hit.manifest.main),
                bytes: main.map_or(0, |f| i64::try_from(f.bytes).unwrap_or(i64::MAX)),
                sha256: main.map(|f| f.sha256.clone()).unwrap_or_default(),
                meta: hit.manifest.output.to_string(),
                expires_at: hit.manifest.expires_at,
            })
            .await
            .map_err(|err| store_halt(self.engine, stage, &err))
    }

    async fn end(
        &mut self,
        stage: Stage,
        key: &str,
        artifact: Option<&str>,
        cost: Option<f64>,
    ) -> Result<(), Halt> {
        self.executed += 1;
        self.record(stage, key, StageStatus::Done, artifact, None, cost)
            .await
    }

    async fn finish(
        &self,
        stage: Stage,
        key: &str,
        status: StageStatus,
        message: Option<&str>,
    ) -> Result<(), Halt> {
        self.record(stage, key, status, None, message, None).await
    }

    async fn record_cached(
        &mut self,
        stage: Stage,
        key: &str,
        artifact: Option<&str>,
    ) -> Result<(), Halt> {
        self.reused += 1;
        if self.lease.is_none() {
            return self
                .record(stage, key, StageStatus::Cached, artifact, None, None)
                .await;
        }
        // A worker runs a job in phases, each from the first stage: what an earlier phase
        // of this job did stays recorded `done`, with its own time, and is not rewritten
        // as reused.
        self.fenced(stage).await?;
        self.engine
            .store
            .stage_reused_in_phase(&self.job.id, stage.as_str(), key, artifact)
            .await
            .map_err(|err| store_halt(self.engine, stage, &err))?;
        self.report(stage, StageStatus::Cached, None);
        Ok(())
    }

    /// Records how a stage stands, in the store and as an event.
    async fn record(
        &self,
        stage: Stage,
        key: &str,
        status: StageStatus,
        artifact: Option<&str>,
        message: Option<&str>,
        cost: Option<f64>,
    ) -> Result<(), Halt> {
        self.fenced(stage).await?;
        self.engine
            .store
            .stage_finished(
                &self.job.id,
                stage.as_str(),
                key,
                status.as_str(),
                artifact,
                message,
                cost,
            )
            .await
            .map_err(|err| store_halt(self.engine, stage, &err))?;
        self.report(stage, status, message.map(str::to_owned));
        Ok(())
    }

    /// Under a lease, proves it is still held before a state write.
    async fn fenced(&self, stage: Stage) -> Result<(), Halt> {
        match &self.lease {
            Some(lease) => lease.fence(Some(stage)).await.map_err(|message| Halt {
                stage,
                kind: HaltKind::LeaseLost(message),
            }),
            None => Ok(()),
        }
    }

    /// On a worker, a stage of the other slot is handed off before it starts.
    fn in_slot(&self, stage: Stage) -> Result<(), Halt> {
        match self.slot {
            Some(slot) if !slot.runs(stage.lane()) => Err(Halt {
                stage,
                kind: HaltKind::Handoff,
            }),
            _ => Ok(()),
        }
    }

    fn report(&self, stage: Stage, status: StageStatus, detail: Option<String>) {
        self.emit(Event::Stage {
            job: self.job.clone(),
            stage,
            status,
            detail,
        });
    }

    fn emit(&self, event: Event) {
        self.engine.sink.emit(&event);
    }
}

/// Removes a failed attempt's work directory. What cannot be removed now is stale work
/// that the next opening of the artifact store removes.
async fn remove_work(work: &Path) {
    tokio::fs::remove_dir_all(work).await.ok();
}

/// The ledger entry one side effect records its progress through.
struct Ledger {
    artifacts: ArtifactStore,
    store: Store,
    key: String,
    lease: Option<Arc<dyn Lease>>,
    stage: Stage,
}

fn ledger_error(err: &ArtifactError) -> ProviderError {
    artifact_error("ledger", err)
}

#[async_trait::async_trait]
impl EffectLog for Ledger {
    async fn progress(&self) -> Result<Option<EffectProgress>, ProviderError> {
        Ok(self
            .artifacts
            .effect(&self.key)
            .await
            .map_err(|e| ledger_error(&e))?
            .and_then(|r| r.progress))
    }

    async fn record(&self, progress: &EffectProgress) -> Result<(), ProviderError> {
        if let Some(lease) = &self.lease {
            lease
                .fence(Some(self.stage))
                .await
                .map_err(|m| ProviderError::permanent("lease", m))?;
        }
        let mut record = self
            .artifacts
            .effect(&self.key)
            .await
            .map_err(|e| ledger_error(&e))?
            .ok_or_else(|| ProviderError::permanent("ledger", "no intent was recorded"))?;
        record.progress = Some(progress.clone());
        record.updated_at = crate::clock::now();
        self.artifacts
            .put_effect(&record)
            .await
            .map_err(|e| ledger_error(&e))?;
        self.store
            .record_effect(
                &record.key,
                &record.job,
                &record.kind,
                record.status.as_str(),
                progress.external_id.as_deref(),
                None,
            )
            .await
            .map_err(|e| {
                if e.is_no_space() {
                    let dir = crate::store::Store::dir_of(self.store.path());
                    ProviderError::no_space(dir, e.to_string())
                } else {
                    ProviderError::permanent("store", e.to_string())
                }
            })
    }
}
