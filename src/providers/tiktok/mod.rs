//! TikTok: Login Kit OAuth v2 for desktop ([`oauth`]) and the Content Posting API's inbox
//! upload ([`upload`]). Drafts only: the single scope ever requested is `video.upload`, and
//! no code here knows the Direct Post endpoints.

pub mod oauth;
pub mod upload;

use async_trait::async_trait;
use serde::Deserialize;

use crate::secret::Secret;

pub use oauth::{LoginOptions, OAuth, OAuthError};
pub use upload::{
    ChunkPlan, DraftSettings, TikTokDrafts, inits_budget, is_pending_draft_cap, pending_budget,
};

/// Service name in [`crate::providers::ProviderError`] messages.
pub const SERVICE: &str = "tiktok";
/// The only scope this application requests: upload to the creator's inbox as a draft.
pub const SCOPE: &str = "video.upload";
/// Provider name in the `accounts` table.
pub const PROVIDER: &str = "tiktok";

const DEFAULT_AUTH_BASE: &str = "https://www.tiktok.com";
const DEFAULT_API_BASE: &str = "https://open.tiktokapis.com";

/// The app's credentials and where TikTok lives. Base URLs are overridable so tests and
/// proxies can stand in.
#[derive(Debug, Clone)]
pub struct TikTokConfig {
    pub client_key: String,
    pub client_secret: Secret,
    /// Serves `/v2/auth/authorize/`.
    pub auth_base_url: String,
    /// Serves `/v2/oauth/*` and `/v2/post/publish/*`.
    pub api_base_url: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("`{0}` is not set; create a TikTok app and copy its client key and secret")]
    Missing(&'static str),
    #[error("`{name}` is not an http(s) URL: `{value}`")]
    BadUrl { name: &'static str, value: String },
}

impl TikTokConfig {
    /// Reads `TIKTOK_CLIENT_KEY`, `TIKTOK_CLIENT_SECRET`, `TIKTOK_AUTH_BASE_URL` and
    /// `TIKTOK_API_BASE_URL`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let client_key = Secret::from_env("TIKTOK_CLIENT_KEY")
            .ok_or(ConfigError::Missing("TIKTOK_CLIENT_KEY"))?
            .expose()
            .to_owned();
        let client_secret = Secret::from_env("TIKTOK_CLIENT_SECRET")
            .ok_or(ConfigError::Missing("TIKTOK_CLIENT_SECRET"))?;
        Ok(Self {
            client_key,
            client_secret,
            auth_base_url: base_url_from_env("TIKTOK_AUTH_BASE_URL", DEFAULT_AUTH_BASE)?,
            api_base_url: base_url_from_env("TIKTOK_API_BASE_URL", DEFAULT_API_BASE)?,
        })
    }

    /// The production hosts, with the given credentials.
    pub fn new(client_key: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            client_key: client_key.into(),
            client_secret,
            auth_base_url: DEFAULT_AUTH_BASE.to_owned(),
            api_base_url: DEFAULT_API_BASE.to_owned(),
        }
    }

    pub(crate) fn api_url(&self, path: &str) -> String {
        join(&self.api_base_url, path)
    }

    pub(crate) fn auth_url(&self, path: &str) -> String {
        join(&self.auth_base_url, path)
    }
}

fn base_url_from_env(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let value = std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    let value = value.trim().to_owned();
    match oauth2::url::Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(value),
        _ => Err(ConfigError::BadUrl { name, value }),
    }
}

/// Joins by string so a base URL with a path prefix (a proxy) keeps it.
fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// A connected TikTok account: who it is and the tokens that act for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub open_id: String,
    pub access_token: Secret,
    /// TikTok rotates refresh tokens: after every refresh only the newest one works.
    pub refresh_token: Secret,
    /// Scopes the user granted.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub access_expires_at: i64,
    /// Unix seconds.
    pub refresh_expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "`TIKTOK_ACCOUNT_JSON` is not a TikTok account: {0}; expected {{\"open_id\": …, \"refresh_token\": …}}"
)]
pub struct AccountJsonError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountJson {
    open_id: String,
    refresh_token: String,
    access_token: Option<String>,
    access_expires_at: Option<i64>,
    refresh_expires_at: Option<i64>,
    scopes: Option<Vec<String>>,
}

impl Account {
    /// An account supplied from a secret, for CI and other machines that cannot run the
    /// browser login: the environment variable `TIKTOK_ACCOUNT_JSON` holds
    ///
    /// ```json
    /// {"open_id": "…", "refresh_token": "rft.…", "access_token": "act.…"}
    /// ```
    ///
    /// `access_token` is optional (without it the first use refreshes), and so are
    /// `access_expires_at` / `refresh_expires_at` (unix seconds) and `scopes`. An access
    /// token without an expiry is used until TikTok refuses it, then refreshed.
    ///
    /// The account is copied into the account store on first use and the store wins from
    /// then on, because TikTok rotates refresh tokens: once the copy has been refreshed,
    /// the refresh token in the secret no longer works, so a CI secret has to be updated
    /// with the newest one (or hold a fresh access token) for the next machine.
    pub fn from_env() -> Result<Option<Self>, AccountJsonError> {
        Secret::from_env("TIKTOK_ACCOUNT_JSON")
            .map(|json| Self::from_json(json.expose()))
            .transpose()
    }

    /// Parses the `TIKTOK_ACCOUNT_JSON` form described at [`Account::from_env`].
    pub fn from_json(json: &str) -> Result<Self, AccountJsonError> {
        // serde_json's messages quote the offending input: keep them out of the error,
        // the input holds tokens.
        let parsed: AccountJson = serde_json::from_str(json).map_err(|e| {
            AccountJsonError(format!(
                "invalid JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        if parsed.open_id.trim().is_empty() || parsed.refresh_token.trim().is_empty() {
            return Err(AccountJsonError(
                "`open_id` and `refresh_token` must not be empty".to_owned(),
            ));
        }
        let has_access = parsed
            .access_token
            .as_deref()
            .is_some_and(|t| !t.is_empty());
        Ok(Self {
            open_id: parsed.open_id,
            access_token: Secret::new(parsed.access_token.unwrap_or_default()),
            refresh_token: Secret::new(parsed.refresh_token),
            scopes: parsed.scopes.unwrap_or_else(|| vec![SCOPE.to_owned()]),
            access_expires_at: match (has_access, parsed.access_expires_at) {
                (_, Some(at)) => at,
                (true, None) => i64::MAX,
                (false, None) => 0,
            },
            refresh_expires_at: parsed.refresh_expires_at.unwrap_or(i64::MAX),
        })
    }

    /// Whether the access token expires within `margin_secs` of `now`.
    pub fn access_due(&self, now: i64, margin_secs: i64) -> bool {
        self.access_token.expose().is_empty()
            || self.access_expires_at.saturating_sub(margin_secs) <= now
    }
}

/// Why the account store could not answer. The implementation (which seals the tokens
/// and keeps the rows) says what happened in its own words.
#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    #[error("cannot read or write stored accounts: {0}")]
    Unavailable(String),
    /// The stored tokens do not open: a wrong key, or a tampered value.
    #[error("{0}")]
    Sealed(String),
}

/// Where connected accounts live between runs, by the name recipes use
/// (`publish.tiktok.account`). Tokens are encrypted by the implementation.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn load(&self, name: &str) -> Result<Option<Account>, AccountStoreError>;
    /// Inserts or replaces.
    async fn save(&self, name: &str, account: &Account) -> Result<(), AccountStoreError>;
    /// Deleting an absent account succeeds.
    async fn delete(&self, name: &str) -> Result<(), AccountStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now as unix_now;

    #[test]
    fn account_json_needs_open_id_and_refresh_token_and_hides_its_input() {
        let account = Account::from_json(r#"{"open_id":"o1","refresh_token":"rft.1"}"#).unwrap();
        assert_eq!(account.open_id, "o1");
        assert!(account.access_due(unix_now(), 0));
        assert_eq!(account.scopes, vec!["video.upload"]);

        let with_access = Account::from_json(
            r#"{"open_id":"o1","refresh_token":"rft.1","access_token":"act.1"}"#,
        )
        .unwrap();
        assert!(!with_access.access_due(unix_now(), 600));

        let err = Account::from_json(r#"{"open_id":"o1","refresh_token":"rft.secret""#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`TIKTOK_ACCOUNT_JSON`"), "{err}");
        assert!(!err.contains("rft.secret"), "{err}");
        assert!(Account::from_json(r#"{"open_id":"","refresh_token":"r"}"#).is_err());
        assert!(Account::from_json(r#"{"open_id":"o","refresh_token":"r","x":1}"#).is_err());
    }

    #[test]
    fn joins_base_urls_with_and_without_a_trailing_slash() {
        assert_eq!(join("http://h:1/", "/v2/x/"), "http://h:1/v2/x/");
        assert_eq!(join("http://h:1/proxy", "/v2/x/"), "http://h:1/proxy/v2/x/");
    }
}
