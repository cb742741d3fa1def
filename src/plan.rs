//! The plan: what a run would do, per job, against what the store remembers. Pure: it
//! takes the expanded jobs and the stored rows and decides; it never touches the store.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::expand::{Job, JobSpec};
use crate::keys::{self, Inputs, ToolVersions};
use crate::providers::{Script, images};
use crate::recipe::{FootageProvider, ScriptProvider, VoiceProvider};
use crate::stages::Stage;
use crate::store::{Status, StoredJob};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not in the store: the whole pipeline runs.
    New,
    /// The same matrix cell was run with a different spec: runs again, reusing cached
    /// stages whose inputs did not change.
    Changed,
    /// Known and not finished (pending, queued or interrupted): resumes.
    Resume,
    /// Failed before: resumes at the failed stage.
    Failed,
    /// Waiting for a rate window or a cap that has not opened yet; runs after it does.
    Deferred,
    /// Finished; nothing to do.
    Done,
    /// In the store but no longer in the recipe. Its record is kept.
    Removed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Changed => "changed",
            Self::Resume => "resume",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
            Self::Done => "done",
            Self::Removed => "removed",
        }
    }

    /// Whether `run` has work to do for this job.
    pub fn runs(self) -> bool {
        matches!(
            self,
            Self::New | Self::Changed | Self::Resume | Self::Failed
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedJob {
    pub id: String,
    pub action: Action,
    pub topic: String,
    pub voice: String,
    pub template: String,
    /// Why, in words: "resumes at `render`", "replaces 3f2a…".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// For a changed job: the id of the version it replaces (the latest of its cell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// For a changed job: the fields of its expanded spec that differ from that version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// For a job that runs: which stages run and which are reused (filled by the caller,
    /// which can look into the artifact store).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StagePlan>,
    /// Older versions of the same matrix cell that this job (or, for a removed cell, its
    /// latest version) supersedes, newest first. Shown as one line, listed with `--all`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Superseded>,
}

/// An older version of a job's matrix cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Superseded {
    pub id: String,
    pub status: Status,
    pub updated_at: i64,
}

/// A field of the expanded spec that differs from the version a job replaces, by its
/// dotted path (`title`, `script.prompt`, `video.fps`); `null` where one side lacks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// Whether a stage of a job that runs executes or is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageAction {
    Run,
    Reuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StagePlan {
    pub stage: Stage,
    pub action: StageAction,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub new: usize,
    pub changed: usize,
    pub resume: usize,
    pub failed: usize,
    pub deferred: usize,
    pub done: usize,
    pub removed: usize,
    /// Older versions collapsed into the jobs that replaced them.
    pub superseded: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipePlan {
    pub recipe: String,
    pub path: String,
    pub counts: Counts,
    pub jobs: Vec<PlannedJob>,
}

pub fn plan(recipe: &str, path: &str, jobs: &[Job], stored: &[StoredJob]) -> RecipePlan {
    let by_id: HashMap<&str, &StoredJob> = stored.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut by_cell: HashMap<&str, Vec<&StoredJob>> = HashMap::new();
    for s in stored {
        by_cell.entry(s.cell.as_str()).or_default().push(s);
    }
    for olds in by_cell.values_mut() {
        // Newest first: the latest version is the one a job replaces.
        olds.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    }
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(jobs.len());
    let mut counts = Counts::default();
    for job in jobs {
        let id = job.id.to_string();
        let olds: Vec<&StoredJob> = by_cell
            .get(job.cell.as_str())
            .map(|olds| olds.iter().copied().filter(|o| o.id != id).collect())
            .unwrap_or_default();
        for o in &olds {
            claimed.insert(o.id.as_str());
        }
        let mut replaces = None;
        let (action, reason, stage) = if let Some(s) = by_id.get(id.as_str()) {
            claimed.insert(s.id.as_str());
            stored_action(s)
        } else if let Some(old) = olds.first() {
            replaces = Some(old.id.clone());
            (Action::Changed, Some(format!("replaces {}", old.id)), None)
        } else {
            (Action::New, None, None)
        };
        // The version a changed job replaces is named in its row, not collapsed.
        let superseded: Vec<Superseded> = olds
            .iter()
            .filter(|o| Some(&o.id) != replaces.as_ref())
            .map(|o| superseded(o))
            .collect();
        bump(&mut counts, action);
        counts.superseded += superseded.len();
        out.push(PlannedJob {
            id,
            action,
            topic: job.spec.topic.clone(),
            voice: job.spec.voice_name.clone(),
            template: job.spec.template.clone(),
            reason,
            stage,
            replaces,
            changes: Vec::new(),
            stages: Vec::new(),
            superseded,
        });
    }
    // Cells no longer in the recipe: one row for the latest version, the older ones
    // collapsed into it.
    let mut removed: Vec<&str> = Vec::new();
    for s in stored {
        if !claimed.contains(s.id.as_str()) && !removed.contains(&s.cell.as_str()) {
            removed.push(s.cell.as_str());
        }
    }
    for cell in removed {
        let olds = &by_cell[cell];
        let latest = olds[0];
        let template = serde_json::from_str::<[String; 3]>(&latest.cell)
            .map(|[_, _, t]| t)
            .unwrap_or_default();
        let superseded: Vec<Superseded> = olds[1..].iter().map(|o| superseded(o)).collect();
        bump(&mut counts, Action::Removed);
        counts.superseded += superseded.len();
        out.push(PlannedJob {
            id: latest.id.clone(),
            action: Action::Removed,
            topic: latest.topic.clone(),
            voice: latest.voice.clone(),
            template,
            reason: Some(format!(
                "no longer in the recipe; last {}",
                latest.status.as_str()
            )),
            stage: None,
            replaces: None,
            changes: Vec::new(),
            stages: Vec::new(),
            superseded,
        });
    }
    RecipePlan {
        recipe: recipe.to_owned(),
        path: path.to_owned(),
        counts,
        jobs: out,
    }
}

fn superseded(o: &StoredJob) -> Superseded {
    Superseded {
        id: o.id.clone(),
        status: o.status,
        updated_at: o.updated_at,
    }
}

/// What a job the store knows by its id needs.
fn stored_action(s: &StoredJob) -> (Action, Option<String>, Option<String>) {
    match s.status {
        Status::Done => (Action::Done, None, None),
        Status::Failed => (
            Action::Failed,
            Some(format!(
                "resumes at `{}`{}",
                s.stage.as_deref().unwrap_or("script"),
                s.error
                    .as_deref()
                    .map(|e| format!(": {}", first_line(e)))
                    .unwrap_or_default()
            )),
            s.stage.clone(),
        ),
        Status::Deferred => {
            let reason = s.error.as_deref().map(first_line).unwrap_or("waiting");
            match s.deferred_until {
                Some(until) if until > crate::clock::now() => (
                    Action::Deferred,
                    Some(format!(
                        "deferred until {}: {reason}",
                        crate::clock::format(until)
                    )),
                    s.stage.clone(),
                ),
                _ => (
                    Action::Resume,
                    Some(format!(
                        "was deferred ({reason}); resumes at `{}`",
                        s.stage.as_deref().unwrap_or("script")
                    )),
                    s.stage.clone(),
                ),
            }
        }
        Status::Pending | Status::Running | Status::Interrupted => (
            Action::Resume,
            Some(format!(
                "{}; resumes at `{}`",
                s.status.as_str(),
                s.stage.as_deref().unwrap_or("script")
            )),
            s.stage.clone(),
        ),
    }
}

/// The leaves of two expanded specs (objects by dotted path; lists and scalars whole)
/// that differ, sorted by path.
pub fn field_changes(old: &Value, new: &Value) -> Vec<FieldChange> {
    fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned(), v.clone());
            }
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves("", old, &mut a);
    leaves("", new, &mut b);
    let fields: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    fields
        .into_iter()
        .filter_map(|f| {
            let (o, n) = (
                a.get(f).cloned().unwrap_or(Value::Null),
                b.get(f).cloned().unwrap_or(Value::Null),
            );
            (o != n).then(|| FieldChange {
                field: f.clone(),
                old: o,
                new: n,
            })
        })
        .collect()
}

/// Fills each changed job's field changes from the specs the store keeps (by job id)
/// and the jobs as expanded now.
pub fn attach_changes<S: std::hash::BuildHasher>(
    p: &mut RecipePlan,
    old_specs: &HashMap<String, Value, S>,
    jobs: &[Job],
) {
    let new: HashMap<String, &JobSpec> = jobs.iter().map(|j| (j.id.to_string(), &j.spec)).collect();
    for j in &mut p.jobs {
        let (Some(old), Some(spec)) = (
            j.replaces.as_ref().and_then(|r| old_specs.get(r)),
            new.get(&j.id),
        ) else {
            continue;
        };
        j.changes = field_changes(old, &serde_json::to_value(spec).unwrap_or_default());
    }
}

/// What stage keys depend on besides the spec, as far as the caller could learn it
/// before a run: the tool versions, digests of the files a recipe names, and the script
/// when one is cached (the voice key hashes its words).
#[derive(Debug, Clone, Copy)]
pub struct KeyEnv<'a> {
    pub versions: &'a ToolVersions,
    /// The digest of a local footage folder (`None` when unknown).
    pub folder: Option<&'a str>,
    /// The digest of the music file (`None` when unknown or there is none).
    pub music: Option<&'a str>,
    pub script: Option<&'a Script>,
}

/// The hashtags a draft carries: the recipe's, else the script's without their `#`.
pub fn hashtags(spec: &JobSpec, script: &Script) -> Vec<String> {
    if spec.hashtags.is_empty() {
        script
            .hashtags
            .iter()
            .map(|h| h.trim_start_matches('#').to_owned())
            .collect()
    } else {
        spec.hashtags.clone()
    }
}

/// Every stage's key inputs as the pipeline (`stages::Pipeline`) will compute them, in
/// pipeline order; `None` for a stage whose inputs cannot be known before the run (after
/// a script not yet written, a folder or music file that could not be read).
pub fn forecast(spec: &JobSpec, job_id: &str, env: &KeyEnv<'_>) -> Vec<(Stage, Option<Inputs>)> {
    let script = keys::script_inputs(spec);
    // Footage per scene is keyed by the script's scenes, known once the script is.
    let scenes = match env.script {
        Some(s) => Some(keys::footage_scenes(spec, s)),
        None if spec.footage.per == crate::recipe::FootagePer::Video => Some(Vec::new()),
        None => None,
    };
    let footage = match (&spec.footage.provider, scenes) {
        (_, None) => None,
        (FootageProvider::Local, Some(scenes)) => env
            .folder
            .map(|f| keys::footage_inputs(spec, &scenes, Some(f), env.versions)),
        (_, Some(scenes)) => Some(keys::footage_inputs(spec, &scenes, None, env.versions)),
    };
    let music_known = !crate::stages::render::has_music(spec) || env.music.is_some();
    let spoken = env.script.map(Script::spoken);
    let voice = spoken
        .as_ref()
        .map(|spoken| keys::voice_inputs(spec, spoken, env.versions));
    let voice_key = voice.as_ref().map(Inputs::key);
    let captions = voice_key
        .as_deref()
        .map(|v| keys::captions_inputs(spec, v, env.versions));
    let render = match (&footage, &voice_key, &captions) {
        (Some(f), Some(v), Some(c)) if music_known => Some(keys::render_inputs(
            spec,
            &f.key(),
            v,
            &c.key(),
            env.music,
            env.versions,
        )),
        _ => None,
    };
    let render_key = render.as_ref().map(Inputs::key);
    let host = render_key
        .as_deref()
        .map(|r| keys::host_inputs(spec, job_id, r));
    let draft = match (&render_key, env.script) {
        (Some(r), Some(script)) => {
            Some(keys::draft_inputs(spec, job_id, r, &hashtags(spec, script)))
        }
        _ => None,
    };
    let notify = draft.as_ref().map(|d| keys::notify_inputs(spec, &d.key()));
    vec![
        (Stage::Script, Some(script)),
        (Stage::Footage, footage),
        (Stage::Voice, voice),
        (Stage::Captions, captions),
        (Stage::Render, render),
        (Stage::Host, host),
        (Stage::Draft, draft),
        (Stage::Notify, notify),
    ]
}

/// Totals over every recipe of a plan: the line under it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub counts: Counts,
    pub stages_to_run: usize,
    pub stages_reused: usize,
    /// The estimated LLM spend in US dollars; `None` when a model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Whether any job that runs touches a paid service.
    pub paid: bool,
}

impl Totals {
    pub fn of<'a>(plans: impl IntoIterator<Item = (&'a RecipePlan, &'a Spend)>) -> Self {
        let mut t = Self {
            cost_usd: Some(0.0),
            ..Self::default()
        };
        for (p, spend) in plans {
            let c = &p.counts;
            t.counts.new += c.new;
            t.counts.changed += c.changed;
            t.counts.resume += c.resume;
            t.counts.failed += c.failed;
            t.counts.deferred += c.deferred;
            t.counts.done += c.done;
            t.counts.removed += c.removed;
            t.counts.superseded += c.superseded;
            for s in p.jobs.iter().flat_map(|j| &j.stages) {
                match s.action {
                    StageAction::Run => t.stages_to_run += 1,
                    StageAction::Reuse => t.stages_reused += 1,
                }
            }
            t.paid |= spend.is_paid();
            t.cost_usd = match (t.cost_usd, spend.spend.llm_cost_usd) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        t
    }

    /// `Plan: 2 new, 8 changed, 1 removed; 14 stages to run, 22 reused; ~$0.04`.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut parts = vec![format!("{} new", c.new), format!("{} changed", c.changed)];
        for (n, what) in [
            (c.resume, "to resume"),
            (c.failed, "failed"),
            (c.deferred, "deferred"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!("{} removed", c.removed));
        let mut line = format!(
            "Plan: {}; {} stage{} to run, {} reused",
            parts.join(", "),
            self.stages_to_run,
            if self.stages_to_run == 1 { "" } else { "s" },
            self.stages_reused
        );
        if self.paid {
            match self.cost_usd {
                Some(cost) => line.push_str(&format!("; ~${cost:.2}")),
                None => line.push_str("; cost unknown"),
            }
        }
        line.push('\n');
        line
    }
}

fn bump(c: &mut Counts, a: Action) {
    match a {
        Action::New => c.new += 1,
        Action::Changed => c.changed += 1,
        Action::Resume => c.resume += 1,
        Action::Failed => c.failed += 1,
        Action::Deferred => c.deferred += 1,
        Action::Done => c.done += 1,
        Action::Removed => c.removed += 1,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

impl Action {
    /// The mark in front of a job's row, as `terraform plan` has it.
    pub fn mark(self) -> char {
        match self {
            Self::New => '+',
            Self::Changed => '~',
            Self::Resume | Self::Failed => '>',
            Self::Deferred => '…',
            Self::Done => ' ',
            Self::Removed => '-',
        }
    }
}

/// Strings in a field change: quoted, and when old and new share a long start, that
/// start left out (`"…quick tip"`); long ones cut.
pub fn shown_pair(old: &Value, new: &Value) -> (String, String) {
    const LONG: usize = 60;
    const SHARED: usize = 12;
    if let (Value::String(a), Value::String(b)) = (old, new) {
        let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
        let skip = if common >= SHARED {
            // Back to the start of the word the strings part in.
            let head: String = a.chars().take(common).collect();
            head.rfind(' ').map_or(0, |i| head[..=i].chars().count())
        } else {
            0
        };
        let show = |s: &str| {
            let rest: String = s.chars().skip(skip).collect();
            let rest = if rest.chars().count() > LONG {
                format!("{}…", rest.chars().take(LONG).collect::<String>())
            } else {
                rest
            };
            format!("\"{}{rest}\"", if skip > 0 { "…" } else { "" })
        };
        return (show(a), show(b));
    }
    let show = |v: &Value| {
        let text = v.to_string();
        if text.chars().count() > LONG {
            format!("{}…", text.chars().take(LONG).collect::<String>())
        } else {
            text
        }
    };
    (show(old), show(new))
}

impl RecipePlan {
    /// The human plan: a row per job with its mark, the fields a changed job changes,
    /// which stages run and which are reused, superseded versions as one line (or each
    /// with `all`).
    pub fn render(&self, all: bool) -> String {
        let c = &self.counts;
        let mut out = format!(
            "{} ({}): {} new, {} changed, {} to resume, {} failed, {} done, {} removed\n",
            self.recipe, self.path, c.new, c.changed, c.resume, c.failed, c.done, c.removed
        );
        for j in &self.jobs {
            out.push_str(&format!(
                "  {} {:<8} {}  {} · {} · {}{}\n",
                j.action.mark(),
                j.action.as_str(),
                j.id,
                j.topic,
                j.voice,
                j.template,
                j.reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default()
            ));
            for change in &j.changes {
                let (old, new) = shown_pair(&change.old, &change.new);
                out.push_str(&format!("      ~ {}: {old} → {new}\n", change.field));
            }
            if !j.stages.is_empty() {
                let names = |a: StageAction| {
                    j.stages
                        .iter()
                        .filter(|s| s.action == a)
                        .map(|s| s.stage.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let (run, reuse) = (names(StageAction::Run), names(StageAction::Reuse));
                let mut line = String::from("      ");
                if !run.is_empty() {
                    line.push_str(&format!("runs: {run}"));
                }
                if !reuse.is_empty() {
                    if !run.is_empty() {
                        line.push_str(" · ");
                    }
                    line.push_str(&format!("reused: {reuse}"));
                }
                out.push_str(&line);
                out.push('\n');
            }
            match (j.superseded.len(), all) {
                (0, _) => {}
                (_, true) => {
                    for s in &j.superseded {
                        out.push_str(&format!(
                            "      superseded {}  (last {}, {})\n",
                            s.id,
                            s.status.as_str(),
                            crate::clock::format(s.updated_at)
                        ));
                    }
                }
                (n, false) => out.push_str(&format!(
                    "      {n} older version{} superseded (`--all` lists {})\n",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "it" } else { "them" }
                )),
            }
        }
        out
    }
}

/// What the store already holds for the paid stages: stage keys with an artifact, and the
/// spoken lines of cached scripts (the voice key depends on them).
#[derive(Debug, Clone, Default)]
pub struct Cached {
    pub keys: HashSet<String>,
    /// Script key → the lines its script speaks.
    pub scripts: HashMap<String, Vec<String>>,
    /// Script key → the cached script, whose scenes key the footage.
    pub documents: HashMap<String, crate::providers::Script>,
}

/// A job whose video is estimated to run past `video.max_seconds`, said before anything
/// is spent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongJob {
    pub id: String,
    pub topic: String,
    pub voice: String,
    /// The estimated length of the video, in seconds.
    pub estimated_seconds: f64,
    pub max_seconds: u32,
}

/// About how long a job's video will be: its script's words (a cached script's) at the
/// voice's planned pace; `script.seconds` for a script still to be written, which the
/// writer sizes to that.
pub fn estimated_seconds(spec: &JobSpec, cached: &Cached) -> f64 {
    let pace = crate::stages::script::planned_pace(&spec.voice);
    let lasts = |lines: &[String]| {
        pace.seconds(
            lines.iter().map(|l| l.split_whitespace().count()).sum(),
            lines.len(),
        )
    };
    if let Some(text) = &spec.script.text {
        // One's own words are known before anything runs.
        let mut lines = crate::providers::offline::sentences(text);
        lines.extend(spec.script.cta.iter().cloned());
        return lasts(&lines);
    }
    match cached.scripts.get(&keys::script_key(spec)) {
        Some(lines) => lasts(lines),
        None => f64::from(spec.script.seconds),
    }
}

/// The jobs of `jobs` estimated to run past their `video.max_seconds`.
pub fn long_jobs(jobs: &[&JobSpec], cached: &Cached) -> Vec<LongJob> {
    jobs.iter()
        .filter_map(|spec| {
            let estimated_seconds = estimated_seconds(spec, cached);
            (estimated_seconds > f64::from(spec.video.max_seconds)).then(|| LongJob {
                id: crate::expand::JobId::of(spec).to_string(),
                topic: spec.topic.clone(),
                voice: spec.voice_name.clone(),
                estimated_seconds: (estimated_seconds * 10.0).round() / 10.0,
                max_seconds: spec.video.max_seconds,
            })
        })
        .collect()
}

impl LongJob {
    /// The warning line under a recipe's table.
    pub fn render(&self) -> String {
        format!(
            "  warning: {} ({} · {}) will run about {:.1} s, past `video.max_seconds` ({}): it would fail at `voice`\n",
            self.id, self.topic, self.voice, self.estimated_seconds, self.max_seconds
        )
    }
}

/// Prices of OpenRouter models in US dollars per 1,000 tokens (prompt, completion), as
/// listed when this table was written. Prices change; `OPENROUTER_PRICE_PER_1K` overrides
/// the table with one price for every token. Models ending in `:free` cost nothing.
const PRICES_PER_1K: &[(&str, f64, f64)] = &[
    ("openai/gpt-4o-mini", 0.000_15, 0.000_6),
    ("openai/gpt-4o", 0.002_5, 0.01),
    ("anthropic/claude-3.5-haiku", 0.000_8, 0.004),
    ("anthropic/claude-3.5-sonnet", 0.003, 0.015),
    ("google/gemini-flash-1.5", 0.000_075, 0.000_3),
];

/// Prices of OpenRouter image models in US dollars per picture, as listed when this
/// table was written (a picture is billed as about 1,290 output tokens).
/// `OPENROUTER_IMAGE_PRICE` overrides it with one price for every model.
const IMAGE_PRICES: &[(&str, f64)] = &[("google/gemini-2.5-flash-image", 0.039)];

/// How model prices are known: the table, or one override for every model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    pub per_1k_override: Option<f64>,
    /// Dollars per picture, for every image model.
    pub per_image_override: Option<f64>,
}

impl Prices {
    /// The table, overridden by `OPENROUTER_PRICE_PER_1K` when it holds a number.
    pub fn from_env() -> Self {
        let price = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p >= 0.0)
        };
        Self {
            per_1k_override: price("OPENROUTER_PRICE_PER_1K"),
            per_image_override: price("OPENROUTER_IMAGE_PRICE"),
        }
    }

    /// Dollars per picture of an image model; `None` for a model not in the table. The
    /// offline stills are free.
    pub fn per_image(&self, model: &str) -> Option<f64> {
        if crate::providers::images::is_offline(Some(model)) || model.ends_with(":free") {
            return Some(0.0);
        }
        if let Some(p) = self.per_image_override {
            return Some(p);
        }
        IMAGE_PRICES
            .iter()
            .find(|(m, _)| *m == model)
            .map(|&(_, price)| price)
    }

    /// Dollars per 1,000 prompt and completion tokens; `None` for a model not in the table.
    pub fn per_1k(&self, model: &str) -> Option<(f64, f64)> {
        if let Some(p) = self.per_1k_override {
            return Some((p, p));
        }
        if model.ends_with(":free") {
            return Some((0.0, 0.0));
        }
        PRICES_PER_1K
            .iter()
            .find(|(m, _, _)| *m == model)
            .map(|&(_, prompt, completion)| (prompt, completion))
    }
}

/// Characters of instructions and response schema the script request carries besides the
/// recipe's prompt.
const SCRIPT_OVERHEAD_CHARS: u64 = 1_400;
/// Roughly four characters of English per token.
const CHARS_PER_TOKEN: u64 = 4;
/// Spoken pace the script is written for, and the title, caption and hashtags around it.
const WORDS_PER_SECOND: f64 = 2.5;
const TOKENS_PER_WORD: f64 = 1.35;
const EXTRA_COMPLETION_TOKENS: u64 = 80;
/// About six characters (a word and its space) per spoken word.
const CHARS_PER_WORD: f64 = 6.0;

/// Paid work, counted once per distinct stage key (jobs that share a script share its
/// request). Every number is an estimate until the services answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// OpenRouter chat completions.
    pub llm_requests: u64,
    pub llm_tokens: u64,
    /// US dollars; `None` when a model's price is unknown (see `unpriced_models`).
    pub llm_cost_usd: Option<f64>,
    /// ElevenLabs characters.
    pub tts_characters: u64,
    /// Pexels searches (a second page is searched when the first lacks clips).
    pub footage_searches: u64,
    /// Stills from an OpenRouter image model, priced into `llm_cost_usd`. Stills drawn
    /// only where stock has no clip (`fallback: image`) are not known before the run and
    /// not counted.
    #[serde(skip_serializing_if = "is_zero")]
    pub images: u64,
}

/// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    pub fn is_zero(&self) -> bool {
        self.llm_requests == 0
            && self.tts_characters == 0
            && self.footage_searches == 0
            && self.images == 0
    }
}

/// The spend of a recipe's jobs that will run: what goes to the services, and what the
/// cache saves.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Always true: tokens and characters are guessed from prompt and script length.
    pub estimate: bool,
    pub spend: Usage,
    pub saved: Usage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
    /// Image models among them (priced per picture, by `OPENROUTER_IMAGE_PRICE`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unpriced_image_models: Vec<String>,
}

impl Spend {
    /// Whether any job touches a paid service at all.
    pub fn is_paid(&self) -> bool {
        !(self.spend.is_zero() && self.saved.is_zero())
    }
}

/// The spend of `jobs` that will run, given what the store has cached. Pure.
pub fn spend(jobs: &[&JobSpec], cached: &Cached, prices: &Prices) -> Spend {
    let mut out = Spend {
        estimate: true,
        spend: Usage {
            llm_cost_usd: Some(0.0),
            ..Usage::default()
        },
        saved: Usage {
            llm_cost_usd: Some(0.0),
            ..Usage::default()
        },
        unpriced_models: Vec::new(),
        unpriced_image_models: Vec::new(),
    };
    let mut seen: HashSet<String> = HashSet::new();
    for spec in jobs {
        let script_key = keys::script_key(spec);
        let script_cached = cached.keys.contains(&script_key);
        if spec.script.provider == ScriptProvider::Openrouter && seen.insert(script_key.clone()) {
            let usage = if script_cached {
                &mut out.saved
            } else {
                &mut out.spend
            };
            let prompt = (SCRIPT_OVERHEAD_CHARS
                + chars(spec.script.prompt.as_deref().unwrap_or_default())
                + chars(spec.script.cta.as_deref().unwrap_or_default()))
            .div_ceil(CHARS_PER_TOKEN);
            let completion = words(spec.script.seconds) * TOKENS_PER_WORD;
            // Whole tokens: the estimate rounds up.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let completion = completion.ceil() as u64 + EXTRA_COMPLETION_TOKENS;
            usage.llm_requests += 1;
            usage.llm_tokens += prompt + completion;
            let model = spec.script.models.first().cloned().unwrap_or_default();
            match prices.per_1k(&model) {
                Some((p, c)) => {
                    if let Some(cost) = usage.llm_cost_usd.as_mut() {
                        *cost += (prompt as f64 * p + completion as f64 * c) / 1000.0;
                    }
                }
                None => {
                    usage.llm_cost_usd = None;
                    if !out.unpriced_models.contains(&model) {
                        out.unpriced_models.push(model);
                    }
                }
            }
        }
        if spec.footage.provider == FootageProvider::Pexels {
            let key = keys::planned_footage_key(spec, cached.documents.get(&script_key));
            if seen.insert(key.clone()) {
                if cached.keys.contains(&key) {
                    out.saved.footage_searches += 1;
                } else {
                    out.spend.footage_searches += 1;
                }
            }
        }
        if spec.footage.provider == FootageProvider::Image
            && !crate::providers::images::is_offline(spec.footage.model.as_deref())
        {
            let script = cached.documents.get(&script_key);
            let key = keys::planned_footage_key(spec, script);
            if seen.insert(key.clone()) {
                let usage = if cached.keys.contains(&key) {
                    &mut out.saved
                } else {
                    &mut out.spend
                };
                let images = planned_stills(spec, script);
                usage.images += images;
                let model = images::model_name(spec.footage.model.as_deref()).to_owned();
                match prices.per_image(&model) {
                    Some(price) => {
                        if let Some(cost) = usage.llm_cost_usd.as_mut() {
                            *cost += images as f64 * price;
                        }
                    }
                    None => {
                        usage.llm_cost_usd = None;
                        if !out.unpriced_models.contains(&model) {
                            out.unpriced_models.push(model.clone());
                            out.unpriced_image_models.push(model);
                        }
                    }
                }
            }
        }
        if spec.voice.provider == VoiceProvider::Elevenlabs {
            // The voice key needs the script's words; until the script exists, the script
            // key and the voice settings stand in for it.
            let (key, characters, voice_cached) = match cached.scripts.get(&script_key) {
                Some(lines) => {
                    let spoken: Vec<&str> = lines.iter().map(String::as_str).collect();
                    let key = keys::voice_key(spec, &spoken, &ToolVersions::default());
                    let cached = cached.keys.contains(&key);
                    (key, spoken_chars(&spoken), cached)
                }
                None => {
                    let key = format!("{script_key}/{}", serde_json::json!(spec.voice));
                    // Truncation of a positive estimate is the intent.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let characters = (words(spec.script.seconds) * CHARS_PER_WORD).ceil() as u64;
                    (key, characters, false)
                }
            };
            if seen.insert(key) {
                if voice_cached {
                    out.saved.tts_characters += characters;
                } else {
                    out.spend.tts_characters += characters;
                }
            }
        }
    }
    out.unpriced_models.sort();
    out.unpriced_image_models.sort();
    out
}

fn words(seconds: u32) -> f64 {
    f64::from(seconds) * WORDS_PER_SECOND
}

/// How many stills image footage draws: one per scene of the cached script, else one per
/// line the length asks for (lines of about [`Pace::LINE_WORDS`] words, at least a hook,
/// a sentence and a call to action); `clips` for footage per video.
///
/// [`Pace::LINE_WORDS`]: crate::providers::Pace::LINE_WORDS
fn planned_stills(spec: &JobSpec, script: Option<&Script>) -> u64 {
    if spec.footage.per == crate::recipe::FootagePer::Video {
        return u64::from(spec.footage.clips.max(1));
    }
    match script {
        Some(script) => script.spoken().len() as u64,
        None => {
            ((words(spec.script.seconds) / crate::providers::Pace::LINE_WORDS).ceil() as u64).max(3)
        }
    }
}

fn chars(text: &str) -> u64 {
    text.chars().count() as u64
}

/// The characters ElevenLabs bills for these lines: trimmed, joined by single spaces.
pub fn spoken_chars(lines: &[&str]) -> u64 {
    let parts: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    parts.iter().map(|l| chars(l)).sum::<u64>() + parts.len().saturating_sub(1) as u64
}

impl Spend {
    /// The human lines under a recipe's table; empty when no paid service is involved.
    pub fn render(&self) -> String {
        if !self.is_paid() {
            return String::new();
        }
        format!(
            "  spend (estimate): {}\n  cache saves:      {}\n",
            usage_line(&self.spend, self),
            usage_line(&self.saved, self)
        )
    }
}

fn usage_line(u: &Usage, spend: &Spend) -> String {
    let listed = |models: &mut dyn Iterator<Item = &String>| {
        models
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text: Vec<&String> = spend
        .unpriced_models
        .iter()
        .filter(|m| !spend.unpriced_image_models.contains(m))
        .collect();
    let mut unknown = Vec::new();
    if !text.is_empty() {
        unknown.push(format!(
            "no price for {}; set `OPENROUTER_PRICE_PER_1K`",
            listed(&mut text.into_iter())
        ));
    }
    if !spend.unpriced_image_models.is_empty() {
        unknown.push(format!(
            "no price for image model {}; set `OPENROUTER_IMAGE_PRICE`",
            listed(&mut spend.unpriced_image_models.iter())
        ));
    }
    let cost = match u.llm_cost_usd {
        Some(c) => format!("~${c:.4}"),
        None => format!("cost unknown ({})", unknown.join("; ")),
    };
    let images = match u.images {
        0 => String::new(),
        1 => ", 1 image".to_owned(),
        n => format!(", {n} images"),
    };
    format!(
        "{} LLM request{} (~{} tokens, {cost}), {} TTS characters, {} footage search{}{images}",
        u.llm_requests,
        if u.llm_requests == 1 { "" } else { "s" },
        u.llm_tokens,
        u.tts_characters,
        u.footage_searches,
        if u.footage_searches == 1 { "" } else { "es" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_changes_name_leaves_by_dotted_path() {
        let old =
            json!({ "title": "a", "voice": { "rate": 155, "voice": "en-gb" }, "hashtags": ["x"] });
        let new = json!({ "title": "b", "voice": { "rate": 140, "voice": "en-gb" }, "hashtags": ["x"], "caption": "c" });
        let fields: Vec<String> = field_changes(&old, &new)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["caption", "title", "voice.rate"]);
    }

    #[test]
    fn a_shared_start_is_left_out_only_when_long() {
        let (a, b) = shown_pair(
            &json!("Owls: the 12-second tip"),
            &json!("Owls: the quick tip"),
        );
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("\"Owls: the 12-second tip\"", "\"Owls: the quick tip\"")
        );
        let (a, b) = shown_pair(
            &json!("Owls, for beginners: the 12-second tip"),
            &json!("Owls, for beginners: the quick tip"),
        );
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("\"…12-second tip\"", "\"…quick tip\"")
        );
        assert_eq!(
            shown_pair(&json!(30), &json!(24)),
            ("30".into(), "24".into())
        );
    }

    /// The one job of a recipe whose footage is `footage`.
    fn spec_with(footage: &str) -> JobSpec {
        crate::stages::footage::spec_with_footage(footage, 20)
    }

    #[test]
    fn stills_from_an_image_model_are_priced_and_offline_ones_are_free() {
        let prices = Prices::default();
        let paid = spec_with("{ provider: image, model: google/gemini-2.5-flash-image }");
        let spend = super::spend(&[&paid], &Cached::default(), &prices);
        // 20 s at 2.5 words a second: 50 words, five lines of ten.
        assert_eq!(spend.spend.images, 5);
        let cost = spend.spend.llm_cost_usd.unwrap();
        assert!((cost - 5.0 * 0.039).abs() < 1e-9, "{cost}");
        assert!(spend.is_paid());
        assert!(spend.render().contains(", 5 images"), "{}", spend.render());

        // Once the script is known, one still per scene.
        let mut cached = Cached::default();
        let script = crate::providers::Script {
            hook: "Owls turn heads.".into(),
            sentences: vec!["They see at night.".into()],
            cta: "Follow.".into(),
            title: String::new(),
            caption: String::new(),
            hashtags: Vec::new(),
            visuals: vec!["owl".into(), "night".into(), "moon".into()],
            usage: None,
        };
        cached
            .documents
            .insert(keys::script_key(&paid), script.clone());
        assert_eq!(super::spend(&[&paid], &cached, &prices).spend.images, 3);
        // Cached footage is saved, not spent.
        cached
            .keys
            .insert(keys::planned_footage_key(&paid, Some(&script)));
        let spend = super::spend(&[&paid], &cached, &prices);
        assert_eq!((spend.spend.images, spend.saved.images), (0, 3));

        let offline = spec_with("{ provider: image }");
        let spend = super::spend(&[&offline], &Cached::default(), &prices);
        assert!(!spend.is_paid(), "{spend:?}");

        let unknown = spec_with("{ provider: image, model: acme/painter }");
        let spend = super::spend(&[&unknown], &Cached::default(), &prices);
        assert_eq!(spend.spend.llm_cost_usd, None);
        assert_eq!(spend.unpriced_models, ["acme/painter"]);
        assert!(
            spend
                .render()
                .contains("no price for image model `acme/painter`; set `OPENROUTER_IMAGE_PRICE`"),
            "{}",
            spend.render()
        );
        let priced = Prices {
            per_image_override: Some(0.01),
            ..Prices::default()
        };
        let spend = super::spend(&[&unknown], &Cached::default(), &priced);
        assert!((spend.spend.llm_cost_usd.unwrap() - 0.05).abs() < 1e-9);
    }

    #[test]
    fn totals_count_stages_and_say_the_cost_only_when_paid() {
        let job = |action, stages: Vec<StagePlan>| PlannedJob {
            id: "1".into(),
            action,
            topic: "t".into(),
            voice: "v".into(),
            template: "f".into(),
            reason: None,
            stage: None,
            replaces: None,
            changes: Vec::new(),
            stages,
            superseded: Vec::new(),
        };
        let run = |stage| StagePlan {
            stage,
            action: StageAction::Run,
        };
        let reuse = |stage| StagePlan {
            stage,
            action: StageAction::Reuse,
        };
        let plan = RecipePlan {
            recipe: "r".into(),
            path: "r.yaml".into(),
            counts: Counts {
                new: 1,
                changed: 1,
                removed: 1,
                ..Counts::default()
            },
            jobs: vec![
                job(Action::New, vec![run(Stage::Script), run(Stage::Voice)]),
                job(
                    Action::Changed,
                    vec![reuse(Stage::Script), run(Stage::Host)],
                ),
            ],
        };
        let free = Totals::of([(&plan, &Spend::default())]);
        assert_eq!(
            free.render(),
            "Plan: 1 new, 1 changed, 1 removed; 3 stages to run, 1 reused\n"
        );
        let paid = Spend {
            spend: Usage {
                llm_requests: 1,
                llm_cost_usd: Some(0.0412),
                ..Usage::default()
            },
            ..Spend::default()
        };
        assert_eq!(
            Totals::of([(&plan, &paid)]).render(),
            "Plan: 1 new, 1 changed, 1 removed; 3 stages to run, 1 reused; ~$0.04\n"
        );
    }
}

/// What `--select` matches a job by.
#[derive(Debug, Clone, Copy)]
pub struct Facets<'a> {
    pub recipe: &'a str,
    pub topic: &'a str,
    pub voice: &'a str,
    pub template: &'a str,
    pub id: &'a str,
}

/// One term of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// `recipe=`, `topic=`, `voice=`, `template=`: the value, compared ignoring case;
    /// a trailing `*` matches any rest.
    Field(Field, String),
    /// `id:3f2a` (or `id=3f2a`): a job id prefix.
    Id(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Recipe,
    Topic,
    Voice,
    Template,
}

const FIELDS: [&str; 5] = ["recipe", "topic", "voice", "template", "id"];

/// The field a mistyped key meant: a near spelling, or the same letters swapped.
fn near(key: &str) -> Option<&'static str> {
    let sorted = |s: &str| {
        let mut c: Vec<char> = s.chars().collect();
        c.sort_unstable();
        c
    };
    crate::recipe::diagnostic::closest(key, FIELDS)
        .or_else(|| FIELDS.into_iter().find(|f| sorted(f) == sorted(key)))
}

/// `--select` given any number of times: a job is selected when every term of one of
/// them matches (`recipe=space-facts,voice=warm` is both; two flags are either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    any_of: Vec<Vec<Term>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("`--select {0}`: a term is empty")]
    Empty(String),
    #[error(
        "`--select {text}`: `{key}` is not something to select by{}; use recipe=, topic=, voice=, template= or id:",
        hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default()
    )]
    UnknownKey {
        text: String,
        key: String,
        hint: Option<String>,
    },
    #[error("`--select {text}`: `{term}` needs a value, as in `voice=warm` or `id:3f2a`")]
    NoValue { text: String, term: String },
    #[error("`--select {text}`: `{id}` is not a job id prefix (hex digits)")]
    BadId { text: String, id: String },
}

impl Selector {
    /// Parses every `--select` given.
    pub fn parse(texts: &[String]) -> Result<Self, SelectError> {
        let mut any_of = Vec::with_capacity(texts.len());
        for text in texts {
            let mut terms = Vec::new();
            for raw in text.split(',') {
                let raw = raw.trim();
                if raw.is_empty() {
                    return Err(SelectError::Empty(text.clone()));
                }
                let (key, value) = raw
                    .split_once('=')
                    .or_else(|| raw.split_once(':'))
                    .ok_or_else(|| SelectError::NoValue {
                        text: text.clone(),
                        term: raw.to_owned(),
                    })?;
                let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
                if value.is_empty() {
                    return Err(SelectError::NoValue {
                        text: text.clone(),
                        term: raw.to_owned(),
                    });
                }
                let field = match key.as_str() {
                    "recipe" => Field::Recipe,
                    "topic" => Field::Topic,
                    "voice" => Field::Voice,
                    "template" => Field::Template,
                    "id" => {
                        if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(SelectError::BadId {
                                text: text.clone(),
                                id: value.to_owned(),
                            });
                        }
                        terms.push(Term::Id(value.to_ascii_lowercase()));
                        continue;
                    }
                    _ => {
                        return Err(SelectError::UnknownKey {
                            text: text.clone(),
                            hint: near(&key).map(str::to_owned),
                            key,
                        });
                    }
                };
                terms.push(Term::Field(field, value.to_lowercase()));
            }
            any_of.push(terms);
        }
        Ok(Self { any_of })
    }

    pub fn is_all(&self) -> bool {
        self.any_of.is_empty()
    }

    pub fn matches(&self, f: &Facets<'_>) -> bool {
        self.is_all()
            || self.any_of.iter().any(|terms| {
                terms.iter().all(|t| match t {
                    Term::Id(prefix) => f.id.starts_with(prefix.as_str()),
                    Term::Field(field, want) => {
                        let have = match field {
                            Field::Recipe => f.recipe,
                            Field::Topic => f.topic,
                            Field::Voice => f.voice,
                            Field::Template => f.template,
                        }
                        .to_lowercase();
                        match want.strip_suffix('*') {
                            Some(start) => have.starts_with(start),
                            None => have == *want,
                        }
                    }
                })
            })
    }
}

/// `--shard I/N`: the slice of the jobs whose id falls in shard `I` of `N` (1-based).
/// By id alone, so every runner of a matrix agrees without talking to the others, and a
/// job keeps its shard whatever else the recipes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: write `I/N`, as in `2/4` (1 ≤ I ≤ N)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u64>().map_err(|_| bad())?,
            n.trim().parse::<u64>().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether the job with this id belongs to this shard: its first 16 hex digits as a
    /// number, modulo the count.
    pub fn holds(&self, id: &str) -> bool {
        let n = u64::from_str_radix(&id[..id.len().min(16)], 16).unwrap_or(0);
        n % self.count == self.index - 1
    }
}

impl Selector {
    /// Whether a stored job matches (its template read from its matrix cell).
    pub fn matches_stored(&self, j: &StoredJob) -> bool {
        if self.is_all() {
            return true;
        }
        let template = serde_json::from_str::<[String; 3]>(&j.cell)
            .map(|[_, _, t]| t)
            .unwrap_or_default();
        self.matches(&Facets {
            recipe: &j.recipe,
            topic: &j.topic,
            voice: &j.voice,
            template: &template,
            id: &j.id,
        })
    }
}

impl PlannedJob {
    pub fn facets<'a>(&'a self, recipe: &'a str) -> Facets<'a> {
        Facets {
            recipe,
            topic: &self.topic,
            voice: &self.voice,
            template: &self.template,
            id: &self.id,
        }
    }
}

impl RecipePlan {
    /// Keeps the rows a selection (and a shard) picks, counted again.
    pub fn retain(&mut self, selector: &Selector, shard: Option<Shard>) {
        let recipe = self.recipe.clone();
        self.jobs.retain(|j| {
            selector.matches(&j.facets(&recipe)) && shard.is_none_or(|s| s.holds(&j.id))
        });
        let mut counts = Counts::default();
        for j in &self.jobs {
            bump(&mut counts, j.action);
            counts.superseded += j.superseded.len();
        }
        self.counts = counts;
    }
}

#[cfg(test)]
mod select_tests {
    use super::*;

    fn facets(id: &'static str, voice: &'static str) -> Facets<'static> {
        Facets {
            recipe: "space-facts",
            topic: "Black holes",
            voice,
            template: "fact",
            id,
        }
    }

    #[test]
    fn terms_of_one_select_all_match_and_two_selects_are_either() {
        let s = Selector::parse(&["recipe=space-facts,voice=warm".into()]).unwrap();
        assert!(s.matches(&facets("3f2a", "warm")));
        assert!(!s.matches(&facets("3f2a", "narrator")));
        let s = Selector::parse(&["voice=warm".into(), "id:3f2A".into()]).unwrap();
        assert!(s.matches(&facets("3f2a0000", "narrator")));
        assert!(s.matches(&facets("00000000", "Warm")));
        assert!(!s.matches(&facets("00000000", "narrator")));
        let s = Selector::parse(&["topic=black*".into()]).unwrap();
        assert!(s.matches(&facets("1", "x")));
        assert!(Selector::default().matches(&facets("1", "x")));
    }

    #[test]
    fn a_mistyped_select_says_what_it_meant() {
        let e = Selector::parse(&["vioce=warm".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`--select vioce=warm`: `vioce` is not something to select by (did you mean `voice`?); use recipe=, topic=, voice=, template= or id:"
        );
        assert!(matches!(
            Selector::parse(&["voice".into()]),
            Err(SelectError::NoValue { .. })
        ));
        assert!(matches!(
            Selector::parse(&["id:xyz".into()]),
            Err(SelectError::BadId { .. })
        ));
    }

    #[test]
    fn shards_split_every_id_exactly_once() {
        let shards: Vec<Shard> = (1..=3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for n in 0u64..300 {
            let id = format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(shards.iter().filter(|s| s.holds(&id)).count(), 1, "{id}");
        }
        for bad in ["0/3", "4/3", "1/0", "2", "a/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
