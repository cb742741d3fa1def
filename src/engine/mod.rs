//! The engine: runs jobs through a [`Pipeline`] with per-lane concurrency, the one retry
//! policy, the artifact store and the side-effect ledger, and records every transition in
//! the store. It knows nothing of particular stages: the pipeline (in `stages/`) says
//! what runs, in which order, under which key; the engine says how.

pub mod events;
mod executor;
mod flights;
mod lease;
mod retry;

pub use events::{Collect, Event, JobEnd, JobRef, Sink, StageStatus};
pub use executor::{Built, EffectKind, Effected, Halt, HaltKind, JobRun};
pub use lease::{Lease, Leg, Slot};
pub use retry::RetryPolicy;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::artifacts::{ArtifactStore, JobRecord};
use crate::expand::Job;
use crate::registry::Services;
use crate::stages::Stage;
use crate::store::{NewJob, Status, Store};
use flights::Flights;

/// Kinds of work that share a concurrency budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// LLM requests.
    Llm,
    /// Downloads and searches.
    Fetch,
    /// Speech synthesis.
    Tts,
    /// CPU-bound media work: one per free pair of cores.
    Cpu,
    /// Uploads and messages.
    Publish,
    /// Work too small to queue.
    Inline,
}

/// How many of each lane may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub llm: usize,
    pub fetch: usize,
    pub tts: usize,
    pub cpu: usize,
    pub publish: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            llm: 4,
            fetch: cores,
            tts: cores,
            cpu: (cores / 2).max(1),
            publish: 2,
        }
    }
}

struct Limits {
    llm: Semaphore,
    fetch: Semaphore,
    tts: Semaphore,
    cpu: Semaphore,
    publish: Semaphore,
}

impl Limits {
    fn new(b: Budgets) -> Self {
        Self {
            llm: Semaphore::new(b.llm.max(1)),
            fetch: Semaphore::new(b.fetch.max(1)),
            tts: Semaphore::new(b.tts.max(1)),
            cpu: Semaphore::new(b.cpu.max(1)),
            publish: Semaphore::new(b.publish.max(1)),
        }
    }

    fn lane(&self, lane: Lane) -> Option<&Semaphore> {
        match lane {
            Lane::Llm => Some(&self.llm),
            Lane::Fetch => Some(&self.fetch),
            Lane::Tts => Some(&self.tts),
            Lane::Cpu => Some(&self.cpu),
            Lane::Publish => Some(&self.publish),
            Lane::Inline => None,
        }
    }
}

/// What runs a job's stages, in order, through a [`JobRun`].
#[async_trait::async_trait]
pub trait Pipeline: Send + Sync {
    async fn run(&self, job: &mut JobRun<'_>) -> Result<(), Halt>;
}

/// Tunables that tests shorten.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub retry: RetryPolicy,
    /// A deferral shorter than this is waited out within the run; a longer one ends the
    /// job as `deferred` until its time.
    pub max_wait_in_run: Duration,
    /// Whether a finished job is recorded beside its artifacts. A preview is not: it is
    /// no version of its job that a plan or another runner should find.
    pub record_jobs: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            max_wait_in_run: Duration::from_secs(90),
            record_jobs: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Jobs finished in this run.
    pub done: usize,
    /// Of those, jobs whose every stage was reused: nothing executed.
    pub reused: usize,
    /// Jobs already done before this run (nothing looked at).
    pub already_done: usize,
    pub failed: usize,
    /// Of the failed jobs, those stopped by a full disk: the run ends as an environment
    /// failure, and they resume once space is freed.
    pub no_space: usize,
    /// Jobs waiting for a rate window or a cap (an account's pending uploads); they continue
    /// when it opens, in a later run or in `watch`.
    pub deferred: usize,
    pub interrupted: usize,
    /// Stages that executed (not reused).
    pub executed_stages: usize,
    /// Stages reused from the artifact store or the ledger.
    pub reused_stages: usize,
    /// Attempts that failed and were tried again.
    pub retries: usize,
    /// Cached artifacts that failed verification and were built again.
    pub rebuilt: usize,
    /// At-most-once effects that may or may not have happened (an answer was lost);
    /// never repeated.
    pub unconfirmed: usize,
    pub wall_seconds: f64,
}

/// A job to run, with where its recipe lives.
pub struct JobInput {
    pub recipe: String,
    pub recipe_path: PathBuf,
    pub dir: PathBuf,
    pub job: Job,
}

pub struct Engine {
    store: Store,
    artifacts: ArtifactStore,
    services: Arc<dyn Services>,
    pipeline: Arc<dyn Pipeline>,
    sink: Arc<dyn Sink>,
    settings: Settings,
    limits: Limits,
    flights: Flights,
    cancel: watch::Receiver<bool>,
}

/// What one job's run counted.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    executed: usize,
    reused: usize,
    retries: usize,
    rebuilt: usize,
    unconfirmed: usize,
    /// The job stopped because a disk is full.
    no_space: bool,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        artifacts: ArtifactStore,
        services: Arc<dyn Services>,
        pipeline: Arc<dyn Pipeline>,
        sink: Arc<dyn Sink>,
        budgets: Budgets,
        settings: Settings,
        cancel: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            artifacts,
            services,
            pipeline,
            sink,
            settings,
            limits: Limits::new(budgets),
            flights: Flights::default(),
            cancel,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Runs every job given; the caller leaves out what the plan says is done. The
    /// caller holds the state lock, so rows left `running` belong to a process that is
    /// gone and resume now.
    pub async fn run(self: &Arc<Self>, jobs: Vec<JobInput>, already_done: usize) -> Summary {
        let started = Instant::now();
        let mut summary = Summary {
            already_done,
            ..Summary::default()
        };
        if let Err(e) = self.store.interrupt_running().await {
            self.sink.emit(&Event::Note {
                text: format!("warning: cannot mark interrupted stages: {e}"),
            });
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut owners = std::collections::HashMap::new();
        for input in jobs {
            let engine = Arc::clone(self);
            let job = job_ref(&input);
            let handle = tasks.spawn(async move {
                let (end, counts, _) = engine.run_job(&input, None).await;
                (end, counts)
            });
            owners.insert(handle.id(), job);
        }
        while let Some(result) = tasks.join_next_with_id().await {
            let (end, counts) = match result {
                Ok((_, outcome)) => outcome,
                Err(e) => {
                    let job = owners.get(&e.id()).cloned();
                    (self.record_panic(job, e).await, Counts::default())
                }
            };
            summary.executed_stages += counts.executed;
            summary.reused_stages += counts.reused;
            summary.retries += counts.retries;
            summary.rebuilt += counts.rebuilt;
            summary.unconfirmed += counts.unconfirmed;
            summary.no_space += usize::from(counts.no_space);
            match end {
                JobEnd::Done => {
                    summary.done += 1;
                    if counts.executed == 0 {
                        summary.reused += 1;
                    }
                }
                JobEnd::Failed => summary.failed += 1,
                JobEnd::Deferred => summary.deferred += 1,
                JobEnd::Interrupted => summary.interrupted += 1,
            }
        }
        self.sink.finish();
        summary.wall_seconds = started.elapsed().as_secs_f64();
        summary
    }

    /// A job task panicked: its row ends `failed` at the stage it was in, with the
    /// panic's message, instead of staying `running`.
    async fn record_panic(&self, job: Option<JobRef>, error: tokio::task::JoinError) -> JobEnd {
        let message = if error.is_panic() {
            let payload = error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            format!("internal error (a panic): {text}")
        } else {
            "the job's task was cancelled".to_owned()
        };
        let Some(job) = job else {
            return JobEnd::Failed;
        };
        let stage = self
            .store
            .find_job(&job.id)
            .await
            .ok()
            .and_then(|j| j.stage)
            .and_then(|s| s.parse::<Stage>().ok());
        let detail = match self
            .store
            .set_status(
                &job.id,
                Status::Failed,
                stage.map(Stage::as_str),
                Some(&message),
            )
            .await
        {
            Ok(()) => message,
            Err(e) => format!("{message}; recording it failed too: {e}"),
        };
        self.sink.emit(&Event::Job {
            job,
            status: JobEnd::Failed,
            stage,
            detail: Some(detail),
        });
        JobEnd::Failed
    }

    /// Runs one job; under a lease (a worker's), every state write is fenced by it and
    /// only the stages of the worker's slot execute. Returns the halt that stopped it.
    async fn run_job(
        &self,
        input: &JobInput,
        leased: Option<(&Arc<dyn Lease>, Slot)>,
    ) -> (JobEnd, Counts, Option<Halt>) {
        let job = job_ref(input);
        let id = input.job.id.to_string();
        let spec_json = serde_json::to_string(&input.job.spec).unwrap_or_default();
        let new = NewJob {
            id: &id,
            recipe: &input.recipe,
            recipe_path: &input.recipe_path.to_string_lossy(),
            cell: &input.job.cell,
            spec: &spec_json,
            topic: &input.job.spec.topic,
            voice: &input.job.spec.voice_name,
            status: Status::Pending,
        };
        let lease = leased.map(|(l, _)| Arc::clone(l));
        if let Some(lease) = &lease
            && let Err(message) = lease.fence(None).await
        {
            let halt = Halt {
                stage: crate::stages::Stage::ALL[0],
                kind: HaltKind::LeaseLost(message),
            };
            return (JobEnd::Interrupted, Counts::default(), Some(halt));
        }
        if let Err(e) = self.store.upsert_job(&new).await {
            self.sink.emit(&Event::Job {
                job,
                status: JobEnd::Failed,
                stage: None,
                detail: Some(format!("cannot record the job: {e}")),
            });
            return (JobEnd::Failed, Counts::default(), None);
        }
        let mut run = JobRun::new(
            self,
            input,
            job.clone(),
            lease.clone(),
            leased.map(|(_, s)| s),
        );
        let result = self.pipeline.run(&mut run).await;
        let mut counts = run.counts();
        let stages = run.keys().to_vec();
        let mut stopped = None;
        let (end, stage, detail) = match result {
            Ok(()) => match self
                .finish_done(input, &id, &spec_json, stages, lease.as_ref())
                .await
            {
                Ok(()) => (JobEnd::Done, None, None),
                Err(
                    halt @ Halt {
                        kind: HaltKind::LeaseLost(_),
                        ..
                    },
                ) => {
                    stopped = Some(halt);
                    (JobEnd::Interrupted, None, None)
                }
                Err(Halt { kind, .. }) => {
                    let message = match kind {
                        HaltKind::Failed(m) | HaltKind::NoSpace(m) => m,
                        other => format!("{other:?}"),
                    };
                    (JobEnd::Failed, None, Some(message))
                }
            },
            Err(halt) if matches!(halt.kind, HaltKind::LeaseLost(_)) => {
                // The lease is another worker's now: nothing more is written for this job.
                let stage = halt.stage;
                stopped = Some(halt);
                (JobEnd::Interrupted, Some(stage), None)
            }
            Err(halt) => {
                counts.no_space = matches!(halt.kind, HaltKind::NoSpace(_));
                let (status, end, message, until) = match &halt.kind {
                    HaltKind::Failed(m) | HaltKind::NoSpace(m) => {
                        (Status::Failed, JobEnd::Failed, Some(m.clone()), None)
                    }
                    HaltKind::Deferred { until, reason } => (
                        Status::Deferred,
                        JobEnd::Deferred,
                        Some(reason.clone()),
                        Some(*until),
                    ),
                    HaltKind::Cancelled | HaltKind::LeaseLost(_) => {
                        (Status::Interrupted, JobEnd::Interrupted, None, None)
                    }
                    HaltKind::Handoff => (Status::Pending, JobEnd::Interrupted, None, None),
                };
                let fenced = match &lease {
                    Some(lease) => lease.fence(Some(halt.stage)).await,
                    None => Ok(()),
                };
                if let Err(message) = fenced {
                    let stage = halt.stage;
                    stopped = Some(Halt {
                        stage,
                        kind: HaltKind::LeaseLost(message),
                    });
                    (JobEnd::Interrupted, Some(stage), None)
                } else {
                    let recorded = self
                        .store
                        .set_status_until(
                            &id,
                            status,
                            Some(halt.stage.as_str()),
                            message.as_deref(),
                            until,
                        )
                        .await;
                    let detail = match (recorded, message) {
                        (Ok(()), m) => m,
                        (Err(e), m) => Some(format!(
                            "{}; recording it failed: {e}",
                            m.unwrap_or_else(|| end.as_str().to_owned())
                        )),
                    };
                    let detail = match (&halt.kind, detail) {
                        (HaltKind::Deferred { until, .. }, Some(d)) => {
                            Some(format!("{d} (until {})", crate::clock::format(*until)))
                        }
                        (_, d) => d,
                    };
                    let stage = halt.stage;
                    stopped = Some(halt);
                    (end, Some(stage), detail)
                }
            }
        };
        let handed_off = matches!(
            stopped,
            Some(Halt {
                kind: HaltKind::Handoff,
                ..
            })
        );
        if !handed_off {
            self.sink.emit(&Event::Job {
                job,
                status: end,
                stage,
                detail: match &stopped {
                    Some(Halt {
                        kind: HaltKind::LeaseLost(m),
                        ..
                    }) => Some(m.clone()),
                    _ => detail,
                },
            });
        }
        (end, counts, stopped)
    }

    /// Runs one job under `lease` as far as `slot` allows: the stages of the other slot
    /// are handed off (the worker queues the job for them), and a lease lost stops it.
    pub async fn run_leased(&self, input: &JobInput, lease: Arc<dyn Lease>, slot: Slot) -> Leg {
        let (end, counts, halt) = self.run_job(input, Some((&lease, slot))).await;
        Leg::from_run(end, counts.executed, halt)
    }

    /// Records a finished job: in the store, and beside its artifacts, so a runner with
    /// only the artifact store knows it is done.
    async fn finish_done(
        &self,
        input: &JobInput,
        id: &str,
        spec_json: &str,
        stages: Vec<(String, String)>,
        lease: Option<&Arc<dyn Lease>>,
    ) -> Result<(), Halt> {
        let last = *crate::stages::Stage::ALL
            .last()
            .expect("a pipeline has stages");
        let failed = |message: String| Halt::failed(last, message);
        if let Some(lease) = lease {
            lease.fence(None).await.map_err(|m| Halt {
                stage: last,
                kind: HaltKind::LeaseLost(m),
            })?;
        }
        if self.settings.record_jobs {
            self.put_record(input, id, spec_json, stages)
                .await
                .map_err(failed)?;
        }
        self.store
            .set_status(id, Status::Done, None, None)
            .await
            .map_err(|e| failed(format!("cannot record the finished job: {e}")))
    }

    async fn put_record(
        &self,
        input: &JobInput,
        id: &str,
        spec_json: &str,
        stages: Vec<(String, String)>,
    ) -> Result<(), String> {
        self.artifacts
            .put_job(&JobRecord {
                id: id.to_owned(),
                recipe: input.recipe.clone(),
                cell: input.job.cell.clone(),
                topic: input.job.spec.topic.clone(),
                voice: input.job.spec.voice_name.clone(),
                spec: spec_json.to_owned(),
                stages,
                finished_at: crate::clock::now(),
            })
            .await
            .map_err(|e| format!("cannot record the finished job: {e}"))
    }
}

fn job_ref(input: &JobInput) -> JobRef {
    JobRef {
        recipe: input.recipe.clone(),
        id: input.job.id.to_string(),
        topic: input.job.spec.topic.clone(),
        voice: input.job.spec.voice_name.clone(),
    }
}
