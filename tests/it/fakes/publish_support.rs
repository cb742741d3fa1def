//! What the publishing fakes share: serving a router on a free loopback port, and an
//! effect ledger kept in memory that can "crash" after a given phase.

use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use tiktok_factory::providers::{EffectLog, EffectProgress, ProviderError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::faults::Faults;

/// A server on 127.0.0.1 that stops when dropped, with the shared fault layer in front.
pub struct Server {
    pub addr: SocketAddr,
    pub faults: Faults,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Faults::default();
        let router = faults.wrap(router);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, faults, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The side-effect ledger, in memory, persisting every record the way the engine's does
/// (`progress()` reads the last one afresh). With `crash_after`, recording that phase
/// stores it and then never returns, like a process that died right after the write;
/// with `crash_before`, it never returns and stores nothing, like a process that died
/// after the service answered but before the record.
#[derive(Default)]
pub struct MemoryLog {
    records: Mutex<Vec<EffectProgress>>,
    crash_after: Option<&'static str>,
    crash_before: Mutex<Option<&'static str>>,
    pub crashed: Notify,
}

impl MemoryLog {
    /// A ledger that already holds what an earlier attempt recorded.
    pub fn resuming(previous: EffectProgress) -> Self {
        Self {
            records: Mutex::new(vec![previous]),
            ..Self::default()
        }
    }

    pub fn crashing_after(phase: &'static str) -> Self {
        Self {
            crash_after: Some(phase),
            ..Self::default()
        }
    }

    /// The first record of `phase` is never stored, and its writer never returns.
    pub fn crashing_before(phase: &'static str) -> Self {
        Self {
            crash_before: Mutex::new(Some(phase)),
            ..Self::default()
        }
    }

    pub fn records(&self) -> Vec<EffectProgress> {
        self.records.lock().unwrap().clone()
    }

    pub fn phases(&self) -> Vec<String> {
        self.records().into_iter().map(|r| r.phase).collect()
    }

    pub fn last(&self) -> Option<EffectProgress> {
        self.records().last().cloned()
    }
}

#[async_trait]
impl EffectLog for MemoryLog {
    async fn progress(&self) -> Result<Option<EffectProgress>, ProviderError> {
        Ok(self.last())
    }

    async fn record(&self, progress: &EffectProgress) -> Result<(), ProviderError> {
        let crash_before = {
            let mut before = self.crash_before.lock().unwrap();
            let hit = *before == Some(progress.phase.as_str());
            if hit {
                *before = None;
            }
            hit
        };
        if crash_before {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        self.records.lock().unwrap().push(progress.clone());
        if self.crash_after == Some(progress.phase.as_str()) {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}
