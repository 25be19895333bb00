//! The helpdesk's category list, cached: categories change rarely and are read for every ticket.
//! A backend wraps its own fetch of the whole list in a [`CategoryCache`].

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

use super::{Category, Result};

/// Default lifetime of a cached category list.
pub const DEFAULT_CATEGORY_TTL: Duration = Duration::from_secs(300);

/// One connection's category list, kept for a time to live (zero: not kept).
#[derive(Debug)]
pub struct CategoryCache {
    ttl: Duration,
    cached: Mutex<Option<(Instant, Arc<Vec<Category>>)>>,
}

impl Default for CategoryCache {
    fn default() -> Self {
        Self::new(DEFAULT_CATEGORY_TTL)
    }
}

impl CategoryCache {
    /// An empty cache whose lists live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, cached: Mutex::new(None) }
    }

    /// The cached list while it is fresh, else the list `fetch` returns (kept for the next
    /// readers unless it failed).
    pub async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<Vec<Category>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Category>>>,
    {
        // Holding the lock across the fetch makes concurrent first readers share one request.
        let mut cached = self.cached.lock().await;
        if let Some((at, categories)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(categories.as_ref().clone());
        }
        let fresh = Arc::new(fetch().await?);
        if !self.ttl.is_zero() {
            *cached = Some((Instant::now(), fresh.clone()));
        }
        Ok(fresh.as_ref().clone())
    }

    /// Drops the cached list so the next read fetches it.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ticketing::TicketingError;

    /// A fetch that counts its calls and returns one category per call so far.
    async fn fetch(calls: &AtomicUsize) -> Result<Vec<Category>> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok((0..n).map(|i| Category { id: Some(format!("cat-{i}")), ..Category::default() }).collect())
    }

    #[tokio::test]
    async fn a_fresh_list_is_served_from_the_cache_until_invalidated() {
        let cache = CategoryCache::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_fetch(|| fetch(&calls)).await.unwrap().len(), 1);
        assert_eq!(cache.get_or_fetch(|| fetch(&calls)).await.unwrap().len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.invalidate().await;
        assert_eq!(cache.get_or_fetch(|| fetch(&calls)).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn concurrent_first_readers_share_one_fetch() {
        let cache = CategoryCache::default();
        let calls = AtomicUsize::new(0);
        let reads = futures::future::join_all((0..5).map(|_| cache.get_or_fetch(|| fetch(&calls)))).await;
        assert!(reads.iter().all(|r| r.as_ref().unwrap().len() == 1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_or_an_expired_list_fetches_again() {
        let calls = AtomicUsize::new(0);
        let uncached = CategoryCache::new(Duration::ZERO);
        uncached.get_or_fetch(|| fetch(&calls)).await.unwrap();
        uncached.get_or_fetch(|| fetch(&calls)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let short = CategoryCache::new(Duration::from_millis(30));
        short.get_or_fetch(|| fetch(&calls)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        short.get_or_fetch(|| fetch(&calls)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_kept() {
        let cache = CategoryCache::default();
        let failed =
            cache.get_or_fetch(|| async { Err(TicketingError::Transient { detail: "down".into() }) }).await;
        assert!(failed.is_err());
        let calls = AtomicUsize::new(0);
        assert_eq!(cache.get_or_fetch(|| fetch(&calls)).await.unwrap().len(), 1);
    }
}
