//! The account every bounded sink queue keeps: a full queue drops the line
//! and counts it, the overflow logged once per episode rather than once per
//! line ([`Overflow`], every sink); for syslog and Redis, which bound what
//! they hold themselves ([`QueueAccount`]), a place is taken before a line
//! is queued, a written line leaves the queue as sent, and what is still
//! queued at close is counted as dropped on close.
//!
//! May use: nothing of the crate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Lines refused by a full queue, counted, and logged once per episode.
#[derive(Debug, Default)]
pub(crate) struct Overflow {
    dropped: AtomicU64,
    /// Set while lines are being refused.
    overflowing: AtomicBool,
}

impl Overflow {
    /// A line refused: counted; `log` is called if this starts an episode.
    pub fn refused(&self, log: impl FnOnce()) {
        self.dropped.fetch_add(1, Ordering::AcqRel);
        if !self.overflowing.swap(true, Ordering::AcqRel) {
            log();
        }
    }

    /// A line taken: the episode (if any) is over.
    pub fn accepted(&self) {
        if self.overflowing.load(Ordering::Acquire) {
            self.overflowing.store(false, Ordering::Release);
        }
    }

    /// Lines refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Acquire)
    }
}

/// A sink queue's counters, shared by the engine's handle and the writer.
#[derive(Debug, Default)]
pub(crate) struct QueueAccount {
    /// Lines written to the peer.
    sent: AtomicU64,
    /// Lines taken and not yet written or dropped (the bound counts the
    /// line a writer holds for a retry too, not only the channel's).
    queued: AtomicU64,
    full: Overflow,
    dropped_on_close: AtomicU64,
}

/// The account's figures at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueFigures {
    pub sent: u64,
    pub queued: u64,
    pub dropped_queue_full: u64,
    pub dropped_on_close: u64,
}

impl QueueAccount {
    /// Takes a place for one line among `capacity`; when the queue is full
    /// counts the drop, calls `log_overflow` if this starts an overflow
    /// episode, and returns `false`.
    pub fn reserve(&self, capacity: u64, log_overflow: impl FnOnce()) -> bool {
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < capacity).then_some(queued + 1)
            })
            .is_ok();
        if !reserved {
            self.full.refused(log_overflow);
            return false;
        }
        self.full.accepted();
        true
    }

    /// A reserved line the writer will never see (its task is gone).
    pub fn lost_to_a_closed_writer(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.dropped_on_close.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` queued lines were written.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::AcqRel);
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }

    /// A queued line that can never be sent leaves the queue (its own
    /// counter says why).
    pub fn discarded(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// At close: what is still queued is dropped; returns how many.
    pub fn drop_the_rest(&self) -> u64 {
        let left = self.queued.swap(0, Ordering::AcqRel);
        self.dropped_on_close.fetch_add(left, Ordering::AcqRel);
        left
    }

    pub fn figures(&self) -> QueueFigures {
        let get = |counter: &AtomicU64| counter.load(Ordering::Acquire);
        QueueFigures {
            sent: get(&self.sent),
            queued: get(&self.queued),
            dropped_queue_full: self.full.dropped(),
            dropped_on_close: get(&self.dropped_on_close),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_counts_its_drops_and_logs_once_per_episode() {
        let account = QueueAccount::default();
        let mut logged = 0;
        assert!(account.reserve(2, || logged += 1));
        assert!(account.reserve(2, || logged += 1));
        for _ in 0..3 {
            assert!(!account.reserve(2, || logged += 1));
        }
        assert_eq!(logged, 1);
        account.sent(1);
        assert!(account.reserve(2, || logged += 1), "a place again");
        assert!(!account.reserve(2, || logged += 1));
        assert_eq!(logged, 2, "a new episode");
        account.lost_to_a_closed_writer();
        assert_eq!(account.drop_the_rest(), 1);
        let figures = account.figures();
        assert_eq!(
            figures,
            QueueFigures {
                sent: 1,
                queued: 0,
                dropped_queue_full: 4,
                dropped_on_close: 2,
            }
        );
    }
}
