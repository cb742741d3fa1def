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
            let status = status.map(crate::store::Status::from);
            let mut jobs = store.list_jobs(&JobFilter { recipe, status }).await?;
            jobs.retain(|j| selector.matches_stored(j));
            jobs.truncate(pick.limit.unwrap_or(usize::MAX));
            if json {
                out_json(&json!({ "jobs": jobs }));
            } else if jobs.is_empty() {
                out("no jobs match\n");
            } else {
                out(&list_text(&jobs));
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
            let delivered = Delivered::of(&store, &job.id).await?;
            if json {
                out_json(
                    &json!({ "job": job, "spec": spec, "stages": stages, "script": script, "draft": delivered.draft, "hosted": delivered.hosted }),
                );
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
                text.push_str(&format!(
                    "  created  {}\n",
                    crate::clock::format(job.created_at)
                ));
                text.push_str(&format!(
                    "  updated  {}\n",
                    crate::clock::format(job.updated_at)
                ));
                if let Some(t) = job.finished_at {
                    text.push_str(&format!("  finished {}\n", crate::clock::format(t)));
                }
                if let Some(draft) = &delivered.draft {
                    text.push_str(&format!("  draft    {}\n", plain(draft)));
                }
                if let Some(hosted) = &delivered.hosted {
                    text.push_str(&format!("  hosted   {}\n", plain(hosted)));
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

/// `--status`: the job statuses, as completions offer them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Pending,
    Running,
    Deferred,
    Done,
    Failed,
    Interrupted,
}

impl From<StatusArg> for crate::store::Status {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => Self::Pending,
            StatusArg::Running => Self::Running,
            StatusArg::Deferred => Self::Deferred,
            StatusArg::Done => Self::Done,
            StatusArg::Failed => Self::Failed,
            StatusArg::Interrupted => Self::Interrupted,
        }
    }
}

/// The header and one line per job: id, recipe, status, when it last changed, topic and
/// voice, and the stage it stopped at or waits for.
fn list_text(jobs: &[crate::store::StoredJob]) -> String {
    let width = jobs
        .iter()
        .map(|j| plain(&j.recipe).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(6, 24);
    let mut text = format!(
        "{:<16}  {:<width$}  {:<11}  {:<16}  TOPIC · VOICE\n",
        "ID", "RECIPE", "STATUS", "UPDATED (UTC)"
    );
    for j in jobs {
        let updated = crate::clock::format(j.updated_at);
        text.push_str(&format!(
            "{}  {:<width$}  {:<11}  {:<16}  {} · {}{}{}\n",
            j.id,
            plain(&j.recipe),
            j.status.as_str(),
            updated.trim_end_matches(" UTC"),
            plain(&j.topic),
            plain(&j.voice),
            j.stage
                .as_deref()
                .map(|s| format!("  [{s}]"))
                .unwrap_or_default(),
            j.deferred_until
                .map(|t| format!(" until {}", crate::clock::format(t)))
                .unwrap_or_default()
        ));
    }
    text
}

/// Where a job's video went: the draft (a path, or TikTok's publish id) and the hosted
/// copy's link.
#[derive(Default)]
struct Delivered {
    draft: Option<String>,
    hosted: Option<String>,
}

impl Delivered {
    async fn of(store: &Store, job: &str) -> Result<Self, Failure> {
        let mut found = Self::default();
        for e in store.effects_of_job(job).await? {
            if e.status != crate::store::EffectStatus::Done.as_str() {
                continue;
            }
            let detail: serde_json::Value = e
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            match e.kind.as_str() {
                "draft" => {
                    found.draft = e
                        .external_id
                        .or_else(|| detail["external_id"].as_str().map(str::to_owned));
                }
                "host" => {
                    found.hosted = detail["url"]
                        .as_str()
                        .or_else(|| detail["location"].as_str())
                        .map(str::to_owned);
                }
                _ => {}
            }
        }
        Ok(found)
    }
}

/// Why `jobs retry` has nothing to do for a job, if it has not: the job is done, its
/// video is still kept, and its local draft (when it has one) is whole. A done job whose
/// video expired renders again, and a changed or broken draft is delivered again.
pub async fn nothing_to_retry(
    store_url: &crate::store::StoreUrl,
    id: &str,
) -> Result<Option<String>, Failure> {
    let Some(store) = Store::open_read_only(store_url).await? else {
        return Ok(None);
    };
    let found = nothing_to_retry_in(&store, id).await;
    store.close().await;
    found
}

async fn nothing_to_retry_in(store: &Store, id: &str) -> Result<Option<String>, Failure> {
    let job = store.find_job(id).await?;
    if job.status != crate::store::Status::Done {
        return Ok(None);
    }
    let render = store
        .stages(&job.id)
        .await?
        .into_iter()
        .find(|s| s.stage == "render")
        .and_then(|s| s.artifact);
    let Some(render) = (match render {
        Some(key) => store.artifact(&key).await?,
        None => None,
    }) else {
        return Ok(None);
    };
    if let Some(draft) = Delivered::of(store, &job.id).await?.draft {
        let video = Path::new(&draft);
        // Gone is not broken: a draft removed by its owner is not delivered again.
        if video.is_file() && !whole(video, &render.sha256, &job.id) {
            return Ok(None);
        }
    }
    Ok(Some(format!(
        "job {} is done; nothing to retry{}\n",
        job.id,
        job.finished_at
            .map(|t| format!(" (finished {})", crate::clock::format(t)))
            .unwrap_or_default()
    )))
}

/// Whether a local draft holds its render's bytes and a sidecar about its job.
fn whole(video: &Path, sha256: &str, job: &str) -> bool {
    use sha2::{Digest, Sha256};
    let Ok(mut file) = std::fs::File::open(video) else {
        return false;
    };
    let mut hasher = Sha256::new();
    if std::io::copy(&mut file, &mut hasher).is_err() {
        return false;
    }
    let sidecar_ok = std::fs::read(video.with_extension("json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["job_id"] == job);
    sidecar_ok && hex::encode(hasher.finalize()) == sha256
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
