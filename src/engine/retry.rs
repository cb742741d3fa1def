//! The one retry policy: exponential backoff with full jitter for retryable errors,
//! honouring a server's own wait when it gives one. Permanent errors return at once.

use std::future::Future;
use std::time::Duration;

use crate::providers::ProviderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
    /// A server asking for a longer wait than this is treated as a failure: the job is
    /// better resumed by a later run than left sleeping.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (0-based `attempt` just failed).
    pub fn delay(&self, attempt: u32, error: &ProviderError) -> Option<Duration> {
        if !error.is_retryable() || attempt + 1 >= self.attempts {
            return None;
        }
        if let ProviderError::Retryable {
            retry_after: Some(after),
            ..
        } = error
        {
            return (*after <= self.max_retry_after).then_some(*after);
        }
        let cap = self
            .base
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        // Full jitter: spreads retries of many jobs that failed together.
        Some(cap.mul_f64(fastrand::f64()))
    }

    /// Runs `op` until it succeeds, fails permanently, or attempts run out.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, ProviderError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 0;
        loop {
            match op(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => match self.delay(attempt, &error) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_not_retried() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0, &ProviderError::permanent("x", "no")), None);
        assert_eq!(policy.delay(0, &ProviderError::Cancelled), None);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let policy = RetryPolicy::default();
        let wait = ProviderError::retry_after("x", "slow", Some(Duration::from_secs(7)));
        assert_eq!(policy.delay(0, &wait), Some(Duration::from_secs(7)));
        let too_long = ProviderError::retry_after("x", "slow", Some(Duration::from_secs(3600)));
        assert_eq!(policy.delay(0, &too_long), None);
    }

    #[test]
    fn backoff_grows_and_stops_after_the_last_attempt() {
        let policy = RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        };
        let err = ProviderError::retryable("x", "503");
        for _ in 0..100 {
            assert!(policy.delay(0, &err).unwrap() <= Duration::from_millis(500));
            assert!(policy.delay(1, &err).unwrap() <= Duration::from_millis(1000));
        }
        assert_eq!(policy.delay(2, &err), None);
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_until_success() {
        let policy = RetryPolicy::default();
        let result = policy
            .run(|attempt| async move {
                if attempt < 2 {
                    Err(ProviderError::retryable("x", "busy"))
                } else {
                    Ok(attempt)
                }
            })
            .await;
        assert_eq!(result, Ok(2));
    }
}
