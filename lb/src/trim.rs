//! Gives the memory that closed connections freed back to the operating system.
//!
//! Each connection's buffers and task are allocated on the I/O thread serving it, in that
//! thread's glibc malloc arena, which keeps what they free for reuse: after 3,000 idle
//! connections had come and gone, the load balancer stayed 25 MB above where it started, and
//! every later wave added to it (docs/benchmarks.md). `malloc_trim(0)` returns the free pages
//! inside every arena, but not the free space at the top of a thread's arena, where most of
//! it ends up; only a free of at least 64 KiB in that arena trims its top. So each I/O thread,
//! once its connections have fallen well below their peak, frees such a block itself and then
//! has `malloc_trim` run off the thread. Steady traffic never pays for either.

use std::time::Duration;

/// Connections of one I/O thread that must have closed since their peak before its memory
/// is trimmed: a wave worth megabytes, not the churn of ordinary keep-alive traffic.
const TRIM_AFTER_CLOSED: usize = 128;

/// How often an I/O thread compares its connections with their peak.
pub(crate) const TRIM_CHECK: Duration = Duration::from_secs(1);

/// Tracks one I/O thread's open connections' peak since its last trim.
pub(crate) struct Trimmer {
    peak: usize,
}

impl Trimmer {
    pub(crate) fn new() -> Trimmer {
        Trimmer { peak: 0 }
    }

    /// Records `open` connections; once they have fallen by `TRIM_AFTER_CLOSED` from their
    /// peak, gives this thread's free memory back (and says so). Call it on the I/O thread
    /// itself, within a tokio runtime.
    pub(crate) fn observe(&mut self, open: usize) -> bool {
        if !self.due(open) {
            return false;
        }
        trim_this_thread();
        tokio::task::spawn_blocking(trim_all);
        true
    }

    fn due(&mut self, open: usize) -> bool {
        self.peak = self.peak.max(open);
        let due = self.peak - open >= TRIM_AFTER_CLOSED;
        if due {
            self.peak = open;
        }
        due
    }
}

/// A free this large makes glibc trim the top of the arena it came from.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_TRIM_FREE: usize = 64 * 1024 + 64;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_this_thread() {
    // SAFETY: a plain allocation freed at once; black_box keeps the pair from being optimised
    // away, which would skip the trim it is made for.
    unsafe {
        let block = libc::malloc(TOP_TRIM_FREE);
        libc::free(std::hint::black_box(block));
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_all() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe { libc::malloc_trim(0) };
}

/// Other allocators (musl's, for one) return freed memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_this_thread() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_all() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_wave_of_closed_connections_trims_and_once_per_wave() {
        let mut t = Trimmer::new();
        // Churn around a steady level never trims.
        for open in [10, 50, 40, 60, 30, 100] {
            assert!(!t.due(open));
        }
        assert!(!t.due(1000));
        assert!(!t.due(1000 - TRIM_AFTER_CLOSED + 1));
        assert!(t.due(1000 - TRIM_AFTER_CLOSED));
        // The peak starts again from there.
        assert!(!t.due(1000 - TRIM_AFTER_CLOSED - 1));
        assert!(t.due(0));
        assert!(!t.due(0));
    }
}
