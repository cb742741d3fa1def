//! `factory purge`: delete jobs and everything made for them, on request.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::{CmdResult, Failure, Outcome, out, out_json};
use crate::privacy::paths::Places;
use crate::privacy::purge::{self, Scope};
use crate::providers::Host;
use crate::providers::r2::{R2, R2Config};
use crate::store::Store;

pub async fn run(
    scope: Scope,
    yes: bool,
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    remote_artifacts: Option<&crate::artifacts::s3::S3Url>,
    cache_dir: Option<&Path>,
    json: bool,
) -> CmdResult {
    let Some(store) = Store::open_read_only(store_url).await? else {
        out("nothing to purge: no store yet\n");
        return Ok(Outcome::Ok);
    };
    let ids = store.job_ids(&scope).await?;
    // What only these jobs made, for the shared bucket once the purge removed it here.
    let mut entries = Vec::new();
    if remote_artifacts.is_some() {
        for id in &ids {
            entries.extend(store.artifacts_only_of_job(id).await?);
        }
    }
    store.close().await;
    if ids.is_empty() && scope != Scope::All {
        return Err(Failure::invalid(match &scope {
            Scope::Job(id) => format!("job `{id}` is not in the store"),
            Scope::Recipe(name) => format!("recipe `{name}` has no jobs in the store"),
            Scope::All => String::new(),
        }));
    }
    if !yes && !confirm(ids.len())? {
        out("nothing deleted\n");
        return Ok(Outcome::Ok);
    }
    // R2 is needed only when a hosted copy is an object there; without settings, such a
    // copy is reported instead of silently left behind.
    let remote = R2Config::from_env().and_then(R2::new).ok();
    let store = Store::open(store_url).await?;
    let purged = purge::purge(
        &store,
        &Places::new(state_dir, cache_dir),
        &ids,
        remote.as_ref().map(|r| r as &dyn Host),
    )
    .await
    .map_err(|e| Failure::environment(e.to_string()));
    store.close().await;
    let purged = purged?;
    // The finished-job records and the ledger beside the artifacts are job metadata too.
    // With a shared bucket, its records of these jobs go too.
    let artifacts = super::run::with_remote(
        crate::artifacts::ArtifactStore::at(
            &cache_dir.map_or_else(|| state_dir.join("cache"), Path::to_path_buf),
        ),
        remote_artifacts,
    )?;
    for id in &ids {
        artifacts
            .forget_job(id)
            .await
            .map_err(|e| Failure::environment(e.to_string()))?;
    }
    for entry in &entries {
        artifacts
            .forget_remote_entry(&entry.stage, &entry.key)
            .await
            .map_err(|e| Failure::environment(e.to_string()))?;
    }
    if json {
        out_json(&json!({ "event": "purged", "purged": purged }));
    } else {
        out(&format!(
            "deleted {} job{}, {} cached artifact{}, {} hosted cop{} and {} local draft{}; the database is compacted\n",
            purged.jobs,
            plural(purged.jobs, "s"),
            purged.artifacts,
            plural(purged.artifacts, "s"),
            purged.hosted,
            if purged.hosted == 1 { "y" } else { "ies" },
            purged.drafts,
            plural(purged.drafts, "s"),
        ));
        out(&super::gc::kept_lines(&purged.kept));
    }
    Ok(Outcome::Ok)
}

fn plural(n: usize, suffix: &'static str) -> &'static str {
    if n == 1 { "" } else { suffix }
}

/// Asks on the terminal; without one, refuses rather than deleting unasked.
fn confirm(jobs: usize) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::invalid(
            "purge deletes data and needs confirmation, but there is no terminal to ask",
        )
        .with_hint("pass `--yes` to delete without asking"));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "delete {jobs} job{} with their videos, hosted copies and history? [y/N] ",
        plural(jobs, "s")
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::environment(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
