//! Recent `/api/stats` answers, reused for `stats.cache_ms` per window.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Recent `/api/stats` answers by window, so a busy dashboard costs one aggregation per
/// window per `cache_ms`, not one per request.
pub struct StatsCache {
    ttl: Duration,
    /// One slot per window. A slot's lock is held while its answer is computed, so concurrent
    /// requests for that window wait for it instead of all running the same aggregation;
    /// other windows are not held up.
    slots: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
}

type Slot = tokio::sync::Mutex<Option<(Instant, Bytes)>>;

/// Windows are caller input; past this many distinct ones, answers are not kept.
const MAX_CACHED_WINDOWS: usize = 64;

impl StatsCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer for `window` if it is fresh, else `compute`'s (then cached).
    pub async fn get_or_compute<E, Fut>(
        &self,
        window: &str,
        compute: impl FnOnce() -> Fut,
    ) -> Result<Bytes, E>
    where
        Fut: Future<Output = Result<Bytes, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await;
        }
        let Some(slot) = self.slot(window) else {
            return compute().await;
        };
        let mut entry = slot.lock().await;
        if let Some((at, body)) = entry.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(body.clone());
        }
        let body = compute().await?;
        *entry = Some((Instant::now(), body.clone()));
        Ok(body)
    }

    fn slot(&self, window: &str) -> Option<Arc<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(window) {
            return Some(slot.clone());
        }
        if slots.len() >= MAX_CACHED_WINDOWS {
            return None;
        }
        let slot = Arc::new(Slot::new(None));
        slots.insert(window.to_owned(), slot.clone());
        Some(slot)
    }
}
