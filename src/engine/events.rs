//! What the engine reports while it works. It never prints: a [`Sink`] receives every
//! event, and `cli/` renders them as bars, plain lines or JSON lines; tests collect them.

use serde::Serialize;

use crate::stages::Stage;
pub use crate::store::StageStatus;

/// The job an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRef {
    pub recipe: String,
    pub id: String,
    pub topic: String,
    pub voice: String,
}

/// How a job ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobEnd {
    Done,
    Failed,
    Deferred,
    Interrupted,
}

impl JobEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
            Self::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage changed state.
    Stage {
        job: JobRef,
        stage: Stage,
        status: StageStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A stage waits for a free slot of its kind (a render slot, a TTS slot).
    Queued { job: JobRef, stage: Stage },
    /// An attempt failed and another follows after `wait_ms`.
    Retry {
        job: JobRef,
        stage: Stage,
        /// The attempt that follows (2 for the first retry).
        attempt: u32,
        wait_ms: u64,
        error: String,
    },
    /// A stage waits, within this run, for a rate window to open.
    Waiting {
        job: JobRef,
        stage: Stage,
        until: i64,
        reason: String,
    },
    /// A cached artifact failed verification and is being built again.
    Rebuild {
        job: JobRef,
        stage: Stage,
        reason: String,
    },
    /// A job finished its part in this run.
    Job {
        job: JobRef,
        status: JobEnd,
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<Stage>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A free-form line: warnings, the notice of a log notifier.
    Note { text: String },
}

/// Receives the engine's events.
pub trait Sink: Send + Sync {
    fn emit(&self, event: &Event);
    /// The run is over: bars are cleared.
    fn finish(&self) {}
}

/// A sink that keeps every event, for tests and for callers that report at the end.
#[derive(Debug, Default)]
pub struct Collect {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Collect {
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Sink for Collect {
    fn emit(&self, event: &Event) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
    }
}
