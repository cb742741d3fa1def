//! Shared rate budgets on the store: a sliding window of takes per key, and blocks until a
//! time. One statement per take, so two takes never both see room for one.

use async_trait::async_trait;
use sqlx::Row;

use super::{Store, StoreError};
use crate::providers::{Budgets, ProviderError};

/// Takes older than this are of no window's concern and are dropped.
const KEEP_SECONDS: i64 = 2 * 86_400;

impl Store {
    /// Takes one unit of `key`'s budget of `limit` per `window` seconds at `now`; when
    /// the budget is empty or the key blocked, when it has room again.
    pub async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window: i64,
        now: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        if !self.is_postgres() {
            // SQLite runs one writer at a time: the insert below is the take.
            let mut conn = self.pool().acquire().await?;
            return take_on(&mut conn, key, limit, window, now).await;
        }
        // Postgres runs takes side by side: takes of one key wait for each other.
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "SELECT COUNT(*) AS n FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked",
        )
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        let taken = take_on(&mut tx, key, limit, window, now).await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Gives back the last unit taken from `key`.
    pub async fn give_back_budget(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM budget_takes WHERE key = $1 \
             AND seq = (SELECT MAX(seq) FROM budget_takes WHERE key = $1)",
        )
        .bind(key)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Blocks `key` until `until`; a later block wins over an earlier one.
    pub async fn block_budget(&self, key: &str, until: i64) -> Result<(), StoreError> {
        // SQLite's two-argument `MAX()` is Postgres' `GREATEST()`.
        let greatest = if self.is_postgres() {
            "GREATEST"
        } else {
            "MAX"
        };
        sqlx::query(&format!(
            "INSERT INTO budget_blocks (key, until) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET until = {greatest}(budget_blocks.until, excluded.until)",
        ))
        .bind(key)
        .bind(until)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// One take on one connection (in Postgres, inside the key's lock).
async fn take_on(
    conn: &mut sqlx::AnyConnection,
    key: &str,
    limit: u32,
    window: i64,
    now: i64,
) -> Result<Result<(), i64>, StoreError> {
    sqlx::query("DELETE FROM budget_takes WHERE key = $1 AND at < $2")
        .bind(key)
        .bind(now - KEEP_SECONDS.max(window))
        .execute(&mut *conn)
        .await?;
    let taken = sqlx::query(
        "INSERT INTO budget_takes (key, seq, at) \
         SELECT $1, COALESCE((SELECT MAX(seq) FROM budget_takes WHERE key = $1), 0) + 1, $2 \
         WHERE (SELECT COUNT(*) FROM budget_takes WHERE key = $1 AND at >= $2 - $3) < $4 \
         AND NOT EXISTS (SELECT 1 FROM budget_blocks WHERE key = $1 AND until > $2)",
    )
    .bind(key)
    .bind(now)
    .bind(window)
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?;
    if taken.rows_affected() == 1 {
        return Ok(Ok(()));
    }
    let blocked: Option<i64> =
        sqlx::query("SELECT until FROM budget_blocks WHERE key = $1 AND until > $2")
            .bind(key)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("until"))
            .transpose()?;
    // The window opens again when its oldest take leaves it. The clock is whole seconds:
    // a take recorded at `t` happened somewhere in `[t, t + 1)`, so it stays in the window
    // through `t + window` and leaves it a second later; otherwise a seventh TikTok init
    // could go out 59.x seconds after the first.
    let oldest: Option<i64> = sqlx::query(
        "SELECT MIN(at) AS oldest FROM (SELECT at FROM budget_takes WHERE key = $1 AND at >= $2 - $3 \
         ORDER BY at DESC LIMIT $4) AS recent",
    )
    .bind(key)
    .bind(now)
    .bind(window)
    .bind(i64::from(limit))
    .fetch_one(&mut *conn)
    .await?
    .try_get("oldest")?;
    let reopens = oldest.map_or(now, |at| at + window + 1);
    Ok(Err(blocked.unwrap_or(now).max(reopens).max(now + 1)))
}

fn unavailable(e: &StoreError) -> ProviderError {
    // The store is local: a failure here is not the service's, and retrying helps only
    // if it was a passing lock.
    ProviderError::retryable("budgets", e.to_string())
}

#[async_trait]
impl Budgets for Store {
    async fn take(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Result<(), i64>, ProviderError> {
        self.take_budget(key, limit, window_secs, crate::clock::now())
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn give_back(&self, key: &str) -> Result<(), ProviderError> {
        self.give_back_budget(key)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn block(&self, key: &str, until: i64) -> Result<(), ProviderError> {
        self.block_budget(key, until)
            .await
            .map_err(|e| unavailable(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_holds_its_limit_and_reopens_when_its_oldest_take_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let key = "tiktok:inits:open-1";
        for i in 0..6 {
            assert_eq!(
                store.take_budget(key, 6, 60, 1000 + i).await.unwrap(),
                Ok(())
            );
        }
        assert_eq!(
            store.take_budget(key, 6, 60, 1010).await.unwrap(),
            Err(1061)
        );
        // Another store over the same file (another process) sees the same window.
        let other = Store::open(dir.path()).await.unwrap();
        assert_eq!(
            other.take_budget(key, 6, 60, 1030).await.unwrap(),
            Err(1061)
        );
        // At 1062 the takes at 1000 and 1001 have left the window: two more fit.
        assert_eq!(other.take_budget(key, 6, 60, 1062).await.unwrap(), Ok(()));
        assert_eq!(other.take_budget(key, 6, 60, 1062).await.unwrap(), Ok(()));
        assert_eq!(
            other.take_budget(key, 6, 60, 1062).await.unwrap(),
            Err(1063)
        );
    }

    #[tokio::test]
    async fn a_take_in_the_last_second_of_a_window_still_counts_against_it() {
        // Recorded at 1000, it happened at up to 1000.99: a take at 1060 may be less than
        // 60 seconds later, so a limit of 6 a minute refuses the seventh.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for _ in 0..6 {
            assert_eq!(store.take_budget("k", 6, 60, 1000).await.unwrap(), Ok(()));
        }
        assert_eq!(
            store.take_budget("k", 6, 60, 1060).await.unwrap(),
            Err(1061)
        );
        assert_eq!(store.take_budget("k", 6, 60, 1061).await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_given_back_unit_can_be_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.take_budget("k", 1, 60, 10).await.unwrap(), Ok(()));
        assert!(store.take_budget("k", 1, 60, 11).await.unwrap().is_err());
        store.give_back_budget("k").await.unwrap();
        assert_eq!(store.take_budget("k", 1, 60, 12).await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_blocked_key_is_empty_until_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.block_budget("k", 500).await.unwrap();
        store.block_budget("k", 400).await.unwrap();
        assert_eq!(store.take_budget("k", 10, 60, 100).await.unwrap(), Err(500));
        assert_eq!(store.take_budget("k", 10, 60, 500).await.unwrap(), Ok(()));
    }
}
