//! Rule files: load (YAML → validated [`RuleSet`]), compile (→ [`CompiledRules`]).

pub mod compile;
pub mod compiled;
#[cfg(test)]
mod default_rules_tests;
pub mod load;
pub mod model;
pub(crate) mod yaml;

/// Rules name a severity; the type is a shared plain one.
pub use crate::settings::Severity;
pub use compile::{CompileError, compile, summary, try_compile};
pub use compiled::{AddrPrefix, CompiledRules, MemoryTables, RuleMeta};
pub use load::{RulesError, load_path, load_str};
pub use model::{
    Action, Adaptive, Flood, FragmentMatch, HeaderCheck, Match, PacketClass, Protocol, Rule,
    RuleSet, Scan, Scope, SynFlood, SynTrack, TtlMatch,
};
pub use yaml::SourceError;
