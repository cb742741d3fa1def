//! The plan: what a run would do, per job, against what the store remembers. Pure: it
//! takes the expanded jobs and the stored rows and decides; it never touches the store.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::expand::{Job, JobSpec};
use crate::keys::{self, ToolVersions};
use crate::recipe::{FootageProvider, ScriptProvider, VoiceProvider};
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
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(jobs.len());
    let mut counts = Counts::default();
    for job in jobs {
        let id = job.id.to_string();
        let (action, reason, stage) = if let Some(s) = by_id.get(id.as_str()) {
            claimed.insert(s.id.as_str());
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
        } else if let Some(olds) = by_cell.get(job.cell.as_str()) {
            let old = olds
                .iter()
                .max_by_key(|o| o.updated_at)
                .map(|o| o.id.as_str())
                .unwrap_or_default();
            for o in olds {
                claimed.insert(o.id.as_str());
            }
            (Action::Changed, Some(format!("replaces {old}")), None)
        } else {
            (Action::New, None, None)
        };
        bump(&mut counts, action);
        out.push(PlannedJob {
            id,
            action,
            topic: job.spec.topic.clone(),
            voice: job.spec.voice_name.clone(),
            template: job.spec.template.clone(),
            reason,
            stage,
        });
    }
    for s in stored {
        if claimed.contains(s.id.as_str()) {
            continue;
        }
        let template = serde_json::from_str::<[String; 3]>(&s.cell)
            .map(|[_, _, t]| t)
            .unwrap_or_default();
        bump(&mut counts, Action::Removed);
        out.push(PlannedJob {
            id: s.id.clone(),
            action: Action::Removed,
            topic: s.topic.clone(),
            voice: s.voice.clone(),
            template,
            reason: Some(format!(
                "no longer in the recipe; last {}",
                s.status.as_str()
            )),
            stage: None,
        });
    }
    RecipePlan {
        recipe: recipe.to_owned(),
        path: path.to_owned(),
        counts,
        jobs: out,
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

impl RecipePlan {
    /// The human table.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut out = format!(
            "{} ({}): {} new, {} changed, {} to resume, {} failed, {} done, {} removed\n",
            self.recipe, self.path, c.new, c.changed, c.resume, c.failed, c.done, c.removed
        );
        for j in &self.jobs {
            out.push_str(&format!(
                "  {:<8} {}  {} · {} · {}{}\n",
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

/// How model prices are known: the table, or one override for every model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    pub per_1k_override: Option<f64>,
}

impl Prices {
    /// The table, overridden by `OPENROUTER_PRICE_PER_1K` when it holds a number.
    pub fn from_env() -> Self {
        Self {
            per_1k_override: std::env::var("OPENROUTER_PRICE_PER_1K")
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p >= 0.0),
        }
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
}

impl Usage {
    pub fn is_zero(&self) -> bool {
        self.llm_requests == 0 && self.tts_characters == 0 && self.footage_searches == 0
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
    out
}

fn words(seconds: u32) -> f64 {
    f64::from(seconds) * WORDS_PER_SECOND
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
            usage_line(&self.spend, &self.unpriced_models),
            usage_line(&self.saved, &self.unpriced_models)
        )
    }
}

fn usage_line(u: &Usage, unpriced: &[String]) -> String {
    let cost = match u.llm_cost_usd {
        Some(c) => format!("~${c:.4}"),
        None => format!(
            "cost unknown (no price for {}; set `OPENROUTER_PRICE_PER_1K`)",
            unpriced
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{} LLM request{} (~{} tokens, {cost}), {} TTS characters, {} footage search{}",
        u.llm_requests,
        if u.llm_requests == 1 { "" } else { "s" },
        u.llm_tokens,
        u.tts_characters,
        u.footage_searches,
        if u.footage_searches == 1 { "" } else { "es" }
    )
}
