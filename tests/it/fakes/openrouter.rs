//! OpenRouter chat completions and key status, served under `/api/v1` like the real API.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Fake, Seen, Shared, json, truncated, with_header};

pub const KEY: &str = "sk-or-v1-fake0123456789abcdef";

/// How the next request is answered.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// The assistant's content as given, in an otherwise normal completion.
    Content(Option<String>),
    /// A completion that stopped for `finish_reason` with the normal content.
    Finish(&'static str),
    /// An error envelope with this HTTP status, `error.code` and metadata.
    Error {
        status: u16,
        metadata: Value,
        retry_after: Option<String>,
    },
    /// HTTP 200 whose body is an error envelope (an error after the model started).
    ErrorIn200 { code: u16 },
    /// A 401 that echoes the credentials it received, to prove clients scrub them.
    EchoKey,
    /// A 401 whose plain-text body echoes the credentials after `before` characters of
    /// padding (so they straddle wherever a client cuts), in capitals when `upper`.
    EchoKeyPlain { before: usize, upper: bool },
    /// Answers normally, but only after this long.
    Slow(Duration),
    /// The normal answer cut off mid-body.
    Truncated,
    /// HTTP 200 with an HTML page instead of JSON.
    NotJson,
    /// An image request answered in words only, as a model that cannot draw does.
    TextOnly,
}

impl Scenario {
    pub fn status(status: u16) -> Self {
        Self::Error {
            status,
            metadata: json!({}),
            retry_after: None,
        }
    }
}

pub async fn start() -> Fake<Scenario> {
    Fake::start(KEY, "/api/v1", |shared| {
        Router::new().fallback(handle).with_state(shared)
    })
    .await
}

/// A script the client accepts: a hook, four sentences and the call to action, each a
/// scene with what is said and what is shown, as a model answering the client's strict
/// JSON schema returns it.
pub fn good_script() -> Value {
    let scene = |say: &str, show: &str| json!({ "say": say, "show": show });
    json!({
        "hook": scene("Black holes bend time itself.", "black hole bending starlight"),
        "sentences": [
            scene("Near one, a clock runs slower than on Earth.", "close-up of a ticking pocket watch"),
            scene("Nothing that crosses the edge comes back.", "spiral galaxy rotating in space"),
            scene("Not even light escapes.", "flashlight beam in darkness"),
            scene("Yet they glow, lit by the gas they swallow.", "glowing gas cloud nebula")
        ],
        "cta": scene("Follow for more space facts.", "starry night sky timelapse"),
        "title": "Black holes in 30 seconds",
        "caption": "Time slows down near a black hole.",
        "hashtags": ["#space", "blackholes", "science"]
    })
}

/// The footage queries of [`good_script`], in speaking order.
pub const GOOD_VISUALS: [&str; 6] = [
    "black hole bending starlight",
    "close-up of a ticking pocket watch",
    "spiral galaxy rotating in space",
    "flashlight beam in darkness",
    "glowing gas cloud nebula",
    "starry night sky timelapse",
];

async fn handle(
    State(shared): State<Arc<Shared<Scenario>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen::new(method.clone(), &uri, headers, body);
    shared.record(seen.clone());
    let expected = format!("Bearer {}", shared.key);
    if seen.header("authorization") != Some(expected.as_str()) {
        return error(
            401,
            "No auth credentials found",
            json!({ "error_type": "authentication" }),
        );
    }
    match (method, uri.path()) {
        (Method::GET, "/api/v1/key") => json(
            200,
            &json!({ "data": {
                "label": "sk-or-v1-fak...def",
                "limit": 20.0,
                "limit_remaining": 12.5,
                "limit_reset": null,
                "include_byok_in_limit": false,
                "usage": 7.5,
                "is_free_tier": false,
            }}),
        ),
        (Method::POST, "/api/v1/chat/completions") => completion(&shared, &seen).await,
        _ => error(404, "not found", json!({ "error_type": "not_found" })),
    }
}

async fn completion(shared: &Shared<Scenario>, seen: &Seen) -> Response {
    if !seen
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return error(
            400,
            "expected a JSON body",
            json!({ "error_type": "invalid_request" }),
        );
    }
    let request: Value = match serde_json::from_slice(&seen.body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}"), json!({})),
    };
    if is_image_request(&request) {
        return image_completion(shared, &request);
    }
    if let Err(problem) = check_request(&request) {
        return error(400, &problem, json!({ "error_type": "invalid_request" }));
    }
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let normal = || completion_body(&model, Some(good_script().to_string()), "stop");
    match shared.next() {
        None => json(200, &normal()),
        Some(Scenario::Content(content)) => json(200, &completion_body(&model, content, "stop")),
        Some(Scenario::Finish(reason)) => json(
            200,
            &completion_body(&model, Some(good_script().to_string()), reason),
        ),
        Some(Scenario::Error {
            status,
            metadata,
            retry_after,
        }) => refusal(status, metadata, retry_after),
        Some(Scenario::ErrorIn200 { code }) => error_in_200(code),
        Some(Scenario::EchoKey) => error(
            401,
            &format!(
                "invalid credentials: {}",
                seen.header("authorization").unwrap_or_default()
            ),
            json!({}),
        ),
        Some(Scenario::EchoKeyPlain { before, upper }) => {
            let auth = seen.header("authorization").unwrap_or_default();
            let auth = if upper {
                auth.to_ascii_uppercase()
            } else {
                auth.to_owned()
            };
            let body = format!("{} {auth} is not a valid key", "x".repeat(before));
            super::bytes(401, "text/plain", body.into_bytes())
        }
        Some(Scenario::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            json(200, &normal())
        }
        Some(Scenario::Truncated) => {
            truncated(200, "application/json", normal().to_string().as_bytes())
        }
        Some(Scenario::NotJson) => super::bytes(
            200,
            "text/html",
            b"<html><body>502 Bad Gateway</body></html>".to_vec(),
        ),
        Some(Scenario::TextOnly) => json(
            200,
            &completion_body(&model, Some("I can only describe it.".into()), "stop"),
        ),
    }
}

/// Whether a chat completion asks for a picture (`modalities` includes `image`).
fn is_image_request(request: &Value) -> bool {
    request["modalities"]
        .as_array()
        .is_some_and(|m| m.iter().any(|v| v == "image"))
}

/// The aspect ratios the image generation docs list.
const ASPECT_RATIOS: [&str; 8] = [
    "1:1", "2:3", "3:4", "9:16", "16:9", "9:19.5", "9:20", "auto",
];

/// An image model's answer: a short text and one PNG as a data URL, its size following
/// `image_config.aspect_ratio` (the long side 160 pixels), or the queued scenario.
fn image_completion(shared: &Shared<Scenario>, request: &Value) -> Response {
    use base64::Engine as _;
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    if !model.contains('/') {
        return error(
            400,
            &format!("model `{model}` needs its org prefix"),
            json!({}),
        );
    }
    let prompt = request["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str());
    if prompt.is_none_or(|p| p.trim().is_empty()) {
        return error(
            400,
            "no user message",
            json!({ "error_type": "invalid_request" }),
        );
    }
    let aspect = request["image_config"]["aspect_ratio"]
        .as_str()
        .unwrap_or("1:1");
    if !ASPECT_RATIOS.contains(&aspect) {
        return error(
            400,
            &format!("unsupported aspect_ratio `{aspect}`"),
            json!({ "error_type": "invalid_request" }),
        );
    }
    let (width, height) = image_size(aspect);
    let picture = png(width, height);
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&picture)
    );
    let normal = json!({
        "id": "gen-fake-image",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "finish_reason": "stop",
            "native_finish_reason": "STOP",
            "message": {
                "role": "assistant",
                "content": "Here is your picture.",
                "images": [{ "type": "image_url", "image_url": { "url": url } }],
            },
        }],
        "usage": { "prompt_tokens": 40, "completion_tokens": 1290, "total_tokens": 1330, "cost": 0.0387 },
    });
    match shared.next() {
        Some(Scenario::TextOnly) => json(
            200,
            &completion_body(&model, Some("I can only describe it.".into()), "stop"),
        ),
        Some(Scenario::Error {
            status,
            metadata,
            retry_after,
        }) => refusal(status, metadata, retry_after),
        Some(Scenario::ErrorIn200 { code }) => error_in_200(code),
        _ => json(200, &normal),
    }
}

/// Width and height for an aspect ratio `w:h`, the long side 160 pixels, both even.
pub fn image_size(aspect: &str) -> (u32, u32) {
    let (w, h) = aspect
        .split_once(':')
        .and_then(|(w, h)| Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?)))
        .unwrap_or((1.0, 1.0));
    let long = w.max(h);
    let side = |x: f64| ((160.0 * x / long / 2.0).round() as u32).max(1) * 2;
    (side(w), side(h))
}

/// A PNG of a diagonal colour gradient with a light square in it (so a picture that
/// moves shows it), deflated in stored blocks.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    for y in 0..height {
        raw.push(0);
        for x in 0..width {
            let inside =
                (width / 3..2 * width / 3).contains(&x) && (height / 3..height / 2).contains(&y);
            let (r, g, b) = if inside {
                (240, 240, 230)
            } else {
                (
                    (40 + 180 * x / width) as u8,
                    (30 + 120 * y / height) as u8,
                    90,
                )
            };
            raw.extend([r, g, b]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend(len.to_le_bytes());
        zlib.extend((!len).to_le_bytes());
        zlib.extend(*block);
    }
    zlib.extend(adler32(&raw).to_be_bytes());
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", header), (b"IDAT", zlib), (b"IEND", Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// The documented request contract, as far as our client uses it.
fn check_request(request: &Value) -> Result<(), String> {
    let messages = request["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty array")?;
    for message in messages {
        let role = message["role"].as_str().unwrap_or_default();
        if !matches!(role, "system" | "user" | "assistant") || !message["content"].is_string() {
            return Err(format!("bad message {message}"));
        }
    }
    if !messages.iter().any(|m| m["role"] == "user") {
        return Err("no user message".into());
    }
    let model = request["model"]
        .as_str()
        .ok_or("`model` must be a string")?;
    if !model.contains('/') {
        return Err(format!("model `{model}` needs its org prefix"));
    }
    if let Some(models) = request.get("models") {
        let models = models.as_array().ok_or("`models` must be an array")?;
        if models.is_empty() || !models.iter().all(Value::is_string) {
            return Err("`models` must list model names".into());
        }
    }
    let format = &request["response_format"];
    if format["type"] != "json_schema"
        || !format["json_schema"]["name"].is_string()
        || format["json_schema"]["strict"] != true
        || !format["json_schema"]["schema"].is_object()
    {
        return Err("`response_format` must be a strict json_schema".into());
    }
    // Structured output answers in the schema the request gives; this fake answers in
    // one shape only, so it refuses a schema of another.
    let schema = &format["json_schema"]["schema"];
    if schema["properties"]["sentences"]["items"]["required"] != serde_json::json!(["say", "show"])
    {
        return Err("the fake answers scenes (`say`, `show`) only".into());
    }
    if request["provider"]["require_parameters"] != true {
        return Err("`provider.require_parameters` must be true".into());
    }
    if request["max_tokens"].as_u64().is_none_or(|n| n < 1) {
        return Err("`max_tokens` must be a positive integer".into());
    }
    if let Some(t) = request.get("temperature")
        && !t.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t))
    {
        return Err("`temperature` must be within [0, 2]".into());
    }
    if let Some(seed) = request.get("seed")
        && !(seed.is_u64() || seed.is_i64())
    {
        return Err("`seed` must be an integer".into());
    }
    Ok(())
}

fn completion_body(model: &str, content: Option<String>, finish_reason: &str) -> Value {
    json!({
        "id": "gen-fake-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "finish_reason": finish_reason,
            "native_finish_reason": finish_reason,
            "message": { "role": "assistant", "content": content },
        }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 95, "total_tokens": 215, "cost": 0.00042 },
    })
}

/// A scripted refusal: an error body, with a `Retry-After` when one is given.
fn refusal(status: u16, metadata: Value, retry_after: Option<String>) -> Response {
    let response = error(status, "the fake says no", metadata);
    match retry_after {
        Some(value) => with_header(response, "retry-after", &value),
        None => response,
    }
}

/// An error after the model started: HTTP 200 with an `error` object.
fn error_in_200(code: u16) -> Response {
    json(
        200,
        &json!({ "error": { "code": code, "message": "upstream failed mid-generation",
                            "metadata": { "error_type": "provider_unavailable" } } }),
    )
}

fn error(status: u16, message: &str, metadata: Value) -> Response {
    json(
        status,
        &json!({ "error": { "code": status, "message": message, "metadata": metadata } }),
    )
}
