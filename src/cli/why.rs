//! `factory why JOB [STAGE]`: which input of a stage's key changed since the job's cell
//! last ran, so a cache miss is never a mystery. Reads the store, never writes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::plan::Forecaster;
use super::{CmdResult, Expanded, Failure, Outcome, load_all, out, out_json, report};
use crate::artifacts::ArtifactStore;
use crate::expand::Job;
use crate::keys::Inputs;
use crate::plan::{FieldChange, field_changes, shown_pair};
use crate::stages::Stage;
use crate::store::{RecordedInputs, Store, StoredJob};

/// How a stage's key stands against the last run of the job's cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The same key: reused.
    Same,
    /// The same key, but its result is gone from the artifact store (expired, collected
    /// or purged): runs again.
    Gone,
    /// Another key, and the inputs that differ are listed.
    Changed,
    /// Another key; the last run's inputs were not recorded (it ran before they were).
    Unrecorded,
    /// The stage did not run before.
    New,
    /// Cannot be known before the run: it hashes what an earlier stage will make.
    Unknown,
}

/// One named input that differs, by its path inside the part (`video.fps`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputChange {
    pub input: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageWhy {
    pub stage: Stage,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<InputChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Why {
    pub job: String,
    pub recipe: String,
    pub topic: String,
    pub voice: String,
    /// The stored version compared with: the job itself, or the latest version of its cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    pub stages: Vec<StageWhy>,
}

/// The parts of two key inputs that differ: the stage version, then each named part by
/// its leaves (objects by dotted path, lists and scalars whole).
pub fn compare(old: &Inputs, new: &Inputs) -> Vec<InputChange> {
    let mut changes = Vec::new();
    if old.version != new.version {
        changes.push(InputChange {
            input: "version".into(),
            old: old.version.into(),
            new: new.version.into(),
        });
    }
    let olds: HashMap<&str, &Value> = old.parts.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut names: Vec<&str> = new.parts.iter().map(|(n, _)| n.as_str()).collect();
    for (n, _) in &old.parts {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let news: HashMap<&str, &Value> = new.parts.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for name in names {
        let (o, n) = (
            olds.get(name).copied().cloned().unwrap_or(Value::Null),
            news.get(name).copied().cloned().unwrap_or(Value::Null),
        );
        if o == n {
            continue;
        }
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        leaves(name, &o, &mut a);
        leaves(name, &n, &mut b);
        let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for path in paths {
            let (o, n) = (
                a.get(path).cloned().unwrap_or(Value::Null),
                b.get(path).cloned().unwrap_or(Value::Null),
            );
            if o != n {
                changes.push(InputChange {
                    input: path.clone(),
                    old: o,
                    new: n,
                });
            }
        }
    }
    changes
}

/// A value's leaves by path: objects by `.name`, lists by `[i]`, so
/// `post[0]` (the title) shows apart from `post[2]` (the hashtags).
fn leaves(path: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(&format!("{path}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{path}[{i}]"), v, out);
            }
        }
        _ => {
            out.insert(path.to_owned(), v.clone());
        }
    }
}

/// A stage's verdict from its recorded row (if any) and its forecast inputs (if known).
pub fn judge(stage: Stage, old: Option<&RecordedInputs>, new: Option<&Inputs>) -> StageWhy {
    let new_key = new.map(Inputs::key);
    let mut why = StageWhy {
        stage,
        verdict: Verdict::Unknown,
        old_key: old.map(|o| o.key.clone()),
        new_key: new_key.clone(),
        changes: Vec::new(),
    };
    why.verdict = match (old, new) {
        (_, None) => Verdict::Unknown,
        (None, Some(_)) => Verdict::New,
        (Some(o), Some(_)) if Some(&o.key) == new_key.as_ref() => Verdict::Same,
        (Some(o), Some(n)) => {
            match o
                .inputs
                .as_deref()
                .and_then(|i| serde_json::from_str::<Inputs>(i).ok())
            {
                Some(recorded) => {
                    why.changes = compare(&recorded, n);
                    Verdict::Changed
                }
                None => Verdict::Unrecorded,
            }
        }
    };
    why
}

/// Values in a `why` line: short strings as they are, keys and long values as the first
/// 12 hex digits of their SHA-256 (keys are digests already: cut to 12).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{}…", &s[..12])
        }
        Value::String(s) if s.chars().count() <= 60 => format!("{s:?}"),
        Value::Number(_) | Value::Bool(_) | Value::Null => v.to_string(),
        other => {
            use sha2::{Digest, Sha256};
            let text = crate::expand::canonical_json(other);
            let digest = hex::encode(Sha256::digest(text.as_bytes()));
            format!("sha256:{}", &digest[..12])
        }
    }
}

impl Why {
    pub fn render(&self) -> String {
        let mut out = format!(
            "job {} ({} · {} · {})\n",
            self.job, self.recipe, self.topic, self.voice
        );
        match &self.compared_with {
            Some(old) if *old == self.job => {
                out.push_str("  compared with its last run\n");
            }
            Some(old) => out.push_str(&format!(
                "  compared with {old}, the last run of its cell\n"
            )),
            None => out.push_str("  its cell never ran: every stage runs\n"),
        }
        for f in &self.fields {
            let (old, new) = shown_pair(&f.old, &f.new);
            out.push_str(&format!("  ~ {}: {old} → {new}\n", f.field));
        }
        for s in &self.stages {
            let head = format!("  {:<9}", s.stage.as_str());
            match s.verdict {
                Verdict::Same => out.push_str(&format!(
                    "{head}same key {}: reused\n",
                    short(s.new_key.as_deref())
                )),
                Verdict::Gone => out.push_str(&format!(
                    "{head}same key {}, but its result is no longer kept (expired or removed): runs\n",
                    short(s.new_key.as_deref())
                )),
                Verdict::New => out.push_str(&format!("{head}did not run before: runs\n")),
                Verdict::Unknown => out.push_str(&format!(
                    "{head}cannot be known before the run: it hashes what an earlier stage makes\n"
                )),
                Verdict::Unrecorded => out.push_str(&format!(
                    "{head}key {} → {}: runs; the last run's inputs were not recorded\n",
                    short(s.old_key.as_deref()),
                    short(s.new_key.as_deref())
                )),
                Verdict::Changed => {
                    out.push_str(&format!(
                        "{head}key {} → {}: runs, because\n",
                        short(s.old_key.as_deref()),
                        short(s.new_key.as_deref())
                    ));
                    for c in &s.changes {
                        out.push_str(&format!(
                            "      ~ {}: {} → {}\n",
                            c.input,
                            shown(&c.old),
                            shown(&c.new)
                        ));
                    }
                }
            }
        }
        out
    }
}

fn short(key: Option<&str>) -> String {
    key.map(|k| format!("{}…", &k[..k.len().min(12)]))
        .unwrap_or_else(|| "none".into())
}

pub async fn run(
    job: &str,
    stage: Option<&str>,
    paths: &[PathBuf],
    store_url: &crate::store::StoreUrl,
    cache_dir: &Path,
    json: bool,
) -> CmdResult {
    let prefix = crate::store::job_prefix(job)?;
    let only = stage
        .map(|s| {
            s.parse::<Stage>().map_err(|e| {
                Failure::invalid(e).with_hint(format!(
                    "the stages are {}",
                    Stage::ALL.map(Stage::as_str).join(", ")
                ))
            })
        })
        .transpose()?;
    let store = Store::open_read_only(store_url).await?;
    let (mut ok, diags) = load_all(paths);
    // A job of the recipes at hand, by prefix; else a stored one, with today's version
    // of its cell from the recipe file the store remembers.
    let mut current = find_current(&ok, &prefix)?;
    let mut stored: Option<StoredJob> = None;
    if current.is_none() {
        let Some(s) = &store else {
            return Err(no_such(&prefix, &diags));
        };
        let found = s.find_job(&prefix).await.map_err(|e| match e {
            crate::store::StoreError::NoSuchJob(_) => no_such(&prefix, &diags),
            other => other.into(),
        })?;
        if !ok.iter().any(|e| e.recipe.name == found.recipe)
            && let Some(path) = s.recipe_path(&found.recipe).await?
        {
            let (more, d) = load_all(&[PathBuf::from(path)]);
            if report(&d, false) {
                return Ok(Outcome::Invalid);
            }
            ok.extend(more);
        }
        current = ok
            .iter()
            .filter(|e| e.recipe.name == found.recipe)
            .flat_map(|e| e.jobs.iter().map(move |j| (e, j)))
            .find(|(_, j)| j.cell == found.cell);
        stored = Some(found);
    }
    let Some((expanded, job)) = current else {
        let s = stored.expect("a stored job when no current one");
        return Err(Failure::invalid(format!(
            "job `{}` is no longer in recipe `{}`: its cell was removed, so nothing will run",
            s.id, s.recipe
        )));
    };
    let id = job.id.to_string();
    // The version to compare with: the job itself when it ran, else the latest of its cell.
    let previous = match &store {
        Some(s) => {
            let mut rows: Vec<StoredJob> = s
                .jobs_of_recipe(&expanded.recipe.name)
                .await?
                .into_iter()
                .filter(|r| r.cell == job.cell)
                .collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
            rows.iter()
                .find(|r| r.id == id)
                .or_else(|| rows.first())
                .cloned()
        }
        None => None,
    };
    let (recorded, fields) = match (&store, &previous) {
        (Some(s), Some(p)) => {
            let fields = if p.id == id {
                Vec::new()
            } else {
                let old: Value =
                    serde_json::from_str(&s.job_spec(&p.id).await?).unwrap_or_default();
                field_changes(&old, &serde_json::to_value(&job.spec).unwrap_or_default())
            };
            (s.stage_inputs(&p.id).await?, fields)
        }
        _ => (HashMap::new(), Vec::new()),
    };
    let artifacts = ArtifactStore::at(cache_dir);
    let forecaster = Forecaster::new(&artifacts).await;
    let mut stages = Vec::new();
    for (s, inputs) in forecaster.inputs(&expanded.recipe.dir, job).await {
        if only.is_some_and(|o| o != s) {
            continue;
        }
        let mut why = judge(s, recorded.get(s.as_str()), inputs.as_ref());
        if why.verdict == Verdict::Same {
            let held = match why.new_key.as_deref() {
                Some(k) => forecaster.holds(s, k).await,
                None => true,
            };
            if !held {
                why.verdict = Verdict::Gone;
            }
        }
        stages.push(why);
    }
    let why = Why {
        job: id,
        recipe: expanded.recipe.name.clone(),
        topic: job.spec.topic.clone(),
        voice: job.spec.voice_name.clone(),
        compared_with: previous.map(|p| p.id),
        fields,
        stages,
    };
    if let Some(s) = store {
        s.close().await;
    }
    if json {
        out_json(&why);
    } else {
        out(&super::escape::lines(&why.render()));
    }
    Ok(Outcome::Ok)
}

fn no_such(prefix: &str, diags: &[crate::recipe::Diagnostic]) -> Failure {
    let hint = if diags.is_empty() {
        "`factory plan` lists the jobs of the recipes; `factory jobs list` those in the store"
    } else {
        "some recipes did not load (`factory validate` shows why); the job may be in one of them"
    };
    Failure::invalid(format!("no job `{prefix}` in the recipes or the store")).with_hint(hint)
}

/// The job of the loaded recipes whose id starts with `prefix`; two matches are an error.
pub(super) fn find_current<'a>(
    ok: &'a [Expanded],
    prefix: &str,
) -> Result<Option<(&'a Expanded, &'a Job)>, Failure> {
    let found: Vec<(&Expanded, &Job)> = ok
        .iter()
        .flat_map(|e| e.jobs.iter().map(move |j| (e, j)))
        .filter(|(_, j)| j.id.to_string().starts_with(prefix))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(crate::store::StoreError::Ambiguous {
            prefix: prefix.to_owned(),
            matches: found.iter().map(|(_, j)| j.id.to_string()).collect(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(fps: u32, music: Option<&str>) -> Inputs {
        Inputs::new(Stage::Render, 1)
            .part("video", json!({ "fps": fps, "size": "1080x1920" }))
            .part("footage_key", json!("0123456789abcdef0123456789abcdef"))
            .part("music", json!(music))
    }

    #[test]
    fn a_changed_key_names_the_leaf_that_changed() {
        let changes = compare(&inputs(30, None), &inputs(24, Some("beef")));
        assert_eq!(
            changes,
            [
                InputChange {
                    input: "video.fps".into(),
                    old: json!(30),
                    new: json!(24)
                },
                InputChange {
                    input: "music".into(),
                    old: Value::Null,
                    new: json!("beef")
                },
            ]
        );
    }

    #[test]
    fn a_verdict_follows_the_keys_and_what_was_recorded() {
        let old = inputs(30, None);
        let row = |inputs: Option<&Inputs>| RecordedInputs {
            stage: "render".into(),
            key: old.key(),
            inputs: inputs.map(|i| serde_json::to_string(i).unwrap()),
        };
        let new = inputs(24, None);
        assert_eq!(
            judge(Stage::Render, Some(&row(Some(&old))), Some(&old)).verdict,
            Verdict::Same
        );
        let changed = judge(Stage::Render, Some(&row(Some(&old))), Some(&new));
        assert_eq!(changed.verdict, Verdict::Changed);
        assert_eq!(changed.changes[0].input, "video.fps");
        assert_eq!(
            judge(Stage::Render, Some(&row(None)), Some(&new)).verdict,
            Verdict::Unrecorded
        );
        assert_eq!(judge(Stage::Render, None, Some(&new)).verdict, Verdict::New);
        assert_eq!(
            judge(Stage::Render, Some(&row(None)), None).verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn long_values_show_as_digests_and_keys_cut() {
        assert_eq!(
            shown(&json!("0123456789abcdef0123456789abcdef")),
            "0123456789ab…"
        );
        assert!(shown(&json!(["a line", "another"])).starts_with("sha256:"));
        assert_eq!(shown(&json!(30)), "30");
    }
}
