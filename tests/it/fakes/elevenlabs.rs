//! ElevenLabs text-to-speech with timestamps and the subscription endpoint. The audio is a
//! real, short mp3 made with ffmpeg once per test run.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Fake, Seen, Shared, bytes, json, truncated, with_header};

pub const KEY: &str = "sk_fake_elevenlabs_0123456789abcdef0123";
pub const VOICE_ID: &str = "21m00Tcm4TlvDq8ikWAM";
/// Seconds of audio per character in the alignment the fake returns: 1,000 characters a
/// minute, the pace ElevenLabs prices its characters at.
pub const CHARACTER_SECONDS: f64 = 0.06;

#[derive(Debug, Clone)]
pub enum Scenario {
    /// An error with this status and `detail` body, optionally with `Retry-After`.
    Detail {
        status: u16,
        detail: Value,
        retry_after: Option<&'static str>,
    },
    /// Both `alignment` and `normalized_alignment` null.
    NoAlignment,
    /// `alignment` null, `normalized_alignment` given.
    NormalizedOnly,
    /// `audio_base64` that decodes to bytes which are not audio.
    BadAudio,
    /// A 401 that echoes the credentials it received, to prove clients scrub them.
    EchoKey,
    Slow(Duration),
    Truncated,
    NotJson,
    /// The subscription reports this many characters used of this limit.
    Quota {
        used: u64,
        limit: u64,
    },
}

impl Scenario {
    /// An error in the current vocabulary (`detail.code`).
    pub fn code(status: u16, code: &str) -> Self {
        Self::Detail {
            status,
            detail: json!({ "type": "error", "code": code, "message": format!("fake {code}"),
                            "status": code, "request_id": "req-fake" }),
            retry_after: None,
        }
    }

    /// An error in the older vocabulary (`detail.status` only).
    pub fn legacy(status: u16, code: &str) -> Self {
        Self::Detail {
            status,
            detail: json!({ "status": code, "message": format!("fake {code}") }),
            retry_after: None,
        }
    }
}

pub async fn start() -> Fake<Scenario> {
    // Made before serving, so no request waits on ffmpeg and trips a client timeout.
    audio();
    Fake::start(KEY, "", |shared| {
        Router::new().fallback(handle).with_state(shared)
    })
    .await
}

/// A second and a half of a 440 Hz tone as mp3.
pub fn audio() -> &'static [u8] {
    static AUDIO: OnceLock<Vec<u8>> = OnceLock::new();
    AUDIO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.mp3");
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=1.5",
            ])
            .args(["-c:a", "libmp3lame", "-b:a", "64k", "-y"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg could not make the test audio");
        std::fs::read(path).unwrap()
    })
}

/// The audio of an aligned answer: as long as the speech its alignment times, as the
/// real service's always is; [`audio`] when that covers it. Longer tones are made once
/// per whole second.
fn speech_audio(seconds: f64) -> Vec<u8> {
    static LONGER: std::sync::Mutex<Vec<(u64, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());
    if seconds <= 1.5 {
        return audio().to_vec();
    }
    let whole = seconds.ceil() as u64;
    let mut made = LONGER.lock().unwrap();
    if let Some((_, bytes)) = made.iter().find(|(s, _)| *s == whole) {
        return bytes.clone();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.mp3");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={whole}"))
        .args(["-c:a", "libmp3lame", "-b:a", "64k", "-y"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make the test audio");
    let bytes = std::fs::read(path).unwrap();
    made.push((whole, bytes.clone()));
    bytes
}

async fn handle(
    State(shared): State<Arc<Shared<Scenario>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen::new(method.clone(), &uri, headers, body);
    shared.record(seen.clone());
    let _in_flight = shared.enter();
    if seen.header("xi-api-key") != Some(shared.key.as_str()) {
        return detail(
            401,
            json!({ "status": "invalid_api_key", "message": "Invalid API key" }),
        );
    }
    let path = uri.path();
    if method == Method::GET && path == "/v1/user/subscription" {
        let (used, limit) = match shared.next() {
            Some(Scenario::Quota { used, limit }) => (used, limit),
            _ => (12_000, 100_000),
        };
        return json(
            200,
            &json!({ "tier": "creator", "character_count": used, "character_limit": limit,
                     "can_extend_character_limit": true, "next_character_count_reset_unix": 1_900_000_000,
                     "status": "active" }),
        );
    }
    // The voice lookup of the checks before spending: the one voice the fake speaks.
    if method == Method::GET
        && let Some(voice) = path.strip_prefix("/v1/voices/")
    {
        return if voice == VOICE_ID {
            json(200, &json!({ "voice_id": voice, "name": "Rachel" }))
        } else {
            detail(
                404,
                json!({ "status": "voice_not_found", "message": format!("A voice with voice_id {voice} was not found.") }),
            )
        };
    }
    let voice = path
        .strip_prefix("/v1/text-to-speech/")
        .and_then(|rest| rest.strip_suffix("/with-timestamps"));
    match (method, voice) {
        (Method::POST, Some(voice)) => speech(&shared, &seen, voice).await,
        _ => detail(
            404,
            json!({ "status": "not_found", "message": "Not Found" }),
        ),
    }
}

async fn speech(shared: &Shared<Scenario>, seen: &Seen, voice: &str) -> Response {
    if voice != VOICE_ID {
        return detail(
            404,
            json!({ "status": "voice_not_found", "message": format!("A voice with voice_id {voice} was not found.") }),
        );
    }
    if let Some(format) = seen.query_param("output_format")
        && !format.starts_with("mp3_")
        && !format.starts_with("pcm_")
        && !format.starts_with("opus_")
    {
        return invalid(&["query", "output_format"], "unknown output format");
    }
    if !seen
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return invalid(&["body"], "expected a JSON body");
    }
    let request: Value = match serde_json::from_slice(&seen.body) {
        Ok(v) => v,
        Err(e) => return invalid(&["body"], &format!("invalid JSON: {e}")),
    };
    if let Err((field, problem)) = check_request(&request) {
        return invalid(&["body", field], &problem);
    }
    let text = request["text"].as_str().unwrap_or_default().to_owned();
    let spoken = speech_audio(text.chars().count() as f64 * CHARACTER_SECONDS);
    let normal = || speech_body(&text, &spoken, true, true);
    let response = match shared.next() {
        None => json(200, &normal()),
        Some(Scenario::Detail {
            status,
            detail: body,
            retry_after,
        }) => {
            let response = detail(status, body);
            match retry_after {
                Some(value) => with_header(response, "retry-after", value),
                None => response,
            }
        }
        Some(Scenario::NoAlignment) => json(200, &speech_body(&text, audio(), false, false)),
        Some(Scenario::NormalizedOnly) => json(200, &speech_body(&text, audio(), false, true)),
        Some(Scenario::BadAudio) => json(
            200,
            &speech_body(&text, b"definitely not audio", true, true),
        ),
        Some(Scenario::EchoKey) => detail(
            401,
            json!({ "status": "invalid_api_key",
                    "message": format!("key {} is not valid", seen.header("xi-api-key").unwrap_or_default()) }),
        ),
        Some(Scenario::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            json(200, &normal())
        }
        Some(Scenario::Truncated) => {
            truncated(200, "application/json", normal().to_string().as_bytes())
        }
        Some(Scenario::NotJson) => bytes(200, "text/html", b"<html>busy</html>".to_vec()),
        Some(Scenario::Quota { .. }) => {
            panic!("a subscription scenario, but a speech request came")
        }
    };
    let cost = text.chars().count().to_string();
    let response = with_header(response, "request-id", "req-fake-1");
    with_header(response, "character-cost", &cost)
}

fn check_request(request: &Value) -> Result<(), (&'static str, String)> {
    let text = request["text"].as_str().unwrap_or_default();
    if text.trim().is_empty() {
        return Err(("text", "field required".into()));
    }
    if let Some(model) = request.get("model_id")
        && !model.is_string()
    {
        return Err(("model_id", "must be a string".into()));
    }
    if let Some(settings) = request.get("voice_settings") {
        let settings = settings
            .as_object()
            .ok_or(("voice_settings", "must be an object".to_owned()))?;
        for (name, value) in settings {
            let ok = match name.as_str() {
                "stability" | "similarity_boost" | "style" => {
                    value.as_f64().is_some_and(|v| (0.0..=1.0).contains(&v))
                }
                "speed" => value.as_f64().is_some_and(|v| (0.7..=1.2).contains(&v)),
                "use_speaker_boost" => value.is_boolean(),
                _ => false,
            };
            if !ok {
                return Err(("voice_settings", format!("invalid `{name}`: {value}")));
            }
        }
    }
    if let Some(seed) = request.get("seed")
        && seed.as_u64().is_none_or(|s| s > u64::from(u32::MAX))
    {
        return Err(("seed", "must be an integer in 0..4294967295".into()));
    }
    Ok(())
}

fn speech_body(text: &str, audio: &[u8], alignment: bool, normalized: bool) -> Value {
    let characters: Vec<String> = text.chars().map(String::from).collect();
    let n = characters.len();
    let timing = json!({
        "characters": characters,
        "character_start_times_seconds": (0..n).map(|i| i as f64 * CHARACTER_SECONDS).collect::<Vec<_>>(),
        "character_end_times_seconds": (1..=n).map(|i| i as f64 * CHARACTER_SECONDS).collect::<Vec<_>>(),
    });
    json!({
        "audio_base64": base64::engine::general_purpose::STANDARD.encode(audio),
        "alignment": if alignment { timing.clone() } else { Value::Null },
        "normalized_alignment": if normalized { timing } else { Value::Null },
    })
}

fn detail(status: u16, detail: Value) -> Response {
    json(status, &json!({ "detail": detail }))
}

/// FastAPI's validation error: `detail` is a list.
fn invalid(location: &[&str], message: &str) -> Response {
    json(
        422,
        &json!({ "detail": [{ "loc": location, "msg": message, "type": "value_error" }] }),
    )
}
