//! The backends: health state, selection (round robin or least outstanding), and keep-alive connections to them.
//!
//! Selection is lock-free: the healthy set is one bitmask and each backend's requests in
//! flight one atomic, so picking a backend never waits.
//! A client connection takes a parked connection to its backend for each request and puts
//! it back as soon as the response is relayed, so a proxied request costs two wake-ups
//! (client readable, backend readable) and no hand-off between tasks or threads. Parking
//! is per I/O loop: a tokio socket stays registered with the reactor of the thread that
//! opened it, and using it from another thread would bring the cross-thread wake-ups back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{BackendConfig, Balance, MAX_BACKENDS, StickyConfig};
use crate::series::{self, Events, Series};

mod parked;

pub(crate) use parked::{BackendConn, Parked, connect};

/// Whether a backend is in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Passing health checks; receives traffic.
    Up,
    /// Failing (or not yet passing) health checks; receives nothing.
    Down,
}

/// A snapshot of one backend, as returned by [`crate::Running::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Backend identifier from the config.
    pub id: String,
    /// Traffic address.
    pub addr: SocketAddr,
    /// Current rotation state.
    pub state: BackendState,
    /// Health checks passed in a row.
    pub consecutive_successes: u32,
    /// Health checks failed in a row.
    pub consecutive_failures: u32,
    /// Responses this backend has delivered through the load balancer.
    pub requests: u64,
    /// Of those, how many were 5xx: what a rollout watches to decide on a new build.
    #[serde(default)]
    pub server_errors: u64,
    /// Most recent health check or proxy failure, cleared when the backend comes up.
    pub last_error: Option<String>,
}

/// Runtime state of one backend; everything the hot path touches is atomic.
pub(crate) struct Backend {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    /// Used as Host when a client sent none (HTTP/1.0).
    pub(crate) host_value: HeaderValue,
    /// Opaque cookie value naming this backend.
    pub(crate) sticky_token: String,
    /// Pre-rendered `Set-Cookie` pinning a client to this backend.
    pub(crate) set_cookie: Option<HeaderValue>,
    pub(crate) consecutive_successes: AtomicU32,
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) requests: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    /// Tries under way at this backend: what `Balance::LeastOutstanding` compares.
    outstanding: AtomicU32,
    /// Response timeouts in a row, for `eject_after_timeouts`.
    consecutive_timeouts: AtomicU32,
    pub(crate) last_error: Mutex<Option<String>>,
    /// The last 15 minutes of its responses, for the status page.
    pub(crate) series: Series,
}

impl Backend {
    fn new(cfg: &BackendConfig, sticky: Option<&StickyConfig>) -> Self {
        let host_value =
            HeaderValue::from_str(&cfg.addr.to_string()).expect("an address is a valid header");
        let sticky_token = format!("{:016x}", fnv1a(cfg.id.as_bytes()));
        let set_cookie = sticky.map(|s| {
            let v = format!(
                "{}={}; Max-Age={}; Path=/; HttpOnly",
                s.cookie_name,
                sticky_token,
                s.ttl.as_secs().max(1)
            );
            HeaderValue::from_str(&v).expect("cookie name validated at bind")
        });
        Self {
            id: cfg.id.clone(),
            addr: cfg.addr,
            host_value,
            sticky_token,
            set_cookie,
            consecutive_successes: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            outstanding: AtomicU32::new(0),
            consecutive_timeouts: AtomicU32::new(0),
            last_error: Mutex::new(None),
            series: Series::new(),
        }
    }

    /// Counts a response relayed from this backend, `latency` after the request went out.
    pub(crate) fn record_response(&self, latency: std::time::Duration, server_error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if server_error {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.series
            .record(series::unix_now(), latency, server_error);
    }

    pub(crate) fn set_last_error(&self, err: String) {
        *lock(&self.last_error) = Some(err);
    }

    /// A failed health check ends the run of passed ones; the failed ones in a row now.
    fn count_failed_check(&self) -> u32 {
        self.consecutive_successes.store(0, Ordering::Relaxed);
        self.consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// A response head arrived: the timeouts before it were not in a row.
    pub(crate) fn answered(&self) {
        // Read first, so the common case writes nothing to a line every thread shares.
        if self.consecutive_timeouts.load(Ordering::Relaxed) != 0 {
            self.consecutive_timeouts.store(0, Ordering::Relaxed);
        }
    }
}

/// One try counted as outstanding at its backend until it is dropped, however it ends
/// (answered, failed, or its client connection torn down mid-way).
pub(crate) struct InFlight {
    pool: Arc<Pool>,
    idx: usize,
}

impl InFlight {
    pub(crate) fn start(pool: &Arc<Pool>, idx: usize) -> InFlight {
        pool.backend(idx)
            .outstanding
            .fetch_add(1, Ordering::Relaxed);
        InFlight {
            pool: pool.clone(),
            idx,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let b = self.pool.backend(self.idx);
        b.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// 64-bit FNV-1a: a stable, dependency-free hash for opaque sticky tokens.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// All backends plus the healthy set, kept as a bitmask so selection never locks.
///
/// Backends can be added and removed at runtime (a blue/green rollout). Slots are filled in
/// order and never reused: a request in flight may still hold a removed backend's index, and
/// a slot that could change under it would need a lock on the hot path.
pub(crate) struct Pool {
    slots: Box<[OnceLock<Backend>]>,
    /// Slots filled so far.
    len: AtomicUsize,
    /// Bit `i` set means `slots[i]` was removed: never up again, not reported.
    removed: AtomicU64,
    /// Serialises additions, so the duplicate-id check and the append are one step.
    adding: Mutex<()>,
    sticky: Option<StickyConfig>,
    balance: Balance,
    /// Bit `i` set means `slots[i]` is up.
    healthy: AtomicU64,
    next: AtomicUsize,
    /// Backends entering and leaving rotation, for the status page.
    pub(crate) events: Events,
}

impl Pool {
    pub(crate) fn new(
        cfgs: &[BackendConfig],
        sticky: Option<&StickyConfig>,
        balance: Balance,
    ) -> Self {
        assert!(cfgs.len() <= MAX_BACKENDS);
        let pool = Self {
            slots: (0..MAX_BACKENDS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            removed: AtomicU64::new(0),
            adding: Mutex::new(()),
            sticky: sticky.cloned(),
            balance,
            healthy: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            events: Events::default(),
        };
        for cfg in cfgs {
            pool.add(cfg).expect("validated config");
        }
        pool
    }

    /// Backend `idx`; every index the pool handed out stays valid, removed or not.
    pub(crate) fn backend(&self, idx: usize) -> &Backend {
        self.slots[idx].get().expect("an index the pool handed out")
    }

    /// Slots filled so far, removed ones included.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn is_removed(&self, idx: usize) -> bool {
        self.removed.load(Ordering::Acquire) & (1 << idx) != 0
    }

    /// Adds a backend, down until it passes its health checks; its index.
    pub(crate) fn add(&self, cfg: &BackendConfig) -> Result<usize, String> {
        let _adding = lock(&self.adding);
        if self.index_of(&cfg.id).is_some() {
            return Err(format!("backend {:?} already exists", cfg.id));
        }
        let idx = self.len();
        if idx >= MAX_BACKENDS {
            return Err(format!(
                "all {MAX_BACKENDS} backend slots were used since the load balancer started"
            ));
        }
        let _ = self.slots[idx].set(Backend::new(cfg, self.sticky.as_ref()));
        self.len.store(idx + 1, Ordering::Release);
        self.events.push(&cfg.id, "added", None);
        Ok(idx)
    }

    /// Takes backend `idx` out of rotation for good; requests already sent to it finish.
    pub(crate) fn remove(&self, idx: usize) {
        self.removed.fetch_or(1 << idx, Ordering::AcqRel);
        self.healthy.fetch_and(!(1 << idx), Ordering::AcqRel);
        let b = self.backend(idx);
        self.events.push(&b.id, "removed", None);
        info!(backend = %b.id, addr = %b.addr, "backend removed");
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Backend)> {
        let removed = self.removed.load(Ordering::Acquire);
        (0..self.len())
            .filter(move |i| removed & (1 << i) == 0)
            .map(|i| (i, self.backend(i)))
    }

    pub(crate) fn healthy_mask(&self) -> u64 {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn is_up(&self, idx: usize) -> bool {
        self.healthy_mask() & (1 << idx) != 0
    }

    /// Next healthy backend, skipping those in `exclude`: in strict rotation, or with
    /// `Balance::LeastOutstanding` the first from the rotation's place with the fewest tries
    /// under way.
    pub(crate) fn pick(&self, exclude: u64) -> Option<usize> {
        let mask = self.healthy_mask() & !exclude;
        if mask == 0 {
            return None;
        }
        let k = mask.count_ones() as usize;
        let n = self.next.fetch_add(1, Ordering::Relaxed) % k;
        let first = nth_set_bit(mask, n);
        if self.balance == Balance::RoundRobin {
            return Some(first);
        }
        let load = |i: usize| self.backend(i).outstanding.load(Ordering::Relaxed);
        let (mut best, mut least) = (first, load(first));
        // The healthy set rotated to start at `first`, so ties keep the rotation's order.
        let mut rest = mask.rotate_right(first as u32) & !1;
        while rest != 0 && least != 0 {
            let i = (first + rest.trailing_zeros() as usize) % 64;
            rest &= rest - 1;
            let l = load(i);
            if l < least {
                (best, least) = (i, l);
            }
        }
        Some(best)
    }

    /// The backend for a new request: the one its sticky token names while that is up, else
    /// the next in rotation.
    pub(crate) fn choose(&self, sticky_token: Option<&[u8]>) -> Option<usize> {
        sticky_token
            .and_then(|token| self.find_token(token))
            .filter(|&i| self.is_up(i))
            .or_else(|| self.pick(0))
    }

    /// The healthy backend following `after` cyclically, skipping `exclude`; used for
    /// retries so they don't disturb the shared rotation counter.
    pub(crate) fn next_after(&self, after: usize, exclude: u64) -> Option<usize> {
        let mask = self.healthy_mask() & !exclude;
        if mask == 0 {
            return None;
        }
        let shift = (after + 1) % 64;
        let rotated = mask.rotate_right(shift as u32);
        let offset = rotated.trailing_zeros() as usize;
        Some((shift + offset) % 64)
    }

    fn find_token(&self, token: &[u8]) -> Option<usize> {
        self.live()
            .find(|(_, b)| b.sticky_token.as_bytes() == token)
            .map(|(i, _)| i)
    }

    /// The live (not removed) backend called `id`.
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.live().find(|(_, b)| b.id == id).map(|(i, _)| i)
    }

    /// Records a passed health check and brings the backend up at the threshold.
    pub(crate) fn record_success(&self, idx: usize, healthy_threshold: u32) {
        let b = self.backend(idx);
        b.consecutive_failures.store(0, Ordering::Relaxed);
        let n = b
            .consecutive_successes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= healthy_threshold && !self.is_up(idx) && !self.is_removed(idx) {
            self.healthy.fetch_or(1 << idx, Ordering::AcqRel);
            // A removal that raced this check wins.
            if self.is_removed(idx) {
                self.healthy.fetch_and(!(1 << idx), Ordering::AcqRel);
                return;
            }
            *lock(&b.last_error) = None;
            self.events.push(&b.id, "up", None);
            info!(backend = %b.id, addr = %b.addr, successes = n, "backend is up");
        }
    }

    /// Records a failed health check and takes the backend down at the threshold.
    pub(crate) fn record_failure(&self, idx: usize, unhealthy_threshold: u32, err: String) {
        let b = self.backend(idx);
        let n = b.count_failed_check();
        if n >= unhealthy_threshold && self.is_up(idx) {
            self.healthy.fetch_and(!(1 << idx), Ordering::AcqRel);
            self.events.push(&b.id, "down", Some(&err));
            warn!(backend = %b.id, addr = %b.addr, failures = n, error = %err, "backend is down");
        }
        b.set_last_error(err);
    }

    /// Records a health check answered 503 `draining`: the backend was told to stop and
    /// leaves rotation at once (`leave_on_draining`).
    pub(crate) fn record_draining(&self, idx: usize, err: String) {
        let b = self.backend(idx);
        let n = b.count_failed_check();
        let prev = self.healthy.fetch_and(!(1 << idx), Ordering::AcqRel);
        if prev & (1 << idx) != 0 {
            warn!(backend = %b.id, addr = %b.addr, failures = n, "backend is draining; out of rotation");
        }
        b.set_last_error(err);
    }

    /// Records a request that got no response head in time; at `eject_after` in a row (0:
    /// never) the backend leaves rotation until it passes its health checks again.
    pub(crate) fn record_timeout(&self, idx: usize, eject_after: u32) {
        let b = self.backend(idx);
        let n = b
            .consecutive_timeouts
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if eject_after != 0 && n >= eject_after {
            b.consecutive_timeouts.store(0, Ordering::Relaxed);
            self.mark_down(
                idx,
                &format!("ejected after {n} response timeouts in a row"),
            );
        }
    }

    /// Takes a backend out of rotation at once; it must pass the healthy threshold again.
    pub(crate) fn mark_down(&self, idx: usize, reason: &str) {
        let b = self.backend(idx);
        b.consecutive_successes.store(0, Ordering::Relaxed);
        let prev = self.healthy.fetch_and(!(1 << idx), Ordering::AcqRel);
        b.set_last_error(reason.to_owned());
        if prev & (1 << idx) != 0 {
            self.events.push(&b.id, "down", Some(reason));
            warn!(backend = %b.id, addr = %b.addr, reason, "backend marked down");
        }
    }

    pub(crate) fn status(&self) -> Vec<BackendStatus> {
        let mask = self.healthy_mask();
        self.live()
            .map(|(i, b)| BackendStatus {
                id: b.id.clone(),
                addr: b.addr,
                state: if mask & (1 << i) != 0 {
                    BackendState::Up
                } else {
                    BackendState::Down
                },
                consecutive_successes: b.consecutive_successes.load(Ordering::Relaxed),
                consecutive_failures: b.consecutive_failures.load(Ordering::Relaxed),
                requests: b.requests.load(Ordering::Relaxed),
                server_errors: b.server_errors.load(Ordering::Relaxed),
                last_error: lock(&b.last_error).clone(),
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn nth_set_bit(mut mask: u64, n: usize) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        let cfgs: Vec<_> = (0..n)
            .map(|i| {
                BackendConfig::new(
                    format!("b{i}"),
                    SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                )
            })
            .collect();
        Pool::new(&cfgs, None, Balance::RoundRobin)
    }

    #[test]
    fn rotation_skips_down_backends() {
        let p = pool(4);
        assert_eq!(p.pick(0), None);
        for i in [0, 1, 3] {
            p.record_success(i, 1);
        }
        let picks: Vec<_> = (0..6).map(|_| p.pick(0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 3, 0, 1, 3]);
        assert_eq!(p.next_after(1, 0), Some(3));
        assert_eq!(p.next_after(3, 0), Some(0));
        assert_eq!(p.next_after(3, 1), Some(1));
        assert_eq!(p.next_after(0, 0b1011), None);
    }

    #[test]
    fn least_outstanding_avoids_a_backend_holding_requests_and_rotates_ties() {
        let cfgs: Vec<_> = (0..3)
            .map(|i| {
                BackendConfig::new(
                    format!("b{i}"),
                    SocketAddr::from(([127, 0, 0, 1], 1000 + i)),
                )
            })
            .collect();
        let p = Arc::new(Pool::new(&cfgs, None, Balance::LeastOutstanding));
        for i in 0..3 {
            p.record_success(i, 1);
        }
        let picks: Vec<_> = (0..6).map(|_| p.pick(0).unwrap()).collect();
        assert_eq!(
            picks,
            [0, 1, 2, 0, 1, 2],
            "sequential traffic stays in strict turn"
        );
        // Backend 1 stops answering: its tries stay outstanding.
        let stuck: Vec<_> = (0..2).map(|_| InFlight::start(&p, 1)).collect();
        let picks: Vec<_> = (0..6).map(|_| p.pick(0).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        drop(stuck);
        assert!((0..3).map(|_| p.pick(0).unwrap()).any(|i| i == 1));
    }

    #[test]
    fn timeouts_in_a_row_eject_only_when_asked_and_an_answer_resets_them() {
        let p = pool(2);
        p.record_success(0, 1);
        p.record_timeout(0, 0);
        p.record_timeout(0, 0);
        assert!(p.is_up(0), "0 never ejects (DigitalOcean)");
        p.backend(0).answered();
        p.record_timeout(0, 2);
        p.backend(0).answered();
        p.record_timeout(0, 2);
        assert!(p.is_up(0), "an answer in between breaks the run");
        p.record_timeout(0, 2);
        assert!(!p.is_up(0));
        assert!(
            p.status()[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("ejected")
        );
        p.record_success(0, 1);
        assert!(p.is_up(0), "back after its health checks pass");
    }

    #[test]
    fn a_draining_answer_takes_a_backend_out_at_once() {
        let p = pool(1);
        p.record_success(0, 1);
        p.record_draining(0, "draining".into());
        assert!(!p.is_up(0));
        assert_eq!(p.status()[0].consecutive_failures, 1);
    }

    #[test]
    fn thresholds() {
        let p = pool(1);
        p.record_success(0, 2);
        assert!(!p.is_up(0));
        p.record_success(0, 2);
        assert!(p.is_up(0));
        p.record_failure(0, 3, "x".into());
        p.record_failure(0, 3, "x".into());
        assert!(p.is_up(0));
        p.record_failure(0, 3, "x".into());
        assert!(!p.is_up(0));
        assert_eq!(p.status()[0].state, BackendState::Down);
        assert_eq!(p.status()[0].consecutive_failures, 3);
    }

    #[test]
    fn added_backends_start_down_and_removed_ones_leave_for_good() {
        let p = pool(2);
        p.record_success(0, 1);
        p.record_success(1, 1);
        let cfg = BackendConfig::new("green-1", SocketAddr::from(([127, 0, 0, 1], 2000)));
        let idx = p.add(&cfg).unwrap();
        assert_eq!(idx, 2);
        assert!(p.add(&cfg).unwrap_err().contains("already exists"));
        assert!(!p.is_up(idx), "a new backend waits for its health checks");
        p.record_success(idx, 1);
        assert!(p.is_up(idx));

        p.remove(0);
        assert!(!p.is_up(0));
        p.record_success(0, 1);
        assert!(!p.is_up(0), "a removed backend never comes back up");
        assert_eq!(p.index_of("b0"), None);
        let ids: Vec<_> = p.status().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["b1", "green-1"]);
        let picks: Vec<_> = (0..4).map(|_| p.pick(0).unwrap()).collect();
        assert!(picks.iter().all(|&i| i == 1 || i == 2), "{picks:?}");
        // The removed backend's index still answers for requests in flight.
        assert_eq!(p.backend(0).id, "b0");
        // Its id may be used again by a later backend.
        let again = BackendConfig::new("b0", SocketAddr::from(([127, 0, 0, 1], 2001)));
        assert_eq!(p.add(&again).unwrap(), 3);
    }

    #[test]
    fn slots_run_out_after_max_backends() {
        let p = pool(MAX_BACKENDS);
        let cfg = BackendConfig::new("one-more", SocketAddr::from(([127, 0, 0, 1], 2000)));
        assert!(p.add(&cfg).unwrap_err().contains("slots"));
    }
}
