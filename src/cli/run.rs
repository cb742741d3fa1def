//! `factory run`: every job with work to do, through the whole pipeline. [`execute`] is
//! the run path `factory watch` shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::ci::{JobReport, Reports};
use super::{CmdResult, Expanded, Failure, Outcome, load_all, out, out_json, report};
use crate::engine::cache::Cache;
use crate::engine::progress::{Mode, Progress};
use crate::engine::{Batch, Budgets, Engine, Summary};
use crate::media::Tools;
use crate::plan;
use crate::store::Store;

/// The global flags a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
    pub ci: bool,
}

impl Options {
    fn cache_dir(&self) -> PathBuf {
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
    let (stop, cancel) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop.send(true);
        }
    });
    let result = execute(ok, opts, cancel).await;
    watcher.abort();
    let (summary, jobs) = result?;
    reports.write(&summary, &jobs)?;
    if opts.json {
        out_json(&serde_json::json!({ "event": "summary", "summary": summary }));
    } else {
        out(&summary_line(&summary));
    }
    Ok(if summary.failed > 0 || summary.interrupted > 0 {
        Outcome::JobsFailed
    } else {
        Outcome::Ok
    })
}

/// Plans and runs the jobs of loaded recipes until done or `cancel` turns true; how
/// every job of those recipes stands afterwards.
pub async fn execute(
    ok: Vec<Expanded>,
    opts: &Options,
    cancel: watch::Receiver<bool>,
) -> Result<(Summary, Vec<JobReport>), Failure> {
    // Missing tools end the run before any job starts.
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    let store = Store::open(&opts.state_dir).await?;
    let mut batches = Vec::with_capacity(ok.len());
    let mut total = 0;
    for e in ok {
        let stored = store.jobs_of_recipe(&e.recipe.name).await?;
        let p = plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let actions: HashMap<String, plan::Action> =
            p.jobs.iter().map(|j| (j.id.clone(), j.action)).collect();
        let jobs: Vec<_> = e
            .jobs
            .into_iter()
            .map(|j| {
                let action = actions
                    .get(&j.id.to_string())
                    .copied()
                    .unwrap_or(plan::Action::New);
                (j, action)
            })
            .collect();
        total += jobs.len();
        batches.push(Batch {
            recipe: e.recipe.name.clone(),
            recipe_path: e.recipe.path.clone(),
            dir: e.recipe.dir.clone(),
            jobs,
        });
    }
    let wanted: Vec<(String, String)> = batches
        .iter()
        .flat_map(|b| {
            b.jobs
                .iter()
                .map(|(j, _)| (b.recipe.clone(), j.id.to_string()))
        })
        .collect();
    let progress = Arc::new(Progress::new(
        Mode::detect(opts.json, opts.ci),
        total as u64,
    ));
    let mut engine = Engine::new(
        store.clone(),
        tools.clone(),
        crate::stages::Providers::new(tools, opts.state_dir.clone(), store.pool().clone()),
        opts.state_dir.clone(),
        Arc::clone(&progress),
        Budgets::default(),
        cancel,
    );
    engine.cache = Cache::new(opts.cache_dir());
    let summary = Arc::new(engine).run(batches).await;
    let jobs = job_reports(&store, &wanted).await;
    store.close().await;
    Ok((summary, jobs?))
}

async fn job_reports(
    store: &Store,
    wanted: &[(String, String)],
) -> Result<Vec<JobReport>, Failure> {
    let mut by_recipe: HashMap<&str, Vec<crate::store::StoredJob>> = HashMap::new();
    let mut reports = Vec::with_capacity(wanted.len());
    for (recipe, id) in wanted {
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
            status: job.status.as_str().to_owned(),
            stage: job.stage.clone(),
            error: job.error.clone(),
            seconds,
        });
    }
    Ok(reports)
}

pub fn summary_line(summary: &Summary) -> String {
    format!(
        "{} done ({} reused from cache), {} already done, {} failed{}; {} stage{} executed in {:.1} s\n",
        summary.done,
        summary.reused,
        summary.already_done,
        summary.failed,
        if summary.interrupted > 0 {
            format!(
                ", {} interrupted (they resume next run)",
                summary.interrupted
            )
        } else {
            String::new()
        },
        summary.executed_stages,
        if summary.executed_stages == 1 {
            ""
        } else {
            "s"
        },
        summary.wall_seconds
    )
}
