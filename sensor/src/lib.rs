//! The sensor's userspace, in layers; each module may use only the ones
//! listed before it (its own comment says which). From the bottom:
//!
//! - `settings`: plain types (modes, formats, policies); `testing`: frame
//!   builders for tests and benches.
//! - `rules`: load, validate, compile, summarise rule files.
//! - `alert`: the alert line (EVE JSON) and its formatting helpers.
//! - `filter`: the inspect filter language, compiled to the kernel's ops.
//! - `kernel`: the XDP program as userspace drives it (aya).
//! - `sinks`: JSON lines, syslog, Redis.
//! - `metrics`: the Prometheus snapshot and endpoint.
//! - `engine`: the one alert pipeline, records → lines → sinks.
//! - `replay`: captures through the shared parser and detector.
//! - `control`: the inspect control socket (protocol, server, client).
//! - `inspect`: `sensor inspect`, local and remote.
//! - `run`: `sensor run`, the live sensor.
//! - `config`, `cli`: the inputs; `main.rs` wires them to the commands.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod settings;
pub mod testing;

pub mod rules;

pub mod alert;

pub mod filter;

pub mod kernel;

pub mod sinks;

pub mod metrics;

pub mod engine;

pub mod replay;

pub mod control;

pub mod inspect;

pub mod run;

pub mod cli;
pub mod config;

#[cfg(test)]
mod layering_tests;
