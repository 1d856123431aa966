//! [`RuleSet`] → [`CompiledRules`]: the table layout of
//! `sensor_common::tables`, one bit per enabled rule.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use ipnet::IpNet;
use sensor_common::packet::{AddrKey, event, tcp};
use sensor_common::tables::{
    ADDR_SCOPE_ENTRIES, ANY_BASE, DEVIATION_BASE, EVENT_BASE, EVENT_SET_BASE, EVENT_SETS,
    FLAGS_BASE, FLOOD_SET_BASE, FLOOD_SETS, MAX_RULES, MAX_TINY_THRESHOLD, OPTION_EVENT_FIRST,
    OPTION_EVENT_SET_BASE, OPTION_EVENT_SETS, PORT_SCOPE_ENTRIES, PROTO_BASE, RuleInfo, RuleMask,
    SCAN_MAP_BITS, TINY_BASE, TTL_BASE, action, any, flood_class, flood_track, kind, proto_class,
    uses,
};

use super::compiled::{AddrPrefix, CompiledRules, RuleMeta};
use super::model::{
    Action, Flood, FragmentMatch, Match, PacketClass, Protocol, Rule, RuleSet, Scan, SynTrack,
    TtlMatch,
};

/// A rule set the kernel tables cannot hold. [`super::load_path`] refuses
/// such sets with file positions; [`try_compile`] guards sets built in code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{count} enabled rules, at most {MAX_RULES} fit")]
    TooManyRules { count: usize },
    #[error("{count} distinct {what}, at most {limit} fit")]
    TooManyEntries {
        what: &'static str,
        count: usize,
        limit: u32,
    },
}

/// Fills the kernel tables for the enabled rules of `set`, in order: slot
/// `i` is the `i`-th enabled rule. Drop rules without their own
/// `block_seconds` block for `default_block_seconds`.
///
/// Sets from [`super::load_path`] always fit. For sets built in code,
/// enabled rules beyond [`MAX_RULES`] are left out; [`try_compile`] reports
/// them (and scope maps that would overflow) instead.
pub fn compile(set: &RuleSet, default_block_seconds: u32) -> CompiledRules {
    let mut out = CompiledRules::default();
    let mut src: HashMap<IpNet, RuleMask> = HashMap::new();
    let mut dst: HashMap<IpNet, RuleMask> = HashMap::new();

    let mut table_uses = 0;
    // The same, per protocol class: a packet consults only the tables its
    // protocol's rules use (a UDP reflector rule's source ports cost a TCP
    // packet nothing).
    let mut class_uses = [0u32; proto_class::COUNT as usize];
    for (slot, rule) in set.enabled().take(MAX_RULES as usize).enumerate() {
        let slot = slot as u32;
        let masks = &mut out.masks;
        let mut mark = |index: u32| masks[index as usize].insert(slot);

        match_rows(&rule.matcher, &mut mark);
        for class in protocol_classes(rule.scope.protocol) {
            mark(PROTO_BASE + class);
        }
        mark(ANY_BASE + any::ENABLED);
        if rule.action == Action::Drop {
            mark(ANY_BASE + any::DROP);
        }
        let scope = &rule.scope;
        let mut rule_uses = 0;
        for (empty, row, table) in [
            (scope.src.is_empty(), any::SRC, uses::SRC),
            (scope.dst.is_empty(), any::DST, uses::DST),
            (scope.dst_ports.is_empty(), any::PORT, uses::PORT),
            (scope.vlan.is_empty(), any::VLAN, uses::VLAN),
            (scope.src_ports.is_empty(), any::SRC_PORT, uses::SRC_PORT),
        ] {
            if empty {
                mark(ANY_BASE + row);
            } else {
                rule_uses |= table;
            }
        }
        for net in &scope.src {
            src.entry(net.trunc()).or_default().insert(slot);
        }
        for net in &scope.dst {
            dst.entry(net.trunc()).or_default().insert(slot);
        }
        for port in &scope.dst_ports {
            out.ports.entry(*port).or_default().insert(slot);
        }
        for vlan in &scope.vlan {
            out.vlans.entry(*vlan).or_default().insert(slot);
        }
        for port in &scope.src_ports {
            out.src_ports.entry(*port).or_default().insert(slot);
        }
        rule_uses |= flood_classes_of(&rule.matcher) << uses::FLOOD_CLASSES;
        table_uses |= rule_uses;
        for class in protocol_classes(rule.scope.protocol) {
            class_uses[class as usize] |= rule_uses;
        }

        out.rules.push(rule_info(rule, default_block_seconds));
        out.meta.push(RuleMeta {
            id: rule.id,
            gid: rule.gid,
            rev: rule.rev,
            name: rule.name.clone(),
            severity: rule.severity,
            category: rule.matcher.category(),
            drop: rule.action == Action::Drop,
            origin: rule.origin.clone(),
        });
    }

    fill_event_sets(&mut out.masks);
    fill_flood_sets(&mut out.masks);
    // Scope tables no enabled rule uses are not looked up per packet.
    out.masks[(ANY_BASE + any::ENABLED) as usize].uses = table_uses;
    for (class, uses) in class_uses.iter().enumerate() {
        out.masks[(PROTO_BASE + class as u32) as usize].uses = *uses;
    }
    out.src_prefixes = nested_prefixes(&src);
    out.dst_prefixes = nested_prefixes(&dst);
    out
}

/// Fills the `EVENT_SET_BASE` and `OPTION_EVENT_SET_BASE` rows from the
/// per-event `EVENT_BASE` rows: one row per combination of events, the
/// union of its events' rows.
pub fn fill_event_sets(masks: &mut [RuleMask]) {
    for set in 1..EVENT_SETS {
        let mut row = RuleMask::EMPTY;
        for ev in 0..u32::from(event::FIRST_FRAGMENT) {
            if set & (1 << ev) != 0 {
                row.union_with(&masks[(EVENT_BASE + ev) as usize]);
            }
        }
        masks[(EVENT_SET_BASE + set) as usize] = row;
    }
    for set in 1..OPTION_EVENT_SETS {
        let mut row = RuleMask::EMPTY;
        for ev in 0..OPTION_EVENT_SETS.trailing_zeros() {
            if set & (1 << ev) != 0 {
                row.union_with(&masks[(EVENT_BASE + u32::from(OPTION_EVENT_FIRST) + ev) as usize]);
            }
        }
        masks[(OPTION_EVENT_SET_BASE + set) as usize] = row;
    }
}

/// The packet classes a `flood`, `syn_flood` or `scan` rule counts, as
/// `flood_class` bits: a scan of ports counts TCP SYNs without ACK and UDP,
/// a scan of hosts ICMP too.
fn flood_classes_of(matcher: &Match) -> u32 {
    let bit = |class: PacketClass| flood_class::bit(class.class());
    match matcher {
        Match::SynFlood(_) => bit(PacketClass::Syn),
        Match::Flood(flood) => bit(flood.packets),
        Match::Scan(Scan { hosts: false, .. }) => bit(PacketClass::Syn) | bit(PacketClass::Udp),
        Match::Scan(Scan { hosts: true, .. }) => {
            bit(PacketClass::Syn) | bit(PacketClass::Udp) | bit(PacketClass::Icmp)
        }
        _ => 0,
    }
}

/// The set bits of a `scan` window's map at which a rule of threshold `n`
/// (distinct values) alerts: round(1,024 × (1 − e^(−n/1,024))), the bits
/// `n` distinct values set on average (docs/CONTRACT.md, `scan`). Computed
/// here: the kernel has no floating point.
pub fn scan_bits_for(n: u32) -> u32 {
    let m = f64::from(SCAN_MAP_BITS);
    (m * (1.0 - (-f64::from(n) / m).exp())).round() as u32
}

/// Fills the `FLOOD_SET_BASE` rows from the single-class rows (row
/// `FLOOD_SET_BASE + bit(class)`, marked by [`match_rows`]): each
/// combination of classes is the union of its classes' rows.
fn fill_flood_sets(masks: &mut [RuleMask]) {
    let single: Vec<RuleMask> = (0..flood_class::COUNT)
        .map(|class| masks[(FLOOD_SET_BASE + flood_class::bit(class)) as usize])
        .collect();
    for set in 1..FLOOD_SETS {
        let mut row = RuleMask::EMPTY;
        for (class, mask) in single.iter().enumerate() {
            if set & flood_class::bit(class as u32) != 0 {
                row.union_with(mask);
            }
        }
        masks[(FLOOD_SET_BASE + set) as usize] = row;
    }
}

/// [`compile`], refusing sets the kernel tables cannot hold.
pub fn try_compile(
    set: &RuleSet,
    default_block_seconds: u32,
) -> Result<CompiledRules, CompileError> {
    let count = set.enabled().count();
    if count > MAX_RULES as usize {
        return Err(CompileError::TooManyRules { count });
    }
    let out = compile(set, default_block_seconds);
    check_entries("src prefixes", out.src_prefixes.len(), ADDR_SCOPE_ENTRIES)?;
    check_entries("dst prefixes", out.dst_prefixes.len(), ADDR_SCOPE_ENTRIES)?;
    check_entries(
        "dst and src ports",
        out.ports.len() + out.src_ports.len(),
        PORT_SCOPE_ENTRIES,
    )?;
    Ok(out)
}

fn check_entries(what: &'static str, count: usize, limit: u32) -> Result<(), CompileError> {
    if count > limit as usize {
        return Err(CompileError::TooManyEntries { what, count, limit });
    }
    Ok(())
}

/// Marks the mask-table rows where the rule's match condition holds.
fn match_rows(matcher: &Match, mark: &mut impl FnMut(u32)) {
    match *matcher {
        Match::TcpFlags { set, clear } => {
            for flags in 0..tcp::FLAG_VALUES {
                let flags16 = flags as u16;
                if flags16 & set == set && flags16 & clear == 0 {
                    mark(FLAGS_BASE + flags);
                }
            }
        }
        Match::Ttl(TtlMatch::Below(n)) => (0..u32::from(n)).for_each(|ttl| mark(TTL_BASE + ttl)),
        Match::Ttl(TtlMatch::Above(n)) => {
            (u32::from(n) + 1..=255).for_each(|ttl| mark(TTL_BASE + ttl))
        }
        Match::Ttl(TtlMatch::Deviation(n)) => {
            (u32::from(n) + 1..=255).for_each(|diff| mark(DEVIATION_BASE + diff));
            mark(ANY_BASE + any::DEVIATION);
        }
        Match::Fragment(FragmentMatch::TinyFirstBelow(n)) => {
            // Row 256 stands for "256 bytes or more", which no threshold reaches.
            (0..u32::from(n).min(MAX_TINY_THRESHOLD)).for_each(|len| mark(TINY_BASE + len));
        }
        Match::Fragment(FragmentMatch::OffsetOne) => {
            mark(EVENT_BASE + u32::from(event::FRAG_OFFSET_ONE))
        }
        Match::Fragment(FragmentMatch::Oversize) => {
            mark(EVENT_BASE + u32::from(event::FRAG_OVERSIZE))
        }
        Match::Fragment(FragmentMatch::Atomic) => mark(EVENT_BASE + u32::from(event::FRAG_ATOMIC)),
        Match::SynFlood(_) | Match::Flood(_) | Match::Scan(_) => {
            let classes = flood_classes_of(matcher);
            for class in 0..flood_class::COUNT {
                if classes & flood_class::bit(class) != 0 {
                    mark(FLOOD_SET_BASE + flood_class::bit(class));
                }
            }
        }
        Match::Header(check) => mark(EVENT_BASE + u32::from(check.event())),
    }
}

fn protocol_classes(protocol: Protocol) -> Vec<u32> {
    match protocol {
        Protocol::Any => (0..proto_class::COUNT).collect(),
        Protocol::Tcp => vec![proto_class::TCP],
        Protocol::Udp => vec![proto_class::UDP],
        Protocol::Icmp => vec![proto_class::ICMP],
        Protocol::Icmpv6 => vec![proto_class::ICMPV6],
    }
}

fn rule_info(rule: &Rule, default_block_seconds: u32) -> RuleInfo {
    let mut info = RuleInfo {
        sig_id: rule.id,
        kind: match rule.matcher {
            Match::TcpFlags { .. } => kind::TCP_FLAGS,
            Match::Ttl(_) => kind::TTL,
            Match::Fragment(_) => kind::FRAGMENT,
            Match::SynFlood(_) => kind::SYN_FLOOD,
            Match::Flood(_) => kind::FLOOD,
            Match::Scan(_) => kind::SCAN,
            Match::Header(_) => kind::HEADER,
        },
        action: match rule.action {
            Action::Alert => action::ALERT,
            Action::Drop => action::DROP,
        },
        ..RuleInfo::default()
    };
    let track = |track: SynTrack| match track {
        SynTrack::ByDst => flood_track::BY_DST,
        SynTrack::BySrc => flood_track::BY_SRC,
    };
    match rule.matcher {
        Match::SynFlood(syn) => {
            info.flood_threshold = syn.threshold;
            info.flood_window_ns = u64::from(syn.window_ms) * 1_000_000;
            info.flood_track = track(syn.track);
        }
        Match::Flood(Flood {
            track: by,
            threshold,
            bytes,
            window_ms,
            adaptive,
            ..
        }) => {
            info.flood_threshold = threshold.unwrap_or(0);
            info.flood_bytes = bytes.unwrap_or(0);
            if let Some(a) = adaptive {
                info.flood_threshold = a.min;
                info.adaptive_factor = a.factor_256;
                info.adaptive_windows = a.learn_windows;
            }
            info.flood_window_ns = u64::from(window_ms) * 1_000_000;
            info.flood_track = track(by);
        }
        Match::Scan(scan) => {
            info.flood_threshold = scan_bits_for(scan.threshold);
            info.flood_window_ns = u64::from(scan.window_ms) * 1_000_000;
            info.flood_track = flood_track::BY_SRC;
            info.scan_hosts = u8::from(scan.hosts);
        }
        _ => {}
    }
    if rule.action == Action::Drop {
        let seconds = rule.block_seconds.unwrap_or(default_block_seconds);
        info.block_ns = u64::from(seconds) * 1_000_000_000;
    }
    info
}

/// LPM entries whose masks also hold the rules of every shorter prefix
/// containing them, so the longest match alone names every rule whose scope
/// contains the address. Sorted by family, length, address.
fn nested_prefixes(masks: &HashMap<IpNet, RuleMask>) -> Vec<(AddrPrefix, RuleMask)> {
    let mut nets: Vec<&IpNet> = masks.keys().collect();
    nets.sort_by_key(|net| (net.addr().is_ipv6(), net.prefix_len(), net.addr()));
    nets.into_iter()
        .map(|net| {
            let mut mask = RuleMask::EMPTY;
            for len in 0..=net.prefix_len() {
                if let Ok(shorter) = IpNet::new(net.addr(), len)
                    && let Some(shorter) = masks.get(&shorter.trunc())
                {
                    mask.union_with(shorter);
                }
            }
            (addr_prefix(net), mask)
        })
        .collect()
}

/// The trie key of `net`: version byte, three zero bytes, then the address
/// (IPv4 in the first four bytes); the length counts the 32 bits before it.
pub fn addr_prefix(net: &IpNet) -> AddrPrefix {
    let net = net.trunc();
    AddrPrefix {
        prefix_len: AddrKey::PREFIX_BITS + u32::from(net.prefix_len()),
        key: addr_key(net.network()),
    }
}

/// An address as the kernel's maps key it (version, then the address
/// left-aligned in 16 bytes).
pub fn addr_key(addr: std::net::IpAddr) -> AddrKey {
    let mut key = AddrKey::default();
    match addr {
        std::net::IpAddr::V4(v4) => {
            key.version = 4;
            key.addr[..4].copy_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            key.version = 6;
            key.addr = v6.octets();
        }
    }
    key
}

/// What `sensor rules check` prints: counts, the drop rules, and one line
/// per rule saying what it does.
pub fn summary(set: &RuleSet, compiled: &CompiledRules) -> String {
    let mut out = String::new();
    // Enabled rules paired with their slots (a set built in code may have
    // more enabled rules than slots; `compile` leaves the extra ones out).
    let slots: Vec<(&Rule, &RuleInfo)> = set.enabled().zip(&compiled.rules).collect();
    let disabled = set.rules.len() - set.enabled().count();
    let _ = writeln!(
        out,
        "{} rules: {} enabled ({} of {MAX_RULES} slots), {disabled} disabled",
        set.rules.len(),
        slots.len(),
        slots.len()
    );

    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (rule, _) in &slots {
        *per_kind.entry(rule.matcher.category()).or_default() += 1;
    }
    let kinds: Vec<String> = super::load::MATCH_KINDS
        .iter()
        .map(|k| format!("{k} {}", per_kind.get(k).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(out, "by kind: {}", kinds.join(", "));

    let drops: Vec<String> = slots
        .iter()
        .filter(|(rule, _)| rule.action == Action::Drop)
        .map(|(rule, info)| format!("{} ({} s block)", rule.id, info.block_ns / 1_000_000_000))
        .collect();
    let _ = writeln!(
        out,
        "by action: alert {}, drop {}",
        slots.len() - drops.len(),
        drops.len()
    );
    if drops.is_empty() {
        let _ = writeln!(out, "drop rules: none");
    } else {
        let _ = writeln!(
            out,
            "drop rules (enforced only with --mode drop): {}",
            drops.join(", ")
        );
    }

    let _ = writeln!(out);
    for (rule, info) in &slots {
        let _ = write!(out, "{}", rule.describe());
        if rule.action == Action::Drop {
            match info.block_ns / 1_000_000_000 {
                0 => out.push_str("; drop, no block"),
                seconds => {
                    let _ = write!(out, "; drop, block {seconds} s");
                }
            }
        }
        out.push('\n');
    }
    let off: Vec<&Rule> = set.rules.iter().filter(|r| !r.enabled).collect();
    if !off.is_empty() {
        let _ = writeln!(out, "\ndisabled:");
        for rule in off {
            let _ = writeln!(
                out,
                "{}  ({}, action {})",
                rule.describe(),
                rule.origin,
                rule.action.name()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compiled::MemoryTables;
    use crate::rules::load::load_str;
    use crate::rules::model::{HeaderCheck, Scope, SynFlood};
    use crate::settings::Severity;
    use sensor_common::detect::RuleTables;
    use sensor_common::packet::AddrKey;
    use std::net::IpAddr;

    fn rule(id: u32, matcher: Match) -> Rule {
        Rule {
            id,
            gid: 1,
            rev: 1,
            name: format!("rule {id}"),
            severity: Severity::Medium,
            action: Action::Alert,
            block_seconds: None,
            enabled: true,
            scope: Scope::default(),
            matcher,
            origin: format!("t.yaml:{id}"),
        }
    }

    fn compiled(rules: Vec<Rule>) -> CompiledRules {
        try_compile(&RuleSet { rules }, 300).unwrap()
    }

    /// Word 0 of a mask (slots 0..64), what these small sets use.
    fn w0(mask: Option<&RuleMask>) -> u64 {
        mask.map_or(0, |m| m.words[0])
    }

    fn rows(c: &CompiledRules, base: u32, len: u32, bit: u64) -> Vec<u32> {
        (0..len)
            .filter(|i| c.masks[(base + i) as usize].words[0] & bit != 0)
            .collect()
    }

    fn key(text: &str) -> AddrKey {
        let mut key = AddrKey::default();
        match text.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => {
                key.version = 4;
                key.addr[..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                key.version = 6;
                key.addr = a.octets();
            }
        }
        key
    }

    #[test]
    fn syn_fin_rule_marks_exactly_the_flag_values_with_both() {
        let c = compiled(vec![rule(
            1,
            Match::TcpFlags {
                set: tcp::SYN | tcp::FIN,
                clear: 0,
            },
        )]);
        let m = |f: u32| c.masks[(FLAGS_BASE + f) as usize].words[0];
        assert_eq!(m(0x003), 1);
        assert_eq!(m(0x013), 1);
        assert_eq!(m(0x1ff), 1);
        assert_eq!(m(0x002), 0);
        assert_eq!(m(0x001), 0);
        assert_eq!(m(0x000), 0);
        assert_eq!(rows(&c, FLAGS_BASE, 512, 1).len(), 128);
    }

    #[test]
    fn set_and_clear_combine() {
        // FIN without ACK.
        let c = compiled(vec![rule(
            1,
            Match::TcpFlags {
                set: tcp::FIN,
                clear: tcp::ACK,
            },
        )]);
        let m = |f: u16| c.masks[(FLAGS_BASE + u32::from(f)) as usize].words[0];
        assert_eq!(m(tcp::FIN), 1);
        assert_eq!(m(tcp::FIN | tcp::PSH | tcp::URG), 1);
        assert_eq!(m(tcp::FIN | tcp::ACK), 0);
        assert_eq!(m(tcp::SYN), 0);
    }

    #[test]
    fn null_scan_marks_zero_and_ns_only() {
        let c = compiled(vec![rule(
            1,
            Match::TcpFlags {
                set: 0,
                clear: 0xff,
            },
        )]);
        assert_eq!(rows(&c, FLAGS_BASE, 512, 1), vec![0x000, 0x100]);
    }

    #[test]
    fn ttl_rows() {
        let c = compiled(vec![
            rule(1, Match::Ttl(TtlMatch::Below(2))),
            rule(2, Match::Ttl(TtlMatch::Above(254))),
            rule(3, Match::Ttl(TtlMatch::Deviation(8))),
        ]);
        assert_eq!(rows(&c, TTL_BASE, 256, 0b001), vec![0, 1]);
        assert_eq!(rows(&c, TTL_BASE, 256, 0b010), vec![255]);
        assert_eq!(rows(&c, TTL_BASE, 256, 0b100), Vec::<u32>::new());
        assert_eq!(
            rows(&c, DEVIATION_BASE, 256, 0b100),
            (9..=255).collect::<Vec<_>>()
        );
        assert_eq!(
            c.masks[(ANY_BASE + any::DEVIATION) as usize].words[0],
            0b100
        );
    }

    #[test]
    fn tiny_rows_hold_lengths_below_the_threshold() {
        let c = compiled(vec![
            rule(1, Match::Fragment(FragmentMatch::TinyFirstBelow(64))),
            rule(2, Match::Fragment(FragmentMatch::TinyFirstBelow(256))),
        ]);
        assert_eq!(rows(&c, TINY_BASE, 257, 0b01), (0..64).collect::<Vec<_>>());
        assert_eq!(rows(&c, TINY_BASE, 257, 0b10), (0..256).collect::<Vec<_>>());
        assert_eq!(c.masks[(TINY_BASE + 256) as usize].words[0], 0);
    }

    #[test]
    fn event_rows_and_rule_info() {
        let mut drop_rule = rule(
            3,
            Match::SynFlood(SynFlood {
                track: SynTrack::BySrc,
                threshold: 200,
                window_ms: 1000,
            }),
        );
        drop_rule.action = Action::Drop;
        let mut own_block = rule(4, Match::Header(HeaderCheck::Land));
        own_block.action = Action::Drop;
        own_block.block_seconds = Some(0);
        let c = compiled(vec![
            rule(1, Match::Fragment(FragmentMatch::OffsetOne)),
            rule(2, Match::Header(HeaderCheck::MartianSrc)),
            drop_rule,
            own_block,
            rule(5, Match::Fragment(FragmentMatch::Atomic)),
        ]);
        let ev = |e: u8| c.masks[(EVENT_BASE + u32::from(e)) as usize].words[0];
        assert_eq!(ev(event::FRAG_OFFSET_ONE), 0b00001);
        assert_eq!(ev(event::MARTIAN_SRC), 0b00010);
        assert_eq!(
            ev(event::SYN_NO_ACK),
            0,
            "syn_flood is a flood of class syn"
        );
        let flood_row = |classes: u32| c.masks[(FLOOD_SET_BASE + classes) as usize].words[0];
        let syn = flood_class::bit(flood_class::SYN);
        let any = flood_class::bit(flood_class::ANY);
        assert_eq!(flood_row(syn | any), 0b00100);
        assert_eq!(flood_row(any), 0);
        assert_eq!(ev(event::LAND), 0b01000);
        assert_eq!(ev(event::FRAG_ATOMIC), 0b10000);
        assert_eq!(ev(event::FIRST_FRAGMENT), 0);
        assert_eq!(c.masks[(ANY_BASE + any::DROP) as usize].words[0], 0b01100);
        assert_eq!(
            c.masks[(ANY_BASE + any::ENABLED) as usize].words[0],
            0b11111
        );

        assert_eq!(
            c.rules[2],
            RuleInfo {
                sig_id: 3,
                flood_threshold: 200,
                flood_window_ns: 1_000_000_000,
                flood_bytes: 0,
                block_ns: 300_000_000_000,
                kind: kind::SYN_FLOOD,
                action: action::DROP,
                flood_track: flood_track::BY_SRC,
                scan_hosts: 0,
                adaptive_factor: 0,
                adaptive_windows: 0,
            }
        );
        assert_eq!(c.rules[3].block_ns, 0);
        assert_eq!(c.rules[0].block_ns, 0);
        assert_eq!(c.rules[0].kind, kind::FRAGMENT);
        assert_eq!(c.meta[1].category, "header");
        assert_eq!(c.meta[2].origin, "t.yaml:3");
        assert!(c.meta[2].drop);
    }

    #[test]
    fn header_checks_map_to_their_events() {
        let expected = [
            (HeaderCheck::Land, event::LAND),
            (HeaderCheck::BadIhl, event::BAD_IHL),
            (HeaderCheck::BadTotalLength, event::BAD_TOTAL_LENGTH),
            (HeaderCheck::BadTcpOffset, event::BAD_TCP_OFFSET),
            (HeaderCheck::ZeroPort, event::ZERO_PORT),
            (HeaderCheck::MartianSrc, event::MARTIAN_SRC),
            (HeaderCheck::IpReservedBit, event::IP_RESERVED_BIT),
            (HeaderCheck::DfWithFragment, event::DF_WITH_FRAGMENT),
            (HeaderCheck::Ipv6RoutingType0, event::IPV6_ROUTING_TYPE0),
            (
                HeaderCheck::Ipv6DuplicateExtHeader,
                event::IPV6_DUPLICATE_EXT_HEADER,
            ),
            (
                HeaderCheck::Ipv6HopByHopNotFirst,
                event::IPV6_HOP_BY_HOP_NOT_FIRST,
            ),
            (HeaderCheck::Ipv4SourceRoute, event::IPV4_SOURCE_ROUTE),
            (
                HeaderCheck::Ipv4OptionMalformed,
                event::IPV4_OPTION_MALFORMED,
            ),
            (HeaderCheck::TcpOptionMalformed, event::TCP_OPTION_MALFORMED),
        ];
        for (check, ev) in expected {
            let c = compiled(vec![rule(1, Match::Header(check))]);
            assert_eq!(
                rows(&c, EVENT_BASE, event::COUNT, 1),
                vec![u32::from(ev)],
                "{check:?}"
            );
        }
    }

    #[test]
    fn disabled_rules_get_no_slot_and_scopes_fill_their_maps() {
        let text = "\
rules:
  - {id: 1, name: a, severity: low, enabled: false, match: {ttl: {below: 2}}}
  - {id: 2, name: b, severity: low, scope: {protocol: udp, dst_ports: [53, 123], vlan: [7]}, match: {ttl: {below: 2}}}
  - {id: 3, name: c, severity: low, scope: {protocol: tcp, dst_ports: [53]}, match: {ttl: {below: 2}}}
  - {id: 4, name: d, severity: low, match: {ttl: {below: 2}}}
";
        let c = compile(&load_str("t.yaml", text).unwrap(), 300);
        assert_eq!(
            c.rules.iter().map(|r| r.sig_id).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        let words = |map: &BTreeMap<u16, RuleMask>| -> Vec<(u16, u64)> {
            map.iter().map(|(k, m)| (*k, m.words[0])).collect()
        };
        assert_eq!(words(&c.ports), vec![(53, 0b011), (123, 0b001)]);
        assert_eq!(words(&c.vlans), vec![(7, 0b001)]);
        let m = |i: u32| c.masks[i as usize].words[0];
        assert_eq!(m(ANY_BASE + any::PORT), 0b100);
        assert_eq!(m(ANY_BASE + any::VLAN), 0b110);
        assert_eq!(m(ANY_BASE + any::SRC), 0b111);
        assert_eq!(m(PROTO_BASE + proto_class::UDP), 0b101);
        assert_eq!(m(PROTO_BASE + proto_class::TCP), 0b110);
        assert_eq!(m(PROTO_BASE + proto_class::OTHER), 0b100);
        assert_eq!(m(PROTO_BASE + proto_class::ICMPV6), 0b100);
    }

    #[test]
    fn nested_prefixes_hold_every_containing_rule() {
        let text = "\
rules:
  - {id: 1, name: a, severity: low, scope: {src: [10.0.0.0/8]}, match: {ttl: {below: 2}}}
  - {id: 2, name: b, severity: low, scope: {src: [10.1.0.0/16, \"2001:db8::/32\"]}, match: {ttl: {below: 2}}}
  - {id: 3, name: c, severity: low, scope: {src: [10.1.2.3, 10.0.0.0/8]}, match: {ttl: {below: 2}}}
  - {id: 4, name: d, severity: low, scope: {src: [0.0.0.0/0], dst: [\"2001:db8:1::/48\"]}, match: {ttl: {below: 2}}}
  - {id: 5, name: e, severity: low, scope: {src: [\"2001:db8:1::5/48\"]}, match: {ttl: {below: 2}}}
";
        let c = compile(&load_str("t.yaml", text).unwrap(), 300);
        let entry = |net: &str| {
            let prefix = addr_prefix(&net.parse().unwrap());
            c.src_prefixes
                .iter()
                .find(|(p, _)| *p == prefix)
                .map(|(_, m)| m.words[0])
        };
        assert_eq!(entry("0.0.0.0/0"), Some(0b01000));
        assert_eq!(entry("10.0.0.0/8"), Some(0b01101));
        assert_eq!(entry("10.1.0.0/16"), Some(0b01111));
        assert_eq!(entry("10.1.2.3/32"), Some(0b01111));
        assert_eq!(entry("2001:db8::/32"), Some(0b00010));
        assert_eq!(entry("2001:db8:1::/48"), Some(0b10010));
        assert_eq!(c.src_prefixes.len(), 6);

        let tables = MemoryTables {
            rules: &c,
            drop_mode: false,
        };
        assert_eq!(w0(tables.src_scope(&key("10.1.2.3"))), 0b01111);
        assert_eq!(w0(tables.src_scope(&key("10.1.9.9"))), 0b01111);
        assert_eq!(w0(tables.src_scope(&key("10.2.0.1"))), 0b01101);
        assert_eq!(w0(tables.src_scope(&key("192.0.2.1"))), 0b01000);
        assert_eq!(w0(tables.src_scope(&key("2001:db8:1::77"))), 0b10010);
        assert_eq!(w0(tables.src_scope(&key("2001:db8:2::1"))), 0b00010);
        assert_eq!(w0(tables.src_scope(&key("::1"))), 0);
        assert_eq!(w0(tables.dst_scope(&key("2001:db8:1::1"))), 0b01000);
        assert_eq!(w0(tables.dst_scope(&key("2001:db8:2::1"))), 0);
    }

    #[test]
    fn addr_prefix_layout() {
        let p = addr_prefix(&"192.0.2.77/24".parse().unwrap());
        assert_eq!(p.prefix_len, 56);
        assert_eq!(p.key.version, 4);
        assert_eq!(
            p.key.addr,
            [192, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let p = addr_prefix(&"2001:db8::1/128".parse().unwrap());
        assert_eq!(p.prefix_len, 160);
        assert_eq!(p.key.version, 6);
        assert_eq!(p.key.addr[..4], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(p.key.addr[15], 1);
    }

    #[test]
    fn too_many_rules_built_in_code_are_refused() {
        let rules = (1..=MAX_RULES + 1)
            .map(|id| rule(id, Match::Ttl(TtlMatch::Below(2))))
            .collect();
        let set = RuleSet { rules };
        assert_eq!(
            try_compile(&set, 300),
            Err(CompileError::TooManyRules { count: 1025 })
        );
        let compiled = compile(&set, 300);
        assert_eq!(compiled.rules.len(), 1024);
        let enabled = &compiled.masks[(ANY_BASE + any::ENABLED) as usize];
        assert_eq!(enabled.words, [u64::MAX; 16]);
        assert_eq!(enabled.summary, 0xffff);
        assert!(
            summary(&set, &compiled).starts_with("1025 rules: 1024 enabled (1024 of 1024 slots)")
        );
    }

    #[test]
    fn each_protocol_row_names_only_the_tables_its_rules_use() {
        let mut udp = rule(1, Match::Ttl(TtlMatch::Below(2)));
        udp.scope.protocol = Protocol::Udp;
        udp.scope.src_ports = vec![53];
        let mut tcp_rule = rule(2, Match::Ttl(TtlMatch::Below(2)));
        tcp_rule.scope.protocol = Protocol::Tcp;
        tcp_rule.scope.dst_ports = vec![22];
        let mut any_rule = rule(3, Match::Ttl(TtlMatch::Below(2)));
        any_rule.scope.protocol = Protocol::Any;
        any_rule.scope.vlan = vec![7];
        let c = compile(
            &RuleSet {
                rules: vec![udp, tcp_rule, any_rule],
            },
            300,
        );
        let enabled = c.masks[(ANY_BASE + any::ENABLED) as usize].uses;
        assert_eq!(enabled, uses::SRC_PORT | uses::PORT | uses::VLAN);
        let row = |class: u32| c.masks[(PROTO_BASE + class) as usize].uses;
        // A TCP packet never looks up source ports, a UDP one never
        // destination ports; a rule of any protocol counts for each.
        assert_eq!(row(proto_class::UDP), uses::SRC_PORT | uses::VLAN);
        assert_eq!(row(proto_class::TCP), uses::PORT | uses::VLAN);
        assert_eq!(row(proto_class::ICMP), uses::VLAN);
        assert_eq!(row(proto_class::OTHER), uses::VLAN);
    }

    #[test]
    fn slots_beyond_64_go_to_later_words_with_their_summary_bits() {
        let mut rules: Vec<Rule> = (1..=130)
            .map(|id| rule(id, Match::Ttl(TtlMatch::Below(2))))
            .collect();
        // Slot 129 (word 2): a NULL scan scoped to port 22.
        rules[129] = rule(
            130,
            Match::TcpFlags {
                set: 0,
                clear: tcp::SYN | tcp::ACK,
            },
        );
        rules[129].scope.dst_ports = vec![22];
        let c = compile(&RuleSet { rules }, 300);
        let enabled = &c.masks[(ANY_BASE + any::ENABLED) as usize];
        assert_eq!(enabled.summary, 0b111);
        assert_eq!(enabled.words[..3], [u64::MAX, u64::MAX, 0b11]);
        assert_eq!(enabled.uses, uses::PORT, "only dst_ports is used");
        let ttl1 = &c.masks[(TTL_BASE + 1) as usize];
        assert_eq!(ttl1.summary, 0b111);
        assert_eq!(ttl1.words[2], 0b01);
        let null = &c.masks[FLAGS_BASE as usize];
        assert_eq!(null.summary, 0b100);
        assert!(null.contains(129) && !null.contains(128));
        assert_eq!(c.ports[&22].summary, 0b100);
        assert_eq!(c.ports[&22].slots().collect::<Vec<_>>(), vec![129]);
        let any_port = &c.masks[(ANY_BASE + any::PORT) as usize];
        assert!(!any_port.contains(129) && any_port.contains(128));
        // An event-set row is the union of its events' rows.
        let land = &c.masks[(EVENT_BASE + u32::from(event::LAND)) as usize];
        assert!(land.is_empty());
        let set = EVENT_SET_BASE + (1 << event::LAND) + (1 << event::ZERO_PORT);
        assert!(c.masks[set as usize].is_empty());
    }

    #[test]
    fn event_set_rows_are_unions_of_event_rows() {
        let c = compiled(vec![
            rule(1, Match::Header(HeaderCheck::Land)),
            rule(2, Match::Header(HeaderCheck::ZeroPort)),
            rule(3, Match::Fragment(FragmentMatch::OffsetOne)),
        ]);
        let row = |set: u32| c.masks[(EVENT_SET_BASE + set) as usize].words[0];
        assert_eq!(row(1 << event::LAND), 0b001);
        assert_eq!(row(1 << event::ZERO_PORT), 0b010);
        assert_eq!(row((1 << event::LAND) | (1 << event::ZERO_PORT)), 0b011);
        assert_eq!(
            row((1 << event::LAND) | (1 << event::FRAG_OFFSET_ONE) | (1 << event::BAD_IHL)),
            0b101
        );
        assert_eq!(row(1 << event::BAD_IHL), 0);
        assert_eq!(c.masks[(ANY_BASE + any::ENABLED) as usize].uses, 0);
    }

    #[test]
    fn option_event_set_rows_are_unions_of_event_rows() {
        let c = compiled(vec![
            rule(1, Match::Header(HeaderCheck::Ipv6RoutingType0)),
            rule(2, Match::Header(HeaderCheck::TcpOptionMalformed)),
            rule(3, Match::Header(HeaderCheck::Land)),
        ]);
        let row = |events: u32| {
            c.masks[(OPTION_EVENT_SET_BASE + (events >> OPTION_EVENT_FIRST)) as usize].words[0]
        };
        let rh0 = event::bit(event::IPV6_ROUTING_TYPE0);
        let tcp_opt = event::bit(event::TCP_OPTION_MALFORMED);
        let src_route = event::bit(event::IPV4_SOURCE_ROUTE);
        assert_eq!(row(rh0), 0b001);
        assert_eq!(row(tcp_opt), 0b010);
        assert_eq!(row(rh0 | tcp_opt), 0b011);
        assert_eq!(row(src_route), 0);
        assert_eq!(row(src_route | tcp_opt), 0b010);
        // The land rule lives in the first region only.
        assert_eq!(c.masks[(EVENT_SET_BASE + 1) as usize].words[0], 0b100);
        assert_eq!(
            OPTION_EVENT_SETS,
            1 << (event::COUNT - u32::from(OPTION_EVENT_FIRST))
        );
    }

    #[test]
    fn scan_bits_keep_the_contract_bounds() {
        for n in 1..=sensor_common::sketch::MAX_SCAN_THRESHOLD {
            let b = scan_bits_for(n);
            // A set bit stands for at least one distinct value: an alert
            // needs at least b distinct values, above 0.8 n (0.88 n at least).
            assert!(f64::from(b) >= 0.88 * f64::from(n), "n {n}: b {b}");
            assert!(b <= n, "n {n}: b {b}");
        }
        assert_eq!(scan_bits_for(1), 1);
        assert_eq!(scan_bits_for(100), 95);
        assert_eq!(scan_bits_for(256), 227);
    }

    #[test]
    fn summary_lists_counts_and_one_line_per_rule() {
        let text = "\
rules:
  - id: 100001
    name: TCP SYN and FIN set
    severity: high
    scope: {protocol: tcp, dst_ports: [22, 80]}
    match: {tcp_flags: {set: [SYN, FIN]}}
  - {id: 100002, name: SYN flood, severity: medium, action: drop, match: {syn_flood: {track: by_dst, threshold: 200, window_ms: 1000}}}
  - {id: 100003, name: Old, severity: low, enabled: false, match: {header: {check: land}}}
";
        let set = load_str("t.yaml", text).unwrap();
        let c = compile(&set, 300);
        let s = summary(&set, &c);
        assert!(
            s.contains("3 rules: 2 enabled (2 of 1024 slots), 1 disabled"),
            "{s}"
        );
        assert!(
            s.contains(
                "by kind: tcp_flags 1, ttl 0, fragment 0, syn_flood 1, flood 0, scan 0, header 0"
            ),
            "{s}"
        );
        assert!(s.contains("by action: alert 1, drop 1"), "{s}");
        assert!(
            s.contains("drop rules (enforced only with --mode drop): 100002 (300 s block)"),
            "{s}"
        );
        assert!(
            s.contains("100001  high     tcp_flags  TCP SYN and FIN set — FIN,SYN set; scope: tcp, dst ports 22,80\n"),
            "{s}"
        );
        assert!(
            s.contains("100002  medium   syn_flood  SYN flood — 200+ SYNs without ACK to one destination within 1000 ms; scope: any; drop, block 300 s\n"),
            "{s}"
        );
        assert!(s.contains("100003  low      header     Old"), "{s}");
        assert!(
            s.contains("disabled:\n100003  low      header     Old — "),
            "{s}"
        );
        assert!(s.contains("(t.yaml:8, action alert)"), "{s}");
    }
}
