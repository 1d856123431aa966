//! Rule files: load (YAML → validated [`Rule`]s), compile (→ [`CompiledRules`]).

pub mod compiled;

pub use compiled::{AddrPrefix, CompiledRules, MemoryTables, RuleMeta, Severity};
