//! Telegram Bot API `sendMessage`: the notice a creator gets when a draft is waiting,
//! with the caption to paste in the TikTok app.
//!
//! Messages go out as plain text (no `parse_mode`), so titles and captions need no
//! escaping and cannot break the markup. Text longer than Telegram's 4096 characters is
//! truncated with an ellipsis rather than split: a notice is one message with one id.
//!
//! The bot token sits in the URL path, and reqwest puts URLs in its errors, so every
//! message built here drops the URL and scrubs the token.
//!
//! Telegram cannot be asked whether a message went out, so a send is at most once: an
//! answer that says no (`ok: false`, a JSON error, a refused connection) is retryable or
//! permanent, and anything that leaves it open (a timeout after sending, a cut or
//! non-JSON answer) is [`ProviderError::Unconfirmed`], which the engine reports and
//! never sends again.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Credit, Notice, Notifier, ProviderError, Timeouts, http};
use crate::secret::Secret;

pub const SERVICE: &str = "telegram";
const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
/// Telegram's limit on `text`. Counted here in UTF-16 code units, which is never fewer
/// than characters, so the limit holds under either reading.
pub const MAX_TEXT_UNITS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TelegramConfigError {
    #[error("`TELEGRAM_BOT_TOKEN` is not set; create a bot with @BotFather and copy its token")]
    MissingToken,
    #[error("`TELEGRAM_API_BASE_URL` is not an http(s) URL")]
    BadBaseUrl,
    #[error(transparent)]
    Client(#[from] ProviderError),
}

pub struct Telegram {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    scrubber: http::Scrubber,
}

impl Telegram {
    pub const TIMEOUTS: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        request: Duration::from_secs(30),
    };

    pub fn new(base_url: impl Into<String>, token: Secret) -> Result<Self, ProviderError> {
        Self::with_timeouts(base_url, token, Self::TIMEOUTS)
    }

    pub fn with_timeouts(
        base_url: impl Into<String>,
        token: Secret,
        timeouts: Timeouts,
    ) -> Result<Self, ProviderError> {
        let http =
            http::client(timeouts).map_err(|e| ProviderError::permanent(SERVICE, e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            scrubber: http::Scrubber::for_key(&token),
            token,
        })
    }

    /// Reads `TELEGRAM_BOT_TOKEN` and `TELEGRAM_API_BASE_URL`.
    pub fn from_env() -> Result<Self, TelegramConfigError> {
        let token =
            Secret::from_env("TELEGRAM_BOT_TOKEN").ok_or(TelegramConfigError::MissingToken)?;
        let base_url = std::env::var("TELEGRAM_API_BASE_URL")
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(TelegramConfigError::BadBaseUrl);
        }
        Ok(Self::new(base_url, token)?)
    }

    fn scrub(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }

    fn classify(&self, status: u16, chat: &str, answer: &Value) -> ProviderError {
        let description = answer
            .get("description")
            .and_then(Value::as_str)
            .map_or_else(|| "no description".to_owned(), |d| self.scrubber.clean(d));
        let parameters = answer.get("parameters");
        let retry_after = parameters
            .and_then(|p| p.get("retry_after"))
            .and_then(Value::as_u64)
            .map(Duration::from_secs);
        let migrated = parameters
            .and_then(|p| p.get("migrate_to_chat_id"))
            .and_then(Value::as_i64);
        let code = answer
            .get("error_code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(status);
        let message = |text: String| self.scrub(&text);
        if let Some(new_chat) = migrated {
            return ProviderError::permanent(
                SERVICE,
                message(format!(
                    "chat `{chat}` became a supergroup: set `notify.telegram.chat` to `{new_chat}`"
                )),
            );
        }
        if code == 429 || retry_after.is_some() {
            return ProviderError::retry_after(
                SERVICE,
                message(format!("flood control: {description}")),
                retry_after,
            );
        }
        if code >= 500 {
            return ProviderError::retryable(
                SERVICE,
                message(format!("HTTP {code}: {description}")),
            );
        }
        if code == 403 {
            return ProviderError::permanent(
                SERVICE,
                message(format!(
                    "the bot cannot write to `{chat}` ({description}); send the bot /start from that chat, or add it to the group or channel"
                )),
            );
        }
        ProviderError::permanent(SERVICE, message(format!("HTTP {code}: {description}")))
    }
}

#[async_trait]
impl Notifier for Telegram {
    async fn send(&self, notice: &Notice) -> Result<String, ProviderError> {
        let text = truncate(&notice.text, MAX_TEXT_UNITS);
        if text.trim().is_empty() {
            return Err(ProviderError::permanent(
                SERVICE,
                "the notice text is empty",
            ));
        }
        // Numeric ids go as numbers (they can exceed 32 bits), `@channel` names as strings.
        let chat_id = notice
            .chat
            .trim()
            .parse::<i64>()
            .map_or_else(|_| json!(notice.chat.trim()), |id| json!(id));
        let body = json!({
            "chat_id": chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": true},
        });
        let url = format!("{}/bot{}/sendMessage", self.base_url, self.token.expose());
        let unknown = |doing: &str, error: reqwest::Error| {
            let error = match http::classify_effect_transport(SERVICE, doing, error) {
                ProviderError::Unconfirmed { message, .. } => ProviderError::unconfirmed(
                    SERVICE,
                    format!("{message}; the notice may have gone out, so it is not sent again"),
                ),
                other => other,
            };
            scrub_error(error, |text| self.scrub(text))
        };
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unknown("sending the notice", e))?;
        let status = response.status().as_u16();
        let raw = response
            .bytes()
            .await
            .map_err(|e| unknown("reading the answer", e))?;
        let Ok(answer) = serde_json::from_slice::<Value>(&raw) else {
            return Err(ProviderError::unconfirmed(
                SERVICE,
                format!(
                    "the answer (HTTP {status}) was not Telegram's JSON, so whether the notice went out is unknown; it is not sent again"
                ),
            ));
        };
        if answer.get("ok").and_then(Value::as_bool) != Some(true) {
            return Err(self.classify(status, &notice.chat, &answer));
        }
        answer
            .pointer("/result/message_id")
            .and_then(Value::as_i64)
            .map(|id| id.to_string())
            .ok_or_else(|| {
                ProviderError::unconfirmed(SERVICE, "telegram answered ok without a `message_id`")
            })
    }
}

/// The same error with `scrub` applied to its message.
fn scrub_error(error: ProviderError, scrub: impl Fn(&str) -> String) -> ProviderError {
    match error {
        ProviderError::Retryable {
            service,
            message,
            retry_after,
        } => ProviderError::Retryable {
            service,
            message: scrub(&message),
            retry_after,
        },
        ProviderError::Permanent { service, message } => ProviderError::Permanent {
            service,
            message: scrub(&message),
        },
        ProviderError::Unconfirmed { service, message } => ProviderError::Unconfirmed {
            service,
            message: scrub(&message),
        },
        other => other,
    }
}

/// Cuts `text` to at most `max_units` UTF-16 code units, marking the cut with `…`.
fn truncate(text: &str, max_units: usize) -> String {
    if text.encode_utf16().count() <= max_units {
        return text.to_owned();
    }
    let mut units = 0;
    let mut out = String::new();
    for c in text.chars() {
        units += c.len_utf16();
        if units > max_units - 1 {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// The plain-text notice for a draft waiting in the creator's inbox: the title, what to
/// do next, the caption (with hashtags) to paste, footage credits and a link to the video.
pub fn draft_notice_text(
    title: &str,
    caption: &str,
    hashtags: &[String],
    credits: &[Credit],
    link: Option<&str>,
) -> String {
    let mut text = format!(
        "Draft ready in your TikTok inbox: {}\n\nOpen the inbox notification in the TikTok app to finish the post. Caption to paste:\n\n{}",
        title.trim(),
        caption.trim()
    );
    let caption_lower = caption.to_lowercase();
    let tags: Vec<String> = hashtags
        .iter()
        .map(|t| t.trim().trim_start_matches('#'))
        .filter(|t| !t.is_empty())
        .map(|t| format!("#{t}"))
        .filter(|t| !caption_lower.contains(&t.to_lowercase()))
        .collect();
    if !tags.is_empty() {
        if !caption.trim().is_empty() {
            text.push(' ');
        }
        text.push_str(&tags.join(" "));
    }
    if !credits.is_empty() {
        text.push_str("\n\nFootage:");
        for credit in credits {
            text.push_str(&format!("\n- {} ({})", credit.creator, credit.url));
        }
    }
    if let Some(link) = link {
        text.push_str(&format!("\n\nVideo: {link}"));
    }
    text
}

/// Checks before spending.
impl Telegram {
    /// Whether the bot token works (`getMe`, which sends nothing to anyone): the bot's
    /// `@username` when it does.
    pub async fn check_token(&self) -> Result<String, ProviderError> {
        let url = format!("{}/bot{}/getMe", self.base_url, self.token.expose());
        let transport = |error: reqwest::Error| {
            ProviderError::retryable(SERVICE, self.scrub(&error.without_url().to_string()))
        };
        let response = self.http.post(url).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let raw = response.text().await.map_err(transport)?;
        let Ok(answer) = serde_json::from_str::<Value>(&raw) else {
            let message = format!("unexpected answer to `getMe` (HTTP {status})");
            return Err(if status >= 500 || status == 429 {
                ProviderError::retryable(SERVICE, message)
            } else {
                ProviderError::permanent(SERVICE, message)
            });
        };
        if answer.get("ok").and_then(Value::as_bool) != Some(true) {
            if status == 401 || status == 404 {
                return Err(ProviderError::permanent(
                    SERVICE,
                    "the bot token was refused; copy it again from @BotFather",
                ));
            }
            return Err(self.classify(status, "getMe", &answer));
        }
        Ok(answer
            .pointer("/result/username")
            .and_then(Value::as_str)
            .map(|u| format!("@{u}"))
            .unwrap_or_else(|| "the bot".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_carries_caption_new_hashtags_credits_and_link() {
        let credits = vec![Credit {
            creator: "Ana <Films>".to_owned(),
            creator_url: "https://example.com/ana".to_owned(),
            url: "https://example.com/v/1".to_owned(),
        }];
        let text = draft_notice_text(
            "Black holes",
            "They bend light. #space",
            &["#space".to_owned(), "facts".to_owned(), " ".to_owned()],
            &credits,
            Some("https://example.com/video.mp4"),
        );
        assert!(text.starts_with("Draft ready in your TikTok inbox: Black holes\n"));
        assert!(
            text.contains("\n\nThey bend light. #space #facts\n"),
            "{text}"
        );
        assert_eq!(text.matches("#space").count(), 1);
        assert!(text.contains("- Ana <Films> (https://example.com/v/1)"));
        assert!(text.ends_with("Video: https://example.com/video.mp4"));
    }

    #[test]
    fn long_text_is_truncated_within_the_limit_counting_utf16() {
        assert_eq!(truncate("short", 10), "short");
        let long = "😀".repeat(3000);
        let cut = truncate(&long, MAX_TEXT_UNITS);
        assert!(cut.encode_utf16().count() <= MAX_TEXT_UNITS);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().count(), 2047 + 1);
    }
}
