//! External services. Each stage talks to one trait; every trait has an offline
//! implementation that works with no keys and a real client for the paid service.
//! Retry policy does not live here: clients class their errors and return.

pub mod budgets;
pub mod elevenlabs;
mod error;
mod http;
pub mod local;
pub mod offline;
pub mod openrouter;
pub mod pexels;
mod probe;
pub mod r2;
pub mod telegram;
pub mod tiktok;

pub use budgets::MemoryBudgets;
pub use error::ProviderError;
pub use http::{SetupError, Timeouts};

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What the script stage asks a writer for. All template fields are already rendered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScriptRequest {
    pub topic: String,
    /// The rendered prompt (real writers) — the offline writer uses topic and vars.
    pub prompt: String,
    /// Target narration length in seconds.
    pub seconds: u32,
    /// Call to action the script must end with, when the recipe gives one.
    pub cta: Option<String>,
    /// Models in priority order; the first is primary, the rest are fallbacks.
    pub models: Vec<String>,
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    /// How fast the job's voice speaks: the script is sized to `seconds` at this pace.
    #[serde(default)]
    pub pace: Pace,
}

/// How fast a voice speaks, which sizes a script to the seconds asked for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Pace {
    /// Words per second while the voice speaks.
    pub words_per_second: f64,
    /// Silence the voice leaves between two lines, in seconds.
    pub pause_seconds: f64,
}

impl Default for Pace {
    /// A relaxed voice-over pace, for a voice that has not been measured.
    fn default() -> Self {
        Self {
            words_per_second: 2.5,
            pause_seconds: 0.0,
        }
    }
}

impl Pace {
    /// The words planned per spoken line when the lines are not known yet.
    pub const LINE_WORDS: f64 = 10.0;

    /// How long `words` take to say in `lines` lines.
    pub fn seconds(&self, words: usize, lines: usize) -> f64 {
        words as f64 / self.words_per_second.max(0.1)
            + self.pause_seconds * lines.saturating_sub(1) as f64
    }

    /// About how many words fill `seconds`, in lines of [`Pace::LINE_WORDS`] words.
    pub fn words_for(&self, seconds: u32) -> u32 {
        let per_word = 1.0 / self.words_per_second.max(0.1) + self.pause_seconds / Self::LINE_WORDS;
        let words = (f64::from(seconds) + self.pause_seconds) / per_word;
        // A positive count well inside u32.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let words = words.round().max(1.0) as u32;
        words
    }
}

/// A finished script: a hook, the body sentences and the call to action are spoken in
/// that order; title, caption and hashtags go to the draft and the notice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Script {
    pub hook: String,
    pub sentences: Vec<String>,
    pub cta: String,
    pub title: String,
    pub caption: String,
    pub hashtags: Vec<String>,
    /// What the viewer should see while each spoken line plays: one concrete, filmable
    /// query per line of [`Script::spoken`], in order. Empty when the writer gave none
    /// (the recipe's footage query then covers the whole video).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visuals: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One scene: a spoken line and what the viewer sees while it is said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scene<'a> {
    pub say: &'a str,
    /// The visual query, when the writer gave one for this line.
    pub show: Option<&'a str>,
}

impl Script {
    /// The spoken lines paired with their visual queries, in order.
    pub fn scenes(&self) -> Vec<Scene<'_>> {
        self.spoken()
            .into_iter()
            .enumerate()
            .map(|(i, say)| Scene {
                say,
                show: self
                    .visuals
                    .get(i)
                    .map(String::as_str)
                    .filter(|q| !q.trim().is_empty()),
            })
            .collect()
    }

    /// Every line that is spoken, in order.
    pub fn spoken(&self) -> Vec<&str> {
        std::iter::once(self.hook.as_str())
            .chain(self.sentences.iter().map(String::as_str))
            .chain(std::iter::once(self.cta.as_str()))
            .filter(|s| !s.trim().is_empty())
            .collect()
    }
}

/// What a paid call cost, recorded per job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// In the provider's credits (USD for OpenRouter), when reported.
    pub cost: Option<f64>,
}

#[async_trait]
pub trait ScriptWriter: Send + Sync {
    async fn write(&self, request: &ScriptRequest) -> Result<Script, ProviderError>;
}

/// What the footage stage asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FootageRequest {
    pub query: String,
    pub clips: u32,
    /// Each clip should last at least this long, in seconds.
    pub min_clip_seconds: f64,
    /// Clip source ids already used elsewhere in the batch; avoid them where possible.
    pub avoid: Vec<String>,
    /// A stable number per job, so generated footage differs between jobs.
    pub variant: u64,
}

/// One downloaded or generated clip, with the credit the draft must carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Clip {
    pub path: PathBuf,
    /// `pexels:123`, `local:file.mp4`, `generated:mandelbrot-3`.
    pub source_id: String,
    pub duration: f64,
    pub credit: Option<Credit>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Credit {
    pub creator: String,
    pub creator_url: String,
    pub url: String,
}

#[async_trait]
pub trait FootageSource: Send + Sync {
    /// Writes the clips into `dir` (which exists and is empty) and returns them.
    async fn fetch(&self, request: &FootageRequest, dir: &Path)
    -> Result<Vec<Clip>, ProviderError>;
}

/// What the voice stage asks for: the spoken lines in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VoiceRequest {
    pub lines: Vec<String>,
}

/// Narration audio plus word timings, which drive the captions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Narration {
    pub audio: PathBuf,
    pub duration: f64,
    pub words: Vec<WordTiming>,
    /// Characters billed, for TTS services that bill by character.
    pub characters: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WordTiming {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

#[async_trait]
pub trait Voice: Send + Sync {
    /// Writes the narration into `dir` (which exists and is empty).
    async fn speak(&self, request: &VoiceRequest, dir: &Path) -> Result<Narration, ProviderError>;

    /// Measures how fast this voice speaks, when that is free (espeak-ng speaks a fixed
    /// calibration text into `dir`); `None` for a voice that is paid per character.
    async fn measure_pace(&self, _dir: &Path) -> Result<Option<Pace>, ProviderError> {
        Ok(None)
    }
}

/// A rendered video to keep reachable for a while (the draft notice links to it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostRequest {
    pub path: PathBuf,
    /// Object key, e.g. `space-facts/3f2a….mp4`.
    pub key: String,
    pub content_type: String,
    /// Unix seconds after which the copy must be gone.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hosted {
    /// Where it is, for deletion: `r2://bucket/key` or a local path.
    pub location: String,
    /// A link a person can open until `expires_at`.
    pub url: String,
    pub expires_at: i64,
}

#[async_trait]
pub trait Host: Send + Sync {
    /// Idempotent by `key`: when the object is already there with the same content (a
    /// HEAD, or a conditional write refused), it is returned without writing again.
    async fn put(&self, request: &HostRequest) -> Result<Hosted, ProviderError>;
    /// Deletes one hosted copy; deleting what is already gone succeeds.
    async fn delete(&self, location: &str) -> Result<(), ProviderError>;
    /// Locations whose expiry is at or before `now` (unix seconds).
    async fn expired(&self, now: i64) -> Result<Vec<String>, ProviderError>;
}

/// A finished video going to the creator's inbox as a draft. Never a published post.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DraftRequest {
    pub video: PathBuf,
    pub job_id: String,
    pub recipe: String,
    /// What a drafts folder names the files by: `<topic-slug>-<voice>-<short id>`.
    pub name: String,
    /// The account name the recipe publishes to (`publish.tiktok.account`).
    pub account: String,
    pub title: String,
    pub caption: String,
    pub hashtags: Vec<String>,
    pub credits: Vec<Credit>,
}

/// A step of a side effect, recorded in the ledger the moment it happens. What a provider
/// needs to resume or reconcile an attempt that ended without an answer lives here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct EffectProgress {
    /// The service's id for the effect (TikTok `publish_id`, a message id, a path), once
    /// the service has given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// How far it got, in the provider's words: `init-sent`, `initialized`, `uploaded`,
    /// `delivered`.
    pub phase: String,
    /// Provider-specific resume state (an upload URL and the chunks it holds, when the
    /// init was made); never a credential.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DraftReceipt {
    pub external_id: String,
    /// Final state as the service reports it, e.g. `SEND_TO_USER_INBOX`.
    pub status: String,
}

/// The ledger entry of one side effect, as a provider sees it: what earlier attempts
/// recorded (read afresh on every call, never captured once), and where to record the
/// next step before it is taken.
#[async_trait]
pub trait EffectLog: Send + Sync {
    /// The last progress recorded for this effect by any attempt, any process.
    async fn progress(&self) -> Result<Option<EffectProgress>, ProviderError>;
    /// Persists a step; returns only once it is durable.
    async fn record(&self, progress: &EffectProgress) -> Result<(), ProviderError>;
}

/// Shared rate budgets and blocks, kept in the store so every process and worker honours
/// them (TikTok's 6 inits per minute per token, 5 pending drafts per 24 h per account,
/// Pexels' hourly window, a key blocked by a 429).
#[async_trait]
pub trait Budgets: Send + Sync {
    /// Takes one unit of `key`'s budget of `limit` per `window_secs`; `Err(until)` (unix
    /// seconds) when the budget is empty or the key is blocked.
    async fn take(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Result<(), i64>, ProviderError>;
    /// Gives back the unit taken last for `key` (the request was refused before it counted).
    async fn give_back(&self, key: &str) -> Result<(), ProviderError>;
    /// Blocks `key` until `until` for everyone (a 429 with Retry-After, a cap reached).
    async fn block(&self, key: &str, until: i64) -> Result<(), ProviderError>;
}

#[async_trait]
pub trait Drafts: Send + Sync {
    /// Sends the draft, or finishes an earlier attempt that `log` recorded: a recorded
    /// `publish_id` is asked about (and its upload resumed or polled) before any new
    /// init, so one job never puts two drafts in the inbox.
    async fn send(
        &self,
        request: &DraftRequest,
        log: &dyn EffectLog,
    ) -> Result<DraftReceipt, ProviderError>;

    /// What is wrong with a draft delivered earlier, if it can be checked and no longer
    /// holds (a local draft file truncated or changed, its sidecar broken). A draft that is
    /// gone (retention removed it) and an inbox draft, which cannot be checked from here,
    /// are `None`.
    async fn verify(
        &self,
        _request: &DraftRequest,
        _receipt: &DraftReceipt,
    ) -> Result<Option<String>, ProviderError> {
        Ok(None)
    }
}

/// The notice a creator gets when a draft is waiting (or a job failed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    /// Where to send it (`notify.telegram.chat`).
    pub chat: String,
    pub text: String,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Returns the service's message id (or a local identifier). An error that leaves it
    /// open whether the message went out is [`ProviderError::Unconfirmed`]; the engine
    /// then never sends it again.
    async fn send(&self, notice: &Notice) -> Result<String, ProviderError>;
}
