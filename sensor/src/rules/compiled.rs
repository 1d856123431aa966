//! The compiled rule set: the exact contents of the kernel's rule maps, plus
//! what userspace needs to explain an alert. `MemoryTables` reads it the way
//! the kernel reads the maps, so `replay` runs the same evaluation.

use std::collections::BTreeMap;

use sensor_common::detect::RuleTables;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{MASK_TABLE_LEN, RuleInfo, RuleMask};
use sensor_common::zerocopy::IntoBytes;

use crate::settings::Severity;

/// What userspace keeps about each loaded rule, to enrich its alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMeta {
    pub id: u32,
    /// The rule's `gid` (alert `gid`; default 1, Suricata's for its rules).
    pub gid: u32,
    /// The rule's `rev` (alert `rev`; default 1).
    pub rev: u32,
    pub name: String,
    pub severity: Severity,
    /// The match kind: the alert's `category` (`tcp_flags`, `ttl`, ...).
    pub category: &'static str,
    /// `action: drop` in the rule file.
    pub drop: bool,
    /// Where the rule was defined (`file:line`), for messages.
    pub origin: String,
}

/// An LPM trie entry: `prefix_len` counts bits of the 20-byte [`AddrKey`]
/// (8 bits of IP version, 24 zero bits, then the address), as the kernel
/// trie does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrPrefix {
    pub prefix_len: u32,
    pub key: AddrKey,
}

impl AddrPrefix {
    /// Whether `addr` lies inside this prefix.
    pub fn contains(&self, addr: &AddrKey) -> bool {
        let (p, a) = (self.key.as_bytes(), addr.as_bytes());
        let full = (self.prefix_len / 8) as usize;
        let rest = self.prefix_len % 8;
        if p[..full] != a[..full] {
            return false;
        }
        if rest == 0 {
            return true;
        }
        let m = 0xffu8 << (8 - rest);
        p[full] & m == a[full] & m
    }
}

/// Everything the kernel's rule maps hold, by map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRules {
    /// `MASKS` array: [`MASK_TABLE_LEN`] entries (layout in `sensor_common::tables`).
    pub masks: Vec<RuleMask>,
    /// `SRC_SCOPE` / `DST_SCOPE` tries. Each value already includes the rules
    /// of every shorter prefix containing it, so a longest-prefix lookup
    /// gives every rule whose scope contains the address.
    pub src_prefixes: Vec<(AddrPrefix, RuleMask)>,
    pub dst_prefixes: Vec<(AddrPrefix, RuleMask)>,
    /// `PORT_SCOPE` / `VLAN_SCOPE` hash maps (`scope.dst_ports`, `scope.vlan`).
    pub ports: BTreeMap<u16, RuleMask>,
    /// `scope.src_ports`: in `PORT_SCOPE` too, under keys of their own
    /// (`sensor_common::tables::src_port_key`).
    pub src_ports: BTreeMap<u16, RuleMask>,
    pub vlans: BTreeMap<u16, RuleMask>,
    /// `RULES` array, by slot.
    pub rules: Vec<RuleInfo>,
    /// Userspace-only facts, by slot (same order as `rules`).
    pub meta: Vec<RuleMeta>,
}

impl Default for CompiledRules {
    fn default() -> Self {
        CompiledRules {
            masks: vec![RuleMask::EMPTY; MASK_TABLE_LEN as usize],
            src_prefixes: Vec::new(),
            dst_prefixes: Vec::new(),
            ports: BTreeMap::new(),
            src_ports: BTreeMap::new(),
            vlans: BTreeMap::new(),
            rules: Vec::new(),
            meta: Vec::new(),
        }
    }
}

impl CompiledRules {
    /// The rule with signature id `id`.
    pub fn by_id(&self, id: u32) -> Option<&RuleMeta> {
        self.meta.iter().find(|m| m.id == id)
    }
}

fn longest_prefix<'a>(
    prefixes: &'a [(AddrPrefix, RuleMask)],
    addr: &AddrKey,
) -> Option<&'a RuleMask> {
    prefixes
        .iter()
        .filter(|(p, _)| p.contains(addr))
        .max_by_key(|(p, _)| p.prefix_len)
        .map(|(_, m)| m)
}

/// [`RuleTables`] over a [`CompiledRules`] in memory: what `replay` uses.
pub struct MemoryTables<'a> {
    pub rules: &'a CompiledRules,
    pub drop_mode: bool,
}

impl RuleTables for MemoryTables<'_> {
    fn mask(&self, index: u32) -> Option<&RuleMask> {
        self.rules.masks.get(index as usize)
    }
    fn src_scope(&self, addr: &AddrKey) -> Option<&RuleMask> {
        longest_prefix(&self.rules.src_prefixes, addr)
    }
    fn dst_scope(&self, addr: &AddrKey) -> Option<&RuleMask> {
        longest_prefix(&self.rules.dst_prefixes, addr)
    }
    fn port_scope(&self, port: u16) -> Option<&RuleMask> {
        self.rules.ports.get(&port)
    }
    fn src_port_scope(&self, port: u16) -> Option<&RuleMask> {
        self.rules.src_ports.get(&port)
    }
    fn vlan_scope(&self, vlan: u16) -> Option<&RuleMask> {
        self.rules.vlans.get(&vlan)
    }
    fn rule(&self, slot: u32) -> Option<&RuleInfo> {
        self.rules.rules.get(slot as usize)
    }
    fn drop_mode(&self) -> bool {
        self.drop_mode
    }
}
