//! The sensor's userspace: rules, kernel loader, alert engine, sinks,
//! replay and inspect. The binary (`main.rs`) only wires these together.

pub mod rules;
