//! `factory run`: every job with work to do, through the whole pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CmdResult, Failure, Outcome, load_all, out, report};
use crate::engine::progress::{Mode, Progress};
use crate::engine::{Batch, Budgets, Engine};
use crate::media::Tools;
use crate::plan;
use crate::providers::elevenlabs::{ElevenLabs, ElevenLabsVoice, PlanTier};
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
    let mut characters = 0;
    for e in ok {
        let stored = store.jobs_of_recipe(&e.recipe.name).await?;
        let p = plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let running = super::plan::running(&p, &e.jobs);
        let cached = super::plan::cached(&store, &running).await?;
        characters += plan::spend(&running, &cached, &plan::Prices::default())
            .spend
            .tts_characters;
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
    check_characters(characters).await?;
    execute(store, tools, batches, total, state_dir, json).await
}

/// Runs prepared batches with progress, Ctrl-C handling and the final summary.
pub async fn execute(
    store: Store,
    tools: Tools,
    batches: Vec<Batch>,
    total: usize,
    state_dir: &Path,
    json: bool,
) -> CmdResult {
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
        // One line, like the progress events before it: the output stays JSON lines.
        out(&format!(
            "{}\n",
            serde_json::json!({ "event": "summary", "summary": summary })
        ));
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

/// `factory jobs retry ID`: runs one job again from where it stopped; finished stages are
/// reused from the cache.
pub async fn retry(id: &str, state_dir: &Path, json: bool) -> CmdResult {
    let Some(store) = Store::open_read_only(state_dir).await? else {
        return Err(
            Failure::invalid(format!("job `{id}` is not in the store")).with_hint(format!(
                "no store at `{}` yet; run a recipe first",
                state_dir.display()
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
    if report(&diags) {
        return Ok(Outcome::Invalid);
    }
    let Some(e) = ok.into_iter().find(|e| e.recipe.name == stored.recipe) else {
        return Err(Failure::invalid(format!(
            "recipe `{}` is no longer at `{path}`",
            stored.recipe
        )));
    };
    let Some(job) = e.jobs.into_iter().find(|j| j.id.to_string() == stored.id) else {
        return Err(Failure::invalid(format!(
            "job `{}` is no longer in recipe `{}`",
            stored.id, stored.recipe
        ))
        .with_hint("the recipe changed since; `factory plan` shows what replaced it"));
    };
    if stored.status == crate::store::Status::Done {
        out(&format!(
            "job {} is already done; nothing to retry\n",
            stored.id
        ));
        return Ok(Outcome::Ok);
    }
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    let store = Store::open(state_dir).await?;
    let batch = Batch {
        recipe: e.recipe.name.clone(),
        recipe_path: e.recipe.path.clone(),
        dir: e.recipe.dir.clone(),
        jobs: vec![(job, plan::Action::Failed)],
    };
    execute(store, tools, vec![batch], 1, state_dir, json).await
}

/// Fails before any job starts when the ElevenLabs plan has fewer characters left than the
/// batch is estimated to need. Without a key there is nothing to ask; the jobs report it.
async fn check_characters(needed: u64) -> Result<(), Failure> {
    if needed == 0 {
        return Ok(());
    }
    let permits = PlanTier::Free.permits();
    let Ok(client) = ElevenLabs::from_env(ElevenLabsVoice::new(""), permits) else {
        return Ok(());
    };
    match client.subscription().await {
        Ok(sub) if sub.remaining < needed => Err(Failure::environment(format!(
            "the ElevenLabs plan has {} characters left but this run needs about {needed}",
            sub.remaining
        ))
        .with_hint(
            "wait for the quota reset, upgrade the plan, or run fewer jobs; `factory plan` shows the estimate",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.is_retryable() => {
            // A passing outage should not block a run whose voices may be cached by then.
            eprintln!("warning: cannot check the ElevenLabs character quota: {e}");
            Ok(())
        }
        Err(e) => Err(Failure::environment(format!(
            "cannot check the ElevenLabs character quota: {e}"
        ))),
    }
}
