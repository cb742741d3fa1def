//! `factory gc`: delete rendered videos, their inputs and hosted copies past retention.

use std::path::Path;

use serde_json::json;

use super::{CmdResult, Failure, Outcome, out, out_json};
use crate::privacy::paths::Places;
use crate::privacy::retention::{self, GcReport};
use crate::providers::Host;
use crate::providers::r2::{R2, R2Config};
use crate::store::Store;

pub async fn run(
    dry_run: bool,
    superseded: bool,
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    remote_artifacts: Option<&crate::artifacts::s3::S3Url>,
    cache_dir: Option<&Path>,
    json: bool,
) -> CmdResult {
    if !Store::exists(store_url)? {
        out("nothing to collect: no store yet\n");
        return Ok(Outcome::Ok);
    }
    let store = Store::open(store_url).await?;
    let places = Places::new(state_dir, cache_dir);
    let report = collect_in(&store, &places, dry_run).await;
    let old = match (&report, superseded) {
        (Ok(_), true) => Some(
            retention::superseded(&store, &places, dry_run)
                .await
                .map_err(|e| Failure::environment(e.to_string())),
        ),
        _ => None,
    };
    store.close().await;
    let report = report?;
    let old = old.transpose()?;
    // What retention removed here goes from the shared bucket too.
    if !dry_run && remote_artifacts.is_some() {
        let cache = cache_dir.map_or_else(|| state_dir.join("cache"), Path::to_path_buf);
        let shared = super::run::with_remote(
            crate::artifacts::ArtifactStore::at(&cache),
            remote_artifacts,
        )?;
        for entry in &report.artifacts {
            if let Some((stage, key)) = entry.split_once('/') {
                shared
                    .forget_remote_entry(stage, key)
                    .await
                    .map_err(|e| Failure::environment(e.to_string()))?;
            }
        }
    }
    // Work folders a killed run left behind; `gc` holds the state lock, so none is live.
    let cache = cache_dir.map_or_else(|| state_dir.join("cache"), Path::to_path_buf);
    let stale = if dry_run {
        0
    } else {
        crate::artifacts::ArtifactStore::at(&cache)
            .remove_stale_work()
            .map_err(|e| Failure::environment(e.to_string()))?
    };
    if json {
        let mut value = json!({ "event": "gc", "dry_run": dry_run, "report": report, "stale_work_removed": stale });
        if let Some(old) = &old {
            value["superseded"] = json!(old);
        }
        out_json(&value);
    } else {
        out(&describe(&report, dry_run));
        if let Some(old) = &old {
            out(&describe_superseded(old, dry_run));
        }
        if stale > 0 {
            out(&format!(
                "removed {stale} work folder{} a stopped run left in the cache\n",
                if stale == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(Outcome::Ok)
}

/// One collection with the configured R2 host, if any, deleting inside `places` only;
/// what `run` calls at start too.
pub async fn collect_in(
    store: &Store,
    places: &Places,
    dry_run: bool,
) -> Result<GcReport, Failure> {
    let remote = R2Config::from_env().and_then(R2::new).ok();
    retention::collect(
        store,
        places,
        retention::now(),
        dry_run,
        remote.as_ref().map(|r| r as &dyn Host),
    )
    .await
    .map_err(|e| Failure::environment(e.to_string()))
}

/// After a run: the drafts of older versions of the jobs it delivered go.
pub async fn remove_superseded(store: &Store, places: &Places) -> Result<GcReport, Failure> {
    retention::superseded(store, places, false)
        .await
        .map_err(|e| Failure::environment(e.to_string()))
}

/// What [`retention::superseded`] removed, one line per draft.
pub fn describe_superseded(report: &GcReport, dry_run: bool) -> String {
    if report.drafts.is_empty() {
        return if dry_run {
            "no superseded draft to remove\n".to_owned()
        } else {
            "no superseded draft was left\n".to_owned()
        };
    }
    let mut text = format!(
        "{} {} draft{} of older versions of {} job{}: a newer version was delivered\n",
        if dry_run { "would remove" } else { "removed" },
        report.drafts.len(),
        if report.drafts.len() == 1 { "" } else { "s" },
        report.jobs.len(),
        if report.jobs.len() == 1 { "" } else { "s" },
    );
    for draft in &report.drafts {
        text.push_str(&format!("  {draft}\n"));
    }
    text.push_str(&kept_lines(&report.kept));
    text
}

pub fn describe(report: &GcReport, dry_run: bool) -> String {
    if report.is_empty() {
        return "nothing has expired\n".to_owned();
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut text = format!(
        "{verb} {} cached file set{}, {} hosted cop{} and {} local draft{} of {} job{} past retention\n",
        report.artifacts.len(),
        if report.artifacts.len() == 1 { "" } else { "s" },
        report.hosted.len(),
        if report.hosted.len() == 1 { "y" } else { "ies" },
        report.drafts.len(),
        if report.drafts.len() == 1 { "" } else { "s" },
        report.jobs.len(),
        if report.jobs.len() == 1 { "" } else { "s" },
    );
    for item in report
        .artifacts
        .iter()
        .chain(&report.hosted)
        .chain(&report.drafts)
    {
        text.push_str(&format!("  {item}\n"));
    }
    text.push_str(&kept_lines(&report.kept));
    text
}

/// The lines that tell which recorded files were left alone, and why.
pub fn kept_lines(kept: &[String]) -> String {
    if kept.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "left {} recorded file{} alone: outside this state directory and its cache (a store copied from elsewhere?)\n",
        kept.len(),
        if kept.len() == 1 { "" } else { "s" }
    );
    for path in kept {
        text.push_str(&format!("  {path}\n"));
    }
    text
}
