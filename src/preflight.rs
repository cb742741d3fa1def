//! Checks before spending: every key, account and quota the selected jobs need, asked of
//! the services through their free endpoints before any job starts. `run` stops when a
//! check fails; `doctor` shows every check. Only the services the jobs use are asked,
//! and quotas count only the jobs that will run.
//!
//! A passing outage (a timeout, a 5xx) is a warning, not a block: the service may be back
//! by the time a job needs it, and the job's own retries handle it then.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::artifacts::{ArtifactStore, Lookup};
use crate::expand::JobSpec;
use crate::keys::{self, ToolVersions};
use crate::plan::{self, Cached, Prices};
use crate::privacy::accounts::SealedAccounts;
use crate::privacy::crypto::{KEY_ENV, Key};
use crate::providers::elevenlabs::{ElevenLabs, ElevenLabsVoice, PlanTier};
use crate::providers::offline::{OfflineWriter, TextWriter};
use crate::providers::openrouter::OpenRouter;
use crate::providers::pexels::Pexels;
use crate::providers::r2::{R2, R2Config};
use crate::providers::telegram::{Telegram, TelegramConfigError};
use crate::providers::tiktok::{Account, AccountStore, TikTokConfig};
use crate::providers::{ProviderError, Script, ScriptWriter, SetupError};
use crate::recipe::{FootageProvider, HostProvider, Resolved, ScriptProvider, VoiceProvider};
use crate::store::Store;

/// Spoken pace the LLM writer is asked for (see its prompt), and about six characters (a
/// word and its space) per word: the characters of a script not written yet.
const WORDS_PER_SECOND: f64 = 2.5;
const CHARS_PER_WORD: f64 = 6.0;

/// One job the checks are for.
#[derive(Debug, Clone)]
pub struct Selected {
    pub recipe: String,
    pub spec: JobSpec,
    /// Whether the job will run (its quota counts); a done job only needs its services
    /// configured.
    pub runs: bool,
    /// `file:line:col` of the voice's `voice_id` in the recipe or project file.
    pub voice_at: Option<String>,
}

impl Selected {
    pub fn new(recipe: &Resolved, spec: &JobSpec, runs: bool) -> Self {
        let voice_at = recipe.voices.get(&spec.voice_name).map(|located| {
            let source = recipe.source(located.origin);
            // A job in another language speaks that language's voice id.
            let pointer = match spec.voice.language.as_deref() {
                Some(language)
                    if located
                        .value
                        .languages
                        .get(language)
                        .is_some_and(|l| l.voice_id.is_some()) =>
                {
                    format!("{}/languages/{language}/voice_id", located.pointer)
                }
                _ => format!("{}/voice_id", located.pointer),
            };
            let pos = source.at(&pointer);
            format!("{}:{}:{}", source.file.path.display(), pos.line, pos.col)
        });
        Self {
            recipe: recipe.name.clone(),
            spec: spec.clone(),
            runs,
            voice_at,
        }
    }
}

/// Where the checks read what is already done and connected. Nothing is written.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    pub state_dir: &'a Path,
    /// The store, when there is one: connected TikTok accounts live there.
    pub store: Option<&'a Store>,
    /// The artifact store, when there is one: cached scripts and voices cost nothing.
    pub artifacts: Option<&'a ArtifactStore>,
    /// Also check services no job needs, when they are configured, and ask services
    /// even when every job's paid work is cached (`doctor`).
    pub unneeded: bool,
    /// Ask Pexels for one search of one result (`doctor`); `run` only checks the key is
    /// set, since a search counts against the hourly budget the jobs need.
    pub probe_pexels: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ready: the key works (or the variables are set) and there is enough quota left.
    Ok,
    /// Not configured: a key, variable or account is not there.
    Missing,
    /// Configured, but refused or unusable (an unknown voice, an endpoint that cannot be
    /// reached).
    Rejected,
    /// Configured and accepted, but there is not enough credit or quota for the jobs.
    Short,
    /// The service did not answer usefully (timeout, 5xx): a warning, not a block.
    Unreachable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Rejected => "rejected",
            Self::Short => "short",
            Self::Unreachable => "unreachable",
        }
    }

    /// Whether a job needing the service would fail for it.
    pub fn blocks(self) -> bool {
        !matches!(self, Self::Ok | Self::Unreachable)
    }
}

/// One service, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub service: &'static str,
    /// Recipes that use it; empty when it is configured but no recipe needs it.
    pub needed_by: Vec<String>,
    pub status: Status,
    pub detail: String,
}

/// Something found wrong with a service the jobs need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub service: &'static str,
    pub status: Status,
    pub message: String,
}

impl Problem {
    pub fn blocks(&self) -> bool {
        self.status.blocks()
    }
}

/// Every check, and the problems among them of services the jobs need.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub problems: Vec<Problem>,
}

impl Report {
    /// What stops a run.
    pub fn blocking(&self) -> Vec<&Problem> {
        self.problems.iter().filter(|p| p.blocks()).collect()
    }

    /// Passing outages: said, not blocking.
    pub fn warnings(&self) -> Vec<&Problem> {
        self.problems.iter().filter(|p| !p.blocks()).collect()
    }
}

/// What one service's check found: a line for when all is well, or what is wrong.
#[derive(Default)]
struct Findings {
    ok: String,
    found: Vec<(Status, String)>,
}

impl Findings {
    fn ok(detail: impl Into<String>) -> Self {
        Self {
            ok: detail.into(),
            found: Vec::new(),
        }
    }

    fn one(status: Status, message: impl Into<String>) -> Self {
        Self {
            ok: String::new(),
            found: vec![(status, message.into())],
        }
    }

    fn add(&mut self, status: Status, message: impl Into<String>) {
        self.found.push((status, message.into()));
    }
}

const SERVICES: [(&str, &str); 6] = [
    ("openrouter", "OPENROUTER_API_KEY"),
    ("pexels", "PEXELS_API_KEY"),
    ("elevenlabs", "ELEVENLABS_API_KEY"),
    ("r2", "R2_ACCESS_KEY_ID"),
    ("tiktok", "TIKTOK_CLIENT_KEY"),
    ("telegram", "TELEGRAM_BOT_TOKEN"),
];

/// Checks every service `selected` needs, through free endpoints only.
pub async fn check(selected: &[Selected], env: &Environment<'_>) -> Report {
    let mut needs: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for job in selected {
        let s = &job.spec;
        let mut need = |service| {
            needs.entry(service).or_default().insert(job.recipe.clone());
        };
        if s.script.provider == ScriptProvider::Openrouter {
            need("openrouter");
        }
        if s.footage.provider == FootageProvider::Pexels {
            need("pexels");
        }
        if s.voice.provider == VoiceProvider::Elevenlabs {
            need("elevenlabs");
        }
        if s.publish.host == HostProvider::R2 {
            need("r2");
        }
        if s.publish.tiktok.is_some() {
            need("tiktok");
        }
        if s.notify.as_ref().is_some_and(|n| n.telegram.is_some()) {
            need("telegram");
        }
    }
    let mut report = Report::default();
    for (service, key) in SERVICES {
        let needed_by: Vec<String> = needs
            .get(service)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if needed_by.is_empty() && !(env.unneeded && crate::secret::Secret::from_env(key).is_some())
        {
            continue;
        }
        let findings = match service {
            "openrouter" => openrouter(selected, env).await,
            "pexels" => pexels(env.probe_pexels).await,
            "elevenlabs" => elevenlabs(selected, env).await,
            "r2" => r2().await,
            "tiktok" => tiktok(selected, env).await,
            _ => telegram().await,
        };
        let status = findings
            .found
            .iter()
            .map(|(s, _)| *s)
            .find(|s| s.blocks())
            .or_else(|| findings.found.first().map(|(s, _)| *s))
            .unwrap_or(Status::Ok);
        let detail = if findings.found.is_empty() {
            findings.ok.clone()
        } else {
            findings
                .found
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !needed_by.is_empty() {
            for (status, message) in &findings.found {
                report.problems.push(Problem {
                    service,
                    status: *status,
                    message: message.clone(),
                });
            }
        }
        report.checks.push(Check {
            service,
            needed_by,
            status,
            detail,
        });
    }
    report
}

fn setup(e: &SetupError) -> Findings {
    match e {
        SetupError::MissingKey(_) => Findings::one(Status::Missing, e.to_string()),
        _ => Findings::one(Status::Rejected, e.to_string()),
    }
}

fn failed(e: &ProviderError) -> Findings {
    if e.is_retryable() {
        Findings::one(
            Status::Unreachable,
            format!("{e} (a passing outage: not blocking)"),
        )
    } else {
        Findings::one(Status::Rejected, e.to_string())
    }
}

fn running(selected: &[Selected]) -> impl Iterator<Item = &Selected> {
    selected.iter().filter(|s| s.runs)
}

/// The spoken lines of the script a job will speak, when they can be known without
/// spending: a cached script's, or what the offline writer writes (it is deterministic
/// and free).
async fn spoken_lines(spec: &JobSpec, artifacts: Option<&ArtifactStore>) -> Option<Vec<String>> {
    let lines = |script: &Script| -> Vec<String> {
        script.spoken().into_iter().map(str::to_owned).collect()
    };
    if let Some(artifacts) = artifacts
        && let Ok(Lookup::Hit(hit)) = artifacts.inspect("script", &keys::script_key(spec)).await
        && let Ok(script) = hit.output::<Script>()
    {
        return Some(lines(&script));
    }
    if !matches!(
        spec.script.provider,
        ScriptProvider::Offline | ScriptProvider::Text
    ) {
        return None;
    }
    let request =
        crate::stages::script::request(spec, crate::stages::script::planned_pace(&spec.voice));
    let written = if spec.script.provider == ScriptProvider::Text {
        TextWriter.write(&request).await
    } else {
        OfflineWriter.write(&request).await
    };
    written.ok().map(|script| lines(&script))
}

/// Characters of a script that does not exist yet, at the pace the writer is asked for.
fn estimated_chars(seconds: u32) -> u64 {
    // Truncation of a positive estimate is the intent.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let chars = (f64::from(seconds) * WORDS_PER_SECOND * CHARS_PER_WORD).ceil() as u64;
    chars
}

/// The ElevenLabs characters the running jobs will be billed: the actual text of scripts
/// already written (or written offline), an estimate for the rest; each distinct text
/// and voice once, nothing for a narration already cached.
async fn characters_needed(selected: &[Selected], artifacts: Option<&ArtifactStore>) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for job in running(selected) {
        let spec = &job.spec;
        if spec.voice.provider != VoiceProvider::Elevenlabs {
            continue;
        }
        match spoken_lines(spec, artifacts).await {
            Some(lines) => {
                let spoken: Vec<&str> = lines.iter().map(String::as_str).collect();
                let key = keys::voice_key(spec, &spoken, &ToolVersions::default());
                let cached = artifacts.is_some_and(|a| a.contains("voice", &key));
                if seen.insert(key) && !cached {
                    total += plan::spoken_chars(&spoken);
                }
            }
            None => {
                let key = format!(
                    "{}/{}",
                    keys::script_key(spec),
                    serde_json::json!(spec.voice)
                );
                if seen.insert(key) {
                    total += estimated_chars(spec.script.seconds);
                }
            }
        }
    }
    total
}

async fn elevenlabs(selected: &[Selected], env: &Environment<'_>) -> Findings {
    let client = match ElevenLabs::from_env(ElevenLabsVoice::new(""), PlanTier::Free.permits()) {
        Ok(c) => c,
        Err(e) => return setup(&e),
    };
    let needed = characters_needed(selected, env.artifacts).await;
    if needed == 0 && !env.unneeded {
        // Every narration is cached: nothing will be asked of ElevenLabs.
        return Findings::ok("key set; every narration is cached");
    }
    let mut findings = match client.subscription().await {
        Ok(sub) => {
            let left = format!(
                "{} of {} characters left on the `{}` plan",
                sub.remaining, sub.character_limit, sub.tier
            );
            if sub.remaining == 0 {
                Findings::one(
                    Status::Short,
                    format!(
                        "key accepted but no characters left on the `{}` plan",
                        sub.tier
                    ),
                )
            } else if sub.remaining < needed {
                Findings::one(
                    Status::Short,
                    format!(
                        "the ElevenLabs plan has {} characters left but this run needs about {needed}; wait for the quota reset, upgrade the plan, or run fewer jobs",
                        sub.remaining
                    ),
                )
            } else if needed > 0 {
                Findings::ok(format!(
                    "key accepted; {left}; the jobs to run need about {needed}"
                ))
            } else {
                Findings::ok(format!("key accepted; {left}"))
            }
        }
        Err(e) => return failed(&e),
    };
    // Each voice id once, with the first place it is written.
    let mut voices: BTreeMap<&str, &Selected> = BTreeMap::new();
    for job in selected {
        if job.spec.voice.provider == VoiceProvider::Elevenlabs
            && let Some(id) = job.spec.voice.voice_id.as_deref()
            && !id.trim().is_empty()
        {
            voices.entry(id).or_insert(job);
        }
    }
    for (id, job) in voices {
        match client.check_voice(id).await {
            Ok(true) => {}
            Ok(false) => findings.add(
                Status::Rejected,
                format!(
                    "{}voice `{}` of recipe `{}` names ElevenLabs voice id `{id}`, which does not exist for this key; copy the id from the voice library",
                    job.voice_at
                        .as_deref()
                        .map(|at| format!("{at}: "))
                        .unwrap_or_default(),
                    job.spec.voice_name,
                    job.recipe
                ),
            ),
            Err(e) => {
                let found = failed(&e);
                findings.found.extend(found.found);
            }
        }
    }
    findings
}

async fn openrouter(selected: &[Selected], env: &Environment<'_>) -> Findings {
    let client = match OpenRouter::from_env() {
        Ok(c) => c,
        Err(e) => return setup(&e),
    };
    // The spend of the scripts still to write.
    let mut cached = Cached::default();
    let specs: Vec<&JobSpec> = running(selected).map(|s| &s.spec).collect();
    if let Some(artifacts) = env.artifacts {
        for spec in &specs {
            let script_key = keys::script_key(spec);
            if artifacts.contains("script", &script_key) {
                cached.keys.insert(script_key);
            }
        }
    }
    let spend = plan::spend(&specs, &cached, &Prices::from_env());
    if spend.spend.llm_requests == 0 && !env.unneeded {
        // Every script is written: nothing will be asked of OpenRouter.
        return Findings::ok("key set; every script is cached");
    }
    let key = match client.key_status().await {
        Ok(k) => k,
        Err(e) => return failed(&e),
    };
    let cost = spend.spend.llm_cost_usd;
    let tier = if key.is_free_tier { "; free tier" } else { "" };
    let credit = match (key.remaining, key.limit) {
        (Some(left), Some(limit)) => format!("${left:.2} of ${limit:.2} credit left"),
        (Some(left), None) => format!("${left:.2} credit left"),
        _ => "no credit limit on the key".to_owned(),
    };
    let need = match cost {
        Some(c) if spend.spend.llm_requests > 0 => {
            format!("; the jobs to run need about ${c:.4}")
        }
        None => format!(
            "; the cost of {} is unknown (set `OPENROUTER_PRICE_PER_1K`)",
            spend
                .unpriced_models
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    match (key.remaining, cost) {
        (Some(left), _) if left <= 0.0 => Findings::one(
            Status::Short,
            format!("key accepted but no credit left{tier}; add credit or raise the key's limit"),
        ),
        (Some(left), Some(c)) if c > left => Findings::one(
            Status::Short,
            format!(
                "the OpenRouter key has ${left:.4} credit left but this run needs about ${c:.4}; add credit, raise the key's limit or run fewer jobs"
            ),
        ),
        _ => Findings::ok(format!("key accepted; {credit}{tier}{need}")),
    }
}

async fn pexels(probe: bool) -> Findings {
    let client = match Pexels::from_env() {
        Ok(c) => c,
        Err(e) => return setup(&e),
    };
    if !probe {
        return Findings::ok("key set (not called: a search counts against the hour)");
    }
    match client.probe_key().await {
        Ok(rate) => match (rate.remaining, rate.limit) {
            (Some(0), _) => {
                Findings::ok("key accepted; no requests left this period (runs wait for the reset)")
            }
            (Some(left), Some(limit)) => Findings::ok(format!(
                "key accepted; {left} of {limit} requests left this period"
            )),
            _ => Findings::ok("key accepted"),
        },
        Err(e) => failed(&e),
    }
}

async fn r2() -> Findings {
    let config = match R2Config::from_env() {
        Ok(c) => c,
        Err(e) => return Findings::one(Status::Missing, e.to_string()),
    };
    let (bucket, endpoint) = (config.bucket.clone(), config.endpoint.clone());
    let client = match R2::new(config) {
        Ok(c) => c,
        Err(e) => return Findings::one(Status::Rejected, e.to_string()),
    };
    match client.check_bucket().await {
        Ok(()) => Findings::ok(format!("bucket `{bucket}` reachable at `{endpoint}`")),
        Err(e) => failed(&e),
    }
}

async fn telegram() -> Findings {
    let client = match Telegram::from_env() {
        Ok(c) => c,
        Err(e @ TelegramConfigError::MissingToken) => {
            return Findings::one(Status::Missing, e.to_string());
        }
        Err(e) => return Findings::one(Status::Rejected, e.to_string()),
    };
    match client.check_token().await {
        Ok(bot) => Findings::ok(format!("token accepted ({bot})")),
        Err(e) => failed(&e),
    }
}

/// The key sealing stored tokens, without creating one: no key file means no account
/// was ever connected here.
fn sealing_key(state_dir: &Path) -> Result<Option<Key>, String> {
    if let Some(value) = crate::secret::Secret::from_env(KEY_ENV) {
        return Key::parse(value.expose())
            .map(Some)
            .ok_or_else(|| format!("`{KEY_ENV}` is not a 32-byte key in base64 or hex"));
    }
    let file = crate::privacy::key_file(state_dir);
    if !file.is_file() {
        return Ok(None);
    }
    Key::load_or_create(&file)
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn tiktok(selected: &[Selected], env: &Environment<'_>) -> Findings {
    if let Err(e) = TikTokConfig::from_env() {
        return Findings::one(Status::Missing, e.to_string());
    }
    match Account::from_env() {
        Err(e) => return Findings::one(Status::Rejected, e.to_string()),
        Ok(Some(_)) => {
            return Findings::ok("variables set; account from `TIKTOK_ACCOUNT_JSON`");
        }
        Ok(None) => {}
    }
    let names: BTreeSet<&str> = selected
        .iter()
        .filter_map(|s| s.spec.publish.tiktok.as_ref())
        .map(|t| t.account.as_str())
        .collect();
    if names.is_empty() {
        return Findings::ok("variables set");
    }
    let key = match sealing_key(env.state_dir) {
        Ok(k) => k,
        Err(e) => return Findings::one(Status::Rejected, e),
    };
    let accounts = match (env.store, key) {
        (Some(store), Some(key)) => Some(SealedAccounts::new(store.clone(), key)),
        _ => None,
    };
    let mut findings = Findings::ok(format!(
        "variables set; {} connected",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let not_connected = |name: &str| {
        format!(
            "no TikTok account `{name}` is connected: run `factory auth tiktok login --account {name}` or set `TIKTOK_ACCOUNT_JSON`"
        )
    };
    for name in names {
        let Some(accounts) = &accounts else {
            findings.add(Status::Missing, not_connected(name));
            continue;
        };
        match accounts.load(name).await {
            Ok(None) => findings.add(Status::Missing, not_connected(name)),
            Ok(Some(a)) if a.refresh_expires_at <= crate::clock::now() => findings.add(
                Status::Rejected,
                format!(
                    "the TikTok login for `{name}` has expired: run `factory auth tiktok login --account {name}`"
                ),
            ),
            Ok(Some(_)) => {}
            Err(e) => findings.add(
                Status::Rejected,
                format!("cannot read TikTok account `{name}`: {e}"),
            ),
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_warns_and_everything_else_blocks() {
        assert!(!Status::Ok.blocks());
        assert!(!Status::Unreachable.blocks());
        for s in [Status::Missing, Status::Rejected, Status::Short] {
            assert!(s.blocks(), "{s:?}");
        }
    }

    #[tokio::test]
    async fn offline_scripts_are_counted_by_their_actual_text() {
        let recipe = "version: 1\nname: chars\nvoices:\n  e: { provider: elevenlabs, voice_id: abc }\ntemplates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n    title: facts\nbatch:\n  template: t\n  matrix: { topic: [Neutron stars], voice: [e] }\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chars.yaml");
        std::fs::write(&path, recipe).unwrap();
        let resolved = crate::recipe::load(&path).unwrap();
        let jobs = crate::expand::expand(&resolved).unwrap();
        let selected: Vec<Selected> = jobs
            .iter()
            .map(|j| Selected::new(&resolved, &j.spec, true))
            .collect();
        let spoken = spoken_lines(&jobs[0].spec, None).await.unwrap();
        let spoken: Vec<&str> = spoken.iter().map(String::as_str).collect();
        let actual = plan::spoken_chars(&spoken);
        assert_eq!(characters_needed(&selected, None).await, actual);
        // The offline writer sizes a 3-second script to 3 seconds: the estimate from
        // `seconds` alone is now of the same order as the text.
        assert!(actual < 3 * estimated_chars(3), "{actual}");
        let at = selected[0].voice_at.as_deref().unwrap();
        assert!(at.ends_with("chars.yaml:4:40"), "{at}");
    }
}
