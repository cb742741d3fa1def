//! What the HTTP clients share: building a `reqwest::Client` with timeouts, reading keys and
//! base URLs from the environment, and turning HTTP failures into classed
//! [`ProviderError`]s, so every service answers 429 or a timeout the same way.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Response, StatusCode};

use super::ProviderError;
use crate::secret::Secret;

const USER_AGENT: &str = concat!("tiktok-factory/", env!("CARGO_PKG_VERSION"));

/// A client that cannot be built from the environment it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("`{0}` is not set; export it in the environment")]
    MissingKey(&'static str),
    #[error("`{name}` is not a usable base url (`{value}`): {reason}")]
    BadBaseUrl {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot start the http client: {0}")]
    Client(String),
}

/// How long a client waits. `request` covers the whole exchange, body included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

pub(crate) fn client(timeouts: Timeouts) -> Result<reqwest::Client, SetupError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .build()
        .map_err(|e| SetupError::Client(chain(&e)))
}

/// One client per set of timeouts for the whole process: a client owns a connection pool
/// (and a TLS set-up), so building one per call or per job would open a new connection for
/// every request. Clones share the pool.
pub(crate) fn shared_client(timeouts: Timeouts) -> Result<reqwest::Client, SetupError> {
    static CLIENTS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Timeouts, reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(client) = clients.get(&timeouts) {
        return Ok(client.clone());
    }
    let built = client(timeouts)?;
    clients.insert(timeouts, built.clone());
    Ok(built)
}

/// The key in `name`, or an error naming the variable to set.
pub(crate) fn key_from_env(name: &'static str) -> Result<Secret, SetupError> {
    Secret::from_env(name).ok_or(SetupError::MissingKey(name))
}

/// The base URL in `name`, or `default` when it is unset or empty.
pub(crate) fn base_from_env(name: &'static str, default: &str) -> Result<String, SetupError> {
    let value = std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    check_base(name, &value)
}

/// Checks a base URL and drops its trailing slash, so paths can be appended with `/`.
pub(crate) fn check_base(name: &'static str, value: &str) -> Result<String, SetupError> {
    let bad = |reason: &str| SetupError::BadBaseUrl {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(value.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    // A key must never travel in a URL, and a base carrying a query would mangle every path.
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("a base url takes no query string or credentials"));
    }
    Ok(value.trim().trim_end_matches('/').to_owned())
}

/// The header carrying the key, marked sensitive so reqwest never prints it.
pub(crate) fn sensitive(value: &str) -> Result<HeaderValue, ProviderError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::permanent(
            "http",
            "the api key contains characters a header cannot carry",
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The server's requested wait, from `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// The longest wait a server's header is read as: a larger number (`1e20`) still means
/// "not soon", but must neither overflow a `Duration` nor a unix time.
pub(crate) const MAX_SERVER_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds_to_wait(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // A date already past means "now", not "no advice".
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_SERVER_WAIT),
    )
}

/// A wait in (possibly fractional) seconds as a server wrote it, capped at
/// [`MAX_SERVER_WAIT`]; negative or not-a-number is no advice.
pub(crate) fn seconds_to_wait(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(MAX_SERVER_WAIT)
            .min(MAX_SERVER_WAIT),
    )
}

/// The unix second `wait` from `now`, for a [`ProviderError::Deferred`] or a budget block.
pub(crate) fn unix_after(now: i64, wait: Duration) -> i64 {
    now.saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX))
        .saturating_add(i64::from(wait.subsec_nanos() > 0))
}

/// Statuses worth another try: the server timed out, is overloaded or limited us.
fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS | StatusCode::TOO_EARLY
        )
}

/// The default class for an HTTP error status: 408/425/429/5xx retry (after the server's
/// wait when it gave one), any other 4xx is permanent.
pub(crate) fn classify_status(
    service: &'static str,
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: &str,
) -> ProviderError {
    let message = if detail.is_empty() {
        format!("http {status}")
    } else {
        format!("http {status}: {detail}")
    };
    if is_retryable_status(status) {
        ProviderError::retry_after(service, message, retry_after)
    } else {
        ProviderError::permanent(service, message)
    }
}

/// A failure to send a request or read its answer: timeouts, refused or dropped
/// connections and cut-off bodies are retryable; a request we could not even build is not.
pub(crate) fn classify_transport(
    service: &'static str,
    doing: &str,
    error: reqwest::Error,
) -> ProviderError {
    let error = error.without_url();
    if error.is_timeout() {
        return ProviderError::retryable(service, format!("timed out {doing}"));
    }
    if error.is_builder() {
        return ProviderError::permanent(service, format!("{doing}: {}", chain(&error)));
    }
    ProviderError::retryable(service, format!("{doing}: {}", chain(&error)))
}

/// A request that failed before an answer came, for a call with a side effect: refused
/// before anything was sent is retryable; a timeout or a connection dropped after the
/// request went out leaves it open whether the service acted, so it is unconfirmed.
pub(crate) fn classify_effect_transport(
    service: &'static str,
    doing: &str,
    error: reqwest::Error,
) -> ProviderError {
    let error = error.without_url();
    if error.is_connect() {
        return ProviderError::retryable(service, format!("{doing}: {}", chain(&error)));
    }
    if error.is_builder() {
        return ProviderError::permanent(service, format!("{doing}: {}", chain(&error)));
    }
    if error.is_timeout() {
        return ProviderError::unconfirmed(
            service,
            format!("timed out {doing}, after the request was sent"),
        );
    }
    ProviderError::unconfirmed(service, format!("{doing}: {}", chain(&error)))
}

/// The whole body; a connection dropped mid-body is retryable.
pub(crate) async fn read_body(
    service: &'static str,
    response: Response,
) -> Result<Vec<u8>, ProviderError> {
    response
        .bytes()
        .await
        .map(Vec::from)
        .map_err(|e| classify_transport(service, "reading the response", e))
}

/// Every variable holding a credential: whatever a server sends back is scrubbed of
/// their values, whichever client asked, since a proxy or a confused service may echo
/// any header or form field it saw.
pub(crate) const SECRET_VARS: [&str; 10] = [
    "OPENROUTER_API_KEY",
    "PEXELS_API_KEY",
    "ELEVENLABS_API_KEY",
    "TIKTOK_CLIENT_KEY",
    "TIKTOK_CLIENT_SECRET",
    "TELEGRAM_BOT_TOKEN",
    "R2_ACCOUNT_ID",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "R2_BUCKET",
];

/// The most characters of server text an error message carries, so a proxy's HTML page
/// stays readable.
pub(crate) const MAX_SERVER_TEXT: usize = 200;

/// Values shorter than this are not scrubbed: they are no credential, and replacing every
/// `ab` in a message would only garble it.
const MIN_SECRET_LEN: usize = 4;

const REDACTED: &str = "[redacted]";

/// Removes every configured secret from text a server sent, ignoring letter case, and
/// only then cuts it to [`MAX_SERVER_TEXT`] characters: cutting first would leave the
/// prefix of a key that straddles the cut, which no longer matches the whole key.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    /// Longest first, so a secret containing another is removed whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    /// The values of [`SECRET_VARS`], read once per process.
    pub(crate) fn from_env() -> Self {
        static FROM_ENV: std::sync::OnceLock<Scrubber> = std::sync::OnceLock::new();
        FROM_ENV
            .get_or_init(|| {
                SECRET_VARS
                    .iter()
                    .filter_map(|name| Secret::from_env(name))
                    .fold(Self::default(), |scrubber, secret| scrubber.with(&secret))
            })
            .clone()
    }

    /// The environment's secrets and the one a client holds (a key given in code, a
    /// TikTok token).
    pub(crate) fn for_key(key: &Secret) -> Self {
        Self::from_env().with(key)
    }

    /// This scrubber and `secret` too.
    pub(crate) fn with(mut self, secret: &Secret) -> Self {
        let value = secret.expose();
        if value.chars().count() >= MIN_SECRET_LEN
            && !self.secrets.iter().any(|s| s.eq_ignore_ascii_case(value))
        {
            self.secrets.push(value.to_owned());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        self
    }

    /// `text` without any secret, whole.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| {
            replace_ignoring_case(&text, secret)
        })
    }

    /// `text` without any secret, trimmed and then cut to [`MAX_SERVER_TEXT`] characters.
    pub(crate) fn clean(&self, text: &str) -> String {
        cut(self.scrub(text).trim(), MAX_SERVER_TEXT)
    }

    /// A body for an error message: as text, scrubbed, then cut.
    pub(crate) fn clean_body(&self, body: &[u8]) -> String {
        self.clean(&String::from_utf8_lossy(body))
    }
}

/// `text` with every occurrence of `secret` replaced, ASCII letters compared without case
/// (keys are ASCII; other characters must match exactly).
fn replace_ignoring_case(text: &str, secret: &str) -> String {
    let (hay, needle) = (text.as_bytes(), secret.as_bytes());
    if needle.is_empty() || hay.len() < needle.len() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let (mut kept, mut at) = (0, 0);
    while at + needle.len() <= hay.len() {
        if hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            // A match starts and ends on character boundaries: `secret` is whole UTF-8,
            // and case folding maps ASCII bytes to ASCII bytes only.
            out.push_str(&text[kept..at]);
            out.push_str(REDACTED);
            at += needle.len();
            kept = at;
        } else {
            at += 1;
        }
    }
    out.push_str(&text[kept..]);
    out
}

/// The first `max` characters of `text`, with `…` where it was cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// An error and its causes on one line: reqwest's own message alone is often just
/// "error sending request".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_retry_after_of_1e20_is_a_long_wait_not_a_panic() {
        let now = SystemTime::now();
        for huge in ["1e20", "18446744073709551616", "inf", "1e308"] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_SERVER_WAIT),
                "{huge}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&headers), Some(MAX_SERVER_WAIT));
        assert_eq!(unix_after(i64::MAX - 5, MAX_SERVER_WAIT), i64::MAX);
        assert_eq!(unix_after(100, Duration::from_millis(1500)), 102);
    }

    #[test]
    fn statuses_are_classed() {
        let wait = Some(Duration::from_secs(2));
        for status in [408, 425, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            let error = classify_status("svc", status, wait, "busy");
            assert_eq!(
                error,
                ProviderError::retry_after("svc", format!("http {status}: busy"), wait)
            );
        }
        for status in [400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!classify_status("svc", status, wait, "").is_retryable());
        }
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            check_base("X", "http://127.0.0.1:9/api/v1/").unwrap(),
            "http://127.0.0.1:9/api/v1"
        );
        assert!(check_base("X", "ftp://example.test").is_err());
        assert!(check_base("X", "https://example.test/?key=1").is_err());
        assert!(check_base("X", "https://user:pw@example.test").is_err());
        assert!(check_base("X", "not a url").is_err());
    }

    #[test]
    fn scrub_and_cut() {
        let scrubber = Scrubber::default().with(&Secret::new("abc123"));
        assert_eq!(scrubber.scrub("bad key abc123!"), "bad key [redacted]!");
        assert_eq!(scrubber.clean_body(b"  short  "), "short");
        assert_eq!(
            scrubber
                .clean_body("x".repeat(300).as_bytes())
                .chars()
                .count(),
            201
        );
        assert_eq!(
            Scrubber::default().with(&Secret::new("ab")).scrub("ab"),
            "ab"
        );
    }

    const KEY: &str = "sk-or-v1-0123456789abcdefABCDEF";

    /// The key's first ten characters, in any case, anywhere in `text`.
    fn leaks_prefix(text: &str) -> bool {
        text.to_ascii_lowercase()
            .contains(&KEY[..10].to_ascii_lowercase())
    }

    #[test]
    fn an_error_body_is_cut_before_keys_are_scrubbed() {
        let scrubber = Scrubber::default().with(&Secret::new(KEY));
        // The key starts a few characters before the cut, wherever that falls.
        for before in MAX_SERVER_TEXT - 20..MAX_SERVER_TEXT {
            let body = format!("{} {KEY} and more text after it", "x".repeat(before));
            let cleaned = scrubber.clean_body(body.as_bytes());
            assert!(!leaks_prefix(&cleaned), "{before}: {cleaned}");
            assert!(cleaned.chars().count() <= MAX_SERVER_TEXT + 1, "{cleaned}");
        }
        let body = format!("{}é {KEY}", "ü".repeat(MAX_SERVER_TEXT - 5));
        assert!(!leaks_prefix(&scrubber.clean(&body)));
    }

    #[test]
    fn an_echoed_key_in_another_case_is_not_scrubbed() {
        let scrubber = Scrubber::default()
            .with(&Secret::new("short"))
            .with(&Secret::new(KEY));
        for echo in [KEY.to_ascii_uppercase(), KEY.to_ascii_lowercase()] {
            let cleaned = scrubber.clean(&format!("INVALID KEY «{echo}»; Short"));
            assert_eq!(cleaned, "INVALID KEY «[redacted]»; [redacted]");
        }
        // Two secrets where one holds the other: the longer goes whole.
        let nested = Scrubber::default()
            .with(&Secret::new("abcd"))
            .with(&Secret::new("xxabcdyy"));
        assert_eq!(nested.scrub("XXABCDYY abcd"), "[redacted] [redacted]");
    }
}
