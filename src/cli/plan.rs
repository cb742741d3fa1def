//! `factory plan`: what a run would do, and what it would spend. Reads the store, never
//! writes it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CmdResult, Outcome, load_all, out, out_json, report};
use crate::artifacts::ArtifactStore;
use crate::expand::JobSpec;
use crate::keys::{self, ToolVersions};
use crate::plan::{self, Cached, Prices, RecipePlan, Spend};
use crate::providers::Script;
use crate::recipe::{FootageProvider, ScriptProvider, VoiceProvider};
use crate::store::Store;

/// One recipe in `--json`: the plan with its spend beside the jobs.
#[derive(Serialize)]
struct Planned<'a> {
    #[serde(flatten)]
    plan: &'a RecipePlan,
    spend: &'a Spend,
}

pub async fn run(
    paths: &[PathBuf],
    state_dir: &Path,
    cache_dir: &Path,
    json: bool,
    ci: bool,
) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags, ci) {
        return Ok(Outcome::Invalid);
    }
    super::warn_loose_permissions(state_dir);
    let store = Store::open_read_only(state_dir).await?;
    let artifacts = ArtifactStore::at(cache_dir);
    let records = artifacts
        .jobs()
        .map_err(|e| super::Failure::environment(e.to_string()))?;
    let prices = Prices::from_env();
    let mut plans = Vec::with_capacity(ok.len());
    for e in &ok {
        let stored = match &store {
            Some(s) => s.jobs_of_recipe(&e.recipe.name).await?,
            None => Vec::new(),
        };
        let stored = with_records(stored, &records, &e.recipe.name);
        let p = plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let running = running(&p, &e.jobs);
        let cached = cached(&artifacts, &running).await;
        let spend = plan::spend(&running, &cached, &prices);
        plans.push((p, spend));
    }
    if json {
        let recipes: Vec<Planned> = plans
            .iter()
            .map(|(plan, spend)| Planned { plan, spend })
            .collect();
        out_json(&serde_json::json!({ "recipes": recipes }));
    } else {
        let mut text = String::new();
        for (p, spend) in &plans {
            text.push_str(&p.render());
            text.push_str(&spend.render());
        }
        // Stored jobs come from older recipes, which may hold what today's would refuse.
        out(&super::escape::lines(&text));
    }
    Ok(Outcome::Ok)
}

/// The specs of the jobs the plan will run.
pub(super) fn running<'a>(p: &RecipePlan, jobs: &'a [crate::expand::Job]) -> Vec<&'a JobSpec> {
    let runs: std::collections::HashSet<&str> = p
        .jobs
        .iter()
        .filter(|j| j.action.runs())
        .map(|j| j.id.as_str())
        .collect();
    jobs.iter()
        .filter(|j| runs.contains(j.id.to_string().as_str()))
        .map(|j| &j.spec)
        .collect()
}

/// The stored rows of a recipe, with the finished jobs the artifact store records that
/// the database does not know (a fresh state directory over a kept artifact store).
pub(super) fn with_records(
    mut stored: Vec<crate::store::StoredJob>,
    records: &[crate::artifacts::JobRecord],
    recipe: &str,
) -> Vec<crate::store::StoredJob> {
    for r in records.iter().filter(|r| r.recipe == recipe) {
        if stored.iter().any(|s| s.id == r.id) {
            continue;
        }
        stored.push(crate::store::StoredJob {
            id: r.id.clone(),
            recipe: r.recipe.clone(),
            cell: r.cell.clone(),
            topic: r.topic.clone(),
            voice: r.voice.clone(),
            status: crate::store::Status::Done,
            stage: None,
            attempts: 0,
            error: None,
            created_at: r.finished_at,
            updated_at: r.finished_at,
            finished_at: Some(r.finished_at),
            deferred_until: None,
        });
    }
    stored
}

/// What the artifact store holds of the paid stages of `jobs`: the keys it has, and the
/// lines of cached scripts so voice keys can be computed.
pub(super) async fn cached(artifacts: &ArtifactStore, jobs: &[&JobSpec]) -> Cached {
    let mut cached = Cached::default();
    let none = ToolVersions::default();
    for spec in jobs {
        let paid_script = spec.script.provider == ScriptProvider::Openrouter;
        let paid_voice = spec.voice.provider == VoiceProvider::Elevenlabs;
        let script_key = keys::script_key(spec);
        let paid_footage = spec.footage.provider == FootageProvider::Pexels;
        if (paid_script || paid_voice || paid_footage)
            && !cached.keys.contains(&script_key)
            && let Ok(crate::artifacts::Lookup::Hit(hit)) =
                artifacts.inspect("script", &script_key).await
        {
            cached.keys.insert(script_key.clone());
            if let Ok(script) = hit.output::<Script>() {
                cached.scripts.insert(
                    script_key.clone(),
                    script.spoken().into_iter().map(str::to_owned).collect(),
                );
                cached.documents.insert(script_key.clone(), script);
            }
        }
        // Paid stages' keys do not depend on tool versions.
        let footage_key = keys::planned_footage_key(spec, cached.documents.get(&script_key));
        if spec.footage.provider == FootageProvider::Pexels
            && artifacts.contains("footage", &footage_key)
        {
            cached.keys.insert(footage_key);
        }
        if paid_voice && let Some(lines) = cached.scripts.get(&script_key) {
            let spoken: Vec<&str> = lines.iter().map(String::as_str).collect();
            let voice_key = keys::voice_key(spec, &spoken, &none);
            if artifacts.contains("voice", &voice_key) {
                cached.keys.insert(voice_key);
            }
        }
    }
    cached
}
