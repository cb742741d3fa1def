//! Rate budgets kept in memory: for tests, and for runs without a store. The store's own
//! implementation keeps the same contract across processes; this one holds only within
//! one process, so a limit it enforces is forgotten when the process ends.
//!
//! A budget is a sliding window: `take` succeeds while fewer than `limit` units were taken
//! in the last `window_secs`, and otherwise names the second the oldest unit leaves the
//! window. A block (a 429 with Retry-After, a cap the service reported) refuses every
//! take until it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{Budgets, ProviderError};
use crate::clock::now as unix_now;

#[derive(Default)]
struct Budget {
    /// Unix seconds of each unit taken and not given back, oldest first.
    taken: VecDeque<i64>,
    blocked_until: i64,
}

/// [`Budgets`] in this process's memory.
#[derive(Default)]
pub struct MemoryBudgets {
    budgets: Mutex<HashMap<String, Budget>>,
}

impl MemoryBudgets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Units of `key` taken within the last `window_secs`, for tests and reports.
    pub fn used(&self, key: &str, window_secs: i64) -> usize {
        let now = unix_now();
        self.budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map_or(0, |b| {
                b.taken
                    .iter()
                    .filter(|t| **t >= now.saturating_sub(window_secs))
                    .count()
            })
    }

    /// Until when `key` is blocked, if it is.
    pub fn blocked_until(&self, key: &str) -> Option<i64> {
        let now = unix_now();
        self.budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map(|b| b.blocked_until)
            .filter(|until| *until > now)
    }
}

#[async_trait]
impl Budgets for MemoryBudgets {
    async fn take(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Result<(), i64>, ProviderError> {
        let now = unix_now();
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = budgets.entry(key.to_owned()).or_default();
        if budget.blocked_until > now {
            return Ok(Err(budget.blocked_until));
        }
        // Whole seconds: a unit taken at `t` happened in `[t, t + 1)`, so it counts
        // through `t + window_secs` and leaves the window a second later.
        let start = now.saturating_sub(window_secs);
        while budget.taken.front().is_some_and(|t| *t < start) {
            budget.taken.pop_front();
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if budget.taken.len() >= limit {
            let oldest = budget.taken.front().copied().unwrap_or(now);
            return Ok(Err(oldest.saturating_add(window_secs + 1).max(now + 1)));
        }
        budget.taken.push_back(now);
        Ok(Ok(()))
    }

    async fn give_back(&self, key: &str) -> Result<(), ProviderError> {
        if let Some(budget) = self
            .budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(key)
        {
            budget.taken.pop_back();
        }
        Ok(())
    }

    async fn block(&self, key: &str, until: i64) -> Result<(), ProviderError> {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = budgets.entry(key.to_owned()).or_default();
        budget.blocked_until = budget.blocked_until.max(until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_budget_refuses_past_its_limit_and_names_when_it_refills() {
        let budgets = MemoryBudgets::new();
        let now = unix_now();
        for _ in 0..6 {
            assert_eq!(budgets.take("tiktok:inits:o", 6, 60).await, Ok(Ok(())));
        }
        let Ok(Err(until)) = budgets.take("tiktok:inits:o", 6, 60).await else {
            panic!("the seventh unit in a minute was granted");
        };
        assert!((now + 59..=now + 61).contains(&until), "{until} vs {now}");
        assert_eq!(
            budgets.take("tiktok:inits:other", 6, 60).await,
            Ok(Ok(())),
            "keys are counted separately"
        );
        budgets.give_back("tiktok:inits:o").await.unwrap();
        assert_eq!(budgets.take("tiktok:inits:o", 6, 60).await, Ok(Ok(())));
        assert_eq!(budgets.used("tiktok:inits:o", 60), 6);
    }

    #[tokio::test]
    async fn a_block_refuses_every_take_until_it_ends() {
        let budgets = MemoryBudgets::new();
        let until = unix_now() + 300;
        budgets.block("pexels:k", until).await.unwrap();
        budgets.block("pexels:k", until - 100).await.unwrap();
        assert_eq!(budgets.take("pexels:k", 100, 3600).await, Ok(Err(until)));
        assert_eq!(budgets.blocked_until("pexels:k"), Some(until));
        budgets.block("old", unix_now() - 1).await.unwrap();
        assert_eq!(budgets.take("old", 1, 60).await, Ok(Ok(())));
    }
}
