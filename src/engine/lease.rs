//! The engine as a worker runs it: one job at a time under a lease that some other part
//! keeps alive, and only the stages of one slot (render or network).

use tokio::sync::watch;

use super::{Halt, HaltKind, JobEnd, Lane};
use crate::stages::Stage;

/// What a worker holds while it runs a job. Every state write of the job (store rows,
/// ledger entries, artifacts committed) is preceded by [`Lease::fence`]: a lease that was
/// lost fails it, and the job stops without writing anything more.
#[async_trait::async_trait]
pub trait Lease: Send + Sync {
    /// Proves the lease is still held (and records the stage reached); the message names
    /// who holds it instead.
    async fn fence(&self, stage: Option<Stage>) -> Result<(), String>;
    /// Turns true when the lease is found lost between writes (its renewal failed), so a
    /// running stage stops at once instead of finishing work nobody may commit.
    fn lost(&self) -> watch::Receiver<bool>;
}

/// Which stages a worker's slot runs: renders on a render slot (bounded by cores), every
/// other stage on a network slot (wide). Reused stages pass in either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Render,
    Network,
}

impl Slot {
    pub fn runs(self, lane: Lane) -> bool {
        match self {
            Self::Render => lane == Lane::Cpu,
            Self::Network => lane != Lane::Cpu,
        }
    }
}

/// How one leased run of a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Leg {
    Done {
        executed: usize,
    },
    Failed {
        stage: Option<Stage>,
        message: String,
    },
    /// The next stage needs the other slot.
    Handoff {
        stage: Stage,
        executed: usize,
    },
    Deferred {
        until: i64,
        reason: String,
    },
    /// Stopped by shutdown: recorded interrupted, to be handed back.
    Interrupted,
    /// The lease was lost: nothing more was written.
    LeaseLost(String),
}

impl Leg {
    pub(super) fn from_run(end: JobEnd, executed: usize, halt: Option<Halt>) -> Self {
        match (end, halt) {
            (
                _,
                Some(Halt {
                    kind: HaltKind::LeaseLost(m),
                    ..
                }),
            ) => Self::LeaseLost(m),
            (
                _,
                Some(Halt {
                    stage,
                    kind: HaltKind::Handoff,
                }),
            ) => Self::Handoff { stage, executed },
            (
                _,
                Some(Halt {
                    kind: HaltKind::Deferred { until, reason },
                    ..
                }),
            ) => Self::Deferred { until, reason },
            (
                _,
                Some(Halt {
                    stage,
                    kind: HaltKind::Failed(m) | HaltKind::NoSpace(m),
                }),
            ) => Self::Failed {
                stage: Some(stage),
                message: m,
            },
            (
                _,
                Some(Halt {
                    kind: HaltKind::Cancelled,
                    ..
                }),
            )
            | (JobEnd::Interrupted, None) => Self::Interrupted,
            (JobEnd::Done, None) => Self::Done { executed },
            (JobEnd::Failed | JobEnd::Deferred, None) => Self::Failed {
                stage: None,
                message: "the job could not be recorded".to_owned(),
            },
        }
    }
}
