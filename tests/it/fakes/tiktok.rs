//! A fake TikTok: Login Kit OAuth v2 (hex PKCE, rotating refresh tokens, revoke) and the
//! Content Posting inbox flow (init, chunked PUT, status), enforcing the documented
//! contract. It records every path it was asked for, and counts the drafts that reached
//! the creator's inbox. Like the real service, a draft reaches the inbox the moment its
//! upload completes (the last chunk's 201), whether or not anyone polls its status; every
//! init counts as a pending share for 24 hours, lost ones included.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
// The `url` crate as `oauth2` re-exports it, so the tests need no extra dependency.
use oauth2::url::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tiktok_factory::providers::tiktok::{Account, TikTokConfig};
use tiktok_factory::secret::Secret;

use super::faults::Faults;
use super::publish_support::Server;

pub const CLIENT_KEY: &str = "fake-client-key";
pub const CLIENT_SECRET: &str = "fake-client-secret";
pub const OPEN_ID: &str = "open-id-1";
const MIN_CHUNK: u64 = 5 * 1024 * 1024;
const MAX_CHUNK: u64 = 64_000_000;
const MAX_LAST_CHUNK: u64 = 128_000_000;

/// Switches a test sets before (or between) calls.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status polls answered `PROCESSING_UPLOAD` after the upload finished.
    pub polls_before_inbox: u32,
    /// Make processing end in `FAILED` with this reason.
    pub fail_reason: Option<String>,
    /// Answer the next N chunk PUTs with 502.
    pub chunk_failures: u32,
    /// Answer the PUT of the chunk starting at this byte with 502, once.
    pub fail_put_at: Option<u64>,
    /// Answer the next init with this HTTP status and `error.code`.
    pub init_error: Option<(u16, &'static str)>,
    /// Sent with an injected 429.
    pub retry_after: Option<u64>,
    /// Sent as `Retry-After` verbatim with an injected error (`1e20`).
    pub retry_after_text: Option<&'static str>,
    /// Pending shares (inits in the last 24 hours that did not fail) an account may have.
    pub pending_cap: usize,
    /// Inits per token per minute.
    pub init_rate: usize,
    /// Answer refresh errors with HTTP 200 (seen in the sandbox).
    pub oauth_errors_with_200: bool,
    /// Hold every chunk PUT this long before answering (a slow upload a test can crash).
    pub put_delay: Option<std::time::Duration>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            polls_before_inbox: 1,
            fail_reason: None,
            chunk_failures: 0,
            fail_put_at: None,
            init_error: None,
            retry_after: None,
            retry_after_text: None,
            pending_cap: 5,
            init_rate: 6,
            oauth_errors_with_200: false,
            put_delay: None,
        }
    }
}

struct Upload {
    publish_id: String,
    video_size: u64,
    chunk_size: u64,
    total_chunk_count: u64,
    received: u64,
    digest: Sha256,
    done: Option<String>,
    polls: u32,
    at: Instant,
    failed: bool,
}

#[derive(Default)]
struct Inner {
    behaviour: Behaviour,
    paths: Vec<String>,
    authorize_queries: Vec<HashMap<String, String>>,
    codes: HashMap<String, (String, String)>,
    access_tokens: HashMap<String, String>,
    refresh_tokens: HashMap<String, String>,
    refreshes: u32,
    revoked: Vec<String>,
    next_id: u64,
    uploads: HashMap<String, Upload>,
    init_bodies: Vec<Value>,
    init_content_types: Vec<String>,
    init_times: HashMap<String, VecDeque<Instant>>,
    put_attempts: u32,
    init_requests: u32,
    /// When each init request with a valid token arrived, refused ones included.
    init_request_times: Vec<Instant>,
    inbox: Vec<String>,
}

impl Inner {
    /// Inits of the last 24 hours that can still become a draft (or are one).
    fn pending(&self) -> usize {
        let day = Duration::from_secs(24 * 60 * 60);
        self.uploads
            .values()
            .filter(|u| !u.failed && u.at.elapsed() < day)
            .count()
    }
}

impl Inner {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn issue_tokens(&mut self, open_id: &str) -> (String, String) {
        let n = self.next();
        let access = format!("act.fake-{n}");
        let refresh = format!("rft.fake-{n}");
        self.access_tokens
            .insert(access.clone(), open_id.to_owned());
        self.refresh_tokens
            .insert(refresh.clone(), open_id.to_owned());
        (access, refresh)
    }
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    base: Arc<Mutex<String>>,
}

pub struct FakeTikTok {
    shared: Shared,
    server: Server,
}

impl FakeTikTok {
    pub async fn start() -> Self {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner::default())),
            base: Arc::new(Mutex::new(String::new())),
        };
        let router = Router::new()
            .route("/v2/auth/authorize/", get(authorize))
            .route("/v2/oauth/token/", post(token))
            .route("/v2/oauth/revoke/", post(revoke))
            .route("/v2/post/publish/inbox/video/init/", post(init))
            .route("/v2/post/publish/status/fetch/", post(status))
            .route("/upload/", put(upload).layer(DefaultBodyLimit::disable()))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(shared.clone(), record_path))
            .with_state(shared.clone());
        let server = Server::start(router).await;
        *shared.base.lock().unwrap() = server.url();
        Self { shared, server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Cut, garble, stall or fail the next answer of a route (`/upload/`,
    /// `/v2/post/publish/status/fetch/`, …).
    pub fn faults(&self) -> &Faults {
        &self.server.faults
    }

    /// Init requests that reached the API, refused ones included.
    pub fn init_requests(&self) -> u32 {
        self.shared.inner.lock().unwrap().init_requests
    }

    /// When each init request with a valid token arrived, in order, refused ones included.
    pub fn init_request_times(&self) -> Vec<Instant> {
        self.shared.inner.lock().unwrap().init_request_times.clone()
    }

    /// Pending shares: inits of the last 24 hours that did not fail, orphans included.
    pub fn pending(&self) -> usize {
        self.shared.inner.lock().unwrap().pending()
    }

    pub fn config(&self) -> TikTokConfig {
        TikTokConfig {
            client_key: CLIENT_KEY.to_owned(),
            client_secret: Secret::new(CLIENT_SECRET),
            auth_base_url: self.url(),
            api_base_url: self.url(),
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.inner.lock().unwrap().behaviour);
    }

    /// An account as if logged in earlier: tokens the fake accepts.
    pub fn connected_account(&self) -> Account {
        let (access, refresh) = self.shared.inner.lock().unwrap().issue_tokens(OPEN_ID);
        Account {
            open_id: OPEN_ID.to_owned(),
            access_token: Secret::new(access),
            refresh_token: Secret::new(refresh),
            scopes: vec!["video.upload".to_owned()],
            access_expires_at: i64::MAX,
            refresh_expires_at: i64::MAX,
        }
    }

    /// [`Self::connected_account`] as `TIKTOK_ACCOUNT_JSON` takes it.
    pub fn account_json(&self) -> String {
        let a = self.connected_account();
        serde_json::json!({
            "open_id": a.open_id,
            "access_token": a.access_token.expose(),
            "refresh_token": a.refresh_token.expose(),
        })
        .to_string()
    }

    pub fn paths(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().paths.clone()
    }

    pub fn authorize_queries(&self) -> Vec<HashMap<String, String>> {
        self.shared.inner.lock().unwrap().authorize_queries.clone()
    }

    pub fn inbox(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().inbox.clone()
    }

    pub fn inits(&self) -> Vec<Value> {
        self.shared.inner.lock().unwrap().init_bodies.clone()
    }

    pub fn init_content_types(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().init_content_types.clone()
    }

    /// Every PUT that reached the upload handler, failed ones included.
    pub fn put_attempts(&self) -> u32 {
        self.shared.inner.lock().unwrap().put_attempts
    }

    pub fn refreshes(&self) -> u32 {
        self.shared.inner.lock().unwrap().refreshes
    }

    pub fn revoked(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().revoked.clone()
    }

    pub fn refresh_token_valid(&self, token: &str) -> bool {
        self.shared
            .inner
            .lock()
            .unwrap()
            .refresh_tokens
            .contains_key(token)
    }

    /// SHA-256 of the bytes received for `publish_id`, once the upload is complete.
    pub fn uploaded_sha256(&self, publish_id: &str) -> Option<String> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .uploads
            .values()
            .find(|u| u.publish_id == publish_id)
            .and_then(|u| u.done.clone())
    }
}

async fn record_path(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    shared
        .inner
        .lock()
        .unwrap()
        .paths
        .push(request.uri().path().to_owned());
    next.run(request).await
}

async fn not_found() -> Response {
    api_error(404, "not_found", "no such endpoint")
}

fn api_error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(
            json!({"data": {}, "error": {"code": code, "message": message, "log_id": "FAKELOG1"}}),
        ),
    )
        .into_response()
}

fn api_ok(data: Value) -> Response {
    axum::Json(json!({"data": data, "error": {"code": "ok", "message": "", "log_id": "FAKELOG2"}}))
        .into_response()
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": error, "error_description": description, "log_id": "FAKELOG3"})),
    )
        .into_response()
}

fn is_hex_challenge(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn authorize(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    inner.authorize_queries.push(q.clone());
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let redirect = get("redirect_uri");
    let valid = get("client_key") == CLIENT_KEY
        && get("scope") == "video.upload"
        && get("response_type") == "code"
        && get("code_challenge_method") == "S256"
        && is_hex_challenge(get("code_challenge"))
        && !get("state").is_empty()
        && redirect.starts_with("http://127.0.0.1:")
        && redirect.ends_with("/callback/");
    if !valid {
        return (StatusCode::BAD_REQUEST, "Something went wrong").into_response();
    }
    let code = format!("code-{}", inner.next());
    inner.codes.insert(
        code.clone(),
        (get("code_challenge").to_owned(), redirect.to_owned()),
    );
    let mut target = Url::parse(redirect).unwrap();
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("scopes", "video.upload")
        .append_pair("state", get("state"));
    Redirect::to(target.as_str()).into_response()
}

async fn token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let error_status = if inner.behaviour.oauth_errors_with_200 {
        200
    } else {
        400
    };
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(400, "invalid_request", "form body expected");
    }
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_key") != CLIENT_KEY || get("client_secret") != CLIENT_SECRET {
        return oauth_error(401, "invalid_client", "Client key or secret is invalid.");
    }
    let open_id = match get("grant_type") {
        "authorization_code" => {
            let Some((challenge, redirect)) = inner.codes.remove(get("code")) else {
                return oauth_error(
                    error_status,
                    "invalid_grant",
                    "Authorization code is expired.",
                );
            };
            let verifier = get("code_verifier");
            let verifier_ok = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !verifier_ok || hex::encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return oauth_error(
                    error_status,
                    "invalid_request",
                    "Code verifier or code challenge is invalid.",
                );
            }
            if get("redirect_uri") != redirect {
                return oauth_error(
                    error_status,
                    "invalid_request",
                    "Redirect_uri is not matched with the uri when requesting code.",
                );
            }
            OPEN_ID.to_owned()
        }
        "refresh_token" => {
            // Rotation: the presented token stops working once a new one is issued.
            let Some(open_id) = inner.refresh_tokens.remove(get("refresh_token")) else {
                return oauth_error(
                    error_status,
                    "invalid_grant",
                    "Refresh token is invalid or expired.",
                );
            };
            inner.refreshes += 1;
            open_id
        }
        _ => return oauth_error(400, "unsupported_grant_type", ""),
    };
    let (access, refresh) = inner.issue_tokens(&open_id);
    axum::Json(json!({
        "access_token": access,
        "expires_in": 86400,
        "open_id": open_id,
        "refresh_expires_in": 31_536_000,
        "refresh_token": refresh,
        "scope": "video.upload",
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn revoke(
    State(shared): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_key") != CLIENT_KEY || get("client_secret") != CLIENT_SECRET {
        return oauth_error(401, "invalid_client", "");
    }
    let Some(open_id) = inner.access_tokens.remove(get("token")) else {
        return oauth_error(400, "invalid_request", "Token is invalid.");
    };
    inner.refresh_tokens.retain(|_, o| *o != open_id);
    inner.access_tokens.retain(|_, o| *o != open_id);
    inner.revoked.push(get("token").to_owned());
    axum::Json(json!({})).into_response()
}

fn bearer(inner: &Inner, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    inner
        .access_tokens
        .contains_key(token)
        .then(|| token.to_owned())
}

async fn init(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let base = shared.base.lock().unwrap().clone();
    let mut inner = shared.inner.lock().unwrap();
    let Some(token) = bearer(&inner, &headers) else {
        return api_error(
            401,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with("application/json") {
        return api_error(
            400,
            "invalid_params",
            "Content-Type must be application/json",
        );
    }
    inner.init_content_types.push(content_type);
    inner.init_requests += 1;
    inner.init_request_times.push(Instant::now());
    if let Some((status, code)) = inner.behaviour.init_error.take() {
        let mut response = api_error(status, code, "injected");
        if let Some(after) = inner.behaviour.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        if let Some(text) = inner.behaviour.retry_after_text {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(text));
        }
        return response;
    }
    let rate = inner.behaviour.init_rate;
    let window = inner.init_times.entry(token).or_default();
    let now = Instant::now();
    window.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
    if window.len() >= rate {
        return api_error(
            429,
            "rate_limit_exceeded",
            "Each user access_token is limited to 6 requests per minute.",
        );
    }
    window.push_back(now);
    if inner.pending() >= inner.behaviour.pending_cap {
        return api_error(
            403,
            "spam_risk_too_many_pending_share",
            "There may be at most 5 pending shares within any 24-hour period.",
        );
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return api_error(400, "invalid_params", "body is not JSON");
    };
    inner.init_bodies.push(value.clone());
    let info = &value["source_info"];
    let field = |k: &str| info[k].as_u64().unwrap_or(0);
    let (size, chunk, count) = (
        field("video_size"),
        field("chunk_size"),
        field("total_chunk_count"),
    );
    if info["source"] != "FILE_UPLOAD" || size == 0 || chunk == 0 || count == 0 {
        return api_error(400, "invalid_params", "source_info is incomplete");
    }
    let last = size - (count - 1) * chunk;
    let chunk_ok = count == size / chunk
        && count <= 1000
        && chunk <= MAX_CHUNK
        && last <= MAX_LAST_CHUNK
        && if count == 1 {
            chunk == size
        } else {
            chunk >= MIN_CHUNK
        };
    if !chunk_ok {
        return api_error(400, "invalid_params", "The chunk size is invalid");
    }
    let n = inner.next();
    let publish_id = format!("v_inbox_file~v2.{n}");
    let upload_id = n.to_string();
    inner.uploads.insert(
        upload_id.clone(),
        Upload {
            publish_id: publish_id.clone(),
            video_size: size,
            chunk_size: chunk,
            total_chunk_count: count,
            received: 0,
            digest: Sha256::new(),
            done: None,
            polls: 0,
            at: Instant::now(),
            failed: false,
        },
    );
    api_ok(json!({
        "publish_id": publish_id,
        "upload_url": format!("{base}/upload/?upload_id={upload_id}&upload_token=tok{n}"),
    }))
}

fn plain(status: u16, text: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), text.to_owned()).into_response()
}

fn parse_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, total.parse().ok()?))
}

async fn upload(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = shared.inner.lock().unwrap().behaviour.put_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut guard = shared.inner.lock().unwrap();
    let inner = &mut *guard;
    inner.put_attempts += 1;
    if headers.contains_key(header::AUTHORIZATION) {
        return plain(400, "the upload host takes no Authorization header");
    }
    if inner.behaviour.chunk_failures > 0 {
        inner.behaviour.chunk_failures -= 1;
        return plain(502, "bad gateway");
    }
    let fail_reason = inner.behaviour.fail_reason.clone();
    if !q
        .get("upload_id")
        .is_some_and(|id| inner.uploads.contains_key(id))
    {
        return plain(404, "no upload task");
    }
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !matches!(
        header_text(header::CONTENT_TYPE),
        Some("video/mp4" | "video/quicktime" | "video/webm")
    ) {
        return plain(400, "bad Content-Type");
    }
    if header_text(header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok()) != Some(body.len())
    {
        return plain(400, "Content-Length does not match the body");
    }
    let Some((first, last, total)) = header_text(header::CONTENT_RANGE).and_then(parse_range)
    else {
        return plain(400, "bad Content-Range");
    };
    if inner.behaviour.fail_put_at == Some(first) {
        inner.behaviour.fail_put_at = None;
        return plain(502, "bad gateway");
    }
    let Some(upload) = q.get("upload_id").and_then(|id| inner.uploads.get_mut(id)) else {
        return plain(404, "no upload task");
    };
    if upload.done.is_some() || total != upload.video_size || first != upload.received {
        let mut response = plain(416, "Content-Range does not match the upload progress");
        let progress = format!(
            "bytes 0-{}/{}",
            upload.received.saturating_sub(1),
            upload.video_size
        );
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&progress).unwrap(),
        );
        return response;
    }
    let index = upload.received / upload.chunk_size;
    let expected = if index + 1 == upload.total_chunk_count {
        upload.video_size - upload.received
    } else {
        upload.chunk_size
    };
    if last < first || last - first + 1 != expected || body.len() as u64 != expected {
        return plain(400, "chunk does not follow the declared chunk size");
    }
    upload.digest.update(&body);
    upload.received += expected;
    if upload.received == upload.video_size {
        upload.done = Some(hex::encode(upload.digest.clone().finalize()));
        // TikTok delivers every completed upload, polled or not.
        if fail_reason.is_some() {
            upload.failed = true;
        } else {
            let publish_id = upload.publish_id.clone();
            inner.inbox.push(publish_id);
        }
        return plain(201, "");
    }
    let mut response = plain(206, "");
    let progress = format!("bytes 0-{}/{}", upload.received - 1, upload.video_size);
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&progress).unwrap(),
    );
    response
}

async fn status(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    if bearer(&inner, &headers).is_none() {
        return api_error(401, "access_token_invalid", "The access token is invalid.");
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return api_error(400, "invalid_params", "body is not JSON");
    };
    let publish_id = value["publish_id"].as_str().unwrap_or("").to_owned();
    let behaviour = inner.behaviour.clone();
    let Some(upload) = inner
        .uploads
        .values_mut()
        .find(|u| u.publish_id == publish_id)
    else {
        return api_error(400, "invalid_publish_id", "publish_id not found");
    };
    let uploaded = upload.received;
    if upload.done.is_none() {
        return api_ok(
            json!({"status": "PROCESSING_UPLOAD", "uploaded_bytes": uploaded, "publicaly_available_post_id": []}),
        );
    }
    upload.polls += 1;
    if let Some(reason) = behaviour.fail_reason {
        return api_ok(
            json!({"status": "FAILED", "fail_reason": reason, "uploaded_bytes": uploaded, "publicaly_available_post_id": []}),
        );
    }
    if upload.polls <= behaviour.polls_before_inbox {
        return api_ok(
            json!({"status": "PROCESSING_UPLOAD", "uploaded_bytes": uploaded, "publicaly_available_post_id": []}),
        );
    }
    api_ok(
        json!({"status": "SEND_TO_USER_INBOX", "uploaded_bytes": uploaded, "publicaly_available_post_id": []}),
    )
}
