//! Inbox drafts through the Content Posting API: init with `FILE_UPLOAD`, PUT the chunks
//! in order, poll the status until TikTok has sent the draft to the creator's inbox.
//!
//! Every step is recorded in the effect ledger before or as it happens, and every attempt
//! reads the ledger afresh and reconciles with TikTok before it sends anything:
//!
//! - `init-sent` is recorded before the init request. Found again without a `publish_id`
//!   (the answer was lost), no draft can come of it, since no byte was sent: a new init is
//!   made, and the lost one keeps counting against the account's pending budget.
//! - `initialized` (with the `publish_id` and the upload URL) after the init, `uploading`
//!   after every chunk: a later attempt asks TikTok for the status and resumes the upload
//!   at the chunk TikTok is missing, while the upload URL is younger than an hour.
//! - `uploaded` the moment the last chunk is answered 201: TikTok delivers the draft
//!   whatever happens next, so from here on an attempt only polls.
//! - `delivered` once TikTok says `SEND_TO_USER_INBOX` (or `PUBLISH_COMPLETE`).
//!
//! There is no retry loop in here: a failed request returns a classed error and the
//! engine's one retry policy calls again; the next call picks up where the ledger says.

use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;

use super::oauth::OAuthError;
use super::{Account, AccountStore, OAuth, SERVICE, TikTokConfig};
use crate::clock::now as unix_now;
use crate::providers::budgets::MemoryBudgets;
use crate::providers::http;
use crate::providers::{
    Budgets, DraftReceipt, DraftRequest, Drafts, EffectLog, EffectProgress, ProviderError,
};
use crate::secret::Secret;

/// Recorded before the init request is sent; no `publish_id` yet.
pub const PHASE_INIT_SENT: &str = "init-sent";
/// TikTok answered the init with an error: nothing was created.
pub const PHASE_INIT_REFUSED: &str = "init-refused";
pub const PHASE_INITIALIZED: &str = "initialized";
/// Some chunks are up; `data.chunks_done` says how many.
pub const PHASE_UPLOADING: &str = "uploading";
pub const PHASE_UPLOADED: &str = "uploaded";
pub const PHASE_DELIVERED: &str = "delivered";
/// TikTok reported `FAILED`, or the upload can no longer complete; a later attempt starts
/// a fresh upload.
pub const PHASE_FAILED: &str = "failed";

const INIT_PATH: &str = "/v2/post/publish/inbox/video/init/";
const STATUS_PATH: &str = "/v2/post/publish/status/fetch/";
const JSON_UTF8: &str = "application/json; charset=UTF-8";
const VIDEO_TYPE: &str = "video/mp4";

const PENDING_CAP: &str = "has reached its pending-draft cap";
/// How long to wait after the cap error: the cap counts drafts over any 24 hours, so
/// minutes of backing off only burn requests.
const PENDING_CAP_WAIT: i64 = 60 * 60;
/// A 429 without Retry-After: TikTok's windows are per minute.
const RATE_LIMIT_WAIT: i64 = 60;
const DAY: i64 = 24 * 60 * 60;
/// A server's wait up to this long is retried in the same run; a longer one defers.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(120);

/// The [`crate::providers::Budgets`] key of an access token's init window (6 per minute).
pub fn inits_budget(open_id: &str) -> String {
    format!("tiktok:inits:{open_id}")
}

/// The [`crate::providers::Budgets`] key of an account's pending drafts (5 per 24 hours);
/// every init takes a unit, lost inits (orphans) included.
pub fn pending_budget(account: &str) -> String {
    format!("tiktok:pending:{account}")
}

fn status_budget(open_id: &str) -> String {
    format!("tiktok:status:{open_id}")
}

/// Whether `error` says the account has too many drafts waiting in its inbox. The engine
/// keeps such jobs queued until the account has room instead of failing them.
pub fn is_pending_draft_cap(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Deferred { service, scope, .. }
        if *service == SERVICE && scope.starts_with("tiktok:pending:"))
}

/// How a video is cut for `FILE_UPLOAD`, following the Media Transfer Guide: one chunk
/// when the whole video fits, otherwise `total_chunk_count = floor(size / chunk_size)`
/// chunks with the remainder folded into the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Timing knobs and limits; the defaults are TikTok's documented ones.
#[derive(Debug, Clone, Copy)]
pub struct DraftSettings {
    /// Between status polls (TikTok allows 30 per minute).
    pub poll_interval: Duration,
    /// After this long still processing, the send returns a retryable error; the ledger
    /// says `uploaded`, so the next attempt only polls.
    pub poll_timeout: Duration,
    pub chunk_timeout: Duration,
    /// Refresh the access token when it expires within this margin.
    pub refresh_margin: Duration,
    /// TikTok allows 6 init requests per minute per access token.
    pub inits_per_minute: u32,
    /// And 30 status checks; polls of all drafts of an account share them.
    pub status_per_minute: u32,
    /// TikTok keeps at most 5 pending drafts per account in any 24 hours.
    pub pending_per_day: u32,
    /// How long an upload URL is valid after the init: an upload is resumed only within it.
    pub upload_url_lifetime: Duration,
}

impl Default for DraftSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(10 * 60),
            chunk_timeout: Duration::from_secs(10 * 60),
            refresh_margin: Duration::from_secs(10 * 60),
            inits_per_minute: 6,
            status_per_minute: 30,
            pending_per_day: 5,
            upload_url_lifetime: Duration::from_secs(60 * 60),
        }
    }
}

/// What an attempt records after the init and after every chunk, so the next one can
/// resume. The upload URL is no credential, but it is not logged either.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct UploadState {
    upload_url: String,
    chunks_done: u64,
    initialized_at: i64,
    chunk_plan: ChunkPlan,
}

/// Sends finished videos to the creator's TikTok inbox as drafts.
pub struct TikTokDrafts {
    config: TikTokConfig,
    oauth: OAuth,
    http: reqwest::Client,
    store: Arc<dyn AccountStore>,
    seed: Option<Account>,
    settings: DraftSettings,
    budgets: Arc<dyn Budgets>,
    /// Serializes load → refresh → save: refresh tokens rotate, so two refreshes racing
    /// would leave one of them holding a dead token.
    account_lock: tokio::sync::Mutex<()>,
}

/// What reconciling an earlier attempt found.
enum Reconciled {
    Done(DraftReceipt),
    /// Nothing of the earlier attempt can still become a draft: a new init may go out.
    StartAfresh,
}

impl TikTokDrafts {
    pub fn new(config: TikTokConfig, store: Arc<dyn AccountStore>) -> Result<Self, ProviderError> {
        let oauth = OAuth::new(config.clone())?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ProviderError::permanent(SERVICE, e.without_url().to_string()))?;
        Ok(Self {
            config,
            oauth,
            http,
            store,
            seed: None,
            settings: DraftSettings::default(),
            budgets: Arc::new(MemoryBudgets::new()),
            account_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn with_settings(mut self, settings: DraftSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The shared budgets the init window and the pending cap are counted in (the
    /// store's, so every process honours them); by default, this process's memory.
    pub fn with_budgets(mut self, budgets: Arc<dyn Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// An account to copy into the store when it has none under the requested name
    /// (`TIKTOK_ACCOUNT_JSON`, see [`Account::from_env`]), and to fall back on when the
    /// stored login is refused and the seed holds a different refresh token.
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
        let refreshed = if account.refresh_expires_at <= now {
            Err(expired_login(name))
        } else {
            self.oauth.refresh(&account).await.map_err(|e| {
                let dead =
                    matches!(&e, OAuthError::Refused { error, .. } if error == "invalid_grant");
                (ProviderError::from(e), dead)
            })
        };
        let refreshed = match refreshed {
            Ok(refreshed) => refreshed,
            Err((error, dead_login)) => {
                // A renewed `TIKTOK_ACCOUNT_JSON` replaces a stored login TikTok no
                // longer accepts; one with the same refresh token is that dead login.
                let Some(seed) = self
                    .seed
                    .as_ref()
                    .filter(|s| dead_login && s.refresh_token != account.refresh_token)
                else {
                    return Err(error);
                };
                self.store.save(name, seed).await.map_err(store_error)?;
                if !seed.access_due(now, margin) && refused != Some(&seed.access_token) {
                    return Ok(seed.clone());
                }
                self.oauth.refresh(seed).await?
            }
        };
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
    ) -> Result<T, ApiFailure> {
        match self.post_api(&account.access_token, path, body).await {
            Err(failure) if failure.token_refused() => {
                *account = self
                    .account(name, Some(&account.access_token))
                    .await
                    .map_err(ApiFailure::Account)?;
                self.post_api(&account.access_token, path, body).await
            }
            result => result,
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
        let retry_after = http::retry_after(response.headers());
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
                // Scrubbed of the token and the app's secret before it is cut.
                message: http::Scrubber::for_key(token)
                    .with(&self.config.client_secret)
                    .clean(&error.message),
                log_id: error.log_id,
                retry_after,
            });
        }
        envelope
            .data
            .and_then(|data| serde_json::from_value(data).ok())
            .ok_or(ApiFailure::Malformed { status })
    }

    /// Classes a failure, and blocks the budget a rate limit names for everyone.
    async fn fail(&self, failure: ApiFailure, call: &Call<'_>) -> ProviderError {
        let error = failure.classify(call);
        if let ProviderError::Deferred { until, scope, .. } = &error
            && let Err(store) = self.budgets.block(scope, *until).await
        {
            return store;
        }
        if let ProviderError::Retryable {
            retry_after: Some(wait),
            ..
        } = &error
            && let Some(scope) = &call.rate_scope
            && let Err(store) = self
                .budgets
                .block(scope, http::unix_after(unix_now(), *wait))
                .await
        {
            return store;
        }
        error
    }

    async fn fetch_status(
        &self,
        name: &str,
        account: &mut Account,
        publish_id: &str,
    ) -> Result<StatusData, ProviderError> {
        let scope = status_budget(&account.open_id);
        if let Err(until) = self
            .budgets
            .take(&scope, self.settings.status_per_minute, 60)
            .await?
        {
            let wait = u64::try_from(until.saturating_sub(unix_now())).unwrap_or(0);
            return Err(ProviderError::retry_after(
                SERVICE,
                format!(
                    "account `{name}` has used its {} status checks of this minute",
                    self.settings.status_per_minute
                ),
                Some(Duration::from_secs(wait.max(1))),
            ));
        }
        let body = json!({ "publish_id": publish_id });
        match self.call(name, account, STATUS_PATH, &body).await {
            Ok(status) => Ok(status),
            Err(failure) => {
                let call = Call {
                    account: name,
                    path: STATUS_PATH,
                    effect: false,
                    rate_scope: Some(scope),
                };
                Err(self.fail(failure, &call).await)
            }
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
        loop {
            let status = self.fetch_status(name, account, publish_id).await?;
            if let Some(done) = self.settled(publish_id, &status, log).await? {
                return done;
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

    /// The end of a draft, when `status` is one: delivered, or failed at TikTok.
    async fn settled(
        &self,
        publish_id: &str,
        status: &StatusData,
        log: &dyn EffectLog,
    ) -> Result<Option<Result<DraftReceipt, ProviderError>>, ProviderError> {
        match status.status.as_str() {
            // `PUBLISH_COMPLETE` means the creator already posted it from the inbox.
            "SEND_TO_USER_INBOX" | "PUBLISH_COMPLETE" => {
                log.record(&progress(
                    publish_id,
                    PHASE_DELIVERED,
                    serde_json::Value::Null,
                ))
                .await?;
                Ok(Some(Ok(DraftReceipt {
                    external_id: publish_id.to_owned(),
                    status: status.status.clone(),
                })))
            }
            "FAILED" => {
                log.record(&progress(publish_id, PHASE_FAILED, serde_json::Value::Null))
                    .await?;
                let reason = status.fail_reason.clone().unwrap_or_default();
                let message = format!("tiktok could not take draft `{publish_id}`: `{reason}`");
                Ok(Some(Err(if reason == "internal" {
                    ProviderError::retryable(SERVICE, message)
                } else {
                    ProviderError::permanent(SERVICE, message)
                })))
            }
            _ => Ok(None),
        }
    }

    /// Looks at what an earlier attempt left: finishes it when it can still become the
    /// draft, and says when nothing of it can.
    async fn reconcile(
        &self,
        name: &str,
        account: &mut Account,
        request: &DraftRequest,
        previous: EffectProgress,
        log: &dyn EffectLog,
    ) -> Result<Reconciled, ProviderError> {
        let phase = previous.phase.as_str();
        let Some(publish_id) = previous.external_id.clone() else {
            // `init-sent` without an id: the init's answer was lost, so no byte was sent
            // and no draft can come of it. Its unit of the pending budget stays taken.
            return Ok(Reconciled::StartAfresh);
        };
        match phase {
            PHASE_UPLOADED | PHASE_DELIVERED => {
                return self
                    .await_inbox(name, account, &publish_id, log)
                    .await
                    .map(Reconciled::Done);
            }
            // An attempt known only by its id (from a shared store): TikTok's status says
            // whether it became a draft or can still become one.
            PHASE_INITIALIZED | PHASE_UPLOADING | EffectProgress::UNRECORDED => {}
            _ => return Ok(Reconciled::StartAfresh),
        }
        let status = self.fetch_status(name, account, &publish_id).await?;
        if let Some(done) = self.settled(&publish_id, &status, log).await? {
            return match done {
                Ok(receipt) => Ok(Reconciled::Done(receipt)),
                // TikTok gave up on it: a new init may go out.
                Err(_) => Ok(Reconciled::StartAfresh),
            };
        }
        let state = serde_json::from_value::<UploadState>(previous.data.clone()).ok();
        // The size TikTok must have: the ledger's plan, or the file itself when the
        // attempt is known only by its id.
        let size = match &state {
            Some(state) => state.chunk_plan.video_size,
            None => tokio::fs::metadata(&request.video)
                .await
                .map_err(|e| read_error(&request.video, &e))?
                .len(),
        };
        let complete = status.status != "PROCESSING_UPLOAD"
            || status.uploaded_bytes.is_some_and(|bytes| bytes >= size);
        if complete {
            // Every byte is there (the last chunk's answer was lost): TikTok delivers it.
            log.record(&progress(&publish_id, PHASE_UPLOADED, previous.data))
                .await?;
            return self
                .await_inbox(name, account, &publish_id, log)
                .await
                .map(Reconciled::Done);
        }
        let Some(state) = state else {
            // A ledger that kept the phase but not the upload URL (the engine must keep
            // `data`): without the URL nobody can finish this upload, so it never becomes
            // a draft. It stays counted as pending; a new one goes out.
            log.record(&progress(
                &publish_id,
                PHASE_FAILED,
                serde_json::Value::Null,
            ))
            .await?;
            return Ok(Reconciled::StartAfresh);
        };
        let plan = state.chunk_plan;
        let lifetime = i64::try_from(self.settings.upload_url_lifetime.as_secs()).unwrap_or(0);
        if unix_now().saturating_sub(state.initialized_at) >= lifetime {
            // The URL has expired with the upload incomplete: it can never be delivered.
            log.record(&progress(
                &publish_id,
                PHASE_FAILED,
                serde_json::Value::Null,
            ))
            .await?;
            return Ok(Reconciled::StartAfresh);
        }
        // TikTok's count of bytes received says where to go on; without one, the ledger.
        let from = status
            .uploaded_bytes
            .filter(|bytes| bytes % plan.chunk_size == 0)
            .map_or(state.chunks_done, |bytes| bytes / plan.chunk_size)
            .min(plan.total_chunk_count.saturating_sub(1));
        self.upload(&request.video, &publish_id, &state, from, log)
            .await?;
        self.await_inbox(name, account, &publish_id, log)
            .await
            .map(Reconciled::Done)
    }

    /// A new init and upload, paced by the shared budgets.
    async fn start(
        &self,
        name: &str,
        account: &mut Account,
        request: &DraftRequest,
        log: &dyn EffectLog,
    ) -> Result<DraftReceipt, ProviderError> {
        let size = tokio::fs::metadata(&request.video)
            .await
            .map_err(|e| read_error(&request.video, &e))?
            .len();
        let plan = ChunkPlan::for_size(size)?;
        let inits = inits_budget(&account.open_id);
        let pending = pending_budget(name);
        if let Err(until) = self
            .budgets
            .take(&inits, self.settings.inits_per_minute, 60)
            .await?
        {
            return Err(ProviderError::deferred(
                SERVICE,
                format!(
                    "account `{name}` has used its {} draft inits of this minute",
                    self.settings.inits_per_minute
                ),
                until,
                inits,
            ));
        }
        if let Err(until) = self
            .budgets
            .take(&pending, self.settings.pending_per_day, DAY)
            .await?
        {
            self.budgets.give_back(&inits).await?;
            return Err(pending_cap(name, until, pending, ""));
        }
        log.record(&EffectProgress {
            external_id: None,
            phase: PHASE_INIT_SENT.to_owned(),
            data: json!({ "chunk_plan": plan, "sent_at": unix_now() }),
        })
        .await?;
        let init: InitData = match self.call(name, account, INIT_PATH, &plan.init_body()).await {
            Ok(init) => init,
            Err(failure) => {
                if failure.answered() {
                    // TikTok refused it: nothing was created, nothing is pending.
                    self.budgets.give_back(&pending).await?;
                    log.record(&EffectProgress {
                        external_id: None,
                        phase: PHASE_INIT_REFUSED.to_owned(),
                        data: serde_json::Value::Null,
                    })
                    .await?;
                }
                let call = Call {
                    account: name,
                    path: INIT_PATH,
                    effect: true,
                    rate_scope: Some(inits.clone()),
                };
                return Err(self.fail(failure, &call).await);
            }
        };
        let upload_url = init.upload_url.filter(|u| !u.is_empty()).ok_or_else(|| {
            ProviderError::permanent(SERVICE, "the init answer carried no `upload_url`")
        })?;
        let state = UploadState {
            upload_url,
            chunks_done: 0,
            initialized_at: unix_now(),
            chunk_plan: plan,
        };
        log.record(&progress(
            &init.publish_id,
            PHASE_INITIALIZED,
            state_json(&state),
        ))
        .await?;
        self.upload(&request.video, &init.publish_id, &state, 0, log)
            .await?;
        self.await_inbox(name, account, &init.publish_id, log).await
    }

    /// PUTs the chunks from `from` on, recording each, and `uploaded` after the last.
    async fn upload(
        &self,
        video: &Path,
        publish_id: &str,
        state: &UploadState,
        from: u64,
        log: &dyn EffectLog,
    ) -> Result<(), ProviderError> {
        let plan = state.chunk_plan;
        let mut file = tokio::fs::File::open(video)
            .await
            .map_err(|e| read_error(video, &e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| read_error(video, &e))?
            .len();
        if size != plan.video_size {
            return Err(ProviderError::permanent(
                SERVICE,
                format!(
                    "`{}` is {size} bytes now, but draft `{publish_id}` was started with {}",
                    video.display(),
                    plan.video_size
                ),
            ));
        }
        let mut state = state.clone();
        for (index, (first, last)) in plan.ranges().enumerate().skip(from_index(from)) {
            let len = usize::try_from(last - first + 1)
                .map_err(|_| ProviderError::permanent(SERVICE, "chunk too large for memory"))?;
            let mut chunk = vec![0; len];
            file.seek(SeekFrom::Start(first))
                .await
                .map_err(|e| read_error(video, &e))?;
            file.read_exact(&mut chunk)
                .await
                .map_err(|e| read_error(video, &e))?;
            let number = u64::try_from(index).unwrap_or(u64::MAX);
            let is_last = number + 1 == plan.total_chunk_count;
            match self
                .put_chunk(&state.upload_url, chunk, (first, last), &plan, is_last)
                .await
            {
                Ok(()) => {
                    state.chunks_done = number + 1;
                    let phase = if is_last {
                        PHASE_UPLOADED
                    } else {
                        PHASE_UPLOADING
                    };
                    log.record(&progress(publish_id, phase, state_json(&state)))
                        .await?;
                }
                Err(ChunkFailure::Resync(received)) => {
                    state.chunks_done = received / plan.chunk_size;
                    log.record(&progress(publish_id, PHASE_UPLOADING, state_json(&state)))
                        .await?;
                    return Err(ProviderError::retryable(
                        SERVICE,
                        format!(
                            "the upload host has {received} bytes of draft `{publish_id}`, not what was sent; the next attempt resumes at chunk {}",
                            state.chunks_done + 1
                        ),
                    ));
                }
                Err(ChunkFailure::Gone(message)) => {
                    log.record(&progress(publish_id, PHASE_FAILED, serde_json::Value::Null))
                        .await?;
                    return Err(ProviderError::retryable(
                        SERVICE,
                        format!("{message}; the next attempt starts a new upload"),
                    ));
                }
                Err(ChunkFailure::Error(error)) => return Err(error),
            }
        }
        Ok(())
    }

    /// PUTs one chunk, once: a failure goes back to the engine's retry policy, and the
    /// next attempt resumes at this chunk (or wherever TikTok says the upload got to).
    async fn put_chunk(
        &self,
        upload_url: &str,
        chunk: Vec<u8>,
        (first, last): (u64, u64),
        plan: &ChunkPlan,
        is_last: bool,
    ) -> Result<(), ChunkFailure> {
        let range = format!("bytes {first}-{last}/{}", plan.video_size);
        let sent = self
            .http
            .put(upload_url)
            .timeout(self.settings.chunk_timeout)
            .header(CONTENT_TYPE, VIDEO_TYPE)
            .header(CONTENT_RANGE, &range)
            .header(CONTENT_LENGTH, chunk.len())
            .body(chunk)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if is_last && !error.is_connect() => {
                // The last chunk may have landed, and with it the draft: the next attempt
                // asks TikTok before it sends anything.
                return Err(ChunkFailure::Error(http::classify_effect_transport(
                    SERVICE,
                    &format!("sending the last chunk `{range}`"),
                    error,
                )));
            }
            Err(error) => {
                return Err(ChunkFailure::Error(ProviderError::retryable(
                    SERVICE,
                    format!(
                        "chunk `{range}` failed: {}; the next attempt resumes there",
                        error.without_url()
                    ),
                )));
            }
        };
        let status = response.status().as_u16();
        let host_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let failure = |error| Err(ChunkFailure::Error(error));
        match status {
            206 if !is_last => Ok(()),
            200 | 201 if is_last => Ok(()),
            206 | 416 => match host_range.as_deref().and_then(received_bytes) {
                Some(received) if received % plan.chunk_size == 0 => {
                    Err(ChunkFailure::Resync(received))
                }
                _ => Err(ChunkFailure::Gone(format!(
                    "the upload host refused `{range}` (HTTP {status}) and says it has `{}`",
                    host_range.unwrap_or_default()
                ))),
            },
            200 | 201 => failure(ProviderError::permanent(
                SERVICE,
                format!("the upload host finished the upload early, at `{range}`"),
            )),
            403 => Err(ChunkFailure::Gone(
                "the upload URL has expired (HTTP 403)".to_owned(),
            )),
            404 => Err(ChunkFailure::Gone(
                "the upload task is gone (HTTP 404)".to_owned(),
            )),
            s if s >= 500 || s == 429 || s == 408 => failure(ProviderError::retry_after(
                SERVICE,
                format!("chunk `{range}` failed with HTTP {s}; the next attempt resumes there"),
                http::retry_after(response.headers()),
            )),
            s => failure(ProviderError::permanent(
                SERVICE,
                format!("the upload host refused `{range}` (HTTP {s})"),
            )),
        }
    }
}

enum ChunkFailure {
    /// The host holds this many bytes, a whole number of chunks: resume after them.
    Resync(u64),
    /// The upload can no longer complete; a new init is needed.
    Gone(String),
    Error(ProviderError),
}

/// The bytes an upload host says it holds, from `Content-Range: bytes 0-{last}/{total}`.
fn received_bytes(value: &str) -> Option<u64> {
    let (range, _) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    if first.trim() != "0" {
        return None;
    }
    last.trim().parse::<u64>().ok().map(|last| last + 1)
}

fn from_index(from: u64) -> usize {
    usize::try_from(from).unwrap_or(usize::MAX)
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
        if let Some(previous) = log.progress().await? {
            match self
                .reconcile(name, &mut account, request, previous, log)
                .await?
            {
                Reconciled::Done(receipt) => return Ok(receipt),
                Reconciled::StartAfresh => {}
            }
        }
        self.start(name, &mut account, request, log).await
    }
}

fn progress(publish_id: &str, phase: &str, data: serde_json::Value) -> EffectProgress {
    EffectProgress {
        external_id: Some(publish_id.to_owned()),
        phase: phase.to_owned(),
        data,
    }
}

fn state_json(state: &UploadState) -> serde_json::Value {
    serde_json::to_value(state).unwrap_or(serde_json::Value::Null)
}

fn pending_cap(name: &str, until: i64, scope: String, detail: &str) -> ProviderError {
    ProviderError::deferred(
        SERVICE,
        format!(
            "account `{name}` {PENDING_CAP}: TikTok keeps at most 5 drafts waiting per 24 hours, so the draft stays queued until the creator posts or discards some{detail}"
        ),
        until,
        scope,
    )
}

fn expired_login(name: &str) -> (ProviderError, bool) {
    (
        ProviderError::permanent(
            SERVICE,
            format!(
                "the TikTok login for `{name}` has expired: run `factory auth tiktok login --account {name}`"
            ),
        ),
        true,
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
    uploaded_bytes: Option<u64>,
}

/// Which call failed, for classing its failure.
struct Call<'a> {
    account: &'a str,
    path: &'a str,
    /// Whether the call has a side effect (the init), so a lost answer is unconfirmed.
    effect: bool,
    /// The budget a rate limit on this call blocks.
    rate_scope: Option<String>,
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
    /// The token was refused and getting a new one failed.
    Account(ProviderError),
}

impl ApiFailure {
    fn token_refused(&self) -> bool {
        matches!(self, Self::Api { code, .. } if code == "access_token_invalid")
    }

    /// TikTok answered with an error of its own: the request took no effect.
    fn answered(&self) -> bool {
        matches!(self, Self::Api { .. } | Self::Account(_))
    }

    fn classify(self, call: &Call<'_>) -> ProviderError {
        let (account, path) = (call.account, call.path);
        let (status, code, message, log_id, retry_after) = match self {
            Self::Account(error) => return error,
            Self::Transport(error) if call.effect => {
                return http::classify_effect_transport(
                    SERVICE,
                    &format!("calling `{path}`"),
                    error,
                );
            }
            Self::Transport(error) => {
                return http::classify_transport(SERVICE, &format!("calling `{path}`"), error);
            }
            Self::Malformed { status } => {
                let message = format!("unexpected answer from `{path}` (HTTP {status})");
                // A 2xx that is not the JSON envelope (a proxy, a garbled body): what it
                // did is unknown, and the next attempt asks TikTok before sending.
                return if status >= 500 || (200..300).contains(&status) {
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
        let now = unix_now();
        let rate_limited = |what: String| match (retry_after, &call.rate_scope) {
            // A wait longer than a retry should sleep (up to `Retry-After: 1e20`, read as
            // a day) paces the draft instead.
            (Some(wait), Some(scope)) if wait > LONGEST_RETRY_WAIT => ProviderError::deferred(
                SERVICE,
                format!("{what}; TikTok asks to wait {} s", wait.as_secs()),
                http::unix_after(now, wait),
                scope.clone(),
            ),
            (Some(wait), _) => ProviderError::retry_after(SERVICE, what, Some(wait)),
            (None, Some(scope)) => ProviderError::deferred(
                SERVICE,
                format!("{what}; TikTok gave no wait, so the draft waits a minute"),
                now + RATE_LIMIT_WAIT,
                scope.clone(),
            ),
            (None, None) => ProviderError::retryable(SERVICE, what),
        };
        match code.as_str() {
            "spam_risk_too_many_pending_share" => pending_cap(
                account,
                now + PENDING_CAP_WAIT,
                pending_budget(account),
                &detail,
            ),
            "rate_limit_exceeded" => {
                rate_limited(format!("rate limit reached on `{path}`{detail}"))
            }
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
            _ if status == 429 => {
                rate_limited(format!("rate limit reached on `{path}` (HTTP 429){detail}"))
            }
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

    fn call(rate_scope: Option<&str>) -> Call<'static> {
        Call {
            account: "main",
            path: INIT_PATH,
            effect: true,
            rate_scope: rate_scope.map(str::to_owned),
        }
    }

    fn api(status: u16, code: &str, retry_after: Option<Duration>) -> ApiFailure {
        ApiFailure::Api {
            status,
            code: code.to_owned(),
            message: String::new(),
            log_id: "L1".to_owned(),
            retry_after,
        }
    }

    #[test]
    fn the_pending_draft_cap_defers_for_an_hour_in_the_accounts_scope() {
        let before = unix_now();
        let error = api(403, "spam_risk_too_many_pending_share", None).classify(&call(None));
        assert!(is_pending_draft_cap(&error), "{error}");
        let ProviderError::Deferred { until, scope, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(scope, "tiktok:pending:main");
        assert!((before + 3600..=unix_now() + 3600).contains(until));
        assert!(
            error
                .to_string()
                .contains("account `main` has reached its pending-draft cap")
        );
        let other = ProviderError::retryable(SERVICE, "HTTP 503");
        assert!(!is_pending_draft_cap(&other));
    }

    #[test]
    fn a_429_without_retry_after_defers_a_minute_instead_of_retrying_at_once() {
        let scope = inits_budget("o1");
        let error = api(429, "rate_limit_exceeded", None).classify(&call(Some(&scope)));
        let ProviderError::Deferred {
            until, scope: s, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(s, "tiktok:inits:o1");
        assert!(*until >= unix_now() + 59);
        let waited = api(429, "", Some(Duration::from_secs(7))).classify(&call(Some(&scope)));
        assert!(matches!(
            waited,
            ProviderError::Retryable { retry_after: Some(w), .. } if w == Duration::from_secs(7)
        ));
    }

    #[test]
    fn a_2xx_answer_that_is_not_json_is_retryable_not_permanent() {
        for status in [200, 201, 502] {
            let error = ApiFailure::Malformed { status }.classify(&call(None));
            assert!(
                matches!(error, ProviderError::Retryable { .. }),
                "{error:?}"
            );
        }
        let error = ApiFailure::Malformed { status: 403 }.classify(&call(None));
        assert!(
            matches!(error, ProviderError::Permanent { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn the_upload_hosts_range_says_how_many_bytes_it_holds() {
        assert_eq!(received_bytes("bytes 0-9999999/70000123"), Some(10_000_000));
        assert_eq!(received_bytes("bytes 5-9/10"), None);
        assert_eq!(received_bytes("garbage"), None);
    }
}
