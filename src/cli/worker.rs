//! `factory worker` (the engine on the shared queue until stopped) and `factory run
//! --enqueue` (put the selected jobs on it and return).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::progress::{Mode, Progress};
use super::run::{Options, stop_on_signals};
use super::{CmdResult, Expanded, Failure, Outcome, load_all, out, report};
use crate::artifacts::ArtifactStore;
use crate::engine::{Budgets, Engine, JobInput, RetryPolicy, Settings, Sink};
use crate::media::Tools;
use crate::plan;
use crate::queue::{Jobs, Loaded, Timing, Worker};
use crate::registry::Registry;
use crate::store::Store;
use crate::store::queue::{PgBudgets, Phase, QueueStore, QueueTask};

/// The shared queue's database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QueueArgs {
    /// The shared queue: a Postgres URL (`postgres://user:password@host/db`).
    #[arg(long, env = "FACTORY_QUEUE", value_name = "URL")]
    pub queue: Option<String>,
}

impl QueueArgs {
    pub async fn connect(&self, connections: u32) -> Result<QueueStore, Failure> {
        let Some(url) = self.queue.as_deref() else {
            return Err(
                Failure::invalid("the shared queue needs a Postgres database").with_hint(
                    "pass `--queue postgres://user:password@host/db` or set `FACTORY_QUEUE`",
                ),
            );
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Failure::invalid(format!(
                "`{}` is not a Postgres URL",
                crate::store::queue::redact(url)
            ))
            .with_hint("the queue URL starts with `postgres://`"));
        }
        QueueStore::connect(url, connections)
            .await
            .map_err(|e| Failure::environment(e.to_string()))
    }
}

/// `factory run --enqueue`: every job with work to do goes on the queue; nothing runs here.
pub async fn enqueue(paths: &[PathBuf], opts: &Options, queue: &QueueArgs) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags, opts.ci) {
        return Ok(Outcome::Invalid);
    }
    let queue = queue.connect(2).await?;
    let store = Store::open_read_only(&opts.store).await?;
    let mut tasks = Vec::new();
    let mut already_done = 0;
    for e in &ok {
        let stored = super::plan::stored(store.as_ref(), &e.recipe.name).await?;
        let p = plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let runs: HashMap<String, bool> = p
            .jobs
            .iter()
            .map(|j| (j.id.clone(), j.action.runs()))
            .collect();
        let path = std::fs::canonicalize(&e.recipe.path).unwrap_or_else(|_| e.recipe.path.clone());
        for job in &e.jobs {
            let id = job.id.to_string();
            if !runs.get(&id).copied().unwrap_or(true) {
                already_done += 1;
                continue;
            }
            tasks.push(QueueTask {
                job: id,
                recipe: e.recipe.name.clone(),
                recipe_path: path.display().to_string(),
                topic: job.spec.topic.clone(),
                phase: Phase::Network,
            });
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    let added = queue
        .enqueue(&tasks)
        .await
        .map_err(|e| Failure::environment(e.to_string()))?;
    queue.close().await;
    let summary = serde_json::json!({
        "enqueued": added,
        "already_queued": tasks.len() - added,
        "already_done": already_done,
    });
    if opts.json {
        out(&format!("{summary}\n"));
    } else {
        out(&format!(
            "{added} job{} enqueued, {} already on the queue, {already_done} already done\n",
            if added == 1 { "" } else { "s" },
            tasks.len() - added
        ));
    }
    Ok(Outcome::Ok)
}

/// What `factory worker` is told.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub renders: Option<usize>,
    pub network: usize,
    pub name: Option<String>,
}

/// `factory worker`: claims and runs jobs from the shared queue until SIGTERM or Ctrl-C.
/// It shares the artifact store and the state directory with the other workers of its
/// machine and takes no state lock: each job's lease is its lock.
pub async fn run(args: &WorkerArgs, opts: &Options, queue: &QueueArgs) -> CmdResult {
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    let timing = Timing::from_env().map_err(Failure::invalid)?;
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let renders = args.renders.unwrap_or((cores / 2).max(1)).max(1);
    let network = args.network.max(1);
    // Each slot's fenced writes, each lease's heartbeat, the library's polling and
    // heartbeats: twice the slots and a few more, so a slow database queues no one.
    let connections = u32::try_from((renders + network) * 2)
        .unwrap_or(u32::MAX)
        .saturating_add(6);
    let queue = queue.connect(connections).await?;
    let store = Store::open(&opts.store).await?;
    // No stale-work sweep here: the work folders belong to the other workers' stages.
    // With `--artifacts s3://…` the bucket is behind the local cache, as for `run`: the
    // phases of one job run on any machine, and the effect ledger (what was sent) is
    // shared with them.
    let artifacts =
        ArtifactStore::open(&opts.cache_dir()).map_err(|e| Failure::environment(e.to_string()))?;
    let artifacts = super::run::with_remote(artifacts, opts.remote.as_ref())?;
    super::warn_lax_bucket(&artifacts).await?;
    let name = args.name.clone().unwrap_or_else(default_name);
    let progress = Arc::new(Progress::with_history(
        if opts.json { Mode::Json } else { Mode::Plain },
        0,
        &std::collections::HashMap::new(),
    ));
    let versions = tools.versions().await;
    let services = Arc::new(
        Registry::new(tools, versions, opts.state_dir.clone(), store.clone())
            .with_budgets(Arc::new(PgBudgets::new(&queue))),
    );
    let (cancel, watcher) = stop_on_signals();
    let engine = Arc::new(Engine::new(
        store.clone(),
        artifacts,
        services,
        Arc::new(crate::stages::Pipeline),
        Arc::clone(&progress) as Arc<dyn Sink>,
        Budgets {
            llm: network,
            fetch: network,
            tts: network,
            cpu: renders,
            publish: network,
        },
        // An empty budget never keeps the lease waiting: the job goes back on the queue
        // for the time the budget refills.
        Settings {
            retry: RetryPolicy::default(),
            max_wait_in_run: Duration::ZERO,
            record_jobs: true,
        },
        cancel.clone(),
    ));
    progress.note(&format!(
        "worker `{name}`: {renders} render slot{}, {network} network slot{}; lease {} ms, heartbeat {} ms",
        if renders == 1 { "" } else { "s" },
        if network == 1 { "" } else { "s" },
        timing.lease.as_millis(),
        timing.heartbeat.as_millis(),
    ));
    let worker = Worker {
        name,
        renders,
        network,
        timing,
    };
    let notes = {
        let progress = Arc::clone(&progress);
        Arc::new(move |text: String| progress.note(&text)) as Arc<dyn Fn(String) + Send + Sync>
    };
    let result = worker
        .run(
            queue.clone(),
            engine,
            Arc::new(RecipeJobs::default()),
            notes,
            cancel,
        )
        .await;
    watcher.abort();
    progress.finish();
    queue.close().await;
    store.close().await;
    result.map_err(Failure::environment)?;
    Ok(Outcome::Ok)
}

/// `host-pid`: unique among live workers, readable in `factory status`.
fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Jobs loaded from the recipe files the tasks name.
#[derive(Default)]
struct RecipeJobs {
    loaded: Loaded<Vec<Expanded>>,
}

impl Jobs for RecipeJobs {
    fn load(&self, task: &QueueTask) -> Result<JobInput, String> {
        let load = || {
            let (ok, diags) = load_all(&[PathBuf::from(&task.recipe_path)]);
            if let Some(d) = diags.first() {
                return Err(format!(
                    "recipe `{}` no longer loads: {}",
                    task.recipe_path, d.message
                ));
            }
            Ok(ok)
        };
        // A job the cached load does not know may come from an edit: load once more.
        for fresh in [false, true] {
            let expanded = self.loaded.get(&task.recipe_path, fresh, load)?;
            let found = expanded.iter().find_map(|e| {
                e.jobs
                    .iter()
                    .find(|j| j.id.to_string() == task.job)
                    .map(|job| JobInput {
                        recipe: e.recipe.name.clone(),
                        recipe_path: e.recipe.path.clone(),
                        dir: e.recipe.dir.clone(),
                        job: job.clone(),
                    })
            });
            if let Some(input) = found {
                return Ok(input);
            }
        }
        Err(format!(
            "job `{}` is no longer in recipe `{}` (`{}`)",
            task.job, task.recipe, task.recipe_path
        ))
    }
}
