//! Every failure a provider reports is classed once, here, so the retry policy in
//! `engine` never has to guess from a message.

use std::path::{Path, PathBuf};
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
    /// Not now, but surely later: a rate window or a quota that refills at `until` (unix
    /// seconds), such as TikTok's pending-draft cap or a 429 without a known reset. The
    /// engine keeps the job `deferred` until then instead of failing it; `scope` names the
    /// budget that is empty (`tiktok:inits:<open_id>`), so other jobs of that budget wait too.
    #[error("{service}: {message}")]
    Deferred {
        service: &'static str,
        message: String,
        until: i64,
        scope: String,
    },
    /// The request may have taken effect, but no answer says so: a timeout after the body
    /// was sent, an answer cut off or garbled. A side effect that ends this way is recorded
    /// `unknown` and reconciled with the service before anything is sent again.
    #[error("{service}: {message}")]
    Unconfirmed {
        service: &'static str,
        message: String,
    },
    /// The filesystem holding `dir` is full, or too full for the work about to start.
    /// Nothing in this run can fix it: the job fails at its stage and the run ends as an
    /// environment failure; once space is freed, the next run resumes there.
    #[error(
        "not enough space in `{}`: {message}; free some space there and run again (the job resumes at this stage)",
        dir.display()
    )]
    NoSpace { dir: PathBuf, message: String },
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

    pub fn deferred(
        service: &'static str,
        message: impl Into<String>,
        until: i64,
        scope: impl Into<String>,
    ) -> Self {
        Self::Deferred {
            service,
            message: message.into(),
            until,
            scope: scope.into(),
        }
    }

    pub fn unconfirmed(service: &'static str, message: impl Into<String>) -> Self {
        Self::Unconfirmed {
            service,
            message: message.into(),
        }
    }

    pub fn no_space(dir: &Path, message: impl Into<String>) -> Self {
        Self::NoSpace {
            dir: dir.to_owned(),
            message: message.into(),
        }
    }

    /// A failed write into `dir`: [`ProviderError::NoSpace`] when the disk is full,
    /// else permanent.
    pub fn io(service: &'static str, dir: &Path, err: &std::io::Error) -> Self {
        if crate::disk::is_full(err) {
            Self::no_space(dir, err.to_string())
        } else {
            Self::permanent(service, format!("`{}`: {err}", dir.display()))
        }
    }

    /// Worth another attempt in this run: retryable errors, and unconfirmed ones (whose
    /// next attempt reconciles before it sends).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. } | Self::Unconfirmed { .. })
    }

    /// The service that failed, for the stage record.
    pub fn service(&self) -> &'static str {
        match self {
            Self::Retryable { service, .. }
            | Self::Permanent { service, .. }
            | Self::Deferred { service, .. }
            | Self::Unconfirmed { service, .. } => service,
            Self::NoSpace { .. } => "disk",
            Self::Cancelled => "engine",
        }
    }
}
