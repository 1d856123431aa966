//! The sensor's userspace: rules, kernel loader, alert engine, sinks,
//! replay and inspect. The binary (`main.rs`) only wires these together.

pub mod aggregate;
pub mod alert;
pub mod blockstate;
pub mod cli;
pub mod community_id;
pub mod config;
pub mod control;
pub mod drop_policy;
pub mod inspect;
pub mod loader;
pub mod metrics;
pub mod netlink;
pub mod perf;
pub mod preflight;
pub mod redis_sink;
pub mod replay;
pub mod rules;
pub mod run;
pub mod sinks;
pub mod state;
pub mod syslog;
pub mod syslog_tls;
pub mod testing;
pub mod tls;
