//! `factory run`: every job with work to do, through the whole pipeline. [`execute`] is
//! the run path `factory watch` shares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use super::ci::{JobReport, Reports};
use super::progress::{Mode, Progress};
use super::{CmdResult, Expanded, Failure, Outcome, load_all, out, report};
use crate::artifacts::ArtifactStore;
use crate::engine::{Budgets, Engine, JobInput, Settings, Sink, Summary};
use crate::lock::StateLock;
use crate::media::Tools;
use crate::plan;
use crate::preflight::{self, Selected};
use crate::registry::Registry;
use crate::store::Store;

/// How many past executions of each stage the ETA averages.
const STAGE_HISTORY: i64 = 50;

/// The global flags a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    /// The job store (`--store`); by default the SQLite file in `state_dir`.
    pub store: crate::store::StoreUrl,
    /// The shared artifact store behind the cache (`--artifacts s3://…`).
    pub remote: Option<crate::artifacts::s3::S3Url>,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
    pub ci: bool,
    /// Wait for another command holding the state lock instead of stopping.
    pub wait: bool,
    /// Which jobs run: `--select`, `--shard`, `--limit`.
    pub picked: Picked,
}

/// Which of the recipes' jobs a run takes: those the selector matches, of them the
/// shard's slice, and of those with work to do at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct Picked {
    pub selector: plan::Selector,
    pub shard: Option<plan::Shard>,
    pub limit: Option<usize>,
}

impl Picked {
    fn takes(&self, recipe: &str, job: &crate::expand::Job) -> bool {
        let id = job.id.to_string();
        self.selector.matches(&plan::Facets {
            recipe,
            topic: &job.spec.topic,
            voice: &job.spec.voice_name,
            template: &job.spec.template,
            id: &id,
        }) && self.shard.is_none_or(|s| s.holds(&id))
    }
}

impl Options {
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("cache"))
    }
}

pub async fn run(paths: &[PathBuf], opts: &Options, reports: &Reports) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags, opts.ci) {
        return Ok(Outcome::Invalid);
    }
    let (cancel, watcher) = stop_on_signals();
    let result = execute(ok, opts, cancel).await;
    watcher.abort();
    let (summary, jobs) = result?;
    reports.write(&summary, &jobs)?;
    if opts.ci {
        out(&super::ci::failed_annotations(&jobs));
    }
    Ok(finish(&summary, opts))
}

/// A stop signal that turns true on Ctrl-C or SIGTERM (CI cancellation, `systemctl
/// stop`, Kubernetes), and the task that waits for it: running stages are recorded
/// interrupted, children stopped, temp work removed, the summary printed.
pub(super) fn stop_on_signals() -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (stop, cancel) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        let terminate = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        let interrupt = async {
            // A handler that cannot be installed is no request to stop.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
        stop.send_replace(true);
    });
    (cancel, watcher)
}

/// Prints the summary (one JSON line with `--json`) and maps it to the exit outcome.
fn finish(summary: &Summary, opts: &Options) -> Outcome {
    if opts.json {
        // One line, like the progress events before it: the output stays JSON lines.
        out(&format!(
            "{}\n",
            serde_json::json!({ "event": "summary", "summary": summary })
        ));
    } else {
        out(&summary_line(summary));
    }
    if summary.no_space > 0 {
        // A full disk is the machine's, not the jobs': exit as an environment failure.
        Outcome::Environment
    } else if summary.failed > 0 || summary.interrupted > 0 {
        Outcome::JobsFailed
    } else {
        Outcome::Ok
    }
}

/// Plans and runs the jobs of loaded recipes until done or `cancel` turns true; how
/// every job of those recipes stands afterwards.
pub async fn execute(
    ok: Vec<Expanded>,
    opts: &Options,
    cancel: watch::Receiver<bool>,
) -> Result<(Summary, Vec<JobReport>), Failure> {
    execute_only(ok, opts, cancel, None).await
}

/// Like [`execute`]; with `only`, runs just that job (for `jobs retry`).
async fn execute_only(
    ok: Vec<Expanded>,
    opts: &Options,
    cancel: watch::Receiver<bool>,
    only: Option<&str>,
) -> Result<(Summary, Vec<JobReport>), Failure> {
    // Missing tools end the run before any job starts.
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    let _locks = lock_state(opts, "run").await?;
    super::warn_loose_permissions(&opts.state_dir);
    let store = Store::open(&opts.store).await?;
    let cache_dir = opts.cache_dir();
    let mut artifacts = ArtifactStore::open(&cache_dir)
        .and_then(|a| a.remove_stale_work().map(|_| a))
        .map_err(|e| Failure::environment(e.to_string()))?;
    artifacts = with_remote(artifacts, opts.remote.as_ref())?;
    super::warn_lax_bucket(&artifacts).await?;
    // A kept artifact store over a fresh database: the index is rebuilt from it.
    let records = artifacts
        .jobs()
        .await
        .map_err(|e| Failure::environment(e.to_string()))?;
    let paths: HashMap<String, String> = ok
        .iter()
        .map(|e| (e.recipe.name.clone(), e.recipe.path.display().to_string()))
        .collect();
    store
        .import_done(&records, |recipe| paths.get(recipe).cloned())
        .await?;
    // Retention runs before any work, so nothing past its date outlives a run.
    let collected = super::gc::collect_in(
        &store,
        &crate::privacy::paths::Places::new(&opts.state_dir, opts.cache_dir.as_deref()),
        false,
    )
    .await?;
    if !collected.is_empty() && !opts.json {
        eprint!("{}", super::gc::describe(&collected, false));
    }
    let mut inputs = Vec::new();
    let mut already_done = 0;
    let mut selected = Vec::new();
    let mut notes = Vec::new();
    for e in &ok {
        let days = e.recipe.publish.retention_days;
        if days > 14 {
            notes.push(format!(
                "warning: recipe `{}` keeps videos {days} days (`publish.allow_longer_retention`), longer than the privacy policy's 14",
                e.recipe.name
            ));
        }
    }
    let mut over_limit = 0;
    let mut wanted: Vec<Wanted> = Vec::new();
    for mut e in ok {
        if let Some(id) = only {
            e.jobs.retain(|j| j.id.to_string() == id);
        }
        let name = e.recipe.name.clone();
        e.jobs.retain(|j| opts.picked.takes(&name, j));
        let stored = store.jobs_of_recipe(&e.recipe.name).await?;
        let p = plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let actions: HashMap<String, plan::Action> =
            p.jobs.iter().map(|j| (j.id.clone(), j.action)).collect();
        for job in e.jobs {
            let action = actions
                .get(&job.id.to_string())
                .copied()
                .unwrap_or(plan::Action::New);
            // A retried job runs even when the plan would leave it alone.
            let (file, line) = cell_at(&e.recipe, &job);
            let mut want = Wanted {
                recipe: e.recipe.name.clone(),
                id: job.id.to_string(),
                voice: job.spec.voice_name.clone(),
                file,
                line,
                already_done: false,
            };
            if !action.runs() && only.is_none() {
                already_done += 1;
                want.already_done = true;
                wanted.push(want);
                continue;
            }
            if opts.picked.limit.is_some_and(|limit| inputs.len() >= limit) {
                over_limit += 1;
                continue;
            }
            wanted.push(want);
            selected.push(Selected::new(&e.recipe, &job.spec, true));
            inputs.push(JobInput {
                recipe: e.recipe.name.clone(),
                recipe_path: e.recipe.path.clone(),
                dir: e.recipe.dir.clone(),
                job,
            });
        }
    }
    // Every key, account and quota the jobs need, before any of them spends anything.
    let checked = preflight::check(
        &selected,
        &preflight::Environment {
            state_dir: &opts.state_dir,
            store: Some(&store),
            artifacts: Some(&artifacts),
            unneeded: false,
            probe_pexels: false,
        },
    )
    .await;
    for warning in checked.warnings() {
        eprintln!("warning: {}: {}", warning.service, warning.message);
    }
    let blocking = checked.blocking();
    if !blocking.is_empty() {
        let mut message = format!(
            "{} problem{} found before any job started:",
            blocking.len(),
            plural(blocking.len())
        );
        for p in blocking {
            message.push_str(&format!("\n  {}: {}", p.service, p.message));
        }
        return Err(Failure::environment(message)
            .with_hint("fix them and run again; `factory doctor` shows every check"));
    }
    let progress = Arc::new(Progress::with_history(
        Mode::detect(opts.json, opts.ci),
        inputs.len() as u64,
        &store.stage_durations(STAGE_HISTORY).await?,
    ));
    if over_limit > 0 {
        notes.push(format!(
            "{over_limit} more job{} with work left for a later run (`--limit {}`)",
            plural(over_limit),
            opts.picked.limit.unwrap_or_default()
        ));
    }
    for note in notes {
        progress.note(&note);
    }
    let versions = tools.versions().await;
    let ran: Vec<(PathBuf, crate::expand::Job)> = inputs
        .iter()
        .map(|i| (i.dir.clone(), i.job.clone()))
        .collect();
    let services = Arc::new(Registry::new(
        tools,
        versions.clone(),
        opts.state_dir.clone(),
        store.clone(),
    ));
    let engine = Arc::new(Engine::new(
        store.clone(),
        artifacts,
        services,
        Arc::new(crate::stages::Pipeline),
        Arc::clone(&progress) as Arc<dyn Sink>,
        Budgets::default(),
        Settings::default(),
        cancel,
    ));
    let summary = engine.run(inputs, already_done).await;
    record_inputs(&store, engine.artifacts(), versions, &ran).await?;
    // A delivered replacement retires the draft of the version it replaces.
    let places = crate::privacy::paths::Places::new(&opts.state_dir, opts.cache_dir.as_deref());
    let old = super::gc::remove_superseded(&store, &places).await?;
    if !old.drafts.is_empty() && !opts.json {
        progress.note(super::gc::describe_superseded(&old, false).trim_end());
    }
    let jobs = job_reports(&store, &wanted).await;
    store.close().await;
    Ok((summary, jobs?))
}

/// Records the named inputs of every stage key the jobs now hold, for `factory why`:
/// predicted the way `plan` predicts them, kept only where they reproduce the key the
/// stage ran under.
async fn record_inputs(
    store: &Store,
    artifacts: &ArtifactStore,
    versions: crate::keys::ToolVersions,
    ran: &[(PathBuf, crate::expand::Job)],
) -> Result<(), Failure> {
    let forecaster = super::plan::Forecaster::with_versions(artifacts, versions);
    for (dir, job) in ran {
        let id = job.id.to_string();
        for (stage, inputs) in forecaster.inputs(dir, job).await {
            let Some(inputs) = inputs else { continue };
            let json = serde_json::to_string(&inputs).unwrap_or_default();
            store
                .record_inputs(&id, stage.as_str(), &inputs.key(), &json)
                .await?;
        }
    }
    Ok(())
}

/// The state lock, and the artifact store's when it lives elsewhere (a CI cache): two
/// processes never run jobs over the same state or the same ledger. With `--wait` (and
/// in `watch`), waits for the holder, saying so once.
pub async fn lock_state(opts: &Options, command: &str) -> Result<Vec<StateLock>, Failure> {
    let mut dirs = vec![opts.state_dir.clone()];
    let cache = opts.cache_dir();
    if !cache.starts_with(&opts.state_dir) {
        dirs.push(cache);
    }
    let mut locks = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let mut told = false;
        loop {
            match StateLock::acquire(&dir, command) {
                Ok(lock) => {
                    locks.push(lock);
                    break;
                }
                Err(e @ crate::lock::LockError::Held { .. }) if opts.wait => {
                    if !told {
                        eprintln!("waiting: {e}");
                        told = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e @ crate::lock::LockError::Held { .. }) => {
                    return Err(Failure::environment(e.to_string())
                        .with_hint("wait for it to finish, or pass `--wait` to queue behind it"));
                }
                Err(e) => return Err(Failure::environment(e.to_string())),
            }
        }
    }
    Ok(locks)
}

/// A job the run's reports cover: those it ran and those done before it.
struct Wanted {
    recipe: String,
    id: String,
    voice: String,
    file: Option<String>,
    line: Option<u32>,
    already_done: bool,
}

/// Where a job's matrix cell is written: its topic's entry (or the topics file's key).
fn cell_at(
    recipe: &crate::recipe::Resolved,
    job: &crate::expand::Job,
) -> (Option<String>, Option<u32>) {
    match recipe.topics.iter().find(|t| t.text == job.spec.topic) {
        Some(t) => {
            let d = recipe.diag(crate::recipe::Origin::Recipe, &t.pointer, "job", "");
            (Some(d.path.display().to_string()), Some(d.line))
        }
        None => (Some(recipe.path.display().to_string()), None),
    }
}

async fn job_reports(store: &Store, wanted: &[Wanted]) -> Result<Vec<JobReport>, Failure> {
    let mut by_recipe: HashMap<&str, Vec<crate::store::StoredJob>> = HashMap::new();
    let mut reports = Vec::with_capacity(wanted.len());
    for w in wanted {
        let (recipe, id) = (&w.recipe, &w.id);
        if !by_recipe.contains_key(recipe.as_str()) {
            by_recipe.insert(recipe, store.jobs_of_recipe(recipe).await?);
        }
        let Some(job) = by_recipe
            .get(recipe.as_str())
            .and_then(|jobs| jobs.iter().find(|j| &j.id == id))
        else {
            continue;
        };
        let seconds = store
            .stages(id)
            .await?
            .iter()
            .filter_map(|s| Some(s.finished_at? - s.started_at?))
            .sum();
        reports.push(JobReport {
            recipe: recipe.clone(),
            id: id.clone(),
            topic: job.topic.clone(),
            voice: w.voice.clone(),
            status: job.status.as_str().to_owned(),
            already_done: w.already_done,
            file: w.file.clone(),
            line: w.line,
            stage: job.stage.clone(),
            error: job.error.clone(),
            seconds,
        });
    }
    Ok(reports)
}

pub fn summary_line(summary: &Summary) -> String {
    let mut parts = vec![format!(
        "{} done ({} reused from cache), {} already done, {} failed",
        summary.done, summary.reused, summary.already_done, summary.failed
    )];
    if summary.no_space > 0 {
        parts.push(format!(
            "{} of them for lack of disk space (they resume once space is freed)",
            summary.no_space
        ));
    }
    if summary.deferred > 0 {
        parts.push(format!(
            "{} deferred (waiting for a rate window or the TikTok inbox; they continue in a later run)",
            summary.deferred
        ));
    }
    if summary.interrupted > 0 {
        parts.push(format!(
            "{} interrupted (they resume next run)",
            summary.interrupted
        ));
    }
    if summary.unconfirmed > 0 {
        parts.push(format!(
            "{} notice{} unconfirmed (an answer was lost; not sent again)",
            summary.unconfirmed,
            plural(summary.unconfirmed)
        ));
    }
    let mut stages = format!(
        "{} stage{} executed in {:.1} s, {} reused",
        summary.executed_stages,
        plural(summary.executed_stages),
        summary.wall_seconds,
        summary.reused_stages
    );
    if summary.retries > 0 {
        stages.push_str(&format!(
            ", {} retr{}",
            summary.retries,
            if summary.retries == 1 { "y" } else { "ies" }
        ));
    }
    if summary.rebuilt > 0 {
        stages.push_str(&format!(
            ", {} rebuilt after failing verification",
            summary.rebuilt
        ));
    }
    format!("{}; {stages}\n", parts.join(", "))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `artifacts` with the shared S3 store behind it, when `--artifacts` names one.
pub fn with_remote(
    artifacts: ArtifactStore,
    url: Option<&crate::artifacts::s3::S3Url>,
) -> Result<ArtifactStore, Failure> {
    let Some(url) = url else {
        return Ok(artifacts);
    };
    let remote = crate::artifacts::s3::Remote::from_env(url.clone())
        .map_err(|e| Failure::environment(e.to_string()))?;
    Ok(artifacts.with_remote(remote))
}

/// `factory jobs retry ID`: runs one job again from where it stopped; finished stages are
/// reused from the cache. A done job whose video expired renders again from its kept
/// script and inputs; a draft already delivered is never sent twice.
pub async fn retry(id: &str, opts: &Options) -> CmdResult {
    let Some(store) = Store::open_read_only(&opts.store).await? else {
        return Err(
            Failure::invalid(format!("job `{id}` is not in the store")).with_hint(format!(
                "no store at `{}` yet; run a recipe first",
                super::store_place(&opts.state_dir, &opts.store)
            )),
        );
    };
    let stored = store.find_job(id).await?;
    let path = store.recipe_path(&stored.recipe).await?.ok_or_else(|| {
        Failure::invalid(format!(
            "the store does not know where recipe `{}` lives",
            stored.recipe
        ))
    })?;
    store.close().await;
    let (ok, diags) = load_all(&[PathBuf::from(&path)]);
    if report(&diags, opts.ci) {
        return Ok(Outcome::Invalid);
    }
    let ok: Vec<Expanded> = ok
        .into_iter()
        .filter(|e| e.recipe.name == stored.recipe)
        .collect();
    if !ok
        .iter()
        .any(|e| e.jobs.iter().any(|j| j.id.to_string() == stored.id))
    {
        return Err(Failure::invalid(format!(
            "job `{}` is no longer in recipe `{}` (`{}`)",
            stored.id,
            stored.recipe,
            Path::new(&path).display()
        ))
        .with_hint("the recipe changed since; `factory plan` shows what replaced it"));
    }
    let (cancel, watcher) = stop_on_signals();
    let result = execute_only(ok, opts, cancel, Some(&stored.id)).await;
    watcher.abort();
    let (summary, _) = result?;
    Ok(finish(&summary, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_makes_the_run_an_environment_failure() {
        let opts = Options {
            state_dir: PathBuf::from("state"),
            store: crate::store::StoreUrl::in_state_dir(Path::new("state")),
            remote: None,
            cache_dir: None,
            json: false,
            ci: false,
            wait: false,
            picked: Picked::default(),
        };
        let failed = Summary {
            failed: 2,
            ..Summary::default()
        };
        assert_eq!(finish(&failed, &opts) as u8, Outcome::JobsFailed as u8);
        let full = Summary {
            failed: 2,
            no_space: 1,
            ..Summary::default()
        };
        assert_eq!(finish(&full, &opts) as u8, Outcome::Environment as u8);
        assert!(
            summary_line(&full).contains("1 of them for lack of disk space"),
            "{}",
            summary_line(&full)
        );
    }
}
