//! Time for the pipeline and the commands: the kernel's monotonic clock
//! mapped to wall-clock time, and a ticker that may be off.

use tokio::time::Interval;

/// Kernel monotonic time (what `bpf_ktime_get_ns` returns) to wall-clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_monotonic: i128,
}

impl Clock {
    pub fn new() -> Clock {
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
        Clock {
            realtime_minus_monotonic: realtime as i128 - monotonic as i128,
        }
    }

    /// A clock with a given offset (tests: 0 makes monotonic time wall time).
    pub fn with_offset(realtime_minus_monotonic: i128) -> Clock {
        Clock {
            realtime_minus_monotonic,
        }
    }

    pub fn monotonic_now() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC)
    }

    pub fn to_unix_ns(self, monotonic_ns: u64) -> u64 {
        (monotonic_ns as i128 + self.realtime_minus_monotonic).max(0) as u64
    }

    pub fn to_monotonic_ns(self, unix_ns: u64) -> u64 {
        (unix_ns as i128 - self.realtime_minus_monotonic).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The next tick, or never.
pub async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
