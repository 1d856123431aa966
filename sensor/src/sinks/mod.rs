//! Where alert lines go: a JSON lines file or stdout (`json`), syslog
//! (`syslog`: target, format, sender; `syslog_tls`: its RFC 5425 transport)
//! and Redis (`redis`); `tls` reads the PEM files both use. Each sink takes
//! finished lines; none of them waits on its peer on the engine's task, and
//! each counts what it could not deliver.
//!
//! May use: `settings`, `alert`. Never the engine, the kernel or commands.

pub mod json;
mod queue;
pub mod redis;
pub mod syslog;
pub mod syslog_tls;
pub mod tls;
