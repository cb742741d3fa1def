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
        }) => {
            let response = error(status, "the fake says no", metadata);
            match retry_after {
                Some(value) => with_header(response, "retry-after", &value),
                None => response,
            }
        }
        Some(Scenario::ErrorIn200 { code }) => json(
            200,
            &json!({ "error": { "code": code, "message": "upstream failed mid-generation",
                                "metadata": { "error_type": "provider_unavailable" } } }),
        ),
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
    }
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

fn error(status: u16, message: &str, metadata: Value) -> Response {
    json(
        status,
        &json!({ "error": { "code": status, "message": message, "metadata": metadata } }),
    )
}
