//! `factory jobs list|show`: the store, read-only.

use std::path::Path;

use serde_json::json;

use super::escape::plain;
use super::{CmdResult, Failure, JobsCommand, Outcome, out, out_json};
use crate::store::{JobFilter, Store};

pub async fn run(
    command: JobsCommand,
    state_dir: &Path,
    store: &crate::store::StoreUrl,
    json: bool,
) -> CmdResult {
    super::warn_loose_permissions(state_dir);
    let place = super::store_place(state_dir, store);
    let Some(store) = Store::open_read_only(store).await? else {
        return match command {
            JobsCommand::List { .. } => {
                if json {
                    out_json(&json!({ "jobs": [] }));
                } else {
                    out("no jobs yet\n");
                }
                Ok(Outcome::Ok)
            }
            JobsCommand::Show { id } | JobsCommand::Retry { id } => {
                crate::store::job_prefix(&id)?;
                Err(Failure::invalid(format!("job `{id}` is not in the store"))
                    .with_hint(format!("no store at `{place}` yet; run a recipe first")))
            }
        };
    };
    match command {
        JobsCommand::List {
            recipe,
            status,
            pick,
        } => {
            let selector = pick.selector()?;
            let status = status
                .map(|s| s.parse::<crate::store::Status>())
                .transpose()
                .map_err(|e| Failure::invalid(e.to_string()))?;
            let mut jobs = store.list_jobs(&JobFilter { recipe, status }).await?;
            jobs.retain(|j| selector.matches_stored(j));
            jobs.truncate(pick.limit.unwrap_or(usize::MAX));
            if json {
                out_json(&json!({ "jobs": jobs }));
            } else if jobs.is_empty() {
                out("no jobs match\n");
            } else {
                let mut text = String::new();
                for j in &jobs {
                    text.push_str(&format!(
                        "{}  {:<12} {:<11} {} · {}{}\n",
                        j.id,
                        plain(&j.recipe),
                        j.status.as_str(),
                        plain(&j.topic),
                        plain(&j.voice),
                        j.stage
                            .as_deref()
                            .map(|s| format!("  [{s}]"))
                            .unwrap_or_default()
                            + &j.deferred_until
                                .map(|t| format!(" until {}", crate::clock::format(t)))
                                .unwrap_or_default()
                    ));
                }
                out(&text);
            }
        }
        JobsCommand::Retry { .. } => {}
        JobsCommand::Show { id } => {
            let job = store.find_job(&id).await?;
            let stages = store.stages(&job.id).await?;
            let spec: serde_json::Value =
                serde_json::from_str(&store.job_spec(&job.id).await?).unwrap_or_default();
            let script = match stages
                .iter()
                .find(|s| s.stage == "script")
                .and_then(|s| s.artifact.as_deref())
            {
                Some(key) => store
                    .artifact(key)
                    .await?
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.meta).ok()),
                None => None,
            };
            if json {
                out_json(&json!({ "job": job, "spec": spec, "stages": stages, "script": script }));
            } else {
                let mut text = format!(
                    "job {}\n  recipe   {}\n  topic    {}\n  voice    {}\n  status   {}{}\n  attempts {}\n",
                    job.id,
                    plain(&job.recipe),
                    plain(&job.topic),
                    plain(&job.voice),
                    job.status.as_str(),
                    job.stage
                        .as_deref()
                        .map(|s| format!(" (stage `{s}`)"))
                        .unwrap_or_default()
                        + &job
                            .deferred_until
                            .map(|t| format!(", until {}", crate::clock::format(t)))
                            .unwrap_or_default(),
                    job.attempts
                );
                if let Some(e) = &job.error {
                    text.push_str(&format!("  error    {}\n", plain(e)));
                }
                if !stages.is_empty() {
                    text.push_str("  stages\n");
                    for s in &stages {
                        let took = match (s.started_at, s.finished_at) {
                            (Some(a), Some(b)) => format!("{}s", b - a),
                            _ => "-".into(),
                        };
                        text.push_str(&format!(
                            "    {:<9} {:<11} attempt {} {:>6}  {}\n",
                            s.stage,
                            s.status,
                            s.attempt,
                            took,
                            s.artifact.as_deref().unwrap_or("")
                        ));
                    }
                }
                if let Some(script) = &script {
                    text.push_str("  script\n");
                    let lines = std::iter::once(&script["hook"])
                        .chain(script["sentences"].as_array().into_iter().flatten())
                        .chain(std::iter::once(&script["cta"]));
                    for line in lines.filter_map(serde_json::Value::as_str) {
                        text.push_str(&format!("    {}\n", plain(line)));
                    }
                }
                text.push_str(&format!(
                    "  spec\n{}\n",
                    indent(&serde_json::to_string_pretty(&spec).unwrap_or_default())
                ));
                out(&text);
            }
        }
    }
    Ok(Outcome::Ok)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
