//! The admission rule every bounded sink queue shares: a place is taken
//! before a line is queued, a full queue drops the line and counts it, and
//! the overflow is logged once per episode rather than once per line.
//!
//! May use: nothing of the crate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A sink queue's bound and the counters admission keeps.
pub(crate) struct Admission<'a> {
    /// Lines taken and not yet written or dropped (the bound counts the
    /// line a sender holds for a retry too, not only the channel's).
    pub queued: &'a AtomicU64,
    pub capacity: u64,
    pub dropped_queue_full: &'a AtomicU64,
    /// Set while lines are being refused.
    pub overflowing: &'a AtomicBool,
}

impl Admission<'_> {
    /// Takes a place for one line; when the queue is full counts the drop,
    /// calls `log_overflow` if this starts an overflow episode, and returns
    /// `false`.
    pub fn reserve(&self, log_overflow: impl FnOnce()) -> bool {
        let capacity = self.capacity;
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < capacity).then_some(queued + 1)
            })
            .is_ok();
        if !reserved {
            self.dropped_queue_full.fetch_add(1, Ordering::AcqRel);
            if !self.overflowing.swap(true, Ordering::AcqRel) {
                log_overflow();
            }
            return false;
        }
        if self.overflowing.load(Ordering::Acquire) {
            self.overflowing.store(false, Ordering::Release);
        }
        true
    }
}
