//! The kernel side as userspace sees it: loading and attaching the XDP
//! program (aya), its rule tables, drop lists, inspect maps and counters
//! (`loader`), the perf readers that bring alert and inspect records up
//! (`perf`), the checks before attaching (`preflight`), link notifications
//! (`netlink`), the rate map read for sweeps (`rate`) and the blocked
//! sources kept across restarts (`blockstate`), drop mode's `block_when`
//! settings and the blocked-sources listing (`drop_policy`).
//!
//! May use: `settings`, `rules`, `alert` (address helpers), `filter` (the
//! compiled inspect filter it writes). Never the engine, sinks or commands.

pub mod blockstate;
pub mod drop_policy;
pub mod loader;
pub mod netlink;
pub mod perf;
pub mod preflight;
pub mod rate;
