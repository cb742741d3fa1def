//! `factory plan`: what a run would do. Reads the store, never writes it.

use std::path::{Path, PathBuf};

use super::{CmdResult, Outcome, load_all, out, out_json, report};
use crate::plan;
use crate::store::Store;

pub async fn run(paths: &[PathBuf], state_dir: &Path, json: bool, ci: bool) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags, ci) {
        return Ok(Outcome::Invalid);
    }
    let store = Store::open_read_only(state_dir).await?;
    let mut plans = Vec::with_capacity(ok.len());
    for e in &ok {
        let stored = match &store {
            Some(s) => s.jobs_of_recipe(&e.recipe.name).await?,
            None => Vec::new(),
        };
        plans.push(plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        ));
    }
    if json {
        out_json(&serde_json::json!({ "recipes": plans }));
    } else {
        let mut text = String::new();
        for p in &plans {
            text.push_str(&p.render());
        }
        out(&text);
    }
    Ok(Outcome::Ok)
}
