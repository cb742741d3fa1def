//! `factory doctor`: whether the services and tools the recipes need are ready, checked
//! without spending anything, through the same checks `run` makes before any job starts
//! ([`crate::preflight`]): keys, credit and quotas against the jobs still to run, voices,
//! connected TikTok accounts, the Telegram bot, the R2 bucket. Keys are never printed;
//! nothing is written.

use std::path::{Path, PathBuf};

use super::{CmdResult, Outcome, load_all, out, out_json, report};
use crate::artifacts::ArtifactStore;
use crate::media::Tools;
use crate::preflight::{self, Check, Selected, Status};
use crate::store::Store;

pub async fn run(
    paths: &[PathBuf],
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    cache_dir: &Path,
    json: bool,
    ci: bool,
) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags, ci) {
        return Ok(Outcome::Invalid);
    }
    let store = Store::open_read_only(store_url).await?;
    let artifacts = ArtifactStore::at(cache_dir);
    let records = artifacts
        .jobs()
        .await
        .map_err(|e| super::Failure::environment(e.to_string()))?;
    let mut selected = Vec::new();
    let mut recipes = Vec::with_capacity(ok.len());
    for e in &ok {
        recipes.push(e.recipe.name.clone());
        let stored = super::plan::stored(store.as_ref(), &e.recipe.name).await?;
        let stored = super::plan::with_records(stored, &records, &e.recipe.name);
        let p = crate::plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let runs: std::collections::HashSet<&str> = p
            .jobs
            .iter()
            .filter(|j| j.action.runs())
            .map(|j| j.id.as_str())
            .collect();
        for job in &e.jobs {
            let id = job.id.to_string();
            selected.push(Selected::new(
                &e.recipe,
                &job.spec,
                runs.contains(id.as_str()),
            ));
        }
    }
    let checked = preflight::check(
        &selected,
        &preflight::Environment {
            state_dir,
            store: store.as_ref(),
            artifacts: Some(&artifacts),
            unneeded: true,
            probe_pexels: true,
        },
    )
    .await;
    if let Some(s) = store {
        s.close().await;
    }
    recipes.sort();
    recipes.dedup();
    let mut checks = vec![tools(recipes)];
    checks.extend(checked.checks);
    let blocked = checks
        .iter()
        .any(|c| !c.needed_by.is_empty() && c.status.blocks());
    if json {
        out_json(&serde_json::json!({ "ok": !blocked, "checks": checks }));
    } else {
        out(&render(&checks));
    }
    Ok(if blocked {
        Outcome::Environment
    } else {
        Outcome::Ok
    })
}

fn tools(needed_by: Vec<String>) -> Check {
    let (status, detail) = match Tools::detect() {
        Ok(t) => (
            Status::Ok,
            format!(
                "`{}`, `{}`, `{}`",
                t.ffmpeg.display(),
                t.ffprobe.display(),
                t.espeak.display()
            ),
        ),
        Err(missing) => (Status::Missing, missing.to_string()),
    };
    Check {
        service: "tools",
        needed_by,
        status,
        detail,
    }
}

fn render(checks: &[Check]) -> String {
    let needed: Vec<String> = checks
        .iter()
        .map(|c| {
            if c.needed_by.is_empty() {
                "-".to_owned()
            } else {
                c.needed_by.join(", ")
            }
        })
        .collect();
    let width = needed.iter().map(String::len).max().unwrap_or(0).max(9);
    let mut out = format!(
        "{:<11} {:<width$} {:<12} detail\n",
        "service", "needed by", "status"
    );
    for (c, n) in checks.iter().zip(&needed) {
        out.push_str(&format!(
            "{:<11} {:<width$} {:<12} {}\n",
            c.service,
            n,
            c.status.as_str(),
            c.detail
        ));
    }
    out
}
