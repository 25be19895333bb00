//! Retrying transient failures: jittered exponential backoff, a server's `Retry-After` honoured up
//! to a cap, and an optional budget for the whole call.

use std::{
    future::Future,
    time::{Duration, SystemTime},
};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{self, HeaderMap};
use tokio::time::error::Elapsed;

/// A failed attempt as the retry loop sees it.
pub trait RetryableError {
    /// Whether sending the same request again may succeed.
    fn is_retryable(&self) -> bool;
    /// How long the server asked us to wait, if it said.
    fn retry_after(&self) -> Option<Duration>;
}

/// Retry behaviour for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: usize,
    /// First backoff delay; doubles each retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff delay between two attempts.
    pub max_delay: Duration,
    /// Longest `Retry-After` we wait in-process; a longer one ends the call with its error, so
    /// the caller can hand the wait on (the worker parks the event instead of holding a slot).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` (given its number, from 1) until it succeeds, fails with an error that is
    /// not retryable, or the retries are spent; `on_retry` hears each failure that is retried
    /// and the wait before the next attempt.
    ///
    /// A `Retry-After` within [`RetryPolicy::max_retry_after`] replaces the backoff delay and
    /// still counts as a retry; a longer one ends the call at once with that error.
    pub async fn run<T, E, F, Fut>(&self, attempt: F, on_retry: impl FnMut(&E, Duration)) -> Result<T, E>
    where
        E: RetryableError,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry(None, attempt, on_retry).await
    }

    /// [`RetryPolicy::run`] within `budget` for the whole call, waits included: no retry
    /// starts whose wait would pass it, and an attempt still running when it ends is dropped.
    pub async fn run_within<T, E, F, Fut>(
        &self,
        budget: Duration,
        attempt: F,
        on_retry: impl FnMut(&E, Duration),
    ) -> Result<Result<T, E>, Elapsed>
    where
        E: RetryableError,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        tokio::time::timeout(budget, self.retry(Some(budget), attempt, on_retry)).await
    }

    async fn retry<T, E, F, Fut>(
        &self,
        budget: Option<Duration>,
        mut attempt: F,
        on_retry: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        E: RetryableError,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_total_delay(budget)
            .with_jitter();
        let cap = self.max_retry_after;
        let mut number = 0u32;
        let next = || {
            number += 1;
            attempt(number)
        };
        next.retry(backoff)
            .when(|e: &E| e.is_retryable())
            .adjust(move |e: &E, delay| match e.retry_after() {
                // A wait longer than the cap is handed to the caller rather than slept through here.
                Some(wait) if wait > cap => None,
                // `delay` is `None` once the retries are spent: a server's wait does not add one.
                Some(wait) => delay.map(|_| wait),
                None => delay,
            })
            .notify(on_retry)
            .await
    }
}

/// Reads `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Reads a rate limit's reset time from header `name` as Unix epoch seconds (Intercom's
/// `X-RateLimit-Reset`), as the wait from now; a reset already past is no wait.
pub fn parse_reset_epoch(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let secs: u64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use reqwest::header::HeaderValue;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Failure {
        Busy(Option<Duration>),
        Refused,
    }

    impl RetryableError for Failure {
        fn is_retryable(&self) -> bool {
            matches!(self, Self::Busy(_))
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                Self::Busy(wait) => *wait,
                Self::Refused => None,
            }
        }
    }

    fn fast(max_retries: usize) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(200),
        }
    }

    /// Runs `policy` over attempts that fail with `outcomes` in turn (then succeed), returning
    /// the result and the attempt numbers seen.
    async fn run(policy: &RetryPolicy, outcomes: &[Failure]) -> (Result<u32, Failure>, Vec<u32>) {
        let mut seen = Vec::new();
        let mut retries = 0;
        let result = policy
            .run(
                |n| {
                    seen.push(n);
                    let outcome = outcomes.get(n as usize - 1).copied();
                    async move { outcome.map_or(Ok(n), Err) }
                },
                |_, _| retries += 1,
            )
            .await;
        assert_eq!(retries, seen.len() - 1, "on_retry hears every retried failure");
        (result, seen)
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let busy = Failure::Busy(None);
        assert_eq!(run(&fast(3), &[busy, busy]).await, (Ok(3), vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn retries_end_when_spent_or_on_a_permanent_failure() {
        let busy = Failure::Busy(None);
        assert_eq!(run(&fast(2), &[busy; 5]).await, (Err(busy), vec![1, 2, 3]));
        assert_eq!(run(&fast(0), &[busy]).await, (Err(busy), vec![1]));
        assert_eq!(run(&fast(3), &[Failure::Refused]).await, (Err(Failure::Refused), vec![1]));
    }

    #[tokio::test]
    async fn a_short_retry_after_is_waited_and_still_counts_as_a_retry() {
        let short = Failure::Busy(Some(Duration::from_millis(60)));
        let started = Instant::now();
        assert_eq!(run(&fast(3), &[short]).await, (Ok(2), vec![1, 2]));
        assert!(started.elapsed() >= Duration::from_millis(60), "{:?}", started.elapsed());
        assert_eq!(run(&fast(1), &[short; 5]).await, (Err(short), vec![1, 2]), "1 + max_retries");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_cap_ends_the_call_at_once() {
        let long = Failure::Busy(Some(Duration::from_secs(3600)));
        let started = Instant::now();
        assert_eq!(run(&fast(3), &[long]).await, (Err(long), vec![1]));
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn the_budget_ends_a_slow_call() {
        let policy = fast(3);
        let slow = policy.run_within(
            Duration::from_millis(50),
            |_| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Failure>(())
            },
            |_, _| {},
        );
        assert!(slow.await.is_err(), "the budget elapsed");
        let quick =
            policy.run_within(Duration::from_secs(5), |n| async move { Ok::<_, Failure>(n) }, |_, _| {});
        assert_eq!(quick.await.unwrap(), Ok(1));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(1500)));
        let future = SystemTime::now() + Duration::from_secs(120);
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap());
        let d = parse_retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn a_reset_epoch_is_the_wait_until_then() {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&(now + 10).to_string()).unwrap());
        let d = parse_reset_epoch(&h, "X-RateLimit-Reset").unwrap();
        assert!(d > Duration::from_secs(8) && d <= Duration::from_secs(10), "{d:?}");
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&(now - 5).to_string()).unwrap());
        assert_eq!(parse_reset_epoch(&h, "x-ratelimit-reset"), Some(Duration::ZERO), "already past");
        h.insert("x-ratelimit-reset", HeaderValue::from_static("later"));
        assert_eq!(parse_reset_epoch(&h, "x-ratelimit-reset"), None);
        assert_eq!(parse_reset_epoch(&HeaderMap::new(), "x-ratelimit-reset"), None);
    }
}
