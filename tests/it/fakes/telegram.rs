//! A fake Telegram Bot API: `POST /bot<token>/sendMessage` with JSON, checked like the
//! real one (token, content type, `chat_id`, 1–4096 characters of `text`), with
//! switches for flood control and a migrated group.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::publish_support::Server;

pub const TOKEN: &str = "123456:fake-bot-token-ABC";
pub const CHAT: &str = "@factory_alerts";
/// A group that became a supergroup.
pub const MIGRATED_CHAT: &str = "-100200300";
pub const NEW_CHAT_ID: i64 = -1_009_876_543_210;

#[derive(Default)]
struct Inner {
    requests: u32,
    /// Answer this many requests with 429 first.
    flood: u32,
    retry_after: u64,
    messages: Vec<Value>,
    /// `getMe` calls (the token check before a run).
    token_checks: u32,
}

pub struct FakeTelegram {
    inner: Arc<Mutex<Inner>>,
    server: Server,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let router = Router::new()
            .route("/{bot}/{method}", post(handle))
            .with_state(inner.clone());
        Self {
            inner,
            server: Server::start(router).await,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Cut, garble, stall or fail the next answer of a method (`/sendMessage`).
    pub fn faults(&self) -> &super::faults::Faults {
        &self.server.faults
    }

    /// The next `times` requests get flood control with `retry_after` seconds.
    pub fn flood(&self, times: u32, retry_after: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.flood = times;
        inner.retry_after = retry_after;
    }

    pub fn requests(&self) -> u32 {
        self.inner.lock().unwrap().requests
    }

    pub fn messages(&self) -> Vec<Value> {
        self.inner.lock().unwrap().messages.clone()
    }

    pub fn token_checks(&self) -> u32 {
        self.inner.lock().unwrap().token_checks
    }
}

fn failure(status: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    // The token check of the checks before spending; `requests` counts sends only.
    if method.eq_ignore_ascii_case("getMe") {
        inner.token_checks += 1;
        if bot.strip_prefix("bot") != Some(TOKEN) {
            return failure(401, "Unauthorized", None);
        }
        return axum::Json(json!({"ok": true, "result": {"id": 1, "is_bot": true, "username": "factory_fake_bot"}})).into_response();
    }
    inner.requests += 1;
    if bot.strip_prefix("bot") != Some(TOKEN) {
        return failure(401, "Unauthorized", None);
    }
    if !method.eq_ignore_ascii_case("sendMessage") {
        return failure(404, "Not Found: method not found", None);
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Some(message) = json_body
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return failure(400, "Bad Request: JSON body expected", None);
    };
    if inner.flood > 0 {
        inner.flood -= 1;
        let after = inner.retry_after;
        return failure(
            429,
            &format!("Too Many Requests: retry after {after}"),
            Some(json!({"retry_after": after})),
        );
    }
    let text = message["text"].as_str().unwrap_or("").to_owned();
    let length = text.encode_utf16().count();
    if length == 0 {
        return failure(400, "Bad Request: message text is empty", None);
    }
    if length > 4096 {
        return failure(400, "Bad Request: message is too long", None);
    }
    let chat = match &message["chat_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return failure(400, "Bad Request: chat_id is empty", None),
    };
    if chat == MIGRATED_CHAT {
        return failure(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            Some(json!({"migrate_to_chat_id": NEW_CHAT_ID})),
        );
    }
    if chat != CHAT {
        return failure(
            403,
            "Forbidden: bot can't initiate conversation with a user",
            None,
        );
    }
    inner.messages.push(message);
    let id = inner.messages.len();
    axum::Json(json!({"ok": true, "result": {"message_id": id, "chat": {"id": -1}, "text": text}}))
        .into_response()
}
