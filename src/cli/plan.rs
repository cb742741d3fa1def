//! `factory plan`: what a run would do, and what it would spend. Reads the store, never
//! writes it.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CmdResult, Expanded, Outcome, load_all, out, out_json, report};
use crate::artifacts::{ArtifactStore, Lookup};
use crate::expand::{Job, JobSpec};
use crate::keys::{self, Inputs, ToolVersions};
use crate::plan::{
    self, Cached, KeyEnv, LongJob, Prices, RecipePlan, Spend, StageAction, StagePlan,
};
use crate::providers::Script;
use crate::recipe::{FootageProvider, ScriptProvider, VoiceProvider};
use crate::registry::Digests;
use crate::stages::Stage;
use crate::store::{EffectStatus, Store};

/// One recipe in `--json`: the plan with its spend beside the jobs.
#[derive(Serialize)]
struct Planned<'a> {
    #[serde(flatten)]
    plan: &'a RecipePlan,
    spend: &'a Spend,
    /// Jobs estimated to run past `video.max_seconds`.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    too_long: &'a [LongJob],
}

/// How `plan` prints, and which jobs.
#[derive(Debug, Clone, Default)]
pub struct Show {
    pub json: bool,
    pub ci: bool,
    /// List every superseded version instead of one line per job.
    pub all: bool,
    pub selector: plan::Selector,
    /// At most this many job rows, over every recipe.
    pub limit: Option<usize>,
}

pub async fn run(
    paths: &[PathBuf],
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    remote: Option<&crate::artifacts::s3::S3Url>,
    cache_dir: &Path,
    show: Show,
) -> CmdResult {
    let Show {
        json,
        ci,
        all,
        selector,
        limit,
    } = show;
    let mut left = limit.unwrap_or(usize::MAX);
    let (ok, diags) = load_all(paths);
    if report(&diags, ci) {
        return Ok(Outcome::Invalid);
    }
    super::warn_loose_permissions(state_dir);
    let store = Store::open_read_only(store_url).await?;
    // Finished jobs recorded in a shared bucket count as done here too.
    let artifacts = super::run::with_remote(ArtifactStore::at(cache_dir), remote)?;
    let records = artifacts
        .jobs()
        .await
        .map_err(|e| super::Failure::environment(e.to_string()))?;
    let prices = Prices::from_env();
    let forecaster = Forecaster::new(&artifacts).await;
    let mut plans = Vec::with_capacity(ok.len());
    for e in &ok {
        let stored = stored(store.as_ref(), &e.recipe.name).await?;
        let mut specs = match &store {
            Some(s) => s.job_specs(&e.recipe.name).await?,
            None => HashMap::new(),
        };
        for r in records.iter().filter(|r| r.recipe == e.recipe.name) {
            specs.entry(r.id.clone()).or_insert_with(|| r.spec.clone());
        }
        let stored = with_records(stored, &records, &e.recipe.name);
        let mut p = plan::plan(
            &e.recipe.name,
            &e.recipe.path.display().to_string(),
            &e.jobs,
            &stored,
        );
        let specs: HashMap<String, serde_json::Value> = specs
            .into_iter()
            .filter_map(|(id, spec)| Some((id, serde_json::from_str(&spec).ok()?)))
            .collect();
        p.retain(&selector, None);
        p.jobs.truncate(left);
        left -= p.jobs.len();
        p.retain(&plan::Selector::default(), None);
        plan::attach_changes(&mut p, &specs, &e.jobs);
        forecaster.attach_stages(&mut p, e).await;
        let running = running(&p, &e.jobs);
        let cached = cached(&artifacts, &running).await;
        let spend = plan::spend(&running, &cached, &prices);
        let long = plan::long_jobs(&running, &cached);
        plans.push((p, spend, long));
    }
    let totals = plan::Totals::of(plans.iter().map(|(p, spend, _)| (p, spend)));
    if json {
        let recipes: Vec<Planned> = plans
            .iter()
            .map(|(plan, spend, too_long)| Planned {
                plan,
                spend,
                too_long,
            })
            .collect();
        out_json(&serde_json::json!({ "recipes": recipes, "totals": totals }));
    } else {
        let mut text = String::new();
        for (p, spend, long) in &plans {
            text.push_str(&p.render(all));
            text.push_str(&spend.render());
            for job in long {
                text.push_str(&job.render());
            }
        }
        text.push_str(&totals.render());
        // Stored jobs come from older recipes, which may hold what today's would refuse.
        let text = super::escape::lines(&text);
        out(&if colour(ci) { coloured(&text) } else { text });
    }
    Ok(Outcome::Ok)
}

/// Colour only for a person at a terminal: never in CI, in a pipe, or with `NO_COLOR`.
fn colour(ci: bool) -> bool {
    !ci && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("CI").is_none()
}

/// Colours the plan's own marks, after escaping, so no user string can bring an escape
/// of its own: new green, changed and its fields yellow, removed red, failed rows red.
pub(super) fn coloured(text: &str) -> String {
    const GREEN: &str = "\u{1b}[32m";
    const YELLOW: &str = "\u{1b}[33m";
    const RED: &str = "\u{1b}[31m";
    const DIM: &str = "\u{1b}[2m";
    const BOLD: &str = "\u{1b}[1m";
    const RESET: &str = "\u{1b}[0m";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let colour = if line.starts_with("  + ") {
            Some(GREEN)
        } else if line.starts_with("  ~ ") || line.starts_with("      ~ ") {
            Some(YELLOW)
        } else if line.starts_with("  - ") || line.starts_with("  > failed") {
            Some(RED)
        } else if line.starts_with("      ") {
            Some(DIM)
        } else if line.starts_with("Plan: ") {
            Some(BOLD)
        } else {
            None
        };
        match colour {
            Some(c) if !line.is_empty() => {
                out.push_str(c);
                out.push_str(line);
                out.push_str(RESET);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Predicts each stage's key the way the pipeline will compute it: the tool versions
/// the run would use, digests of the files recipes name, cached scripts' words.
pub(super) struct Forecaster<'a> {
    artifacts: &'a ArtifactStore,
    versions: ToolVersions,
    digests: Digests,
}

impl<'a> Forecaster<'a> {
    /// Without the tools, their versions are unknown and the stages that hash them are
    /// predicted to run.
    pub(super) async fn new(artifacts: &'a ArtifactStore) -> Self {
        let versions = match crate::media::Tools::detect() {
            Ok(tools) => tools.versions().await,
            Err(_) => ToolVersions::default(),
        };
        Self::with_versions(artifacts, versions)
    }

    pub(super) fn with_versions(artifacts: &'a ArtifactStore, versions: ToolVersions) -> Self {
        Self {
            artifacts,
            versions,
            digests: Digests::default(),
        }
    }

    /// Every stage's inputs for one job of a recipe in `dir`, as far as they are known.
    pub(super) async fn inputs(&self, dir: &Path, job: &Job) -> Vec<(Stage, Option<Inputs>)> {
        let spec = &job.spec;
        let folder = match spec.footage.provider {
            FootageProvider::Local => self
                .digests
                .folder(&dir.join(spec.footage.dir.as_deref().unwrap_or(".")))
                .await
                .ok(),
            _ => None,
        };
        let music = match crate::stages::render::music(spec, &job.id.to_string(), dir) {
            Ok(Some(m)) => self.digests.file(&m.path).await.ok(),
            _ => None,
        };
        let script = match self
            .artifacts
            .fetch(Stage::Script.as_str(), &keys::script_key(spec))
            .await
        {
            Ok(Lookup::Hit(hit)) => hit.output::<Script>().ok(),
            _ => None,
        };
        plan::forecast(
            spec,
            &job.id.to_string(),
            &KeyEnv {
                versions: &self.versions,
                folder: folder.as_deref(),
                music: music.as_deref(),
                script: script.as_ref(),
            },
        )
    }

    /// Whether the artifact store already holds a stage's result for `key`: an entry for
    /// a cached stage, a `done` ledger record for a side effect.
    pub(super) async fn holds(&self, stage: Stage, key: &str) -> bool {
        match stage {
            Stage::Host | Stage::Draft | Stage::Notify => self
                .artifacts
                .effect(key)
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.status == EffectStatus::Done),
            _ => self.artifacts.holds(stage.as_str(), key).await,
        }
    }

    /// Fills which stages run and which are reused for every job of the plan that runs.
    pub(super) async fn attach_stages(&self, p: &mut RecipePlan, e: &Expanded) {
        let jobs: HashMap<String, &Job> = e.jobs.iter().map(|j| (j.id.to_string(), j)).collect();
        for planned in p.jobs.iter_mut().filter(|j| j.action.runs()) {
            let Some(job) = jobs.get(&planned.id) else {
                continue;
            };
            let mut stages = Vec::new();
            for (stage, inputs) in self.inputs(&e.recipe.dir, job).await {
                let reuse = match inputs {
                    Some(i) => self.holds(stage, &i.key()).await,
                    None => false,
                };
                stages.push(StagePlan {
                    stage,
                    action: if reuse {
                        StageAction::Reuse
                    } else {
                        StageAction::Run
                    },
                });
            }
            planned.stages = stages;
        }
    }
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
        let paid_stills = spec.footage.provider == FootageProvider::Image
            && !crate::providers::images::is_offline(spec.footage.model.as_deref());
        let paid_footage = spec.footage.provider == FootageProvider::Pexels || paid_stills;
        if (paid_script || paid_voice || paid_footage)
            && !cached.keys.contains(&script_key)
            && let Ok(crate::artifacts::Lookup::Hit(hit)) =
                artifacts.fetch("script", &script_key).await
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
        if paid_footage && artifacts.holds("footage", &footage_key).await {
            cached.keys.insert(footage_key);
        }
        if paid_voice && let Some(lines) = cached.scripts.get(&script_key) {
            let spoken: Vec<&str> = lines.iter().map(String::as_str).collect();
            let voice_key = keys::voice_key(spec, &spoken, &none);
            if artifacts.holds("voice", &voice_key).await {
                cached.keys.insert(voice_key);
            }
        }
    }
    cached
}

/// The jobs `store` holds of `recipe`; none without a store.
pub(super) async fn stored(
    store: Option<&Store>,
    recipe: &str,
) -> Result<Vec<crate::store::StoredJob>, crate::store::StoreError> {
    match store {
        Some(s) => s.jobs_of_recipe(recipe).await,
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_goes_on_the_plan_marks_only_and_never_in_ci() {
        let text = "r (r.yaml): …\n  + new      1  t\n  ~ changed  2  t\n      ~ title: \"a\" → \"b\"\n    done     3  t\n  - removed  4  t\nPlan: 1 new\n";
        let c = coloured(text);
        assert!(c.contains("\u{1b}[32m  + new"), "{c:?}");
        assert!(c.contains("\u{1b}[33m      ~ title"), "{c:?}");
        assert!(c.contains("\u{1b}[31m  - removed"), "{c:?}");
        assert!(c.contains("\n    done     3  t\n"), "{c:?}");
        assert!(!colour(true));
    }
}
