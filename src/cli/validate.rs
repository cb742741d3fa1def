//! `factory validate`: every mistake in every recipe, at once. Writes nothing.

use std::path::PathBuf;

use serde_json::json;

use super::{CmdResult, Outcome, load_all, out, out_json, report};

pub fn run(paths: &[PathBuf], json: bool, ci: bool) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if json {
        out_json(&json!({
            "valid": diags.is_empty(),
            "recipes": ok.iter().map(|e| json!({
                "name": e.recipe.name,
                "path": e.recipe.path,
                "jobs": e.jobs.len(),
            })).collect::<Vec<_>>(),
            "diagnostics": diags,
        }));
    } else if report(&diags, ci) {
        let files: std::collections::BTreeSet<_> = diags.iter().map(|d| &d.path).collect();
        eprintln!(
            "error: {} problem{} in {} file{}",
            diags.len(),
            if diags.len() == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
    } else {
        let jobs: usize = ok.iter().map(|e| e.jobs.len()).sum();
        out(&format!(
            "ok: {} recipe{}, {} job{}\n",
            ok.len(),
            if ok.len() == 1 { "" } else { "s" },
            jobs,
            if jobs == 1 { "" } else { "s" }
        ));
    }
    Ok(if diags.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Invalid
    })
}
