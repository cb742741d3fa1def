//! Stock footage from the Pexels video search: portrait mp4 files close to 1080 wide, long
//! enough for a scene, each kept with the credit the API guidelines ask for.
//!
//! The hourly quota is small, so the client remembers the `X-Ratelimit-*` headers of every
//! successful answer (shared between clones), counts its searches in the shared budget
//! `pexels:<key hash>`, and never sleeps or burns requests on 429s: a used-up quota comes
//! back as a short retryable wait, or as [`ProviderError::Deferred`] until the reset (an
//! hour when the reset is unknown), and blocks the budget for every process.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_RANGE, HeaderMap, RANGE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::budgets::MemoryBudgets;
use super::http::{self, SetupError, Timeouts};
use super::{Budgets, Clip, Credit, FootageRequest, FootageSource, ProviderError, probe};
use crate::clock::now as unix_now;
use crate::secret::Secret;

const SERVICE: &str = "pexels";
pub const KEY_VAR: &str = "PEXELS_API_KEY";
pub const BASE_VAR: &str = "PEXELS_BASE_URL";
pub const DEFAULT_BASE: &str = "https://api.pexels.com";

/// The width a 1080×1920 render wants; files nearest to it need the least scaling.
const TARGET_WIDTH: u32 = 1080;
/// The API refuses more per page.
const MAX_PER_PAGE: u32 = 80;
/// 4K files are never downloaded: tens of megabytes each, only to be scaled down.
const MAX_WIDTH: u32 = 2160;

#[derive(Debug, Clone, PartialEq)]
pub struct PexelsOptions {
    /// Without a trailing slash; `/videos/search` is appended.
    pub base_url: String,
    /// For API calls.
    pub timeouts: Timeouts,
    /// For one clip download, body included; files run to tens of megabytes.
    pub download_timeout: Duration,
    /// Results asked for per search; more per page saves quota.
    pub per_page: u32,
    /// A quota reset at most this far off comes back retryable (the engine waits it out
    /// in this run); a later one defers the job until the reset.
    pub max_rate_wait: Duration,
}

impl Default for PexelsOptions {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE.to_owned(),
            timeouts: Timeouts {
                connect: Duration::from_secs(10),
                request: Duration::from_secs(30),
            },
            download_timeout: Duration::from_secs(300),
            per_page: 40,
            max_rate_wait: Duration::from_secs(120),
        }
    }
}

impl PexelsOptions {
    /// Defaults, with the base URL from `PEXELS_BASE_URL` when set.
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            base_url: http::base_from_env(BASE_VAR, DEFAULT_BASE)?,
            ..Self::default()
        })
    }
}

/// The quota as the last successful answer reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix seconds when the quota refills.
    pub reset: Option<i64>,
}

/// Pexels' documented default: 200 requests per hour.
const DEFAULT_HOURLY: u32 = 200;
const HOUR: i64 = 60 * 60;

/// Search answers by query, page size and page.
type Searches = HashMap<(String, u32, u32), Arc<SearchPage>>;

/// Clones share one HTTP client, one view of the quota and the budgets.
#[derive(Clone)]
pub struct Pexels {
    http: reqwest::Client,
    key: Secret,
    scrub: http::Scrubber,
    options: PexelsOptions,
    rate: Arc<Mutex<RateLimit>>,
    /// Search answers by query, per page size and page, when kept: a batch whose jobs
    /// search the same words asks once.
    searches: Option<Arc<Mutex<Searches>>>,
    budgets: Arc<dyn Budgets>,
    /// `pexels:<first 12 hex digits of the key's sha256>`: per key, never the key itself.
    budget_key: String,
}

impl std::fmt::Debug for Pexels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pexels")
            .field("options", &self.options)
            .field("budget_key", &self.budget_key)
            .finish_non_exhaustive()
    }
}

impl Pexels {
    pub fn new(key: Secret, options: PexelsOptions) -> Result<Self, SetupError> {
        let base_url = http::check_base(BASE_VAR, &options.base_url)?;
        let key_for_hash = key.clone();
        Ok(Self {
            http: http::client(options.timeouts)?,
            scrub: http::Scrubber::for_key(&key),
            key,
            options: PexelsOptions {
                base_url,
                per_page: options.per_page.clamp(1, MAX_PER_PAGE),
                ..options
            },
            rate: Arc::default(),
            searches: None,
            budgets: Arc::new(MemoryBudgets::new()),
            budget_key: budget_key(&key_for_hash),
        })
    }

    /// The shared budgets the hourly window is counted in (the store's, across
    /// processes); by default, this process's memory.
    pub fn with_budgets(mut self, budgets: Arc<dyn Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// Keeps every search answer for the life of the client (and its clones): a second
    /// search for the same words, by any job, is answered from memory. For a run, whose
    /// jobs of one batch often search alike; a long-lived client would keep stale results.
    pub fn sharing_searches(mut self) -> Self {
        self.searches = Some(Arc::default());
        self
    }

    /// The [`Budgets`] key this client's searches count against.
    pub fn budget_key(&self) -> &str {
        &self.budget_key
    }

    /// The key from `PEXELS_API_KEY`, the base from `PEXELS_BASE_URL`.
    pub fn from_env() -> Result<Self, SetupError> {
        Self::new(http::key_from_env(KEY_VAR)?, PexelsOptions::from_env()?)
    }

    /// The quota as last reported.
    pub fn rate_limit(&self) -> RateLimit {
        *self.rate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One minimal search, to check the key; returns the quota it reported.
    pub async fn probe_key(&self) -> Result<RateLimit, ProviderError> {
        self.search("nature", 1, 1).await?;
        Ok(self.rate_limit())
    }

    /// A search, answered from this client's earlier answers when it asked the same.
    async fn search_once(
        &self,
        query: &str,
        per_page: u32,
        page: u32,
    ) -> Result<Arc<SearchPage>, ProviderError> {
        let Some(searches) = &self.searches else {
            return Ok(Arc::new(self.search(query, per_page, page).await?));
        };
        let key = (query.to_owned(), per_page, page);
        let known = searches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(page) = known {
            return Ok(page);
        }
        let answer = Arc::new(self.search(query, per_page, page).await?);
        searches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&answer));
        Ok(answer)
    }

    async fn search(
        &self,
        query: &str,
        per_page: u32,
        page: u32,
    ) -> Result<SearchPage, ProviderError> {
        self.check_quota().await?;
        let mut url = Url::parse(&format!("{}/videos/search", self.options.base_url))
            .map_err(|e| ProviderError::permanent(SERVICE, format!("bad search url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("orientation", "portrait")
            .append_pair("per_page", &per_page.to_string());
        if page > 1 {
            url.query_pairs_mut().append_pair("page", &page.to_string());
        }
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, http::sensitive(self.key.expose())?)
            .send()
            .await
            .map_err(|e| http::classify_transport(SERVICE, "searching videos", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = http::read_body(SERVICE, response).await?;
        if status.is_success() {
            self.remember_quota(&headers);
            return serde_json::from_slice(&body).map_err(|e| {
                ProviderError::retryable(
                    SERVICE,
                    format!("the search response is not valid JSON ({e})"),
                )
            });
        }
        let message = error_message(&body, &self.scrub);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::permanent(
                SERVICE,
                format!(
                    "rejected the API key (`{KEY_VAR}`): {message}; check the key (sent as is, without `Bearer`)"
                ),
            ),
            StatusCode::TOO_MANY_REQUESTS => {
                // A 429 carries no rate headers: the reset remembered from the last 200
                // is the best guess at when the quota returns; without one, the hour.
                let now = unix_now();
                let reset = {
                    let mut rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
                    rate.remaining = Some(0);
                    rate.reset.filter(|reset| *reset > now)
                };
                let reset = reset
                    .or_else(|| http::retry_after(&headers).map(|w| http::unix_after(now, w)))
                    .unwrap_or(now + HOUR);
                self.budgets.block(&self.budget_key, reset).await?;
                self.used_up(reset, &format!("the request quota is used up: {message}"))
            }
            _ => http::classify_status(SERVICE, status, http::retry_after(&headers), &message),
        })
    }

    fn remember_quota(&self, headers: &HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let mut rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        let unsigned = |v: i64| u64::try_from(v).ok();
        if let Some(limit) = number("x-ratelimit-limit") {
            rate.limit = unsigned(limit);
        }
        if let Some(remaining) = number("x-ratelimit-remaining") {
            rate.remaining = unsigned(remaining);
        }
        if let Some(reset) = number("x-ratelimit-reset") {
            rate.reset = Some(reset);
        }
    }

    /// Refuses a search the quota has no room for, before it is sent: the reported
    /// quota at zero until its reset, or the shared hourly budget empty or blocked.
    async fn check_quota(&self) -> Result<(), ProviderError> {
        let now = unix_now();
        let (exhausted, limit) = {
            let rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
            let exhausted = match (rate.remaining, rate.reset) {
                (Some(0), Some(reset)) if reset > now => Some(reset),
                _ => None,
            };
            let limit = rate
                .limit
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(DEFAULT_HOURLY);
            (exhausted, limit)
        };
        if let Some(reset) = exhausted {
            return Err(self.used_up(reset, "the request quota is used up"));
        }
        match self.budgets.take(&self.budget_key, limit, HOUR).await? {
            Ok(()) => Ok(()),
            Err(until) => Err(self.used_up(until, "the hourly request budget is used up")),
        }
    }

    /// A used-up quota that refills at `reset`: retryable when that is soon, otherwise
    /// the job waits for it.
    fn used_up(&self, reset: i64, what: &str) -> ProviderError {
        let wait = Duration::from_secs(u64::try_from(reset - unix_now()).unwrap_or(0));
        if wait <= self.options.max_rate_wait {
            return ProviderError::retry_after(
                SERVICE,
                format!("{what}; it resets in {}s", wait.as_secs()),
                Some(wait),
            );
        }
        ProviderError::deferred(
            SERVICE,
            format!(
                "{what}; the footage waits for the reset in {}s",
                wait.as_secs()
            ),
            reset,
            self.budget_key.clone(),
        )
    }

    /// Streams one file into `<name>.part`, resuming a part left by an earlier attempt,
    /// checks its length and that ffprobe reads it, then renames it into place.
    async fn download(&self, pick: &Pick, dir: &Path) -> Result<Clip, ProviderError> {
        let target = dir.join(format!("pexels-{}.mp4", pick.id));
        let part = dir.join(format!("pexels-{}.mp4.part", pick.id));
        if !tokio::fs::try_exists(&target).await.unwrap_or(false) {
            self.fetch_part(pick, &part).await?;
            let duration = probe::duration(&part).await.map_err(|problem| {
                // A file that arrived whole but does not decode must not be resumed.
                let _ = std::fs::remove_file(&part);
                ProviderError::retryable(
                    SERVICE,
                    format!("clip {} is not usable video: {problem}", pick.id),
                )
            })?;
            tokio::fs::rename(&part, &target)
                .await
                .map_err(|e| io_error("moving the clip into place", &target, &e))?;
            return Ok(pick.clip(target, duration));
        }
        // An earlier attempt finished this clip.
        let duration = probe::duration(&target).await.map_err(|problem| {
            ProviderError::permanent(SERVICE, format!("`{}`: {problem}", target.display()))
        })?;
        Ok(pick.clip(target, duration))
    }

    async fn fetch_part(&self, pick: &Pick, part: &Path) -> Result<(), ProviderError> {
        let have = tokio::fs::metadata(part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        // Files live on a CDN that needs no key; the key only ever goes to the API base.
        let mut call = self
            .http
            .get(&pick.link)
            .timeout(self.options.download_timeout);
        if have > 0 {
            call = call.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = call
            .send()
            .await
            .map_err(|e| http::classify_transport(SERVICE, "downloading a clip", e))?;
        let status = response.status();
        let (append, expected) = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let range = content_range(response.headers());
                if range.map(|r| r.start) != Some(Some(have)) {
                    let _ = tokio::fs::remove_file(part).await;
                    return Err(ProviderError::retryable(
                        SERVICE,
                        format!(
                            "clip {} resumed at an unexpected offset; starting over",
                            pick.id
                        ),
                    ));
                }
                let total = range
                    .and_then(|r| r.total)
                    .or_else(|| response.content_length().map(|n| n + have));
                (true, total)
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                // Asked for bytes past the end: complete if the server's size is ours.
                if content_range(response.headers()).and_then(|r| r.total) == Some(have) {
                    return Ok(());
                }
                let _ = tokio::fs::remove_file(part).await;
                return Err(ProviderError::retryable(
                    SERVICE,
                    format!("clip {} changed on the server; starting over", pick.id),
                ));
            }
            // A server that ignores `Range` sends the whole file again.
            status if status.is_success() => (false, response.content_length()),
            status => {
                let wait = http::retry_after(response.headers());
                let body = http::read_body(SERVICE, response).await.unwrap_or_default();
                let message = format!(
                    "downloading clip {}: {}",
                    pick.id,
                    self.scrub.clean_body(&body)
                );
                return Err(http::classify_status(SERVICE, status, wait, &message));
            }
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .await
            .map_err(|e| io_error("opening", part, &e))?;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => file
                    .write_all(&chunk)
                    .await
                    .map_err(|e| io_error("writing", part, &e))?,
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived: the next attempt resumes from it.
                    file.flush()
                        .await
                        .map_err(|e| io_error("writing", part, &e))?;
                    return Err(http::classify_transport(SERVICE, "downloading a clip", e));
                }
            }
        }
        file.flush()
            .await
            .map_err(|e| io_error("writing", part, &e))?;
        drop(file);
        let got = tokio::fs::metadata(part)
            .await
            .map_err(|e| io_error("reading", part, &e))?
            .len();
        match expected {
            Some(expected) if got < expected => Err(ProviderError::retryable(
                SERVICE,
                format!(
                    "clip {} arrived short ({got} of {expected} bytes); the next attempt resumes",
                    pick.id
                ),
            )),
            Some(expected) if got > expected => {
                let _ = tokio::fs::remove_file(part).await;
                Err(ProviderError::retryable(
                    SERVICE,
                    format!(
                        "clip {} is longer than announced ({got} of {expected} bytes); starting over",
                        pick.id
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl FootageSource for Pexels {
    /// Fewer clips than asked come back when the search has no more that fit; none at all
    /// is a permanent error.
    async fn fetch(
        &self,
        request: &FootageRequest,
        dir: &Path,
    ) -> Result<Vec<Clip>, ProviderError> {
        let wanted = usize::try_from(request.clips).unwrap_or(usize::MAX).max(1);
        let avoid: HashSet<&str> = request.avoid.iter().map(String::as_str).collect();
        let per_page = self.options.per_page.max(request.clips).min(MAX_PER_PAGE);
        let first = self.search_once(&request.query, per_page, 1).await?;
        let mut picks = Picks::default();
        picks.add(&first.videos, request.min_clip_seconds, &avoid);
        if picks.fresh.len() < wanted
            && let Some(page) = first.next_page.as_deref().and_then(page_number)
        {
            // Built from our own base rather than followed as given, so the key never goes
            // to a host other than the configured one.
            let next = self.search_once(&request.query, per_page, page).await?;
            picks.add(&next.videos, request.min_clip_seconds, &avoid);
        }
        let chosen = picks.take(wanted);
        if chosen.is_empty() {
            return Err(ProviderError::permanent(
                SERVICE,
                format!(
                    "no portrait mp4 clip of at least {}s found for `{}`; try a broader `footage.query`",
                    request.min_clip_seconds, request.query
                ),
            ));
        }
        let mut clips = Vec::with_capacity(chosen.len());
        for pick in &chosen {
            clips.push(self.download(pick, dir).await?);
        }
        Ok(clips)
    }
}

/// A video chosen for download, with its best file.
#[derive(Debug, Clone, PartialEq)]
struct Pick {
    id: u64,
    link: String,
    credit: Credit,
}

impl Pick {
    fn clip(&self, path: PathBuf, duration: f64) -> Clip {
        Clip {
            path,
            source_id: source_id(self.id),
            duration,
            credit: Some(self.credit.clone()),
        }
    }
}

/// Candidates in result order, split by whether the batch already used them.
#[derive(Debug, Default)]
struct Picks {
    seen: HashSet<u64>,
    fresh: Vec<Pick>,
    used_elsewhere: Vec<Pick>,
}

impl Picks {
    fn add(&mut self, videos: &[Video], min_seconds: f64, avoid: &HashSet<&str>) {
        for video in videos {
            if video.duration.unwrap_or(0.0) < min_seconds || self.seen.contains(&video.id) {
                continue;
            }
            let Some(file) = best_file(&video.video_files) else {
                continue;
            };
            self.seen.insert(video.id);
            let pick = Pick {
                id: video.id,
                link: file.link.clone(),
                credit: Credit {
                    creator: video.user.name.clone(),
                    creator_url: video.user.url.clone(),
                    url: video.url.clone(),
                },
            };
            if avoid.contains(source_id(video.id).as_str()) {
                self.used_elsewhere.push(pick);
            } else {
                self.fresh.push(pick);
            }
        }
    }

    /// Fresh clips first; clips used elsewhere in the batch only to make up the number.
    fn take(self, wanted: usize) -> Vec<Pick> {
        self.fresh
            .into_iter()
            .chain(self.used_elsewhere)
            .take(wanted)
            .collect()
    }
}

/// The portrait mp4 nearest to 1080 wide and below 4K, judged by real dimensions
/// (`quality` labels are unreliable); files without dimensions are skipped.
fn best_file(files: &[VideoFile]) -> Option<&VideoFile> {
    files
        .iter()
        .filter(|f| {
            f.file_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("video/mp4"))
        })
        .filter(|f| !f.link.is_empty())
        .filter_map(|f| match (f.width, f.height) {
            (Some(w), Some(h)) if w > 0 && h > w && w < MAX_WIDTH => Some((f, w, h)),
            _ => None,
        })
        .min_by_key(|(_, w, h)| (w.abs_diff(TARGET_WIDTH), Reverse(*h)))
        .map(|(f, _, _)| f)
}

fn source_id(id: u64) -> String {
    format!("pexels:{id}")
}

/// `next_page` is a full URL; only its `page` number is used.
fn page_number(next_page: &str) -> Option<u32> {
    let url = Url::parse(next_page).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .filter(|&page| page > 1)
}

fn budget_key(key: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(key.expose().as_bytes()));
    format!("pexels:{}", &digest[..12])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

/// `bytes 100-199/200`, `bytes 100-199/*` or `bytes */200`.
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let start = range
        .split_once('-')
        .and_then(|(s, _)| s.trim().parse().ok());
    Some(ContentRange {
        start,
        total: total.trim().parse().ok(),
    })
}

fn error_message(body: &[u8], scrub: &http::Scrubber) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    scrub.clean(&text)
}

fn io_error(doing: &str, path: &Path, error: &std::io::Error) -> ProviderError {
    ProviderError::permanent(SERVICE, format!("{doing} `{}`: {error}", path.display()))
}

#[derive(Debug, Deserialize)]
struct SearchPage {
    #[serde(default)]
    videos: Vec<Video>,
    #[serde(default)]
    next_page: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Video {
    id: u64,
    #[serde(default)]
    url: String,
    /// Whole seconds per the docs; read as a number in case a fraction appears.
    #[serde(default)]
    duration: Option<f64>,
    user: User,
    #[serde(default)]
    video_files: Vec<VideoFile>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
}

#[derive(Debug, Deserialize)]
struct VideoFile {
    #[serde(default)]
    file_type: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    link: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn file(file_type: &str, width: Option<u32>, height: Option<u32>, link: &str) -> VideoFile {
        VideoFile {
            file_type: Some(file_type.into()),
            width,
            height,
            link: link.into(),
        }
    }

    fn video(id: u64, duration: f64, files: Vec<VideoFile>) -> Video {
        Video {
            id,
            url: format!("https://www.pexels.com/video/{id}/"),
            duration: Some(duration),
            user: User {
                name: "someone".into(),
                url: "https://www.pexels.com/@someone".into(),
            },
            video_files: files,
        }
    }

    #[test]
    fn best_file_is_portrait_mp4_nearest_1080() {
        let files = vec![
            file("video/mp4", Some(1920), Some(1080), "landscape"),
            file("video/mp4", None, None, "unknown"),
            file("application/x-mpegURL", Some(1080), Some(1920), "hls"),
            file("video/mp4", Some(720), Some(1280), "sd"),
            file("video/mp4", Some(1440), Some(2560), "qhd"),
            file("video/mp4", Some(1080), Some(1920), "hd"),
        ];
        assert_eq!(best_file(&files).unwrap().link, "hd");
        let none = vec![file("video/mp4", Some(1920), Some(1080), "landscape")];
        assert!(best_file(&none).is_none());
        let only_4k = vec![file("video/mp4", Some(2160), Some(3840), "uhd")];
        assert!(best_file(&only_4k).is_none(), "4K is never downloaded");
    }

    #[test]
    fn picks_skip_short_repeated_and_avoided_videos() {
        let hd = || vec![file("video/mp4", Some(1080), Some(1920), "x")];
        let videos = vec![
            video(1, 3.0, hd()),
            video(2, 10.0, hd()),
            video(2, 10.0, hd()),
            video(3, 10.0, hd()),
            video(4, 10.0, vec![]),
            video(5, 10.0, hd()),
        ];
        let avoid: HashSet<&str> = ["pexels:3"].into();
        let mut picks = Picks::default();
        picks.add(&videos, 5.0, &avoid);
        let ids = |p: Vec<Pick>| p.iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(picks.take(2)), [2, 5]);
        let mut picks = Picks::default();
        picks.add(&videos, 5.0, &avoid);
        assert_eq!(ids(picks.take(5)), [2, 5, 3]);
    }

    #[test]
    fn next_page_and_content_range_parse() {
        assert_eq!(
            page_number("https://api.pexels.com/videos/search/?page=2&per_page=15&query=space"),
            Some(2)
        );
        assert_eq!(page_number("not a url"), None);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(
            content_range(&headers),
            Some(ContentRange {
                start: Some(100),
                total: Some(200)
            })
        );
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */200"));
        assert_eq!(
            content_range(&headers),
            Some(ContentRange {
                start: None,
                total: Some(200)
            })
        );
    }
}
