//! Every failure a provider reports is classed once, here, so the retry policy in
//! `engine` never has to guess from a message.

use std::time::Duration;

/// How a provider call failed, and what the engine may do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth trying again: 429, 5xx, timeouts, dropped connections. `retry_after` is the
    /// server's own wait (Retry-After and similar) when it gave one.
    #[error("{service}: {message}")]
    Retryable {
        service: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will fail the same way again until someone changes something: bad key, no credits,
    /// invalid request, unreadable media.
    #[error("{service}: {message}")]
    Permanent {
        service: &'static str,
        message: String,
    },
    /// The run was stopped (Ctrl-C) while the call was in flight.
    #[error("cancelled")]
    Cancelled,
}

impl ProviderError {
    pub fn retryable(service: &'static str, message: impl Into<String>) -> Self {
        Self::Retryable {
            service,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(
        service: &'static str,
        message: impl Into<String>,
        after: Option<Duration>,
    ) -> Self {
        Self::Retryable {
            service,
            message: message.into(),
            retry_after: after,
        }
    }

    pub fn permanent(service: &'static str, message: impl Into<String>) -> Self {
        Self::Permanent {
            service,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }
}
