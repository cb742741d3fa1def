//! A worker on the shared queue: the engine in its leased mode. The queue library
//! (apalis-postgres) claims tasks with `FOR UPDATE SKIP LOCKED`, retries failed ones and
//! re-queues the tasks of a worker whose heartbeat stopped; each task is one phase of one
//! job (its network stages, or its render), run through [`Engine::run_leased`] under a
//! lease whose fencing token guards every state write.
//!
//! Capacity is two library workers per process: one on the render queue with `renders`
//! slots, one on the network queue with `network` slots. A slot claims one task only when
//! it is free (a concurrency limit in front of the handler, and a claim of one task at a
//! time). Claims poll at a fixed interval (`FACTORY_QUEUE_POLL_MS`): the library's own
//! poller doubles its wait after every empty poll up to five minutes, so a slot idle for
//! a while would leave new, re-queued or deferred work waiting for minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apalis_core::backend::Backend;
use apalis_core::error::BoxDynError;
use apalis_core::layers::Service;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use apalis_postgres::{PgTask, PostgresStorage};
use futures_core::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use tokio::sync::watch;

use crate::engine::{Engine, JobInput, Lease, Leg, Slot};
use crate::stages::Stage;
use crate::store::queue::{Acquired, Phase, PhaseEnd, QueueError, QueueStore, QueueTask};

/// How long leases last and how often they are renewed; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timing {
    /// A lease not renewed for this long ends, and another worker may take the job.
    pub lease: Duration,
    /// How often a held lease is renewed (and the library's worker heartbeat beats).
    pub heartbeat: Duration,
    /// How long an idle slot waits between two claims that found nothing.
    pub poll: Duration,
}

impl Timing {
    /// From `FACTORY_LEASE_MS`, `FACTORY_HEARTBEAT_MS` and `FACTORY_QUEUE_POLL_MS`; 30 s,
    /// 5 s and 500 ms by default.
    pub fn from_env() -> Result<Self, String> {
        let read = |name: &str, default: u64| -> Result<Duration, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        format!("`{name}` must be a positive number of milliseconds, not `{v}`")
                    }),
                Err(_) => Ok(Duration::from_millis(default)),
            }
        };
        let timing = Self {
            lease: read("FACTORY_LEASE_MS", 30_000)?,
            heartbeat: read("FACTORY_HEARTBEAT_MS", 5_000)?,
            poll: read("FACTORY_QUEUE_POLL_MS", 500)?,
        };
        if timing.heartbeat * 2 > timing.lease {
            return Err(format!(
                "the heartbeat ({} ms) must be at most half the lease ({} ms), or a lease ends between two renewals",
                timing.heartbeat.as_millis(),
                timing.lease.as_millis()
            ));
        }
        Ok(timing)
    }

    /// A worker whose heartbeat stopped this long ago is dead: the library re-queues its
    /// tasks. Never before its leases could have ended.
    fn orphaned_after(&self) -> Duration {
        self.lease + self.heartbeat
    }
}

/// Finds the job a task names: the worker loads recipes the way `run` does.
pub trait Jobs: Send + Sync {
    fn load(&self, task: &QueueTask) -> Result<JobInput, String>;
}

/// One worker process.
pub struct Worker {
    pub name: String,
    pub renders: usize,
    pub network: usize,
    pub timing: Timing,
}

/// What the two slots' handlers share.
struct Shared {
    name: String,
    queue: QueueStore,
    engine: Arc<Engine>,
    jobs: Arc<dyn Jobs>,
    timing: Timing,
    notes: Arc<dyn Fn(String) + Send + Sync>,
}

impl Worker {
    /// Runs until `stop` turns true: claims stop, the stages running are interrupted
    /// (by the engine's own stop signal) and their jobs handed back to the queue.
    pub async fn run(
        &self,
        queue: QueueStore,
        engine: Arc<Engine>,
        jobs: Arc<dyn Jobs>,
        notes: Arc<dyn Fn(String) + Send + Sync>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            queue: queue.clone(),
            engine,
            jobs,
            timing: self.timing.clone(),
            notes,
        });
        // A slot whose library worker stops on an error (a database that did not answer
        // its heartbeat in time) starts again: a worker runs until it is told to stop.
        let slot = |phase: Phase, slots: usize| {
            let shared = Arc::clone(&shared);
            let queue = queue.clone();
            let timing = self.timing.clone();
            let name = format!("{}/{}", self.name, phase.as_str());
            let mut stop = stop.clone();
            async move {
                loop {
                    let config =
                        QueueStore::config(phase, timing.heartbeat, timing.orphaned_after());
                    let storage = Polled {
                        library: PostgresStorage::<QueueTask>::new_with_config(
                            queue.pool(),
                            &config,
                        ),
                        queue: queue.clone(),
                        phase,
                        every: timing.poll,
                    };
                    let handler = Handler {
                        shared: Arc::clone(&shared),
                        phase,
                    };
                    let mut until = stop.clone();
                    let ran = WorkerBuilder::new(&name)
                        .backend(storage)
                        .layer(tower::limit::ConcurrencyLimitLayer::new(slots.max(1)))
                        .build(handler)
                        .run_until(async move {
                            until.wait_for(|s| *s).await.ok();
                            Ok::<(), std::io::Error>(())
                        })
                        .await;
                    if *stop.borrow() {
                        return;
                    }
                    if let Err(e) = ran {
                        (shared.notes)(format!(
                            "the {} slots stopped ({e}); starting them again",
                            phase.as_str()
                        ));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        tokio::join!(
            slot(Phase::Render, self.renders),
            slot(Phase::Network, self.network)
        );
        Ok(())
    }
}

/// The library's storage with claims of our own: its heartbeat (which re-queues the tasks
/// of dead workers) and its middleware (which marks a task running and acknowledges how it
/// ended) as they are, and a claim of one task whenever a slot is free, every `every`
/// while none is due.
struct Polled {
    library: PostgresStorage<QueueTask>,
    queue: QueueStore,
    phase: Phase,
    every: Duration,
}

type Library = PostgresStorage<QueueTask>;

impl Backend for Polled {
    type Args = QueueTask;
    type IdType = <Library as Backend>::IdType;
    type Context = <Library as Backend>::Context;
    type Error = QueueError;
    type Stream = BoxStream<'static, Result<Option<PgTask<QueueTask>>, QueueError>>;
    type Beat = BoxStream<'static, Result<(), QueueError>>;
    type Layer = <Library as Backend>::Layer;

    fn heartbeat(&self, worker: &WorkerContext) -> Self::Beat {
        self.library
            .heartbeat(worker)
            .map_err(QueueError::from)
            .boxed()
    }

    fn middleware(&self) -> Self::Layer {
        self.library.middleware()
    }

    fn poll(self, worker: &WorkerContext) -> Self::Stream {
        let name = worker.name().to_owned();
        let Self {
            queue,
            phase,
            every,
            ..
        } = self;
        // The first item registers the worker (its claims name it); then one claim each
        // time the worker asks for a task, which it does only with a slot free.
        futures_util::stream::unfold(false, move |registered| {
            let (queue, name) = (queue.clone(), name.clone());
            async move {
                if !registered {
                    let done = queue.register_worker(&name, phase).await;
                    return Some((done.map(|()| None), true));
                }
                loop {
                    match queue.claim(&name, phase).await {
                        Ok(Some(task)) => return Some((Ok(Some(task)), true)),
                        Ok(None) => tokio::time::sleep(every).await,
                        Err(e) => {
                            tokio::time::sleep(every).await;
                            return Some((Err(e), true));
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

/// Stops a lease's heartbeat however its phase ends, a dropped one included.
struct Beating(tokio::task::JoinHandle<()>);

impl Drop for Beating {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
    phase: Phase,
}

impl Service<PgTask<QueueTask>> for Handler {
    type Response = String;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<String, BoxDynError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: PgTask<QueueTask>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let phase = self.phase;
        let id = task.parts.task_id.as_ref().map(ToString::to_string);
        let attempt = task.parts.attempt.current();
        let args = task.args;
        Box::pin(async move {
            match handle(&shared, phase, &args).await {
                Ok(done) => Ok(done),
                Err(e) => {
                    // The library retries the task; not at once, so a store that is down
                    // for a moment is not hammered.
                    let wait = backoff(attempt);
                    if let Some(id) = id {
                        shared.queue.retry_after(&id, wait).await.ok();
                    }
                    (shared.notes)(format!(
                        "job `{}`: {e}; tried again in {} s",
                        args.job,
                        wait.as_secs()
                    ));
                    Err(e.into())
                }
            }
        })
    }
}

/// Exponential, capped: 1, 2, 4 … 60 s.
fn backoff(attempt: usize) -> Duration {
    let exp = u32::try_from(attempt.min(6)).unwrap_or(6);
    Duration::from_secs((1u64 << exp).min(60))
}

/// One claimed task: lease, run, record, hand on.
async fn handle(shared: &Shared, phase: Phase, task: &QueueTask) -> Result<String, String> {
    let q = &shared.queue;
    let started = std::time::Instant::now();
    let token = match q
        .acquire(task, &shared.name, shared.timing.lease)
        .await
        .map_err(|e| e.to_string())?
    {
        Acquired::Held(token) => token,
        Acquired::Busy => {
            return Err(format!(
                "job `{}` is leased by a live worker; waiting for its lease to end",
                task.job
            ));
        }
        Acquired::Stale(why) => {
            (shared.notes)(format!(
                "job `{}`: a {} task left over ({why}); dropped",
                task.job,
                phase.as_str()
            ));
            return Ok("left over".to_owned());
        }
    };
    let acquired = started.elapsed();
    let lease = Arc::new(PgLease::new(q.clone(), task.job.clone(), token));
    let beat = Beating(tokio::spawn(heartbeat(
        Arc::clone(&lease),
        shared.timing.clone(),
    )));
    let result = run_phase(shared, phase, task, token, &lease).await;
    drop(beat);
    if let Ok(done) = &result {
        let (fenced, writes) = lease.spent();
        (shared.notes)(format!(
            "job `{}` {} phase: {done} (queue: {:.1} ms in {} writes, attempt {token})",
            task.job,
            phase.as_str(),
            (acquired + fenced + lease.finished()).as_secs_f64() * 1000.0,
            writes + 2,
        ));
    }
    result
}

async fn run_phase(
    shared: &Shared,
    phase: Phase,
    task: &QueueTask,
    token: i64,
    lease: &Arc<PgLease>,
) -> Result<String, String> {
    let end = match shared.jobs.load(task) {
        Err(message) => PhaseEnd::Failed(message),
        Ok(input) => {
            let slot = match phase {
                Phase::Render => Slot::Render,
                Phase::Network => Slot::Network,
            };
            let leg = shared
                .engine
                .run_leased(&input, Arc::clone(lease) as Arc<dyn Lease>, slot)
                .await;
            match leg {
                Leg::Done { .. } => PhaseEnd::Done,
                Leg::Failed { message, .. } => PhaseEnd::Failed(message),
                Leg::Handoff { stage, .. } => PhaseEnd::Next(phase_of(stage)),
                Leg::Deferred { until, reason } => PhaseEnd::Deferred {
                    phase,
                    until,
                    why: reason,
                },
                Leg::Interrupted => PhaseEnd::Next(phase),
                Leg::LeaseLost(message) => {
                    (shared.notes)(format!("job `{}`: {message}", task.job));
                    return Ok("lease lost".to_owned());
                }
            }
        }
    };
    let finishing = std::time::Instant::now();
    let finished = q_finish(&shared.queue, task, token, &end).await;
    *lease.finish.lock().unwrap_or_else(PoisonError::into_inner) = finishing.elapsed();
    match finished {
        Ok(()) => Ok(describe(&end)),
        Err(e @ QueueError::LeaseLost { .. }) => {
            (shared.notes)(format!("job `{}`: {e}", task.job));
            Ok("lease lost".to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn q_finish(
    queue: &QueueStore,
    task: &QueueTask,
    token: i64,
    end: &PhaseEnd,
) -> Result<(), QueueError> {
    queue.finish(task, token, end).await
}

fn describe(end: &PhaseEnd) -> String {
    match end {
        PhaseEnd::Done => "done".to_owned(),
        PhaseEnd::Failed(e) => format!("failed: {e}"),
        PhaseEnd::Next(p) => format!("continues on a {} slot", p.as_str()),
        PhaseEnd::Deferred { until, why, .. } => format!("deferred until {until}: {why}"),
    }
}

/// The slot a stage runs on.
pub fn phase_of(stage: Stage) -> Phase {
    if Slot::Render.runs(stage.lane()) {
        Phase::Render
    } else {
        Phase::Network
    }
}

/// Renews the lease until it is lost or the phase ends. A renewal that fails for the
/// database's sake is tried again until the lease would have ended anyway.
async fn heartbeat(lease: Arc<PgLease>, timing: Timing) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(timing.heartbeat).await;
        match lease
            .queue
            .renew(&lease.job, lease.token, timing.lease)
            .await
        {
            Ok(()) => last_ok = tokio::time::Instant::now(),
            Err(QueueError::LeaseLost { .. }) => {
                lease.lost.send_replace(true);
                return;
            }
            Err(_) if last_ok.elapsed() >= timing.lease => {
                lease.lost.send_replace(true);
                return;
            }
            Err(_) => {}
        }
    }
}

/// A lease held on the queue's database.
pub struct PgLease {
    queue: QueueStore,
    job: String,
    token: i64,
    lost: watch::Sender<bool>,
    /// The last stage recorded, so a write at the same stage checks without rewriting it.
    stage: Mutex<Option<Stage>>,
    /// Time spent in fenced writes, and how many: the coordination a job costs.
    spent: Mutex<(Duration, u32)>,
    finish: Mutex<Duration>,
}

impl PgLease {
    pub fn new(queue: QueueStore, job: String, token: i64) -> Self {
        Self {
            queue,
            job,
            token,
            lost: watch::channel(false).0,
            stage: Mutex::new(None),
            spent: Mutex::new((Duration::ZERO, 0)),
            finish: Mutex::new(Duration::ZERO),
        }
    }

    /// Time spent in fenced writes so far, and how many there were.
    pub fn spent(&self) -> (Duration, u32) {
        *self.spent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self) -> Duration {
        *self.finish.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Lease for PgLease {
    async fn fence(&self, stage: Option<Stage>) -> Result<(), String> {
        let changed = {
            let mut last = self.stage.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = stage.is_some() && *last != stage;
            if changed {
                *last = stage;
            }
            changed
        };
        let name = if changed {
            stage.map(Stage::as_str)
        } else {
            None
        };
        let started = std::time::Instant::now();
        let fenced = self.queue.fence(&self.job, self.token, name).await;
        {
            let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
            spent.0 += started.elapsed();
            spent.1 += 1;
        }
        match fenced {
            Ok(()) => Ok(()),
            Err(e) => {
                if matches!(e, QueueError::LeaseLost { .. }) {
                    self.lost.send_replace(true);
                }
                Err(e.to_string())
            }
        }
    }

    fn lost(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }
}

/// Loaded recipes by path, for [`Jobs`] implementations that load from files.
#[derive(Default)]
pub struct Loaded<T> {
    by_path: Mutex<HashMap<String, Arc<T>>>,
}

impl<T> Loaded<T> {
    /// The value for `path`, made by `load` the first time (and again with `fresh`).
    pub fn get(
        &self,
        path: &str,
        fresh: bool,
        load: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let mut map = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        if !fresh && let Some(v) = map.get(path) {
            return Ok(Arc::clone(v));
        }
        let value = Arc::new(load()?);
        map.insert(path.to_owned(), Arc::clone(&value));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_run_on_render_slots_and_everything_else_on_network_slots() {
        assert_eq!(phase_of(Stage::Render), Phase::Render);
        for stage in Stage::ALL.iter().filter(|s| **s != Stage::Render) {
            assert_eq!(phase_of(*stage), Phase::Network, "{stage:?}");
        }
    }

    #[test]
    fn a_lease_must_outlive_two_heartbeats() {
        let timing = Timing {
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            poll: Duration::from_millis(500),
        };
        assert_eq!(timing.orphaned_after(), Duration::from_secs(12));
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }
}
