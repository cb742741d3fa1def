//! How a media operation failed. Tool failures keep the tail of the tool's own stderr,
//! because that is where ffmpeg says what went wrong.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("could not start `{tool}`: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{tool}` failed ({status}): {stderr}")]
    ToolFailed {
        tool: String,
        status: String,
        /// The last lines the tool wrote to stderr.
        stderr: String,
    },
    #[error("`{}` is unreadable or corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("`{}` does not meet the limits: {}", path.display(), problems.join("; "))]
    Limits {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("the render failed its quality gates: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Gates(Vec<super::gates::GateFailure>),
    #[error("invalid media request: {0}")]
    Invalid(String),
    #[error("could not write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
