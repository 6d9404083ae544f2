//! Recent `/api/stats` results, reused for `stats.cache_ms` per window; bounded, least recently
//! used evicted first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Recent results by window length, so a busy dashboard costs one aggregation per window
/// per `cache_ms`, not one per request. Windows are caller input: past `capacity` of them,
/// the one asked for least recently makes room, so the windows in use stay cached whatever
/// else is asked for.
pub struct StatsCache<V> {
    ttl: Duration,
    capacity: usize,
    slots: std::sync::Mutex<Slots<V>>,
}

/// A window's entry. Its lock is held while its result is computed, so concurrent requests
/// for that window wait for it instead of all running the same aggregation; other windows
/// are not held up.
type Slot<V> = tokio::sync::Mutex<Option<(Instant, V)>>;

/// The key: a window's length, `None` for all time (`1h` and `60m` are one window).
type Key = Option<Duration>;

struct Slots<V> {
    by_window: HashMap<Key, (Arc<Slot<V>>, u64)>,
    /// Counts lookups: an entry's stamp says how recently it was asked for.
    clock: u64,
}

/// How many windows are kept.
pub const CAPACITY: usize = 64;

impl<V: Clone> StatsCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, CAPACITY)
    }

    fn with_capacity(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            slots: std::sync::Mutex::new(Slots {
                by_window: HashMap::new(),
                clock: 0,
            }),
        }
    }

    /// The cached result for `window` if it is fresh, else `compute`'s (then cached).
    pub async fn get_or_compute<E, Fut>(
        &self,
        window: Key,
        compute: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await;
        }
        let slot = self.slot(window);
        let mut entry = slot.lock().await;
        if let Some((at, value)) = entry.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = compute().await?;
        *entry = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    fn slot(&self, window: Key) -> Arc<Slot<V>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.clock += 1;
        let now = slots.clock;
        if let Some((slot, used)) = slots.by_window.get_mut(&window) {
            *used = now;
            return slot.clone();
        }
        if slots.by_window.len() >= self.capacity {
            // Whoever still waits on the evicted slot keeps it alive until done.
            let oldest = slots
                .by_window
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(window, _)| *window);
            if let Some(oldest) = oldest {
                slots.by_window.remove(&oldest);
            }
        }
        let slot = Arc::new(Slot::new(None));
        slots.by_window.insert(window, (slot.clone(), now));
        slot
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    #[tokio::test]
    async fn the_least_recently_used_window_makes_room() {
        let cache = StatsCache::with_capacity(Duration::from_secs(60), 2);
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        let get = |window, value| {
            let cache = &cache;
            async move {
                cache
                    .get_or_compute(window, || async { Ok::<_, Infallible>(value) })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(get(minutes(1), 1).await, 1);
        assert_eq!(get(minutes(2), 2).await, 2);
        assert_eq!(get(minutes(1), 10).await, 1, "cached");
        assert_eq!(get(minutes(3), 3).await, 3, "evicts 2 minutes, not 1");
        assert_eq!(get(minutes(1), 100).await, 1, "still cached");
        assert_eq!(get(minutes(2), 20).await, 20, "computed again");
    }
}
