//! Login Kit for desktop: the browser authorizes, a one-shot listener on 127.0.0.1
//! receives the redirect, and the code is exchanged for tokens.
//!
//! The `oauth2` crate supplies the random `state` and the PKCE verifier. The authorize URL
//! and the token, refresh and revoke requests are written here instead of going through
//! its client, because TikTok departs from RFC 6749/7636 where that client is fixed: the
//! client is named `client_key` (the crate always sends `client_id`), the S256 challenge
//! is the *hex* SHA-256 of the verifier (the crate only makes base64url), and token errors
//! can arrive with HTTP 200 in a flat `{error, error_description, log_id}` body (the crate
//! reads errors from non-2xx answers only).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use oauth2::url::{Url, form_urlencoded};
use oauth2::{CsrfToken, PkceCodeChallenge};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Account, SCOPE, SERVICE, TikTokConfig};
use crate::clock::now as unix_now;
use crate::providers::{ProviderError, http};
use crate::secret::Secret;

const AUTHORIZE_PATH: &str = "/v2/auth/authorize/";
const TOKEN_PATH: &str = "/v2/oauth/token/";
const REVOKE_PATH: &str = "/v2/oauth/revoke/";
/// The path registered for the desktop redirect, `http://127.0.0.1:*/callback/`.
const CALLBACK_PATH: &str = "/callback/";

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("cannot listen for the login redirect on `127.0.0.1:{port}`: {source}")]
    Listen { port: u16, source: io::Error },
    #[error("no login redirect arrived within {0} seconds; run the login again")]
    Timeout(u64),
    #[error(
        "the login redirect carried an unexpected `state`, so it did not come from this login; run the login again"
    )]
    StateMismatch,
    #[error("the login redirect carried no `code`")]
    MissingCode,
    #[error("tiktok did not authorize the app: `{error}`{}", suffix(.description))]
    Denied { error: String, description: String },
    #[error(
        "the account did not grant `video.upload` (granted: `{0}`); log in again and leave the upload permission on"
    )]
    ScopeNotGranted(String),
    #[error("tiktok refused the token request: `{error}`{}", suffix(.description))]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    #[error("unexpected answer from the tiktok token endpoint (HTTP {status})")]
    Malformed { status: u16 },
    #[error("cannot reach tiktok: {message}")]
    Transport { message: String, retryable: bool },
    /// TikTok revokes access tokens only (its revoke endpoint takes no refresh token),
    /// and the account holds none: nothing was sent.
    #[error(
        "the account holds no access token, so there was nothing to revoke at tiktok (tiktok revokes access tokens only)"
    )]
    NothingToRevoke,
}

fn suffix(description: &str) -> String {
    if description.is_empty() {
        String::new()
    } else {
        format!(": {description}")
    }
}

impl From<OAuthError> for ProviderError {
    fn from(error: OAuthError) -> Self {
        let retryable = match &error {
            OAuthError::Transport { retryable, .. } => *retryable,
            OAuthError::Refused { status, error, .. } => {
                *status == 429
                    || *status >= 500
                    || matches!(error.as_str(), "server_error" | "temporarily_unavailable")
            }
            OAuthError::Malformed { status } => *status >= 500,
            _ => false,
        };
        let message = match &error {
            OAuthError::Refused { error: code, .. } if code == "invalid_grant" => format!(
                "{error}; the stored login has expired or was revoked: run `factory auth tiktok login`"
            ),
            _ => error.to_string(),
        };
        if retryable {
            ProviderError::retryable(SERVICE, message)
        } else {
            ProviderError::permanent(SERVICE, message)
        }
    }
}

/// How the loopback listener waits for the browser.
#[derive(Debug, Clone, Copy)]
pub struct LoginOptions {
    /// Port on 127.0.0.1; 0 picks a free one (the app registers `http://127.0.0.1:*/callback/`).
    pub port: u16,
    /// How long the user has to finish in the browser.
    pub timeout: Duration,
}

impl Default for LoginOptions {
    fn default() -> Self {
        Self {
            port: 0,
            timeout: Duration::from_secs(300),
        }
    }
}

/// TikTok's desktop S256 challenge: lowercase hex of SHA-256 of the verifier, not the
/// RFC 7636 base64url form.
pub fn code_challenge(verifier: &str) -> String {
    hex::encode(Sha256::digest(verifier.as_bytes()))
}

/// The Login Kit client.
#[derive(Debug, Clone)]
pub struct OAuth {
    config: TikTokConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
    open_id: Option<String>,
    refresh_token: String,
    refresh_expires_in: i64,
    #[serde(default)]
    scope: String,
}

impl OAuth {
    pub fn new(config: TikTokConfig) -> Result<Self, OAuthError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(transport)?;
        Ok(Self { config, http })
    }

    /// The page the user opens. Only `video.upload` is ever requested.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str, code_challenge: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_key", &self.config.client_key)
            .append_pair("scope", SCOPE)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!("{}?{query}", self.config.auth_url(AUTHORIZE_PATH))
    }

    /// The whole desktop login: listens on 127.0.0.1, hands the authorize URL to `open`
    /// (which shows it or launches a browser, and must not block), waits for the redirect,
    /// answers the browser with a short page, checks `state`, and exchanges the code.
    pub async fn login(
        &self,
        options: &LoginOptions,
        open: impl FnOnce(&str),
    ) -> Result<Account, OAuthError> {
        let listener = TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|source| OAuthError::Listen {
                port: options.port,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| OAuthError::Listen {
                port: options.port,
                source,
            })?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let state = CsrfToken::new_random();
        // The crate's random verifier (43 characters from the allowed set); its base64url
        // challenge is not the one TikTok checks, so the hex one is computed here.
        let (_, verifier) = PkceCodeChallenge::new_random_sha256();
        let url = self.authorize_url(
            &redirect_uri,
            state.secret(),
            &code_challenge(verifier.secret()),
        );
        open(&url);

        let params = tokio::time::timeout(
            options.timeout,
            receive_redirect(&listener, port, state.secret()),
        )
        .await
        .map_err(|_| OAuthError::Timeout(options.timeout.as_secs()))??;
        if let Some(error) = params.get("error").filter(|e| !e.is_empty()) {
            return Err(OAuthError::Denied {
                error: error.clone(),
                description: params.get("error_description").cloned().unwrap_or_default(),
            });
        }
        if let Some(scopes) = params.get("scopes") {
            require_scope(scopes)?;
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(OAuthError::MissingCode)?;
        self.exchange_code(code, &redirect_uri, verifier.secret())
            .await
    }

    /// Trades an authorization code for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<Account, OAuthError> {
        let tokens = self
            .token_request(&[
                ("client_key", self.config.client_key.as_str()),
                ("client_secret", self.config.client_secret.expose()),
                ("code", code),
                ("grant_type", "authorization_code"),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ])
            .await?;
        require_scope(&tokens.scope)?;
        let open_id = tokens
            .open_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(OAuthError::Malformed { status: 200 })?;
        Ok(account_from(tokens, open_id))
    }

    /// New tokens for `account`. The answer's refresh token replaces the old one, which
    /// TikTok stops accepting: persist the returned account before anything else.
    pub async fn refresh(&self, account: &Account) -> Result<Account, OAuthError> {
        let tokens = self
            .token_request(&[
                ("client_key", self.config.client_key.as_str()),
                ("client_secret", self.config.client_secret.expose()),
                ("grant_type", "refresh_token"),
                ("refresh_token", account.refresh_token.expose()),
            ])
            .await?;
        let open_id = tokens
            .open_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| account.open_id.clone());
        let mut refreshed = account_from(tokens, open_id);
        if refreshed.scopes.is_empty() {
            refreshed.scopes.clone_from(&account.scopes);
        }
        Ok(refreshed)
    }

    /// Revokes the account's access; the app disappears from the user's connected apps.
    /// An account without an access token (seeded from `TIKTOK_ACCOUNT_JSON` and never
    /// used) gets [`OAuthError::NothingToRevoke`], and no request is sent.
    pub async fn revoke(&self, account: &Account) -> Result<(), OAuthError> {
        if account.access_token.expose().trim().is_empty() {
            return Err(OAuthError::NothingToRevoke);
        }
        let response = self
            .http
            .post(self.config.api_url(REVOKE_PATH))
            .form(&[
                ("client_key", self.config.client_key.as_str()),
                ("client_secret", self.config.client_secret.expose()),
                ("token", account.access_token.expose()),
            ])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport)?;
        let value: serde_json::Value = if body.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(&body).map_err(|_| OAuthError::Malformed { status })?
        };
        let scrubber = self.scrubber(&[("token", account.access_token.expose())]);
        check_oauth_answer(status, &value, &scrubber)
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, OAuthError> {
        let response = self
            .http
            .post(self.config.api_url(TOKEN_PATH))
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport)?;
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| OAuthError::Malformed { status })?;
        check_oauth_answer(status, &value, &self.scrubber(form))?;
        serde_json::from_value(value).map_err(|_| OAuthError::Malformed { status })
    }

    /// Everything secret this exchange sent, and the environment's keys: the server's
    /// error text is scrubbed of them before it is cut into a message.
    fn scrubber(&self, form: &[(&str, &str)]) -> http::Scrubber {
        const SENT_SECRETS: [&str; 5] = [
            "client_secret",
            "code",
            "code_verifier",
            "refresh_token",
            "token",
        ];
        form.iter()
            .filter(|(name, _)| SENT_SECRETS.contains(name))
            .fold(
                http::Scrubber::for_key(&self.config.client_secret)
                    .with(&Secret::new(self.config.client_key.as_str())),
                |scrubber, (_, value)| scrubber.with(&Secret::new(*value)),
            )
    }
}

fn account_from(tokens: TokenResponse, open_id: String) -> Account {
    let now = unix_now();
    Account {
        open_id,
        access_token: Secret::new(tokens.access_token),
        refresh_token: Secret::new(tokens.refresh_token),
        scopes: split_scopes(&tokens.scope),
        access_expires_at: now.saturating_add(tokens.expires_in),
        refresh_expires_at: now.saturating_add(tokens.refresh_expires_in),
    }
}

fn split_scopes(scopes: &str) -> Vec<String> {
    scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn require_scope(granted: &str) -> Result<(), OAuthError> {
    if split_scopes(granted).iter().any(|s| s == SCOPE) {
        Ok(())
    } else {
        Err(OAuthError::ScopeNotGranted(granted.to_owned()))
    }
}

/// OAuth endpoints answer errors flat, `{error, error_description, log_id}`, sometimes
/// with HTTP 200; a v2-style `{"error": {"code": …}}` is accepted too.
fn check_oauth_answer(
    status: u16,
    value: &serde_json::Value,
    scrubber: &http::Scrubber,
) -> Result<(), OAuthError> {
    let text =
        |v: Option<&serde_json::Value>| scrubber.clean(v.and_then(|v| v.as_str()).unwrap_or(""));
    let (error, description) = match value.get("error") {
        Some(serde_json::Value::String(code)) => {
            (scrubber.clean(code), text(value.get("error_description")))
        }
        Some(serde_json::Value::Object(inner)) => {
            (text(inner.get("code")), text(inner.get("message")))
        }
        _ => (String::new(), String::new()),
    };
    if !error.is_empty() && error != "ok" {
        return Err(OAuthError::Refused {
            status,
            error,
            description,
        });
    }
    if !(200..300).contains(&status) {
        return Err(OAuthError::Refused {
            status,
            error: format!("http_{status}"),
            description,
        });
    }
    Ok(())
}

fn transport(error: reqwest::Error) -> OAuthError {
    OAuthError::Transport {
        // Everything but a request we failed to build is a network fault worth retrying.
        retryable: !error.is_builder(),
        message: error.without_url().to_string(),
    }
}

/// Accepts connections until one asks for the callback path, answers it with a page,
/// and returns its query parameters. Other requests (a favicon) get a 404.
async fn receive_redirect(
    listener: &TcpListener,
    port: u16,
    state: &str,
) -> Result<HashMap<String, String>, OAuthError> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|source| OAuthError::Listen { port, source })?;
        let target =
            match tokio::time::timeout(Duration::from_secs(10), read_request_target(&mut stream))
                .await
            {
                Ok(Ok(target)) => target,
                // A broken or idle connection is not the redirect; keep waiting.
                _ => continue,
            };
        let Ok(url) = Url::parse(&format!("http://127.0.0.1{target}")) else {
            respond(&mut stream, "400 Bad Request", "Not a login redirect.").await;
            continue;
        };
        if url.path().trim_end_matches('/') != CALLBACK_PATH.trim_end_matches('/') {
            respond(&mut stream, "404 Not Found", "Not found.").await;
            continue;
        }
        let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
        if params.get("state").map(String::as_str) != Some(state) {
            respond(
                &mut stream,
                "400 Bad Request",
                "This login link is stale or was not started here. Return to the terminal and run the login again.",
            )
            .await;
            return Err(OAuthError::StateMismatch);
        }
        let page = if params.contains_key("error") {
            "TikTok did not connect the account. Return to the terminal for details."
        } else {
            "TikTok is connected. You can close this tab and return to the terminal."
        };
        respond(&mut stream, "200 OK", page).await;
        return Ok(params);
    }
}

/// Reads the request line and drains the headers; returns the request target.
async fn read_request_target(stream: &mut TcpStream) -> io::Result<String> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let target = line
        .split_whitespace()
        .nth(1)
        .filter(|t| t.starts_with('/'))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP request"))?
        .to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
            return Ok(target);
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, message: &str) {
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>TikTok Factory</title><p>{message}</p>\n"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The browser may already be gone; the outcome is reported in the terminal anyway.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_is_hex_sha256_of_the_verifier() {
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            code_challenge("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn authorize_url_names_client_key_and_only_video_upload() {
        let config = TikTokConfig::new("ck", Secret::new("cs"));
        let oauth = OAuth::new(config).unwrap();
        let url = Url::parse(&oauth.authorize_url(
            "http://127.0.0.1:5/callback/",
            "st",
            &code_challenge("v"),
        ))
        .unwrap();
        assert_eq!(url.path(), "/v2/auth/authorize/");
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_key"], "ck");
        assert!(!q.contains_key("client_id"));
        assert_eq!(q["scope"], "video.upload");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"].len(), 64);
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:5/callback/");
    }

    #[test]
    fn token_errors_are_found_in_flat_and_nested_bodies_even_with_200() {
        let flat = serde_json::json!({"error": "invalid_grant", "error_description": "expired"});
        let err = check_oauth_answer(200, &flat, &http::Scrubber::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tiktok refused the token request: `invalid_grant`: expired"
        );
        let provider: ProviderError = err.into();
        assert!(!provider.is_retryable());
        assert!(provider.to_string().contains("`factory auth tiktok login`"));

        let nested = serde_json::json!({"error": {"code": "ok", "message": ""}});
        assert!(check_oauth_answer(200, &nested, &http::Scrubber::default()).is_ok());
        let busy = check_oauth_answer(503, &serde_json::json!({}), &http::Scrubber::default())
            .unwrap_err();
        assert!(ProviderError::from(busy).is_retryable());
    }
}
