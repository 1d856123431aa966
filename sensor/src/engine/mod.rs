//! The one alert pipeline: alert records → aggregation (rate-limit totals
//! into line counts) → alert lines → sinks. `sensor run` and `sensor replay`
//! both drive it.
//!
//! May use: `settings`, `rules`, `alert`, `sinks`. Never the kernel,
//! replay's capture reading, control or the commands.

pub mod aggregate;
pub mod clock;
pub mod pipeline;
