//! `factory run`: every job with work to do, through the whole pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CmdResult, Failure, Outcome, load_all, out, out_json, report};
use crate::engine::progress::{Mode, Progress};
use crate::engine::{Batch, Budgets, Engine};
use crate::media::Tools;
use crate::plan;
use crate::store::Store;

pub async fn run(paths: &[PathBuf], state_dir: &Path, json: bool) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags) {
        return Ok(Outcome::Invalid);
    }
    // Missing tools end the run before any job starts.
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    super::warn_loose_permissions(state_dir);
    let store = Store::open(state_dir).await?;
    // Retention runs before any work, so nothing past its date outlives a run.
    let collected = super::gc::collect(&store, state_dir, false).await?;
    if !collected.is_empty() && !json {
        eprint!("{}", super::gc::describe(&collected, false));
    }
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
        let actions: std::collections::HashMap<String, plan::Action> =
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
    let progress = Arc::new(Progress::new(Mode::detect(json), total as u64));
    let (stop, cancel) = tokio::sync::watch::channel(false);
    let engine = Arc::new(Engine::new(
        store.clone(),
        tools.clone(),
        crate::stages::Providers::new(tools, state_dir.to_owned(), store.pool().clone()),
        state_dir.to_owned(),
        Arc::clone(&progress),
        Budgets::default(),
        cancel,
    ));
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop.send(true);
        }
    });
    let summary = engine.run(batches).await;
    watcher.abort();
    store.close().await;
    if json {
        out_json(&serde_json::json!({ "event": "summary", "summary": summary }));
    } else {
        out(&format!(
            "{} done ({} reused from cache), {} already done, {} failed{}{}; {} stage{} executed in {:.1} s\n",
            summary.done,
            summary.reused,
            summary.already_done,
            summary.failed,
            if summary.queued > 0 {
                format!(
                    ", {} queued (the TikTok inbox is full; they go out in a later run)",
                    summary.queued
                )
            } else {
                String::new()
            },
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
        ));
    }
    Ok(if summary.failed > 0 || summary.interrupted > 0 {
        Outcome::JobsFailed
    } else {
        Outcome::Ok
    })
}
