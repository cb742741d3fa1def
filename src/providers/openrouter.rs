//! The script writer backed by OpenRouter chat completions (any OpenAI-compatible base URL
//! works). The model answers in a strict JSON schema; we still validate the result, because
//! a provider may ignore the schema and a model may return nothing at all.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, SetupError, Timeouts};
use super::images::{ImageMaker, ImageRequest, Still};
use super::{ProviderError, Script, ScriptRequest, ScriptWriter, Usage};
use crate::secret::Secret;

const SERVICE: &str = "openrouter";
pub const KEY_VAR: &str = "OPENROUTER_API_KEY";
pub const BASE_VAR: &str = "OPENROUTER_BASE_URL";
pub const DEFAULT_BASE: &str = "https://openrouter.ai/api/v1";

/// Sentence count bounds for the script body, as the schema tells the model.
const MIN_SENTENCES: usize = 3;
const MAX_SENTENCES: usize = 12;
const MAX_HASHTAGS: usize = 10;
/// A footage query is a few words; this bounds what a model may put in one.
const MAX_VISUAL_CHARS: usize = 200;

/// How the client talks to the service; everything but the key.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRouterOptions {
    /// Without a trailing slash; `/chat/completions` and `/key` are appended.
    pub base_url: String,
    pub timeouts: Timeouts,
    /// Upper bound on the reply; a script needs far fewer tokens, the cap bounds cost.
    pub max_tokens: u32,
    /// Attribution headers (`X-OpenRouter-Title`, `HTTP-Referer`).
    pub app_title: String,
    pub app_url: Option<String>,
}

impl Default for OpenRouterOptions {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE.to_owned(),
            timeouts: Timeouts {
                connect: Duration::from_secs(10),
                request: Duration::from_secs(120),
            },
            max_tokens: 1200,
            app_title: "TikTok Factory".to_owned(),
            app_url: None,
        }
    }
}

impl OpenRouterOptions {
    /// Defaults, with the base URL from `OPENROUTER_BASE_URL` when set.
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            base_url: http::base_from_env(BASE_VAR, DEFAULT_BASE)?,
            ..Self::default()
        })
    }
}

#[derive(Debug, Clone)]
pub struct OpenRouter {
    http: reqwest::Client,
    key: Secret,
    scrub: http::Scrubber,
    options: OpenRouterOptions,
}

/// What `GET /key` says about the key in use, for `factory doctor`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStatus {
    pub label: String,
    /// Credit limit of the key; `None` means unlimited.
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    pub usage: Option<f64>,
    pub is_free_tier: bool,
}

impl OpenRouter {
    pub fn new(key: Secret, options: OpenRouterOptions) -> Result<Self, SetupError> {
        let base_url = http::check_base(BASE_VAR, &options.base_url)?;
        Ok(Self {
            http: http::client(options.timeouts)?,
            scrub: http::Scrubber::for_key(&key),
            key,
            options: OpenRouterOptions {
                base_url,
                ..options
            },
        })
    }

    /// The key from `OPENROUTER_API_KEY`, the base from `OPENROUTER_BASE_URL`.
    pub fn from_env() -> Result<Self, SetupError> {
        Self::new(http::key_from_env(KEY_VAR)?, OpenRouterOptions::from_env()?)
    }

    /// Checks the key and reports its limits without spending anything.
    pub async fn key_status(&self) -> Result<KeyStatus, ProviderError> {
        #[derive(Deserialize)]
        struct Envelope {
            data: KeyData,
        }
        #[derive(Deserialize)]
        struct KeyData {
            #[serde(default)]
            label: Option<String>,
            #[serde(default)]
            limit: Option<f64>,
            #[serde(default)]
            limit_remaining: Option<f64>,
            #[serde(default)]
            usage: Option<f64>,
            #[serde(default)]
            is_free_tier: bool,
        }

        let response = self
            .http
            .get(format!("{}/key", self.options.base_url))
            .header(AUTHORIZATION, self.authorization()?)
            .send()
            .await
            .map_err(|e| http::classify_transport(SERVICE, "asking about the key", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = http::read_body(SERVICE, response).await?;
        if !status.is_success() {
            return Err(self.error_from_body(status, &headers, &body));
        }
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::retryable(SERVICE, format!("unreadable key status: {e}"))
        })?;
        Ok(KeyStatus {
            label: envelope.data.label.unwrap_or_default(),
            limit: envelope.data.limit,
            remaining: envelope.data.limit_remaining,
            usage: envelope.data.usage,
            is_free_tier: envelope.data.is_free_tier,
        })
    }

    fn authorization(&self) -> Result<reqwest::header::HeaderValue, ProviderError> {
        http::sensitive(&format!("Bearer {}", self.key.expose()))
    }

    fn body(&self, request: &ScriptRequest) -> Result<Value, ProviderError> {
        let Some(model) = request.models.first() else {
            return Err(ProviderError::permanent(
                SERVICE,
                "no model given; set `script.model` in the recipe",
            ));
        };
        let mut body = json!({
            "model": model,
            "messages": [
                { "role": "system", "content": system_prompt(request) },
                { "role": "user", "content": request.prompt },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": { "name": "tiktok_script", "strict": true, "schema": script_schema() },
            },
            // Without this, a provider that ignores `response_format` may still be chosen.
            "provider": { "require_parameters": true },
            "max_tokens": self.options.max_tokens,
        });
        if request.models.len() > 1 {
            body["models"] = json!(request.models);
        }
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(seed) = request.seed {
            body["seed"] = json!(seed);
        }
        Ok(body)
    }

    /// Classes an error envelope (`{"error": {code, message, metadata}}`), whether it came
    /// with an error status or inside an HTTP 200.
    fn classify(&self, status: StatusCode, headers: &HeaderMap, error: &ApiError) -> ProviderError {
        let code = error
            .code
            .as_ref()
            .and_then(code_number)
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|c| !c.is_success())
            .unwrap_or(status);
        // An error reported mid-generation without a usable code is an upstream failure.
        let code = if code.is_success() {
            StatusCode::BAD_GATEWAY
        } else {
            code
        };
        let message = self.scrub.clean(&error.message);
        let reason = error.metadata.get("reason").and_then(Value::as_str);
        let wait = http::retry_after(headers);
        match code.as_u16() {
            401 => ProviderError::permanent(
                SERVICE,
                format!(
                    "rejected the API key (`{KEY_VAR}`): {message}; check the key or create a new one"
                ),
            ),
            402 if reason == Some("in_flight_budget_exhausted") => ProviderError::retry_after(
                SERVICE,
                format!("the in-flight budget is used up by other requests: {message}"),
                wait,
            ),
            402 if reason == Some("weight_exceeds_budget") => ProviderError::permanent(
                SERVICE,
                format!(
                    "the request needs more credit than is left: {message}; lower `max_tokens` or add credits"
                ),
            ),
            402 => ProviderError::permanent(
                SERVICE,
                format!(
                    "out of credits on the account or key (`{KEY_VAR}`): {message}; add credits or raise the key's limit"
                ),
            ),
            403 => ProviderError::permanent(
                SERVICE,
                format!("the request was refused (moderation or permissions): {message}"),
            ),
            _ => http::classify_status(SERVICE, code, wait, &message),
        }
    }

    /// An error status; a body that is not the documented envelope (a proxy's page) is
    /// classed by the status alone.
    fn error_from_body(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ProviderError {
        let error = serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .and_then(|envelope| envelope.error)
            .unwrap_or_else(|| ApiError {
                code: None,
                message: String::from_utf8_lossy(body).into_owned(),
                metadata: serde_json::Map::new(),
            });
        self.classify(status, headers, &error)
    }

    /// One `POST /chat/completions`, its answer parsed and its errors classified: an HTTP
    /// error, a body that is not JSON (a transport problem, worth a retry), and the
    /// `error` object OpenRouter sends inside an HTTP 200, at the top or in the first
    /// choice, once the model has started.
    async fn complete<B: serde::Serialize + ?Sized>(
        &self,
        body: &B,
        doing: &'static str,
    ) -> Result<Completion, ProviderError> {
        let mut call = self
            .http
            .post(format!("{}/chat/completions", self.options.base_url))
            .header(AUTHORIZATION, self.authorization()?)
            .header("X-OpenRouter-Title", &self.options.app_title)
            .header("X-Title", &self.options.app_title)
            .json(body);
        if let Some(url) = &self.options.app_url {
            call = call.header("HTTP-Referer", url);
        }
        let response = call
            .send()
            .await
            .map_err(|e| http::classify_transport(SERVICE, doing, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = http::read_body(SERVICE, response).await?;
        if !status.is_success() {
            return Err(self.error_from_body(status, &headers, &bytes));
        }
        let completion: Completion = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::retryable(SERVICE, format!("the response is not valid JSON ({e})"))
        })?;
        let error = completion
            .error
            .as_ref()
            .or_else(|| completion.choices.first().and_then(|c| c.error.as_ref()));
        if let Some(error) = error {
            return Err(self.classify(status, &headers, error));
        }
        Ok(completion)
    }
}

#[async_trait]
impl ScriptWriter for OpenRouter {
    async fn write(&self, request: &ScriptRequest) -> Result<Script, ProviderError> {
        let body = self.body(request)?;
        let completion = self.complete(&body, "asking for a script").await?;
        let Some(choice) = completion.choices.first() else {
            return Err(ProviderError::retryable(
                SERVICE,
                "the response has no choices",
            ));
        };
        match choice.finish_reason.as_deref() {
            Some("length") => {
                return Err(ProviderError::permanent(
                    SERVICE,
                    format!(
                        "the script was cut off at `max_tokens` ({}); raise it or ask for a shorter script",
                        self.options.max_tokens
                    ),
                ));
            }
            Some("content_filter") => {
                return Err(ProviderError::permanent(
                    SERVICE,
                    "the model's content filter stopped the script; change the prompt or topic",
                ));
            }
            _ => {}
        }
        let content = choice
            .message
            .as_ref()
            .and_then(|m| m.content.as_deref())
            .map(str::trim)
            .unwrap_or_default();
        if content.is_empty() {
            // Cold starts and scaling produce empty replies; the docs advise a retry.
            return Err(ProviderError::retryable(
                SERVICE,
                "the model returned no content",
            ));
        }
        let mut script = parse_script(content, request.cta.as_deref()).map_err(|problem| {
            // A new sample usually fixes a malformed reply; the retry policy bounds the cost.
            ProviderError::retryable(
                SERVICE,
                format!("the model's reply is not a usable script: {problem}"),
            )
        })?;
        let usage = completion.usage.unwrap_or_default();
        script.usage = Some(Usage {
            model: completion
                .model
                .or_else(|| request.models.first().cloned())
                .unwrap_or_default(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost: usage.cost,
        });
        Ok(script)
    }
}

/// Models that answer with an image only and refuse `"text"` among the modalities.
const IMAGE_ONLY_PREFIXES: &[&str] = &["black-forest-labs/"];

/// The largest still accepted, decoded: a 9:16 picture at 2K is a few megabytes.
const MAX_IMAGE_BYTES: usize = 32 << 20;

impl OpenRouter {
    /// The chat completion that asks an image model for one still.
    fn image_body(request: &ImageRequest) -> Value {
        let modalities = if IMAGE_ONLY_PREFIXES
            .iter()
            .any(|p| request.model.starts_with(p))
        {
            json!(["image"])
        } else {
            json!(["image", "text"])
        };
        // No `max_tokens`: a picture is billed as output tokens, and a cap meant for text
        // would cut it off.
        json!({
            "model": request.model,
            "messages": [{ "role": "user", "content": request.prompt }],
            "modalities": modalities,
            "image_config": { "aspect_ratio": request.aspect },
        })
    }
}

#[async_trait]
impl ImageMaker for OpenRouter {
    async fn draw(
        &self,
        request: &ImageRequest,
        dir: &std::path::Path,
        stem: &str,
    ) -> Result<Still, ProviderError> {
        if !request.model.contains('/') {
            return Err(ProviderError::permanent(
                SERVICE,
                format!(
                    "image model `{}` needs its organisation, e.g. `google/gemini-2.5-flash-image`",
                    request.model
                ),
            ));
        }
        let completion = self
            .complete(&Self::image_body(request), "asking for an image")
            .await?;
        let (extension, image) =
            image_of(&completion, &request.model).map_err(|e| e.into_error())?;
        let path = dir.join(format!("{stem}.{extension}"));
        tokio::fs::write(&path, &image)
            .await
            .map_err(|e| ProviderError::io(SERVICE, dir, &e))?;
        let usage = completion.usage.unwrap_or_default();
        Ok(Still {
            path,
            source_id: super::images::source_id(request),
            usage: Some(Usage {
                model: completion.model.unwrap_or_else(|| request.model.clone()),
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cost: usage.cost,
            }),
        })
    }
}

/// Why an answer holds no usable image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoImage {
    /// The model answered in words only: it cannot draw, or would not.
    TextOnly {
        model: String,
        text: String,
    },
    /// Nothing at all came back (a cold start); worth another try.
    Empty,
    Filtered,
    /// An image that is not a base64 data URL of a PNG, JPEG or WebP.
    Unreadable(String),
}

impl NoImage {
    fn into_error(self) -> ProviderError {
        match self {
            Self::TextOnly { model, text } => ProviderError::permanent(
                SERVICE,
                format!(
                    "model `{model}` answered without an image (text: \"{text}\"); choose a model \
                     that draws (`image` among its output modalities), e.g. `google/gemini-2.5-flash-image`"
                ),
            ),
            Self::Empty => ProviderError::retryable(SERVICE, "the model returned no image"),
            Self::Filtered => ProviderError::permanent(
                SERVICE,
                "the model's content filter stopped the image; change the scene's visual query",
            ),
            Self::Unreadable(why) => {
                ProviderError::retryable(SERVICE, format!("the model's image is unreadable: {why}"))
            }
        }
    }
}

/// The first image of the answer, decoded, with the file extension of its format.
fn image_of(completion: &Completion, model: &str) -> Result<(&'static str, Vec<u8>), NoImage> {
    let choice = completion.choices.first().ok_or(NoImage::Empty)?;
    let message = choice.message.as_ref();
    let url = message
        .and_then(|m| m.images.iter().find_map(|i| i.image_url.as_ref()))
        .map(|u| u.url.trim())
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        if choice.finish_reason.as_deref() == Some("content_filter") {
            return Err(NoImage::Filtered);
        }
        let text = message
            .and_then(|m| m.content.as_deref())
            .map(str::trim)
            .unwrap_or_default();
        if text.is_empty() {
            return Err(NoImage::Empty);
        }
        return Err(NoImage::TextOnly {
            model: completion.model.clone().unwrap_or_else(|| model.to_owned()),
            text: text.chars().take(80).collect(),
        });
    };
    decode_data_url(url).map_err(NoImage::Unreadable)
}

/// `data:image/png;base64,…` into the file extension and the bytes, which must be
/// what the media type says.
fn decode_data_url(url: &str) -> Result<(&'static str, Vec<u8>), String> {
    use base64::Engine as _;
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| "not a data URL".to_owned())?;
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| "a data URL without data".to_owned())?;
    let (media, encoding) = header.split_once(';').unwrap_or((header, ""));
    if encoding != "base64" {
        return Err(format!("a data URL in `{encoding}`, not base64"));
    }
    let (extension, magic): (&str, &[u8]) = match media.to_ascii_lowercase().as_str() {
        "image/png" => ("png", b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" | "image/jpg" => ("jpg", b"\xff\xd8\xff"),
        "image/webp" => ("webp", b"RIFF"),
        other => return Err(format!("`{other}` is not a PNG, JPEG or WebP image")),
    };
    if data.len() / 4 * 3 > MAX_IMAGE_BYTES {
        return Err(format!("larger than {} MB", MAX_IMAGE_BYTES >> 20));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("bad base64 ({e})"))?;
    if !bytes.starts_with(magic) {
        return Err(format!("the bytes are not {media}"));
    }
    Ok((extension, bytes))
}

fn system_prompt(request: &ScriptRequest) -> String {
    let words = request.pace.words_for(request.seconds);
    let cta = match &request.cta {
        Some(cta) => format!("Set `cta.say` to exactly: {cta}"),
        None => "Set `cta.say` to one short call to action.".to_owned(),
    };
    format!(
        "You write voice-over scripts for vertical short videos. Reply with JSON only, matching the schema.\n\
         The narration lasts about {seconds} seconds: about {words} spoken words in all, across hook, sentences and cta \
         (the voice speaks about {pace:.1} words per second); do not go over.\n\
         The video is a list of scenes: `hook`, each of `sentences` and `cta` are scenes in speaking order. \
         In each scene, `say` is what the narrator speaks and `show` is what the viewer sees meanwhile: \
         a stock-footage search of 2 to 6 words naming concrete, filmable things, such as \
         \"close-up of boiling pasta water\" or \"astronaut floating inside a space station\", \
         never abstract words such as \"the details\" or \"success\". Vary `show` from scene to scene.\n\
         `hook`: one gripping opening line. `sentences`: {MIN_SENTENCES} to {MAX_SENTENCES} short spoken sentences, \
         no numbering, no emojis, no stage directions. {cta}\n\
         `title`: a short title. `caption`: one or two sentences for the post. \
         `hashtags`: up to {MAX_HASHTAGS} single words without the # sign.",
        seconds = request.seconds,
        pace = request.pace.words_per_second,
    )
}

/// The JSON schema the model must follow; strict mode wants every property required and no
/// others allowed. Every spoken line is a scene: what is said and what is shown.
fn script_schema() -> Value {
    let text = json!({ "type": "string" });
    let scene = json!({
        "type": "object",
        "properties": { "say": text, "show": text },
        "required": ["say", "show"],
        "additionalProperties": false,
    });
    json!({
        "type": "object",
        "properties": {
            "hook": scene,
            "sentences": { "type": "array", "items": scene, "minItems": MIN_SENTENCES, "maxItems": MAX_SENTENCES },
            "cta": scene,
            "title": text,
            "caption": text,
            "hashtags": { "type": "array", "items": text, "maxItems": MAX_HASHTAGS },
        },
        "required": ["hook", "sentences", "cta", "title", "caption", "hashtags"],
        "additionalProperties": false,
    })
}

/// One spoken line and the footage query for it.
#[derive(Deserialize)]
struct RawScene {
    say: String,
    show: String,
}

#[derive(Deserialize)]
struct RawScript {
    hook: RawScene,
    sentences: Vec<RawScene>,
    cta: RawScene,
    title: String,
    caption: String,
    #[serde(default)]
    hashtags: Vec<String>,
}

/// Parses and checks the model's JSON. The recipe's call to action, when it has one, is
/// spoken word for word: the model is told to copy it, and we do not rely on that.
fn parse_script(content: &str, cta: Option<&str>) -> Result<Script, String> {
    let raw: RawScript = serde_json::from_str(unfence(content)).map_err(|e| e.to_string())?;
    let hook = raw.hook.say.trim().to_owned();
    if hook.is_empty() {
        return Err("`hook.say` is empty".to_owned());
    }
    let sentences: Vec<String> = raw
        .sentences
        .iter()
        .map(|s| s.say.trim().to_owned())
        .collect();
    if sentences.iter().any(String::is_empty) {
        return Err("a sentence is empty".to_owned());
    }
    if !(MIN_SENTENCES..=MAX_SENTENCES).contains(&sentences.len()) {
        return Err(format!(
            "{} sentences, expected {MIN_SENTENCES} to {MAX_SENTENCES}",
            sentences.len()
        ));
    }
    let cta = match cta {
        Some(cta) => cta.trim().to_owned(),
        None => raw.cta.say.trim().to_owned(),
    };
    if cta.is_empty() {
        return Err("`cta.say` is empty".to_owned());
    }
    let scenes = std::iter::once(&raw.hook)
        .chain(&raw.sentences)
        .chain(std::iter::once(&raw.cta));
    let mut visuals = Vec::with_capacity(sentences.len() + 2);
    for (i, scene) in scenes.enumerate() {
        visuals.push(visual(&scene.show).map_err(|problem| format!("scene {}: {problem}", i + 1))?);
    }
    let title = raw.title.trim().to_owned();
    if title.is_empty() {
        return Err("`title` is empty".to_owned());
    }
    let mut hashtags: Vec<String> = Vec::new();
    for tag in &raw.hashtags {
        let tag = tag.trim().trim_start_matches('#').to_owned();
        if tag.is_empty() || tag.chars().any(char::is_whitespace) {
            return Err(format!("hashtag `{tag}` is not a single word"));
        }
        if !hashtags.contains(&tag) {
            hashtags.push(tag);
        }
    }
    hashtags.truncate(MAX_HASHTAGS);
    Ok(Script {
        hook,
        sentences,
        cta,
        title,
        caption: raw.caption.trim().to_owned(),
        hashtags,
        visuals,
        usage: None,
    })
}

/// A scene's footage query as a search box takes it: one line, single spaces, bounded.
fn visual(show: &str) -> Result<String, String> {
    let query = show.split_whitespace().collect::<Vec<_>>().join(" ");
    let query = query.trim_matches(|c: char| c == '"' || c == '.').trim();
    if query.is_empty() {
        return Err("`show` is empty".to_owned());
    }
    if query.chars().count() > MAX_VISUAL_CHARS {
        return Err(format!(
            "`show` is longer than {MAX_VISUAL_CHARS} characters"
        ));
    }
    Ok(query.to_owned())
}

/// The JSON inside a Markdown code fence, which models that ignore the schema like to add.
fn unfence(content: &str) -> &str {
    let content = content.trim();
    let Some(inner) = content
        .strip_prefix("```")
        .and_then(|rest| rest.strip_suffix("```"))
    else {
        return content;
    };
    // Drop the info string (`json`) on the opening line.
    inner
        .split_once('\n')
        .map_or(inner, |(_, body)| body)
        .trim()
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    /// A number per the docs; some compatible servers send a string.
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    metadata: serde_json::Map<String, Value>,
}

fn code_number(code: &Value) -> Option<u16> {
    match code {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    /// What an image model drew: data URLs.
    #[serde(default)]
    images: Vec<ImageOut>,
}

#[derive(Deserialize)]
struct ImageOut {
    #[serde(default)]
    image_url: Option<ImageUrl>,
}

#[derive(Deserialize)]
struct ImageUrl {
    #[serde(default)]
    url: String,
}

#[derive(Deserialize, Default)]
struct TokenUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    cost: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Pace;

    fn scene(say: &str, show: &str) -> Value {
        json!({ "say": say, "show": show })
    }

    fn reply(sentences: usize) -> String {
        json!({
            "hook": scene(" Black holes eat light. ", "black hole swallowing a glowing gas disk"),
            "sentences": vec![scene("A sentence.", " telescope  at night "); sentences],
            "cta": scene("Follow!", "starry night sky timelapse"),
            "title": "Black holes",
            "caption": "Space is strange.",
            "hashtags": ["#space", "facts", "space"],
        })
        .to_string()
    }

    #[test]
    fn a_valid_reply_is_trimmed_and_normalised() {
        let script = parse_script(&reply(3), None).unwrap();
        assert_eq!(script.hook, "Black holes eat light.");
        assert_eq!(script.cta, "Follow!");
        assert_eq!(script.hashtags, ["space", "facts"]);
        assert_eq!(
            script.visuals,
            [
                "black hole swallowing a glowing gas disk",
                "telescope at night",
                "telescope at night",
                "telescope at night",
                "starry night sky timelapse"
            ]
        );
        assert_eq!(script.scenes().len(), script.visuals.len());
    }

    #[test]
    fn every_scene_needs_something_to_show() {
        let mut value: Value = serde_json::from_str(&reply(3)).unwrap();
        value["sentences"][1]["show"] = json!(" ");
        assert_eq!(
            parse_script(&value.to_string(), None).unwrap_err(),
            "scene 3: `show` is empty"
        );
        let mut value: Value = serde_json::from_str(&reply(3)).unwrap();
        value["cta"] = json!("Follow!");
        assert!(
            parse_script(&value.to_string(), None).is_err(),
            "a bare line is not a scene"
        );
    }

    #[test]
    fn the_prompt_asks_for_filmable_scenes_and_the_words_that_fit() {
        let request = ScriptRequest {
            topic: "Pasta".into(),
            prompt: String::new(),
            seconds: 20,
            cta: None,
            models: vec!["openai/gpt-4o-mini".into()],
            temperature: None,
            seed: None,
            pace: Pace {
                words_per_second: 3.0,
                pause_seconds: 0.0,
            },
        };
        let prompt = system_prompt(&request);
        assert!(prompt.contains("about 60 spoken words"), "{prompt}");
        assert!(
            prompt.contains("close-up of boiling pasta water"),
            "{prompt}"
        );
        let schema = script_schema();
        assert_eq!(
            schema["properties"]["hook"]["required"],
            json!(["say", "show"])
        );
        assert_eq!(
            schema["properties"]["sentences"]["items"]["additionalProperties"],
            false
        );
    }

    #[test]
    fn a_fenced_reply_is_read() {
        let fenced = format!("```json\n{}\n```", reply(3));
        assert_eq!(parse_script(&fenced, None).unwrap().title, "Black holes");
        assert_eq!(unfence("{\"a\": 1}"), "{\"a\": 1}");
    }

    #[test]
    fn the_recipe_cta_wins() {
        let script = parse_script(&reply(4), Some("Follow for more space facts.")).unwrap();
        assert_eq!(script.cta, "Follow for more space facts.");
    }

    #[test]
    fn sentence_count_is_bounded() {
        assert!(
            parse_script(&reply(2), None)
                .unwrap_err()
                .contains("2 sentences")
        );
        assert!(
            parse_script(&reply(13), None)
                .unwrap_err()
                .contains("13 sentences")
        );
        assert!(parse_script(&reply(12), None).is_ok());
    }

    #[test]
    fn empty_fields_and_bad_json_are_rejected() {
        let mut value: Value = serde_json::from_str(&reply(3)).unwrap();
        value["hook"]["say"] = json!("  ");
        assert_eq!(
            parse_script(&value.to_string(), None).unwrap_err(),
            "`hook.say` is empty"
        );
        assert!(parse_script("{\"hook\": ", None).is_err());
        let mut value: Value = serde_json::from_str(&reply(3)).unwrap();
        value["hashtags"] = json!(["two words"]);
        assert!(
            parse_script(&value.to_string(), None)
                .unwrap_err()
                .contains("two words")
        );
    }

    fn image_completion(message: Value, finish: &str) -> Completion {
        serde_json::from_value(json!({
            "id": "gen-1", "model": "google/gemini-2.5-flash-image",
            "choices": [{ "finish_reason": finish, "message": message }],
            "usage": { "prompt_tokens": 12, "completion_tokens": 1290, "cost": 0.0387 },
        }))
        .unwrap()
    }

    #[test]
    fn an_image_request_asks_for_a_9_16_picture_without_a_token_cap() {
        let request = ImageRequest::new(Some("google/gemini-2.5-flash-image"), "owl at night", 1);
        let body = OpenRouter::image_body(&request);
        assert_eq!(body["model"], "google/gemini-2.5-flash-image");
        assert_eq!(body["modalities"], json!(["image", "text"]));
        assert_eq!(body["image_config"], json!({ "aspect_ratio": "9:16" }));
        assert_eq!(body["messages"][0]["role"], "user");
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("owl at night")
        );
        assert!(body.get("max_tokens").is_none() && body.get("response_format").is_none());
        let flux = ImageRequest::new(Some("black-forest-labs/flux.2-pro"), "owl", 1);
        assert_eq!(
            OpenRouter::image_body(&flux)["modalities"],
            json!(["image"])
        );
    }

    #[test]
    fn the_image_is_read_from_the_data_url_of_the_first_image() {
        use base64::Engine as _;
        let png = b"\x89PNG\r\n\x1a\nrest-of-file".to_vec();
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        let completion = image_completion(
            json!({ "role": "assistant", "content": "Here you go.",
                    "images": [{ "type": "image_url", "image_url": { "url": url } }] }),
            "stop",
        );
        let (extension, bytes) = image_of(&completion, "m/x").unwrap();
        assert_eq!((extension, bytes), ("png", png));

        let jpeg = base64::engine::general_purpose::STANDARD.encode(b"\xff\xd8\xff\xe0jfif");
        assert_eq!(
            decode_data_url(&format!("data:image/jpeg;base64,{jpeg}"))
                .unwrap()
                .0,
            "jpg"
        );
        // The media type must match the bytes, and only pictures are taken.
        assert!(decode_data_url(&format!("data:image/png;base64,{jpeg}")).is_err());
        assert!(
            decode_data_url("data:image/gif;base64,R0lG")
                .unwrap_err()
                .contains("image/gif")
        );
        assert!(
            decode_data_url("https://example.com/a.png")
                .unwrap_err()
                .contains("not a data URL")
        );
        assert!(decode_data_url("data:image/png,rawbytes").is_err());
    }

    #[test]
    fn an_answer_without_an_image_is_a_named_error() {
        let text_only = image_completion(
            json!({ "role": "assistant", "content": "I cannot draw, but imagine an owl." }),
            "stop",
        );
        let error = image_of(&text_only, "m/x").unwrap_err();
        assert!(
            matches!(&error, NoImage::TextOnly { model, .. } if model == "google/gemini-2.5-flash-image")
        );
        let error = error.into_error();
        assert!(
            matches!(error, ProviderError::Permanent { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("answered without an image"),
            "{error}"
        );
        let empty = image_completion(json!({ "role": "assistant", "content": null }), "stop");
        assert!(
            image_of(&empty, "m/x")
                .unwrap_err()
                .into_error()
                .is_retryable()
        );
        let filtered = image_completion(
            json!({ "role": "assistant", "content": "" }),
            "content_filter",
        );
        assert_eq!(image_of(&filtered, "m/x").unwrap_err(), NoImage::Filtered);
    }

    #[test]
    fn the_request_body_follows_the_contract() {
        let client = OpenRouter::new(Secret::new("k"), OpenRouterOptions::default()).unwrap();
        let request = ScriptRequest {
            topic: "Black holes".into(),
            prompt: "Write about black holes.".into(),
            seconds: 40,
            cta: None,
            models: vec!["openai/gpt-4o-mini".into(), "meta/llama".into()],
            temperature: Some(0.7),
            seed: Some(42),
            pace: Pace {
                words_per_second: 3.0,
                pause_seconds: 0.0,
            },
        };
        let body = client.body(&request).unwrap();
        assert_eq!(body["model"], "openai/gpt-4o-mini");
        assert_eq!(body["models"], json!(["openai/gpt-4o-mini", "meta/llama"]));
        assert_eq!(body["messages"][1]["content"], "Write about black holes.");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert_eq!(body["provider"]["require_parameters"], true);
        assert_eq!(body["seed"], 42);
        let single = ScriptRequest {
            models: vec!["openai/gpt-4o-mini".into()],
            temperature: None,
            seed: None,
            ..request
        };
        let body = client.body(&single).unwrap();
        assert!(body.get("models").is_none() && body.get("seed").is_none());
    }
}
