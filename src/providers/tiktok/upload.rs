//! Inbox drafts through the Content Posting API: init with `FILE_UPLOAD`, PUT the chunks
//! in order, poll the status until TikTok has sent the draft to the creator's inbox.
//!
//! Every step is recorded in the effect ledger as it happens (`initialized` with the
//! `publish_id` before any byte is sent, then `uploaded`, then `delivered`), so a crash
//! never sends the same video twice: a send that finds `uploaded` only polls, one that
//! finds `initialized` starts over, since an interrupted upload cannot be resumed.

use std::collections::{HashMap, VecDeque};
use std::io::SeekFrom;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;

use super::{Account, AccountStore, OAuth, SERVICE, TikTokConfig};
use crate::clock::now as unix_now;
use crate::providers::{
    DraftReceipt, DraftRequest, Drafts, EffectLog, EffectProgress, ProviderError,
};
use crate::secret::Secret;

pub const PHASE_INITIALIZED: &str = "initialized";
pub const PHASE_UPLOADED: &str = "uploaded";
pub const PHASE_DELIVERED: &str = "delivered";
/// TikTok reported `FAILED`; a later attempt starts a fresh upload.
pub const PHASE_FAILED: &str = "failed";

const INIT_PATH: &str = "/v2/post/publish/inbox/video/init/";
const STATUS_PATH: &str = "/v2/post/publish/status/fetch/";
const JSON_UTF8: &str = "application/json; charset=UTF-8";
const VIDEO_TYPE: &str = "video/mp4";

const PENDING_CAP: &str = "has reached its pending-draft cap";
/// How long to wait after the cap error: the cap counts drafts over any 24 hours, so
/// minutes of backing off only burn requests.
const PENDING_CAP_WAIT: Duration = Duration::from_secs(60 * 60);

/// Whether `error` says the account has too many drafts waiting in its inbox. The engine
/// keeps such jobs queued until the account has room instead of failing them.
pub fn is_pending_draft_cap(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Retryable { service, message, .. }
        if *service == SERVICE && message.contains(PENDING_CAP))
}

/// How a video is cut for `FILE_UPLOAD`, following the Media Transfer Guide: one chunk
/// when the whole video fits, otherwise `total_chunk_count = floor(size / chunk_size)`
/// chunks with the remainder folded into the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub video_size: u64,
    pub chunk_size: u64,
    pub total_chunk_count: u64,
}

impl ChunkPlan {
    /// Largest video sent as one chunk: 64 MB read as 10^6 bytes, safe whether TikTok
    /// means 10^6 or 2^20.
    pub const SINGLE_MAX: u64 = 64_000_000;
    /// Chunk size for larger videos, the docs' own example value; the last chunk then
    /// stays under 20 MB, far below its 128 MB ceiling.
    pub const CHUNK_SIZE: u64 = 10_000_000;
    pub const MAX_CHUNKS: u64 = 1000;

    pub fn for_size(video_size: u64) -> Result<Self, ProviderError> {
        if video_size == 0 {
            return Err(ProviderError::permanent(SERVICE, "the video file is empty"));
        }
        if video_size <= Self::SINGLE_MAX {
            return Ok(Self {
                video_size,
                chunk_size: video_size,
                total_chunk_count: 1,
            });
        }
        let total_chunk_count = video_size / Self::CHUNK_SIZE;
        if total_chunk_count > Self::MAX_CHUNKS {
            return Err(ProviderError::permanent(
                SERVICE,
                format!(
                    "the video is {video_size} bytes, more than TikTok accepts in {} chunks",
                    Self::MAX_CHUNKS
                ),
            ));
        }
        Ok(Self {
            video_size,
            chunk_size: Self::CHUNK_SIZE,
            total_chunk_count,
        })
    }

    /// Inclusive byte ranges, in upload order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..self.total_chunk_count).map(|i| {
            let first = i * self.chunk_size;
            let last = if i + 1 == self.total_chunk_count {
                self.video_size - 1
            } else {
                first + self.chunk_size - 1
            };
            (first, last)
        })
    }

    fn init_body(&self) -> serde_json::Value {
        json!({"source_info": {
            "source": "FILE_UPLOAD",
            "video_size": self.video_size,
            "chunk_size": self.chunk_size,
            "total_chunk_count": self.total_chunk_count,
        }})
    }
}

/// Timing knobs; the defaults respect TikTok's limits (status polls ≤ 30 per minute).
#[derive(Debug, Clone, Copy)]
pub struct DraftSettings {
    pub poll_interval: Duration,
    /// After this long still processing, the send returns a retryable error; the ledger
    /// says `uploaded`, so the next attempt only polls.
    pub poll_timeout: Duration,
    /// Tries per chunk when the upload host answers 5xx or the connection drops.
    pub chunk_attempts: u32,
    pub chunk_retry_delay: Duration,
    pub chunk_timeout: Duration,
    /// Refresh the access token when it expires within this margin.
    pub refresh_margin: Duration,
    /// TikTok allows 6 init requests per minute per access token.
    pub inits_per_minute: usize,
}

impl Default for DraftSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(10 * 60),
            chunk_attempts: 3,
            chunk_retry_delay: Duration::from_secs(2),
            chunk_timeout: Duration::from_secs(10 * 60),
            refresh_margin: Duration::from_secs(10 * 60),
            inits_per_minute: 6,
        }
    }
}

/// Sends finished videos to the creator's TikTok inbox as drafts.
pub struct TikTokDrafts {
    config: TikTokConfig,
    oauth: OAuth,
    http: reqwest::Client,
    store: Arc<dyn AccountStore>,
    seed: Option<Account>,
    settings: DraftSettings,
    limiter: InitLimiter,
    /// Serializes load → refresh → save: refresh tokens rotate, so two refreshes racing
    /// would leave one of them holding a dead token.
    account_lock: tokio::sync::Mutex<()>,
}

impl TikTokDrafts {
    pub fn new(config: TikTokConfig, store: Arc<dyn AccountStore>) -> Result<Self, ProviderError> {
        let oauth = OAuth::new(config.clone())?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ProviderError::permanent(SERVICE, e.without_url().to_string()))?;
        let settings = DraftSettings::default();
        Ok(Self {
            config,
            oauth,
            http,
            store,
            seed: None,
            limiter: InitLimiter::new(settings.inits_per_minute),
            settings,
            account_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn with_settings(mut self, settings: DraftSettings) -> Self {
        self.limiter = InitLimiter::new(settings.inits_per_minute);
        self.settings = settings;
        self
    }

    /// An account to copy into the store when it has none under the requested name
    /// (`TIKTOK_ACCOUNT_JSON`, see [`Account::from_env`]).
    pub fn with_seed_account(mut self, account: Option<Account>) -> Self {
        self.seed = account;
        self
    }

    /// The account `name` with a usable access token, refreshed (and the rotated tokens
    /// saved) when it is about to expire or when `refused` is the token it holds.
    async fn account(
        &self,
        name: &str,
        refused: Option<&Secret>,
    ) -> Result<Account, ProviderError> {
        let _guard = self.account_lock.lock().await;
        let account = match self.store.load(name).await.map_err(store_error)? {
            Some(account) => account,
            None => {
                let Some(seed) = &self.seed else {
                    return Err(ProviderError::permanent(
                        SERVICE,
                        format!(
                            "no TikTok account `{name}` is connected: run `factory auth tiktok login --account {name}` or set `TIKTOK_ACCOUNT_JSON`"
                        ),
                    ));
                };
                self.store.save(name, seed).await.map_err(store_error)?;
                seed.clone()
            }
        };
        let now = unix_now();
        let margin = i64::try_from(self.settings.refresh_margin.as_secs()).unwrap_or(i64::MAX);
        if !account.access_due(now, margin) && refused != Some(&account.access_token) {
            return Ok(account);
        }
        if account.refresh_expires_at <= now {
            return Err(ProviderError::permanent(
                SERVICE,
                format!(
                    "the TikTok login for `{name}` has expired: run `factory auth tiktok login --account {name}`"
                ),
            ));
        }
        let refreshed = self.oauth.refresh(&account).await?;
        self.store
            .save(name, &refreshed)
            .await
            .map_err(store_error)?;
        Ok(refreshed)
    }

    /// A v2 API call with the account's token; a refused token is refreshed once.
    async fn call<T: DeserializeOwned>(
        &self,
        name: &str,
        account: &mut Account,
        path: &str,
        body: &serde_json::Value,
        rate_limited: bool,
    ) -> Result<T, ProviderError> {
        if rate_limited {
            self.limiter.acquire(&account.open_id).await;
        }
        match self.post_api(&account.access_token, path, body).await {
            Err(failure) if failure.token_refused() => {
                *account = self.account(name, Some(&account.access_token)).await?;
                if rate_limited {
                    self.limiter.acquire(&account.open_id).await;
                }
                self.post_api(&account.access_token, path, body)
                    .await
                    .map_err(|f| f.classify(name, path))
            }
            result => result.map_err(|f| f.classify(name, path)),
        }
    }

    async fn post_api<T: DeserializeOwned>(
        &self,
        token: &Secret,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiFailure> {
        let response = self
            .http
            .post(self.config.api_url(path))
            .bearer_auth(token.expose())
            // Set by hand: reqwest's `.json()` would send `application/json` without the
            // charset the reference asks for.
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(body.to_string())
            .send()
            .await
            .map_err(ApiFailure::Transport)?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(ApiFailure::Transport)?;
        let envelope: Envelope =
            serde_json::from_str(&text).map_err(|_| ApiFailure::Malformed { status })?;
        let error = envelope.error.unwrap_or_default();
        // The envelope carries `error` on success too, as `"code": "ok"`; some failures
        // come with HTTP 200, so the code decides, not the status alone.
        if (!error.code.is_empty() && error.code != "ok") || !(200..300).contains(&status) {
            return Err(ApiFailure::Api {
                status,
                code: error.code,
                message: error.message,
                log_id: error.log_id,
                retry_after,
            });
        }
        envelope
            .data
            .and_then(|data| serde_json::from_value(data).ok())
            .ok_or(ApiFailure::Malformed { status })
    }

    async fn upload(
        &self,
        upload_url: &str,
        video: &Path,
        plan: &ChunkPlan,
    ) -> Result<(), ProviderError> {
        let mut file = tokio::fs::File::open(video)
            .await
            .map_err(|e| read_error(video, &e))?;
        for (index, (first, last)) in plan.ranges().enumerate() {
            let len = usize::try_from(last - first + 1)
                .map_err(|_| ProviderError::permanent(SERVICE, "chunk too large for memory"))?;
            let mut chunk = vec![0; len];
            file.seek(SeekFrom::Start(first))
                .await
                .map_err(|e| read_error(video, &e))?;
            file.read_exact(&mut chunk)
                .await
                .map_err(|e| read_error(video, &e))?;
            let is_last = u64::try_from(index + 1).is_ok_and(|n| n == plan.total_chunk_count);
            self.put_chunk(upload_url, chunk, (first, last), plan.video_size, is_last)
                .await?;
        }
        Ok(())
    }

    /// PUTs one chunk; 5xx and dropped connections are retried here, a bounded number of
    /// times, because TikTok asks for exactly that and a lost chunk would otherwise cost
    /// the whole upload.
    async fn put_chunk(
        &self,
        upload_url: &str,
        chunk: Vec<u8>,
        (first, last): (u64, u64),
        total: u64,
        is_last: bool,
    ) -> Result<(), ProviderError> {
        let range = format!("bytes {first}-{last}/{total}");
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .put(upload_url)
                .timeout(self.settings.chunk_timeout)
                .header(CONTENT_TYPE, VIDEO_TYPE)
                .header(CONTENT_RANGE, &range)
                .header(CONTENT_LENGTH, chunk.len())
                .body(chunk.clone())
                .send()
                .await;
            let transient = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let progress = response
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| format!(" (the host has `{v}`)"))
                        .unwrap_or_default();
                    match status {
                        206 if !is_last => return Ok(()),
                        200 | 201 if is_last => return Ok(()),
                        206 => {
                            return Err(restart(format!(
                                "the upload host still expects bytes after the last chunk{progress}"
                            )));
                        }
                        200 | 201 => {
                            return Err(ProviderError::permanent(
                                SERVICE,
                                format!("the upload host finished the upload early, at `{range}`"),
                            ));
                        }
                        403 => {
                            return Err(restart(
                                "the upload URL has expired (HTTP 403)".to_owned(),
                            ));
                        }
                        404 => {
                            return Err(restart("the upload task is gone (HTTP 404)".to_owned()));
                        }
                        416 => {
                            return Err(restart(format!(
                                "the upload host refused `{range}` as out of order (HTTP 416){progress}"
                            )));
                        }
                        s if s >= 500 => format!("HTTP {s}"),
                        s => {
                            return Err(ProviderError::permanent(
                                SERVICE,
                                format!("the upload host refused `{range}` (HTTP {s})"),
                            ));
                        }
                    }
                }
                Err(error) => error.without_url().to_string(),
            };
            if attempt >= self.settings.chunk_attempts {
                return Err(restart(format!(
                    "chunk `{range}` failed {attempt} times, last with {transient}"
                )));
            }
            tokio::time::sleep(self.settings.chunk_retry_delay * attempt).await;
            attempt += 1;
        }
    }

    /// Polls until TikTok has put the draft in the inbox, or gave up on it.
    async fn await_inbox(
        &self,
        name: &str,
        account: &mut Account,
        publish_id: &str,
        log: &dyn EffectLog,
    ) -> Result<DraftReceipt, ProviderError> {
        let deadline = Instant::now() + self.settings.poll_timeout;
        let body = json!({ "publish_id": publish_id });
        loop {
            let status: StatusData = self.call(name, account, STATUS_PATH, &body, false).await?;
            match status.status.as_str() {
                // `PUBLISH_COMPLETE` means the creator already posted it from the inbox.
                "SEND_TO_USER_INBOX" | "PUBLISH_COMPLETE" => {
                    log.record(&progress(publish_id, PHASE_DELIVERED)).await?;
                    return Ok(DraftReceipt {
                        external_id: publish_id.to_owned(),
                        status: status.status,
                    });
                }
                "FAILED" => {
                    log.record(&progress(publish_id, PHASE_FAILED)).await?;
                    let reason = status.fail_reason.unwrap_or_default();
                    let message = format!("tiktok could not take draft `{publish_id}`: `{reason}`");
                    return Err(if reason == "internal" {
                        ProviderError::retryable(SERVICE, message)
                    } else {
                        ProviderError::permanent(SERVICE, message)
                    });
                }
                _ => {}
            }
            if Instant::now() + self.settings.poll_interval > deadline {
                return Err(ProviderError::retryable(
                    SERVICE,
                    format!(
                        "draft `{publish_id}` is still `{}` after {} s; the next attempt checks on it again without uploading",
                        status.status,
                        self.settings.poll_timeout.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }
}

#[async_trait]
impl Drafts for TikTokDrafts {
    async fn send(
        &self,
        request: &DraftRequest,
        log: &dyn EffectLog,
    ) -> Result<DraftReceipt, ProviderError> {
        let name = request.account.as_str();
        let mut account = self.account(name, None).await?;
        if let Some(previous) = log.progress().await?
            && matches!(previous.phase.as_str(), PHASE_UPLOADED | PHASE_DELIVERED)
            && let Some(publish_id) = previous.external_id
        {
            return self.await_inbox(name, &mut account, &publish_id, log).await;
        }
        let size = tokio::fs::metadata(&request.video)
            .await
            .map_err(|e| read_error(&request.video, &e))?
            .len();
        let plan = ChunkPlan::for_size(size)?;
        let init: InitData = self
            .call(name, &mut account, INIT_PATH, &plan.init_body(), true)
            .await?;
        let upload_url = init.upload_url.filter(|u| !u.is_empty()).ok_or_else(|| {
            ProviderError::permanent(SERVICE, "the init answer carried no `upload_url`")
        })?;
        log.record(&progress(&init.publish_id, PHASE_INITIALIZED))
            .await?;
        self.upload(&upload_url, &request.video, &plan).await?;
        log.record(&progress(&init.publish_id, PHASE_UPLOADED))
            .await?;
        self.await_inbox(name, &mut account, &init.publish_id, log)
            .await
    }
}

fn progress(publish_id: &str, phase: &str) -> EffectProgress {
    EffectProgress {
        external_id: Some(publish_id.to_owned()),
        phase: phase.to_owned(),
        data: serde_json::Value::Null,
    }
}

/// An upload that cannot go on: retryable, and since the ledger still says
/// `initialized`, the next attempt starts a fresh one.
fn restart(message: String) -> ProviderError {
    ProviderError::retryable(
        SERVICE,
        format!("{message}; the next attempt starts a new upload"),
    )
}

fn read_error(path: &Path, error: &std::io::Error) -> ProviderError {
    ProviderError::permanent(
        SERVICE,
        format!("cannot read `{}`: {error}", path.display()),
    )
}

fn store_error(error: super::AccountStoreError) -> ProviderError {
    ProviderError::permanent(SERVICE, error.to_string())
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `data` is read only once `error` says ok: failures often carry `"data": {}`.
#[derive(Deserialize)]
struct Envelope {
    data: Option<serde_json::Value>,
    error: Option<ApiErrorBody>,
}

#[derive(Deserialize, Default)]
struct ApiErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    log_id: String,
}

#[derive(Deserialize)]
struct InitData {
    publish_id: String,
    upload_url: Option<String>,
}

#[derive(Deserialize)]
struct StatusData {
    status: String,
    fail_reason: Option<String>,
}

/// A v2 API call that did not succeed, before it is classed.
enum ApiFailure {
    Transport(reqwest::Error),
    Malformed {
        status: u16,
    },
    Api {
        status: u16,
        code: String,
        message: String,
        log_id: String,
        retry_after: Option<Duration>,
    },
}

impl ApiFailure {
    fn token_refused(&self) -> bool {
        matches!(self, Self::Api { code, .. } if code == "access_token_invalid")
    }

    fn classify(self, account: &str, path: &str) -> ProviderError {
        let (status, code, message, log_id, retry_after) = match self {
            Self::Transport(error) => {
                return ProviderError::retryable(SERVICE, error.without_url().to_string());
            }
            Self::Malformed { status } => {
                let message = format!("unexpected answer from `{path}` (HTTP {status})");
                return if status >= 500 {
                    ProviderError::retryable(SERVICE, message)
                } else {
                    ProviderError::permanent(SERVICE, message)
                };
            }
            Self::Api {
                status,
                code,
                message,
                log_id,
                retry_after,
            } => (status, code, message, log_id, retry_after),
        };
        let detail = match (message.is_empty(), log_id.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(": {message}"),
            (true, false) => format!(" (log_id `{log_id}`)"),
            (false, false) => format!(": {message} (log_id `{log_id}`)"),
        };
        match code.as_str() {
            "spam_risk_too_many_pending_share" => ProviderError::retry_after(
                SERVICE,
                format!(
                    "account `{account}` {PENDING_CAP}: TikTok keeps at most 5 drafts waiting per 24 hours, so the draft stays queued until the creator posts or discards some{detail}"
                ),
                Some(PENDING_CAP_WAIT),
            ),
            "rate_limit_exceeded" => ProviderError::retry_after(
                SERVICE,
                format!("rate limit reached on `{path}`{detail}"),
                retry_after,
            ),
            "access_token_invalid" => ProviderError::permanent(
                SERVICE,
                format!(
                    "the access token for `{account}` was refused even after a refresh: run `factory auth tiktok login --account {account}`{detail}"
                ),
            ),
            "scope_not_authorized" | "scope_permission_missed" => ProviderError::permanent(
                SERVICE,
                format!(
                    "account `{account}` has not granted `video.upload`: run `factory auth tiktok login --account {account}` and leave the upload permission on{detail}"
                ),
            ),
            // The reference pages say `invalid_param`, the API sends `invalid_params`.
            "invalid_param" | "invalid_params" => ProviderError::permanent(
                SERVICE,
                format!("the request to `{path}` was rejected (`{code}`){detail}"),
            ),
            _ if status == 429 => ProviderError::retry_after(
                SERVICE,
                format!("rate limit reached on `{path}` (HTTP 429){detail}"),
                retry_after,
            ),
            _ if status >= 500 || code == "internal_error" => ProviderError::retryable(
                SERVICE,
                format!("`{path}` failed (HTTP {status}, `{code}`){detail}"),
            ),
            _ => ProviderError::permanent(
                SERVICE,
                format!("`{path}` failed (HTTP {status}, `{code}`){detail}"),
            ),
        }
    }
}

/// At most `per_minute` init requests per account in any sliding minute.
struct InitLimiter {
    per_minute: usize,
    sent: std::sync::Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl InitLimiter {
    const WINDOW: Duration = Duration::from_secs(60);

    fn new(per_minute: usize) -> Self {
        Self {
            per_minute: per_minute.max(1),
            sent: std::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn acquire(&self, key: &str) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                let window = sent.entry(key.to_owned()).or_default();
                let now = Instant::now();
                while window
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
                {
                    window.pop_front();
                }
                match window.front() {
                    Some(oldest) if window.len() >= self.per_minute => {
                        Self::WINDOW - now.duration_since(*oldest)
                    }
                    _ => {
                        window.push_back(now);
                        return;
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_videos_go_in_one_chunk_of_their_own_size() {
        for size in [1, 4_194_304, ChunkPlan::SINGLE_MAX] {
            let plan = ChunkPlan::for_size(size).unwrap();
            assert_eq!((plan.chunk_size, plan.total_chunk_count), (size, 1));
            assert_eq!(plan.ranges().collect::<Vec<_>>(), vec![(0, size - 1)]);
        }
        assert!(ChunkPlan::for_size(0).is_err());
    }

    #[test]
    fn larger_videos_fold_the_remainder_into_the_last_chunk() {
        // The Media Transfer Guide's worked example, scaled past the single-chunk limit.
        let plan = ChunkPlan::for_size(70_000_123).unwrap();
        assert_eq!(plan.chunk_size, 10_000_000);
        assert_eq!(plan.total_chunk_count, 7);
        let ranges: Vec<_> = plan.ranges().collect();
        assert_eq!(ranges[0], (0, 9_999_999));
        assert_eq!(ranges[5], (50_000_000, 59_999_999));
        assert_eq!(ranges[6], (60_000_000, 70_000_122));
        let just_over = ChunkPlan::for_size(ChunkPlan::SINGLE_MAX + 1).unwrap();
        assert_eq!(just_over.total_chunk_count, 6);
        assert_eq!(just_over.ranges().last(), Some((50_000_000, 64_000_000)));
        assert!(ChunkPlan::for_size(10_010_000_000).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_seventh_init_in_a_minute_waits() {
        let limiter = InitLimiter::new(6);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire("a").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire("b").await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "accounts are limited separately"
        );
        limiter.acquire("a").await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn pending_cap_is_its_own_retryable_error() {
        let failure = ApiFailure::Api {
            status: 403,
            code: "spam_risk_too_many_pending_share".to_owned(),
            message: String::new(),
            log_id: "L1".to_owned(),
            retry_after: None,
        };
        let error = failure.classify("main", INIT_PATH);
        assert!(error.is_retryable());
        assert!(is_pending_draft_cap(&error));
        assert!(
            error
                .to_string()
                .contains("account `main` has reached its pending-draft cap")
        );
        let other = ProviderError::retryable(SERVICE, "HTTP 503");
        assert!(!is_pending_draft_cap(&other));
    }
}
