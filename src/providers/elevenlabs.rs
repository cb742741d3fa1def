//! Narration from ElevenLabs text-to-speech with timestamps: one request for the whole
//! script, whose character alignment becomes the word timings the captions follow.
//!
//! The plan caps requests in flight account-wide, so every client built for one account
//! shares one semaphore sized by the plan tier.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::http::{self, SetupError, Timeouts};
use super::{Narration, ProviderError, Voice, VoiceRequest, WordTiming, probe};
use crate::secret::Secret;

const SERVICE: &str = "elevenlabs";
pub const KEY_VAR: &str = "ELEVENLABS_API_KEY";
pub const BASE_VAR: &str = "ELEVENLABS_BASE_URL";
pub const DEFAULT_BASE: &str = "https://api.elevenlabs.io";
const OUTPUT_FORMAT: &str = "mp3_44100_128";
const AUDIO_FILE: &str = "narration.mp3";

/// A voice as a recipe describes it: which voice and model, and optional per-request
/// settings that override the voice's stored ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElevenLabsVoice {
    pub voice_id: String,
    #[serde(default = "default_model", alias = "model_id")]
    pub model: String,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    /// 0 to 1; above 0 adds latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// 0.7 to 1.2; 1 is normal speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Best-effort determinism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
}

fn default_model() -> String {
    "eleven_multilingual_v2".to_owned()
}

impl ElevenLabsVoice {
    pub fn new(voice_id: impl Into<String>) -> Self {
        Self {
            voice_id: voice_id.into(),
            model: default_model(),
            stability: None,
            similarity_boost: None,
            style: None,
            use_speaker_boost: None,
            speed: None,
            seed: None,
        }
    }

    /// Settings outside the documented ranges, one message each, for recipe validation.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.voice_id.trim().is_empty() {
            problems.push("`voice_id` is empty".to_owned());
        }
        for (name, value) in [
            ("stability", self.stability),
            ("similarity_boost", self.similarity_boost),
            ("style", self.style),
        ] {
            if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
                problems.push(format!("`{name}` is {v}; it must be between 0 and 1"));
            }
        }
        if let Some(v) = self.speed.filter(|v| !(0.7..=1.2).contains(v)) {
            problems.push(format!("`speed` is {v}; it must be between 0.7 and 1.2"));
        }
        problems
    }

    fn settings(&self) -> Option<Value> {
        let mut settings = serde_json::Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                settings.insert(name.to_owned(), value);
            }
        };
        put("stability", self.stability.map(Value::from));
        put("similarity_boost", self.similarity_boost.map(Value::from));
        put("style", self.style.map(Value::from));
        put("use_speaker_boost", self.use_speaker_boost.map(Value::from));
        put("speed", self.speed.map(Value::from));
        (!settings.is_empty()).then_some(Value::Object(settings))
    }
}

/// Subscription plans and the requests each may have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanTier {
    Free,
    Starter,
    Creator,
    Pro,
    Scale,
    Business,
}

impl PlanTier {
    pub fn concurrency(self) -> usize {
        match self {
            Self::Free => 2,
            Self::Starter => 3,
            Self::Creator => 5,
            Self::Pro => 10,
            Self::Scale | Self::Business => 15,
        }
    }

    /// The plan named by the subscription's `tier`; unknown names give `None`.
    pub fn from_tier(tier: &str) -> Option<Self> {
        let tier = tier.to_ascii_lowercase();
        Some(match tier.as_str() {
            "free" => Self::Free,
            "starter" => Self::Starter,
            "creator" => Self::Creator,
            "pro" => Self::Pro,
            "scale" => Self::Scale,
            _ if tier.contains("business") => Self::Business,
            _ => return None,
        })
    }

    /// A fresh semaphore with this plan's concurrency, to share between the clients of
    /// one account.
    pub fn permits(self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.concurrency()))
    }
}

/// What `GET /v1/user/subscription` says about the character quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub tier: String,
    pub character_count: u64,
    pub character_limit: u64,
    /// Characters left until the reset.
    pub remaining: u64,
    /// Unix seconds of the next quota reset, when reported.
    pub resets_at: Option<i64>,
}

impl Subscription {
    pub fn plan(&self) -> Option<PlanTier> {
        PlanTier::from_tier(&self.tier)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ElevenLabsOptions {
    /// Without a trailing slash; `/v1/...` is appended.
    pub base_url: String,
    pub timeouts: Timeouts,
}

impl Default for ElevenLabsOptions {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE.to_owned(),
            timeouts: Timeouts {
                connect: Duration::from_secs(10),
                request: Duration::from_secs(180),
            },
        }
    }
}

impl ElevenLabsOptions {
    /// Defaults, with the base URL from `ELEVENLABS_BASE_URL` when set.
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            base_url: http::base_from_env(BASE_VAR, DEFAULT_BASE)?,
            ..Self::default()
        })
    }
}

#[derive(Debug, Clone)]
pub struct ElevenLabs {
    http: reqwest::Client,
    key: Secret,
    scrub: http::Scrubber,
    base_url: String,
    voice: ElevenLabsVoice,
    permits: Arc<Semaphore>,
}

impl ElevenLabs {
    /// `permits` caps requests in flight; share one per account (see [`PlanTier::permits`]).
    pub fn new(
        key: Secret,
        voice: ElevenLabsVoice,
        options: ElevenLabsOptions,
        permits: Arc<Semaphore>,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            // Built once per process: the registry asks for a client per voice and job.
            http: http::shared_client(options.timeouts)?,
            scrub: http::Scrubber::for_key(&key),
            key,
            base_url: http::check_base(BASE_VAR, &options.base_url)?,
            voice,
            permits,
        })
    }

    /// The key from `ELEVENLABS_API_KEY`, the base from `ELEVENLABS_BASE_URL`.
    pub fn from_env(voice: ElevenLabsVoice, permits: Arc<Semaphore>) -> Result<Self, SetupError> {
        Self::new(
            http::key_from_env(KEY_VAR)?,
            voice,
            ElevenLabsOptions::from_env()?,
            permits,
        )
    }

    /// The same account, connection pool and concurrency cap, speaking with another voice.
    pub fn with_voice(&self, voice: ElevenLabsVoice) -> Self {
        Self {
            voice,
            ..self.clone()
        }
    }

    /// The character quota, for a check before a batch and for `factory doctor`.
    pub async fn subscription(&self) -> Result<Subscription, ProviderError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            tier: String,
            #[serde(default)]
            character_count: u64,
            #[serde(default)]
            character_limit: u64,
            #[serde(default)]
            next_character_count_reset_unix: Option<i64>,
        }
        let (status, headers, body) = self
            .get(&["v1", "user", "subscription"], "reading the subscription")
            .await?;
        if !status.is_success() {
            return Err(self.classify(status, &headers, &body));
        }
        let raw: Raw = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::retryable(SERVICE, format!("unreadable subscription ({e})"))
        })?;
        Ok(Subscription {
            remaining: raw.character_limit.saturating_sub(raw.character_count),
            tier: raw.tier,
            character_count: raw.character_count,
            character_limit: raw.character_limit,
            resets_at: raw.next_character_count_reset_unix,
        })
    }

    /// `base` plus path segments, each percent-encoded (a voice id goes in the path).
    /// A GET with the key: the answer's status, headers and body, whatever the status.
    async fn get(
        &self,
        segments: &[&str],
        doing: &'static str,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
        let response = self
            .http
            .get(self.url(segments)?)
            .header("xi-api-key", http::sensitive(self.key.expose())?)
            .send()
            .await
            .map_err(|e| http::classify_transport(SERVICE, doing, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        Ok((status, headers, http::read_body(SERVICE, response).await?))
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = Url::parse(&self.base_url)
            .map_err(|e| ProviderError::permanent(SERVICE, format!("bad base url: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::permanent(SERVICE, "the base url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
        let detail = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|mut v| v.get_mut("detail").map(Value::take));
        let wait = http::retry_after(headers);
        let (code, message) = match &detail {
            // FastAPI validation errors: a list of `{loc, msg, type}`.
            Some(Value::Array(items)) => {
                let messages: Vec<String> = items.iter().map(validation_message).collect();
                return ProviderError::permanent(
                    SERVICE,
                    format!(
                        "the request was rejected: {}",
                        self.scrub.clean(&messages.join("; "))
                    ),
                );
            }
            // The current vocabulary is `code`; older answers only carry `status`.
            Some(Value::Object(fields)) => (
                fields
                    .get("code")
                    .and_then(Value::as_str)
                    .or_else(|| fields.get("status").and_then(Value::as_str))
                    .unwrap_or_default()
                    .to_owned(),
                fields
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Some(Value::String(text)) => (String::new(), text.clone()),
            _ => (String::new(), String::from_utf8_lossy(body).into_owned()),
        };
        let message = self.scrub.clean(&message);
        match code.as_str() {
            "invalid_api_key" => self.bad_key(&message),
            "" if status == StatusCode::UNAUTHORIZED => self.bad_key(&message),
            "quota_exceeded" => ProviderError::permanent(
                SERVICE,
                format!(
                    "out of characters on the plan: {message}; wait for the quota reset or upgrade"
                ),
            ),
            "voice_not_found" => ProviderError::permanent(
                SERVICE,
                format!(
                    "voice `{}` was not found: {message}; check `voice_id` in the recipe",
                    self.voice.voice_id
                ),
            ),
            "max_character_limit_exceeded" => ProviderError::permanent(
                SERVICE,
                format!(
                    "the script is too long for model `{}`: {message}",
                    self.voice.model
                ),
            ),
            // Too many requests in flight for the plan: one of ours will finish soon.
            "concurrent_limit_exceeded" | "too_many_concurrent_requests" => {
                ProviderError::retry_after(
                    SERVICE,
                    format!("too many requests in flight for the plan: {message}"),
                    wait,
                )
            }
            // Rate or load limits: back off.
            "rate_limit_exceeded" | "system_busy" => ProviderError::retry_after(
                SERVICE,
                format!("rate limited or busy: {message}"),
                wait,
            ),
            _ => http::classify_status(SERVICE, status, wait, &message),
        }
    }

    fn bad_key(&self, message: &str) -> ProviderError {
        ProviderError::permanent(
            SERVICE,
            format!(
                "rejected the API key (`{KEY_VAR}`): {message}; check the key (sent in the `xi-api-key` header)"
            ),
        )
    }
}

#[async_trait]
impl Voice for ElevenLabs {
    async fn speak(&self, request: &VoiceRequest, dir: &Path) -> Result<Narration, ProviderError> {
        let text = request
            .lines
            .iter()
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() {
            return Err(ProviderError::permanent(SERVICE, "there is nothing to say"));
        }
        let mut body = json!({ "text": text, "model_id": self.voice.model });
        if let Some(settings) = self.voice.settings() {
            body["voice_settings"] = settings;
        }
        if let Some(seed) = self.voice.seed {
            body["seed"] = json!(seed);
        }
        let mut url = self.url(&[
            "v1",
            "text-to-speech",
            &self.voice.voice_id,
            "with-timestamps",
        ])?;
        url.query_pairs_mut()
            .append_pair("output_format", OUTPUT_FORMAT);

        // A closed semaphore means the run is shutting down.
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ProviderError::Cancelled)?;
        let response = self
            .http
            .post(url)
            .header("xi-api-key", http::sensitive(self.key.expose())?)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::classify_transport(SERVICE, "synthesising speech", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = http::read_body(SERVICE, response).await?;
        drop(permit);
        if !status.is_success() {
            return Err(self.classify(status, &headers, &bytes));
        }

        let speech: Speech = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::retryable(SERVICE, format!("the response is not valid JSON ({e})"))
        })?;
        let audio = base64::engine::general_purpose::STANDARD
            .decode(speech.audio_base64.trim())
            .map_err(|e| {
                ProviderError::retryable(SERVICE, format!("`audio_base64` does not decode ({e})"))
            })?;
        if audio.is_empty() {
            return Err(ProviderError::retryable(
                SERVICE,
                "the response carried no audio",
            ));
        }
        let path = dir.join(AUDIO_FILE);
        let part = dir.join(format!("{AUDIO_FILE}.part"));
        tokio::fs::write(&part, &audio).await.map_err(|e| {
            ProviderError::permanent(SERVICE, format!("writing `{}`: {e}", part.display()))
        })?;
        let probed = probe::duration(&part).await.map_err(|problem| {
            let _ = std::fs::remove_file(&part);
            ProviderError::retryable(
                SERVICE,
                format!("the returned audio is not usable: {problem}"),
            )
        })?;
        tokio::fs::rename(&part, &path).await.map_err(|e| {
            ProviderError::permanent(SERVICE, format!("writing `{}`: {e}", path.display()))
        })?;

        let aligned = [
            speech.alignment.as_ref(),
            speech.normalized_alignment.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find_map(Alignment::words);
        let (words, duration) = match aligned {
            Some((words, last_end)) => (words, last_end),
            // Without any alignment the captions still need timings: spread the words
            // evenly over the audio, which is close enough for steady narration.
            None => (spread_evenly(&text, probed), probed),
        };
        let characters = headers
            .get("character-cost")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| text.chars().count() as u64);
        Ok(Narration {
            audio: path,
            duration,
            words,
            characters,
            lufs: None,
        })
    }
}

fn validation_message(item: &Value) -> String {
    let message = item.get("msg").and_then(Value::as_str).unwrap_or("invalid");
    let location: Vec<String> = item
        .get("loc")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if location.is_empty() {
        message.to_owned()
    } else {
        format!("`{}`: {message}", location.join("."))
    }
}

fn spread_evenly(text: &str, duration: f64) -> Vec<WordTiming> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let slot = duration / words.len().max(1) as f64;
    words
        .iter()
        .enumerate()
        .map(|(i, word)| WordTiming {
            word: (*word).to_owned(),
            start: i as f64 * slot,
            end: (i + 1) as f64 * slot,
        })
        .collect()
}

#[derive(Deserialize)]
struct Speech {
    audio_base64: String,
    #[serde(default)]
    alignment: Option<Alignment>,
    #[serde(default)]
    normalized_alignment: Option<Alignment>,
}

#[derive(Debug, Deserialize)]
struct Alignment {
    characters: Vec<String>,
    character_start_times_seconds: Vec<f64>,
    character_end_times_seconds: Vec<f64>,
}

impl Alignment {
    /// Words (runs of non-space characters) with the start of their first character and
    /// the end of their last, plus the last end time; `None` if the arrays are unusable.
    fn words(&self) -> Option<(Vec<WordTiming>, f64)> {
        let n = self.characters.len();
        if n == 0
            || self.character_start_times_seconds.len() != n
            || self.character_end_times_seconds.len() != n
        {
            return None;
        }
        let mut words = Vec::new();
        let mut current: Option<WordTiming> = None;
        let timed = self
            .characters
            .iter()
            .zip(&self.character_start_times_seconds)
            .zip(&self.character_end_times_seconds);
        for ((character, &start), &end) in timed {
            if character.chars().all(char::is_whitespace) {
                words.extend(current.take());
                continue;
            }
            let word = current.get_or_insert_with(|| WordTiming {
                word: String::new(),
                start,
                end,
            });
            word.word.push_str(character);
            word.end = end.max(word.start);
        }
        words.extend(current);
        let last_end = self
            .character_end_times_seconds
            .iter()
            .copied()
            .fold(0.0_f64, f64::max);
        (!words.is_empty() && last_end > 0.0).then_some((words, last_end))
    }
}

/// Checks before spending.
impl ElevenLabs {
    /// Whether a voice id names a voice this key can use (`GET /v1/voices/{voice_id}`):
    /// `Ok(false)` when ElevenLabs knows no such voice.
    pub async fn check_voice(&self, voice_id: &str) -> Result<bool, ProviderError> {
        let (status, headers, body) = self
            .get(&["v1", "voices", voice_id], "looking up a voice")
            .await?;
        match status {
            s if s.is_success() => Ok(true),
            // An id that is not a voice id at all is refused with 400 by some API versions.
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Ok(false),
            _ => Err(self.classify(status, &headers, &body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alignment(text: &str, step: f64) -> Alignment {
        let n = text.chars().count();
        Alignment {
            characters: text.chars().map(String::from).collect(),
            character_start_times_seconds: (0..n).map(|i| i as f64 * step).collect(),
            character_end_times_seconds: (1..=n).map(|i| i as f64 * step).collect(),
        }
    }

    #[test]
    fn words_follow_the_character_alignment() {
        let (words, last) = alignment("Hi  there, you.", 0.1).words().unwrap();
        let summary: Vec<(&str, f64, f64)> = words
            .iter()
            .map(|w| {
                (
                    w.word.as_str(),
                    (w.start * 10.0).round(),
                    (w.end * 10.0).round(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("Hi", 0.0, 2.0),
                ("there,", 4.0, 10.0),
                ("you.", 11.0, 15.0)
            ]
        );
        assert!((last - 1.5).abs() < 1e-9);
    }

    #[test]
    fn mismatched_alignment_is_unusable() {
        let mut broken = alignment("Hi", 0.1);
        broken.character_end_times_seconds.pop();
        assert!(broken.words().is_none());
    }

    #[test]
    fn even_spread_covers_the_duration() {
        let words = spread_evenly("one two three four", 2.0);
        assert_eq!(words.len(), 4);
        assert_eq!(words[1].start, 0.5);
        assert_eq!(words[3].end, 2.0);
    }

    #[test]
    fn voice_settings_are_checked_and_sent_only_when_set() {
        let mut voice = ElevenLabsVoice::new("abc");
        assert!(voice.problems().is_empty());
        assert_eq!(voice.settings(), None);
        voice.stability = Some(1.5);
        voice.speed = Some(2.0);
        voice.use_speaker_boost = Some(true);
        assert_eq!(voice.problems().len(), 2);
        assert_eq!(
            voice.settings(),
            Some(json!({ "stability": 1.5, "use_speaker_boost": true, "speed": 2.0 }))
        );
    }

    #[test]
    fn a_voice_reads_from_yaml_shaped_json() {
        let voice: ElevenLabsVoice = serde_json::from_value(
            json!({ "voice_id": "v1", "model_id": "eleven_flash_v2_5", "speed": 1.1 }),
        )
        .unwrap();
        assert_eq!(voice.model, "eleven_flash_v2_5");
        assert!(
            serde_json::from_value::<ElevenLabsVoice>(json!({ "voice_id": "v", "pitch": 1 }))
                .is_err()
        );
    }

    #[test]
    fn plan_tiers_map_to_concurrency() {
        assert_eq!(
            PlanTier::from_tier("creator").map(PlanTier::concurrency),
            Some(5)
        );
        assert_eq!(
            PlanTier::from_tier("growing_business"),
            Some(PlanTier::Business)
        );
        assert_eq!(PlanTier::from_tier("mystery"), None);
        assert_eq!(PlanTier::Free.permits().available_permits(), 2);
    }
}
