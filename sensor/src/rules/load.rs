//! Rule files → a validated [`RuleSet`]. Every problem is reported as
//! `file:line:column: what is wrong`, at the key or value at fault.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use sensor_common::sketch::MAX_SCAN_THRESHOLD;
use sensor_common::tables::{
    ADDR_SCOPE_ENTRIES, MAX_RULES, MAX_TINY_THRESHOLD, PORT_SCOPE_ENTRIES,
};

use super::model::{
    Action, Adaptive, Flood, FragmentMatch, HeaderCheck, Match, PacketClass, Protocol, Rule,
    RuleSet, Scan, Scope, SynFlood, SynTrack, TCP_FLAG_NAMES, TtlMatch,
};
use super::yaml::{self, Fields, Located, Node, Pos, SourceError, Value};
use crate::settings::Severity;

/// Why a rule path could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no *.yaml or *.yml files in this directory")]
    NoRuleFiles { path: String },
    /// A problem inside a file, with its line and column.
    #[error(transparent)]
    Invalid(#[from] SourceError),
}

impl RulesError {
    /// The file position of the problem, when it lies inside a file.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            RulesError::Invalid(err) => Some(err),
            _ => None,
        }
    }
}

/// Longest `syn_flood` window: one hour.
pub const MAX_SYN_WINDOW_MS: u32 = 3_600_000;

const TOP_KEYS: &[&str] = &["rules"];
const RULE_KEYS: &[&str] = &[
    "id",
    "gid",
    "rev",
    "name",
    "severity",
    "action",
    "block_seconds",
    "enabled",
    "scope",
    "match",
];
const SCOPE_KEYS: &[&str] = &["src", "dst", "protocol", "dst_ports", "src_ports", "vlan"];
/// The match kinds, in the order `sensor rules check` lists them.
pub(super) const MATCH_KINDS: &[&str] = &[
    "tcp_flags",
    "ttl",
    "fragment",
    "syn_flood",
    "flood",
    "scan",
    "header",
];
const SCAN_KEYS: &[&str] = &["track", "distinct", "threshold", "window_ms"];
const TCP_FLAGS_KEYS: &[&str] = &["set", "clear"];
const TTL_KEYS: &[&str] = &["below", "above", "deviation"];
const FRAGMENT_KEYS: &[&str] = &["tiny_first_below", "offset_one", "oversize", "atomic"];
const SYN_FLOOD_KEYS: &[&str] = &["track", "threshold", "window_ms"];
const FLOOD_KEYS: &[&str] = &[
    "packets",
    "track",
    "threshold",
    "bytes",
    "window_ms",
    "adaptive",
];
/// Largest `flood.bytes`: 2^63.
pub const MAX_FLOOD_BYTES: u64 = 1 << 63;
const HEADER_KEYS: &[&str] = &["check"];

const SEVERITIES: &[(&str, Severity)] = &[
    ("critical", Severity::Critical),
    ("high", Severity::High),
    ("medium", Severity::Medium),
    ("low", Severity::Low),
];
const ACTIONS: &[(&str, Action)] = &[("alert", Action::Alert), ("drop", Action::Drop)];
const PROTOCOLS: &[(&str, Protocol)] = &[
    ("tcp", Protocol::Tcp),
    ("udp", Protocol::Udp),
    ("icmp", Protocol::Icmp),
    ("icmpv6", Protocol::Icmpv6),
    ("any", Protocol::Any),
];
const TRACKS: &[(&str, SynTrack)] = &[("by_dst", SynTrack::ByDst), ("by_src", SynTrack::BySrc)];

/// Loads a rule file, or every `*.yaml` / `*.yml` file of a directory in
/// name order (not recursive; names starting with `.` are skipped).
pub fn load_path(path: &Path) -> Result<RuleSet, RulesError> {
    let read_error = |source| RulesError::Read {
        path: path.display().to_string(),
        source,
    };
    let files = if fs::metadata(path).map_err(read_error)?.is_dir() {
        rule_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut loader = Loader::default();
    for file in &files {
        let name = file.display().to_string();
        let bytes = fs::read(file).map_err(|source| RulesError::Read {
            path: name.clone(),
            source,
        })?;
        let text = utf8(&bytes).map_err(|err| err.in_file(&name))?;
        loader.add_file(&name, text)?;
    }
    Ok(loader.finish())
}

/// Loads rules from YAML text; `file` names it in messages and origins.
pub fn load_str(file: &str, text: &str) -> Result<RuleSet, RulesError> {
    let mut loader = Loader::default();
    loader.add_file(file, text)?;
    Ok(loader.finish())
}

fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, RulesError> {
    let read_error = |source| RulesError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_rule_file =
            !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"));
        // `metadata` follows symlinks, so a link to a rule file counts.
        if is_rule_file && fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Err(RulesError::NoRuleFiles {
            path: dir.display().to_string(),
        });
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn utf8(bytes: &[u8]) -> Result<&str, Located> {
    std::str::from_utf8(bytes).map_err(|err| {
        let good = &bytes[..err.valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
        Located::new(Pos { line, column }, "the file is not valid UTF-8 text")
    })
}

/// Rules gathered so far, with what is checked across files.
#[derive(Default)]
struct Loader {
    rules: Vec<Rule>,
    /// Each id's origin, for duplicate messages.
    origins: HashMap<u32, String>,
    enabled: usize,
    src_prefixes: HashSet<IpNet>,
    dst_prefixes: HashSet<IpNet>,
    ports: HashSet<u16>,
    src_ports: HashSet<u16>,
}

/// A rule plus the positions needed by checks across rules.
struct ParsedRule {
    rule: Rule,
    id_at: Pos,
    scope_at: Pos,
}

impl Loader {
    fn add_file(&mut self, file: &str, text: &str) -> Result<(), SourceError> {
        self.add_document(file, text)
            .map_err(|err| err.in_file(file))
    }

    fn add_document(&mut self, file: &str, text: &str) -> Result<(), Located> {
        let Some(root) = yaml::parse(text)? else {
            return Err(Located::new(
                Pos::START,
                "the file is empty: expected a top-level `rules:` list",
            ));
        };
        let top = root.as_map("the top level", TOP_KEYS)?;
        let Some(rules) = top.field("rules") else {
            return Err(root.error("missing the top-level `rules:` list"));
        };
        if rules.value.value == Value::Null {
            return Err(Located::new(
                rules.key_at,
                "`rules:` is empty: list rules under it (or write `rules: []`)",
            ));
        }
        for node in rules.value.as_list("rules")? {
            self.add_rule(file, node)?;
        }
        Ok(())
    }

    fn add_rule(&mut self, file: &str, node: &Node) -> Result<(), Located> {
        let ParsedRule {
            rule,
            id_at,
            scope_at,
        } = parse_rule(file, node)?;
        if let Some(first) = self.origins.get(&rule.id) {
            return Err(Located::new(
                id_at,
                format!("duplicate rule id {} (first defined at {first})", rule.id),
            ));
        }
        if rule.enabled {
            self.enabled += 1;
            if self.enabled > MAX_RULES as usize {
                return Err(node.error(format!(
                    "too many enabled rules: this is enabled rule {}, at most {MAX_RULES} fit; \
                     set `enabled: false` on rules you do not need",
                    self.enabled
                )));
            }
            self.check_capacity(&rule.scope, scope_at)?;
        }
        self.origins.insert(rule.id, rule.origin.clone());
        self.rules.push(rule);
        Ok(())
    }

    /// The kernel's scope maps have fixed sizes; refuse sets that overflow them.
    fn check_capacity(&mut self, scope: &Scope, scope_at: Pos) -> Result<(), Located> {
        self.src_prefixes.extend(scope.src.iter().copied());
        self.dst_prefixes.extend(scope.dst.iter().copied());
        self.ports.extend(scope.dst_ports.iter().copied());
        self.src_ports.extend(scope.src_ports.iter().copied());
        let limits = [
            ("src prefixes", self.src_prefixes.len(), ADDR_SCOPE_ENTRIES),
            ("dst prefixes", self.dst_prefixes.len(), ADDR_SCOPE_ENTRIES),
            (
                "dst_ports and src_ports",
                self.ports.len() + self.src_ports.len(),
                PORT_SCOPE_ENTRIES,
            ),
        ];
        for (what, count, limit) in limits {
            if count > limit as usize {
                return Err(Located::new(
                    scope_at,
                    format!(
                        "too many distinct {what} across enabled rules ({count}, at most {limit})"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn finish(self) -> RuleSet {
        RuleSet { rules: self.rules }
    }
}

fn parse_rule(file: &str, node: &Node) -> Result<ParsedRule, Located> {
    let fields = node.as_map("a rule", RULE_KEYS)?;
    let id_node = fields.required("id", "the rule")?;
    let id = id_node.as_int("id", 1..=u32::MAX.into())? as u32;
    let what = format!("rule {id}");

    let gid = optional_u32(&fields, "gid")?.unwrap_or(1);
    let rev = optional_u32(&fields, "rev")?.unwrap_or(1);
    let name = parse_name(fields.required("name", &what)?)?;
    let severity = fields
        .required("severity", &what)?
        .as_choice("severity", "severity", SEVERITIES)?;
    let action = match fields.get("action") {
        Some(n) => n.as_choice("action", "action", ACTIONS)?,
        None => Action::Alert,
    };
    let block_seconds = match fields.field("block_seconds") {
        None => None,
        Some(field) if action != Action::Drop => {
            return Err(Located::new(
                field.key_at,
                "`block_seconds` applies only to rules with `action: drop`",
            ));
        }
        Some(field) => Some(field.value.as_int("block_seconds", 0..=u32::MAX.into())? as u32),
    };
    let enabled = match fields.get("enabled") {
        Some(n) => n.as_bool("enabled")?,
        None => true,
    };
    let (scope, spots) = match fields.get("scope") {
        Some(n) => parse_scope(n)?,
        None => (Scope::default(), ScopeSpots::default()),
    };
    let matcher = parse_match(fields.required("match", &what)?)?;
    check_consistency(&scope, &spots, &matcher)?;

    Ok(ParsedRule {
        rule: Rule {
            id,
            gid,
            rev,
            name,
            severity,
            action,
            block_seconds,
            enabled,
            scope,
            matcher,
            origin: format!("{file}:{}", node.at.line),
        },
        id_at: id_node.at,
        scope_at: spots.at.unwrap_or(node.at),
    })
}

/// `gid` / `rev`: optional whole numbers from 1 (Suricata's ranges).
fn optional_u32(fields: &Fields, key: &'static str) -> Result<Option<u32>, Located> {
    fields
        .get(key)
        .map(|node| Ok(node.as_int(key, 1..=u32::MAX.into())? as u32))
        .transpose()
}

fn parse_name(node: &Node) -> Result<String, Located> {
    let name = node.as_str("name")?.trim();
    if name.is_empty() {
        return Err(node.error("`name` must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(node.error("`name` must be one line of text without control characters"));
    }
    Ok(name.to_owned())
}

/// Where scope conditions were written, for consistency errors.
#[derive(Default)]
struct ScopeSpots {
    at: Option<Pos>,
    protocol: Option<Pos>,
    dst_ports: Option<Pos>,
    src_ports: Option<Pos>,
}

fn parse_scope(node: &Node) -> Result<(Scope, ScopeSpots), Located> {
    let fields = node.as_map("`scope`", SCOPE_KEYS)?;
    let mut scope = Scope::default();
    let mut spots = ScopeSpots {
        at: Some(node.at),
        ..ScopeSpots::default()
    };
    if let Some(n) = fields.get("src") {
        scope.src = parse_prefixes(n, "src")?;
    }
    if let Some(n) = fields.get("dst") {
        scope.dst = parse_prefixes(n, "dst")?;
    }
    if let Some(n) = fields.get("protocol") {
        scope.protocol = n.as_choice("protocol", "protocol", PROTOCOLS)?;
        spots.protocol = Some(n.at);
    }
    if let Some(n) = fields.get("dst_ports") {
        scope.dst_ports = parse_numbers(n, "dst_ports", 65_535)?;
        spots.dst_ports = Some(n.at);
    }
    if let Some(n) = fields.get("src_ports") {
        scope.src_ports = parse_numbers(n, "src_ports", 65_535)?;
        spots.src_ports = Some(n.at);
    }
    if let Some(n) = fields.get("vlan") {
        scope.vlan = parse_numbers(n, "vlan", 4_095)?;
    }
    Ok((scope, spots))
}

fn non_empty_list<'a>(node: &'a Node, field: &str) -> Result<&'a [Node], Located> {
    let items = node.as_list(field)?;
    if items.is_empty() {
        return Err(node.error(format!(
            "`{field}` is an empty list, which matches nothing; leave `{field}` out to match any"
        )));
    }
    Ok(items)
}

fn parse_prefixes(node: &Node, field: &str) -> Result<Vec<IpNet>, Located> {
    let mut prefixes = Vec::new();
    for item in non_empty_list(node, field)? {
        let text = item.as_str(field)?;
        let prefix = parse_prefix(text).ok_or_else(|| {
            item.error(format!(
                "invalid address or CIDR {} in `{field}` (expected e.g. 192.0.2.0/24, \
                 2001:db8::/32 or 192.0.2.1)",
                yaml::quote(text)
            ))
        })?;
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    Ok(prefixes)
}

/// A CIDR prefix, or a bare address as a /32 or /128; host bits are cleared.
pub(crate) fn parse_prefix(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(text.parse::<IpAddr>().ok()?),
    };
    Some(net.trunc())
}

fn parse_numbers(node: &Node, field: &str, max: u16) -> Result<Vec<u16>, Located> {
    let mut numbers = Vec::new();
    for item in non_empty_list(node, field)? {
        numbers.push(item.as_int(field, 0..=max.into())? as u16);
    }
    numbers.sort_unstable();
    numbers.dedup();
    Ok(numbers)
}

fn parse_match(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`match`", MATCH_KINDS)?;
    let kind = fields.exactly_one("`match`", MATCH_KINDS)?;
    let value = kind.value;
    match kind.key {
        "tcp_flags" => parse_tcp_flags(value),
        "ttl" => parse_ttl(value),
        "fragment" => parse_fragment(value),
        "syn_flood" => parse_syn_flood(value),
        "flood" => parse_flood(value),
        "scan" => parse_scan(value),
        _ => parse_header(value),
    }
}

fn parse_tcp_flags(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`tcp_flags`", TCP_FLAGS_KEYS)?;
    let set = match fields.get("set") {
        Some(n) => parse_flag_list(n, "set")?,
        None => Vec::new(),
    };
    let clear = match fields.get("clear") {
        Some(n) => parse_flag_list(n, "clear")?,
        None => Vec::new(),
    };
    let set_bits = set.iter().fold(0, |bits, (bit, _)| bits | bit);
    let clear_bits = clear.iter().fold(0, |bits, (bit, _)| bits | bit);
    if set_bits | clear_bits == 0 {
        return Err(node.error("`tcp_flags` names no flag: list some under `set`, `clear` or both"));
    }
    if let Some((bit, at)) = clear.iter().find(|(bit, _)| set_bits & bit != 0) {
        return Err(Located::new(
            *at,
            format!(
                "TCP flag {} is in both `set` and `clear`, so the rule could never match",
                super::model::flag_names(*bit)
            ),
        ));
    }
    Ok(Match::TcpFlags {
        set: set_bits,
        clear: clear_bits,
    })
}

/// Flag names (any letter case) with their bits and positions.
fn parse_flag_list(node: &Node, field: &str) -> Result<Vec<(u16, Pos)>, Located> {
    let mut flags = Vec::new();
    for item in node.as_list(field)? {
        let name = item.as_str(field)?;
        let upper = name.to_ascii_uppercase();
        let Some((_, bit)) = TCP_FLAG_NAMES.iter().find(|(n, _)| *n == upper) else {
            let names: Vec<_> = TCP_FLAG_NAMES.iter().map(|(n, _)| *n).collect();
            return Err(item.error(format!(
                "unknown TCP flag {} (expected one of {})",
                yaml::quote(name),
                names.join(", ")
            )));
        };
        flags.push((*bit, item.at));
    }
    Ok(flags)
}

fn parse_ttl(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`ttl`", TTL_KEYS)?;
    let field = fields.exactly_one("`ttl`", TTL_KEYS)?;
    let ttl = match field.key {
        "below" => TtlMatch::Below(field.value.as_int("below", 1..=255)? as u8),
        "above" => TtlMatch::Above(field.value.as_int("above", 0..=254)? as u8),
        _ => TtlMatch::Deviation(field.value.as_int("deviation", 0..=254)? as u8),
    };
    Ok(Match::Ttl(ttl))
}

fn parse_fragment(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`fragment`", FRAGMENT_KEYS)?;
    let field = fields.exactly_one("`fragment`", FRAGMENT_KEYS)?;
    let fragment = match field.key {
        "tiny_first_below" => {
            let n = field
                .value
                .as_int("tiny_first_below", 1..=MAX_TINY_THRESHOLD.into())?;
            FragmentMatch::TinyFirstBelow(n as u16)
        }
        key => {
            if !field.value.as_bool(key)? {
                return Err(field.value.error(format!(
                    "`{key}: false` would match nothing; write `{key}: true`, and use \
                     `enabled: false` to turn a rule off"
                )));
            }
            match key {
                "offset_one" => FragmentMatch::OffsetOne,
                "oversize" => FragmentMatch::Oversize,
                _ => FragmentMatch::Atomic,
            }
        }
    };
    Ok(Match::Fragment(fragment))
}

fn parse_syn_flood(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`syn_flood`", SYN_FLOOD_KEYS)?;
    let track =
        fields
            .required("track", "`syn_flood`")?
            .as_choice("track", "syn_flood track", TRACKS)?;
    let threshold = fields
        .required("threshold", "`syn_flood`")?
        .as_int("threshold", 1..=u32::MAX.into())? as u32;
    let window_ms = fields
        .required("window_ms", "`syn_flood`")?
        .as_int("window_ms", 1..=MAX_SYN_WINDOW_MS.into())? as u32;
    Ok(Match::SynFlood(SynFlood {
        track,
        threshold,
        window_ms,
    }))
}

fn parse_flood(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`flood`", FLOOD_KEYS)?;
    let adaptive = fields.get("adaptive").map(parse_adaptive).transpose()?;
    let classes: Vec<_> = PacketClass::ALL.iter().map(|c| (c.name(), *c)).collect();
    let packets = fields.required("packets", "`flood`")?.as_choice(
        "packets",
        "flood packet class",
        &classes,
    )?;
    let track = fields
        .required("track", "`flood`")?
        .as_choice("track", "flood track", TRACKS)?;
    let threshold = fields
        .get("threshold")
        .map(|n| Ok::<_, Located>(n.as_int("threshold", 1..=u32::MAX.into())? as u32))
        .transpose()?;
    let bytes = fields
        .get("bytes")
        .map(|n| Ok::<_, Located>(n.as_int("bytes", 1..=MAX_FLOOD_BYTES.into())? as u64))
        .transpose()?;
    if adaptive.is_some() {
        if let Some(field) = fields.field("threshold").or(fields.field("bytes")) {
            return Err(Located::new(
                field.key_at,
                "`adaptive` replaces `threshold` and `bytes` (its `min` is the floor): give one or the other",
            ));
        }
    } else if threshold.is_none() && bytes.is_none() {
        return Err(
            node.error("`flood` needs `threshold` (packets), `bytes`, or both, or `adaptive`")
        );
    }
    let window_ms = fields
        .required("window_ms", "`flood`")?
        .as_int("window_ms", 1..=MAX_SYN_WINDOW_MS.into())? as u32;
    Ok(Match::Flood(Flood {
        packets,
        track,
        threshold,
        bytes,
        window_ms,
        adaptive,
    }))
}

/// `adaptive: { factor: F, min: N, learn_windows: K }`: F from 1 to 255
/// with at most two decimals, N from 1, K from 1 to 1,024.
fn parse_adaptive(node: &Node) -> Result<Adaptive, Located> {
    let fields = node.as_map("`adaptive`", &["factor", "min", "learn_windows"])?;
    let factor_node = fields.required("factor", "`adaptive`")?;
    let factor = match factor_node.value {
        yaml::Value::Int(i) => i as f64,
        yaml::Value::Float(x) => x,
        _ => f64::NAN,
    };
    let hundredths = (factor * 100.0).round();
    if !(100.0..=25_500.0).contains(&hundredths) || (factor * 100.0 - hundredths).abs() > 1e-6 {
        return Err(
            factor_node.error("`factor` must be a number from 1 to 255 with at most two decimals")
        );
    }
    let min = fields
        .required("min", "`adaptive`")?
        .as_int("min", 1..=u32::MAX.into())? as u32;
    let learn_windows = fields
        .required("learn_windows", "`adaptive`")?
        .as_int("learn_windows", 1..=1_024)? as u16;
    Ok(Adaptive {
        factor_256: (factor * 256.0).round() as u16,
        min,
        learn_windows,
    })
}

fn parse_scan(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`scan`", SCAN_KEYS)?;
    let track = fields.required("track", "`scan`")?;
    if track.as_choice("track", "scan track", TRACKS)? != SynTrack::BySrc {
        return Err(track.error("`scan` counts per source: `track` must be `by_src`"));
    }
    let hosts = fields.required("distinct", "`scan`")?.as_choice(
        "distinct",
        "scan distinct",
        &[("ports", false), ("hosts", true)],
    )?;
    let threshold = fields
        .required("threshold", "`scan`")?
        .as_int("threshold", 1..=MAX_SCAN_THRESHOLD.into())? as u32;
    let window_ms = fields
        .required("window_ms", "`scan`")?
        .as_int("window_ms", 1..=MAX_SYN_WINDOW_MS.into())? as u32;
    Ok(Match::Scan(Scan {
        hosts,
        threshold,
        window_ms,
    }))
}

fn parse_header(node: &Node) -> Result<Match, Located> {
    let fields = node.as_map("`header`", HEADER_KEYS)?;
    let checks: Vec<_> = HeaderCheck::ALL.iter().map(|c| (c.name(), *c)).collect();
    let check =
        fields
            .required("check", "`header`")?
            .as_choice("check", "header check", &checks)?;
    Ok(Match::Header(check))
}

/// Refuses scope and match combinations that can never match a packet.
fn check_consistency(scope: &Scope, spots: &ScopeSpots, matcher: &Match) -> Result<(), Located> {
    use Protocol::{Icmp, Icmpv6, Tcp, Udp};
    for (field, spot) in [
        ("dst_ports", spots.dst_ports),
        ("src_ports", spots.src_ports),
    ] {
        let Some(at) = spot else {
            continue;
        };
        if matches!(scope.protocol, Icmp | Icmpv6) {
            return Err(Located::new(
                at,
                format!(
                    "`{field}` cannot match with protocol {}: only TCP and UDP have ports",
                    scope.protocol.name()
                ),
            ));
        }
        if matches!(
            matcher,
            Match::Fragment(FragmentMatch::OffsetOne | FragmentMatch::Oversize)
        ) {
            return Err(Located::new(
                at,
                format!(
                    "`{field}` would make this rule match nothing: the fragments it matches \
                     are never first fragments, and only first fragments carry ports"
                ),
            ));
        }
        if let Match::Flood(Flood {
            packets: PacketClass::Icmp,
            ..
        }) = matcher
        {
            return Err(Located::new(
                at,
                format!(
                    "`{field}` would make this rule match nothing: it counts ICMP packets, \
                     which have no ports"
                ),
            ));
        }
    }
    let (protocols, why): (&[Protocol], &str) = match matcher {
        Match::TcpFlags { .. } => (&[Tcp], "tcp_flags rules match only TCP"),
        Match::SynFlood(_) => (&[Tcp], "syn_flood rules count only TCP SYNs"),
        Match::Flood(Flood { packets, .. }) => match packets {
            PacketClass::Syn | PacketClass::Ack | PacketClass::Rst | PacketClass::Fin => {
                (&[Tcp], "this flood class counts only TCP segments")
            }
            PacketClass::Udp => (&[Udp], "flood packets udp counts only UDP"),
            PacketClass::Icmp => (
                &[Icmp, Icmpv6],
                "flood packets icmp counts only ICMP and ICMPv6",
            ),
            PacketClass::Fragment | PacketClass::Any => return Ok(()),
        },
        Match::Fragment(FragmentMatch::OffsetOne) => {
            (&[Tcp], "offset_one matches only TCP fragments")
        }
        Match::Header(HeaderCheck::BadTcpOffset) => (&[Tcp], "bad_tcp_offset is a TCP check"),
        Match::Header(HeaderCheck::ZeroPort) => (&[Tcp, Udp], "zero_port is a TCP and UDP check"),
        Match::Ttl(TtlMatch::Deviation(_)) => (
            &[Tcp],
            "ttl deviation baselines are learned only from TCP segments (ACK set, SYN and RST clear)",
        ),
        _ => return Ok(()),
    };
    if scope.protocol != Protocol::Any && !protocols.contains(&scope.protocol) {
        return Err(Located::new(
            spots.protocol.unwrap_or(Pos::START),
            format!(
                "protocol {} would make this rule match nothing: {why}",
                scope.protocol.name()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::packet::tcp;

    /// Loads `text` as `rules/test.yaml` and returns the error's position and message.
    fn error_of(text: &str) -> (u64, u64, String) {
        match load_str("rules/test.yaml", text) {
            Ok(set) => panic!("expected an error, loaded {set:?}"),
            Err(RulesError::Invalid(err)) => {
                assert_eq!(err.file, "rules/test.yaml");
                (err.line, err.column, err.message)
            }
            Err(other) => panic!("expected a file error, got {other}"),
        }
    }

    fn assert_error(text: &str, line: u64, column: u64, message_part: &str) {
        let (l, c, message) = error_of(text);
        assert_eq!((l, c), (line, column), "position of: {message}");
        assert!(
            message.contains(message_part),
            "message {message:?} lacks {message_part:?}"
        );
    }

    const VALID: &str = "\
# two rules
rules:
  - id: 100001
    name: TCP SYN and FIN set
    rev: 3
    severity: high
    action: drop
    block_seconds: 600
    scope:
      src: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.7]
      dst: [192.0.2.0/24]
      protocol: tcp
      dst_ports: [80, 22, 80]
      vlan: [100]
    match:
      tcp_flags: { set: [SYN, fin], clear: [] }
  - id: 100002
    name: ' tiny first fragment '
    severity: low
    enabled: false
    match:
      fragment:
        tiny_first_below: 64
";

    #[test]
    fn valid_file_loads_to_expected_model() {
        let set = load_str("rules/x.yaml", VALID).unwrap();
        let expected = RuleSet {
            rules: vec![
                Rule {
                    id: 100001,
                    gid: 1,
                    rev: 3,
                    name: "TCP SYN and FIN set".into(),
                    severity: Severity::High,
                    action: Action::Drop,
                    block_seconds: Some(600),
                    enabled: true,
                    scope: Scope {
                        src: vec![
                            "10.0.0.0/8".parse().unwrap(),
                            "2001:db8::/32".parse().unwrap(),
                            "192.0.2.7/32".parse().unwrap(),
                        ],
                        dst: vec!["192.0.2.0/24".parse().unwrap()],
                        protocol: Protocol::Tcp,
                        dst_ports: vec![22, 80],
                        src_ports: vec![],
                        vlan: vec![100],
                    },
                    matcher: Match::TcpFlags {
                        set: tcp::SYN | tcp::FIN,
                        clear: 0,
                    },
                    origin: "rules/x.yaml:3".into(),
                },
                Rule {
                    id: 100002,
                    gid: 1,
                    rev: 1,
                    name: "tiny first fragment".into(),
                    severity: Severity::Low,
                    action: Action::Alert,
                    block_seconds: None,
                    enabled: false,
                    scope: Scope::default(),
                    matcher: Match::Fragment(FragmentMatch::TinyFirstBelow(64)),
                    origin: "rules/x.yaml:17".into(),
                },
            ],
        };
        assert_eq!(set, expected);
        assert_eq!(set.enabled().count(), 1);
    }

    #[test]
    fn host_bits_are_cleared_and_ipv6_hosts_are_128() {
        assert_eq!(
            parse_prefix("10.1.2.3/8"),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(parse_prefix("::1"), Some("::1/128".parse().unwrap()));
        assert_eq!(parse_prefix("10.0.0.0/33"), None);
        assert_eq!(parse_prefix("fe80::1%eth0"), None);
    }

    #[test]
    fn other_kinds_load() {
        let text = "\
rules:
  - {id: 1, name: a, severity: low, match: {ttl: {below: 2}}}
  - {id: 2, name: b, severity: low, match: {ttl: {above: 254}}}
  - {id: 3, name: c, severity: low, match: {ttl: {deviation: 0}}}
  - {id: 4, name: d, severity: low, match: {fragment: {offset_one: true}}}
  - {id: 5, name: e, severity: low, match: {fragment: {oversize: true}}}
  - {id: 6, name: f, severity: low, match: {fragment: {atomic: true}}}
  - {id: 7, name: g, severity: medium, match: {syn_flood: {track: by_src, threshold: 1, window_ms: 3600000}}}
  - {id: 8, name: h, severity: critical, match: {header: {check: df_with_fragment}}}
  - {id: 9, name: i, severity: low, match: {tcp_flags: {clear: [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR]}}}
";
        let set = load_str("t.yaml", text).unwrap();
        let matchers: Vec<_> = set.rules.iter().map(|r| r.matcher).collect();
        assert_eq!(
            matchers,
            vec![
                Match::Ttl(TtlMatch::Below(2)),
                Match::Ttl(TtlMatch::Above(254)),
                Match::Ttl(TtlMatch::Deviation(0)),
                Match::Fragment(FragmentMatch::OffsetOne),
                Match::Fragment(FragmentMatch::Oversize),
                Match::Fragment(FragmentMatch::Atomic),
                Match::SynFlood(SynFlood {
                    track: SynTrack::BySrc,
                    threshold: 1,
                    window_ms: 3_600_000
                }),
                Match::Header(HeaderCheck::DfWithFragment),
                Match::TcpFlags {
                    set: 0,
                    clear: 0xff
                },
            ]
        );
        assert_eq!(set.rules[0].origin, "t.yaml:2");
    }

    #[test]
    fn flood_rules_and_src_ports_load() {
        let text = "\
rules:
  - {id: 1, name: a, severity: low, match: {flood: {packets: ack, track: by_dst, threshold: 5, window_ms: 1000}}}
  - {id: 2, name: b, severity: low, match: {flood: {packets: any, track: by_src, bytes: 9223372036854775808, window_ms: 3600000}}}
  - id: 3
    name: c
    severity: low
    scope: {protocol: udp, src_ports: [123, 53, 53]}
    match: {flood: {packets: udp, track: by_dst, threshold: 10, bytes: 5000, window_ms: 1}}
";
        let set = load_str("t.yaml", text).unwrap();
        assert_eq!(
            set.rules[0].matcher,
            Match::Flood(Flood {
                packets: PacketClass::Ack,
                track: SynTrack::ByDst,
                threshold: Some(5),
                bytes: None,
                window_ms: 1000,
                adaptive: None,
            })
        );
        assert_eq!(
            set.rules[1].matcher,
            Match::Flood(Flood {
                packets: PacketClass::Any,
                track: SynTrack::BySrc,
                threshold: None,
                bytes: Some(1 << 63),
                window_ms: 3_600_000,
                adaptive: None,
            })
        );
        assert_eq!(set.rules[2].scope.src_ports, vec![53, 123]);
        assert_eq!(
            set.rules[2].matcher,
            Match::Flood(Flood {
                packets: PacketClass::Udp,
                track: SynTrack::ByDst,
                threshold: Some(10),
                bytes: Some(5000),
                window_ms: 1,
                adaptive: None,
            })
        );
    }

    #[test]
    fn scan_rules_load_and_bad_ones_name_the_place() {
        let text = "\
rules:
  - {id: 1, name: a, severity: low, match: {scan: {track: by_src, distinct: ports, threshold: 256, window_ms: 1000}}}
  - {id: 2, name: b, severity: low, match: {scan: {track: by_src, distinct: hosts, threshold: 1, window_ms: 1}}}
";
        let set = load_str("t.yaml", text).unwrap();
        assert_eq!(
            set.rules[0].matcher,
            Match::Scan(Scan {
                hosts: false,
                threshold: 256,
                window_ms: 1000
            })
        );
        assert_eq!(
            set.rules[1].matcher,
            Match::Scan(Scan {
                hosts: true,
                threshold: 1,
                window_ms: 1
            })
        );
        let scan = |body: &str| format!("{HEAD}    match: {{scan: {{{body}}}}}\n");
        assert_error(
            &scan("track: by_dst, distinct: ports, threshold: 5, window_ms: 10"),
            5,
            27,
            "`scan` counts per source: `track` must be `by_src`",
        );
        assert_error(
            &scan("track: by_src, distinct: flows, threshold: 5, window_ms: 10"),
            5,
            45,
            "unknown scan distinct \"flows\"",
        );
        assert_error(
            &scan("track: by_src, distinct: ports, threshold: 257, window_ms: 10"),
            5,
            63,
            "`threshold` must be a whole number from 1 to 256",
        );
        assert_error(
            &scan("track: by_src, threshold: 5, window_ms: 10"),
            5,
            19,
            "`scan` is missing `distinct`",
        );
    }

    #[test]
    fn bad_flood_rules_name_the_place() {
        let flood = |body: &str| format!("{HEAD}    match: {{flood: {{{body}}}}}\n");
        assert_error(
            &flood("packets: syn, track: by_dst, window_ms: 10"),
            5,
            20,
            "`flood` needs `threshold` (packets), `bytes`, or both, or `adaptive`",
        );
        assert_error(
            &flood("packets: psh, track: by_dst, threshold: 1, window_ms: 10"),
            5,
            30,
            "unknown flood packet class \"psh\"",
        );
        assert_error(
            &flood("packets: udp, track: by_dst, bytes: 0, window_ms: 10"),
            5,
            57,
            "`bytes` must be a whole number from 1 to 9223372036854775808",
        );
        assert_error(
            &flood("packets: udp, track: by_dst, threshold: 1, window_ms: 3600001"),
            5,
            75,
            "`window_ms` must be a whole number from 1 to 3600000",
        );
        assert_error(
            &flood(
                "packets: udp, track: by_dst, threshold: 5, window_ms: 10, adaptive: {factor: 3, min: 10, learn_windows: 8}",
            ),
            5,
            50,
            "`adaptive` replaces `threshold` and `bytes`",
        );
        assert_error(
            &flood(
                "packets: udp, track: by_dst, window_ms: 10, adaptive: {factor: 2.555, min: 10, learn_windows: 8}",
            ),
            5,
            84,
            "`factor` must be a number from 1 to 255 with at most two decimals",
        );
        assert_error(
            &flood(
                "packets: udp, track: by_dst, window_ms: 10, adaptive: {factor: 3, min: 10, learn_windows: 1025}",
            ),
            5,
            111,
            "`learn_windows` must be a whole number from 1 to 1024",
        );
        let set = load_str(
            "t.yaml",
            &flood(
                "packets: any, track: by_dst, window_ms: 1000, adaptive: {factor: 2.5, min: 100, learn_windows: 16}",
            ),
        )
        .unwrap();
        let Match::Flood(Flood {
            adaptive: Some(a), ..
        }) = set.rules[0].matcher
        else {
            panic!("{:?}", set.rules[0].matcher)
        };
        assert_eq!(
            a,
            Adaptive {
                factor_256: 640,
                min: 100,
                learn_windows: 16
            }
        );
        assert_error(
            &flood("packets: udp, track: by_dst, threshold: 1, window_ms: 10, burst: 3"),
            5,
            79,
            "burst",
        );
        assert_error(
            &format!(
                "{HEAD}    scope: {{protocol: tcp}}\n    match: {{flood: {{packets: udp, track: by_dst, threshold: 1, window_ms: 10}}}}\n"
            ),
            5,
            23,
            "protocol tcp would make this rule match nothing: flood packets udp counts only UDP",
        );
        assert_error(
            &format!(
                "{HEAD}    scope: {{src_ports: [53]}}\n    match: {{flood: {{packets: icmp, track: by_dst, threshold: 1, window_ms: 10}}}}\n"
            ),
            5,
            24,
            "`src_ports` would make this rule match nothing: it counts ICMP packets",
        );
        assert_error(
            &format!(
                "{HEAD}    scope: {{protocol: icmp, src_ports: [53]}}\n    match: {{ttl: {{below: 2}}}}\n"
            ),
            5,
            40,
            "`src_ports` cannot match with protocol icmp",
        );
        assert_error(
            &format!("{HEAD}    scope: {{src_ports: [65536]}}\n    match: {{ttl: {{below: 2}}}}\n"),
            5,
            25,
            "`src_ports` must be a whole number from 0 to 65535",
        );
    }

    #[test]
    fn unknown_flag_message_names_file_line_column() {
        let text = "rules:\n  - id: 1\n    name: x\n    severity: low\n    match:\n      tcp_flags:\n        set: [SYN, SYNN]\n";
        let err = load_str("rules/flags.yaml", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules/flags.yaml:7:20: unknown TCP flag \"SYNN\" (expected one of FIN, SYN, RST, PSH, \
             ACK, URG, ECE, CWR, NS)"
        );
    }

    const HEAD: &str = "rules:\n  - id: 1\n    name: x\n    severity: low\n";

    #[test]
    fn unknown_keys_point_at_the_key() {
        assert_error(
            &format!("{HEAD}    nmae: y\n"),
            5,
            5,
            "unknown key \"nmae\" in a rule",
        );
        assert_error(
            &format!(
                "{HEAD}    scope: {{src: [10.0.0.0/8], port: [1]}}\n    match: {{ttl: {{below: 2}}}}\n"
            ),
            5,
            32,
            "unknown key \"port\" in `scope`",
        );
        assert_error(
            &format!("{HEAD}    match:\n      ttl:\n        below: 2\n        other: 1\n"),
            8,
            9,
            "unknown key \"other\" in `ttl`",
        );
        assert_error(
            "rules: []\nextra: 1\n",
            2,
            1,
            "unknown key \"extra\" in the top level",
        );
        assert_error(
            &format!("{HEAD}    match:\n      tcp_flag: {{set: [SYN]}}\n"),
            6,
            7,
            "unknown key \"tcp_flag\" in `match`",
        );
    }

    #[test]
    fn flag_in_both_lists_points_at_the_clear_entry() {
        assert_error(
            &format!("{HEAD}    match:\n      tcp_flags: {{set: [SYN, ACK], clear: [FIN, ack]}}\n"),
            6,
            49,
            "TCP flag ACK is in both `set` and `clear`",
        );
        assert_error(
            &format!("{HEAD}    match:\n      tcp_flags: {{set: [], clear: []}}\n"),
            6,
            18,
            "`tcp_flags` names no flag",
        );
    }

    #[test]
    fn duplicate_id_points_at_second_id() {
        let text = "\
rules:
  - {id: 7, name: a, severity: low, match: {ttl: {below: 2}}}
  - name: b
    severity: low
    id: 7
    match: {ttl: {below: 2}}
";
        assert_error(
            text,
            5,
            9,
            "duplicate rule id 7 (first defined at rules/test.yaml:2)",
        );
    }

    #[test]
    fn bad_cidr_points_at_the_entry() {
        assert_error(
            &format!(
                "{HEAD}    scope:\n      dst: [192.0.2.0/24, 10.0.0.300/8]\n    match: {{ttl: {{below: 2}}}}\n"
            ),
            6,
            27,
            "invalid address or CIDR \"10.0.0.300/8\" in `dst`",
        );
        assert_error(
            &format!("{HEAD}    scope:\n      src: []\n    match: {{ttl: {{below: 2}}}}\n"),
            6,
            12,
            "`src` is an empty list",
        );
    }

    #[test]
    fn out_of_range_numbers_point_at_the_value() {
        let cases = [
            (
                "match: {ttl: {below: 0}}",
                26,
                "`below` must be a whole number from 1 to 255, not the number 0",
            ),
            ("match: {ttl: {below: 256}}", 26, "from 1 to 255"),
            ("match: {ttl: {above: 255}}", 26, "from 0 to 254"),
            ("match: {ttl: {deviation: -1}}", 30, "from 0 to 254"),
            (
                "match: {fragment: {tiny_first_below: 257}}",
                42,
                "from 1 to 256",
            ),
            (
                "match: {syn_flood: {track: by_dst, threshold: 0, window_ms: 10}}",
                51,
                "`threshold` must be a whole number from 1 to 4294967295",
            ),
            (
                "match: {syn_flood: {track: by_dst, threshold: 5, window_ms: 0}}",
                65,
                "`window_ms` must be a whole number from 1 to 3600000",
            ),
            ("match: {ttl: {below: 2.5}}", 26, "not the number 2.5"),
            ("match: {ttl: {below: two}}", 26, "not the text \"two\""),
        ];
        for (line, column, message) in cases {
            assert_error(&format!("{HEAD}    {line}\n"), 5, column, message);
        }
        assert_error(
            &format!(
                "{HEAD}    scope: {{dst_ports: [80, 65536]}}\n    match: {{ttl: {{below: 2}}}}\n"
            ),
            5,
            29,
            "`dst_ports` must be a whole number from 0 to 65535",
        );
        assert_error(
            &format!("{HEAD}    scope: {{vlan: [4096]}}\n    match: {{ttl: {{below: 2}}}}\n"),
            5,
            20,
            "`vlan` must be a whole number from 0 to 4095",
        );
        assert_error(
            "rules:\n  - id: 4294967296\n",
            2,
            9,
            "`id` must be a whole number from 1 to 4294967295",
        );
    }

    #[test]
    fn match_needs_exactly_one_kind() {
        assert_error(
            &format!("{HEAD}    match:\n      ttl: {{below: 2}}\n      header: {{check: land}}\n"),
            7,
            7,
            "`match` takes exactly one of tcp_flags, ttl, fragment, syn_flood, flood, scan, header, but has both `ttl` and `header`",
        );
        assert_error(
            &format!("{HEAD}    match: {{}}\n"),
            5,
            12,
            "`match` needs one of tcp_flags",
        );
        assert_error(
            &format!("{HEAD}    match: {{ttl: {{below: 2, above: 3}}}}\n"),
            5,
            29,
            "`ttl` takes exactly one of below, above, deviation",
        );
        assert_error(
            &format!("{HEAD}    enabled: true\n"),
            2,
            5,
            "rule 1 is missing `match`",
        );
    }

    #[test]
    fn false_fragment_flags_suggest_enabled_false() {
        assert_error(
            &format!("{HEAD}    match:\n      fragment: {{offset_one: false}}\n"),
            6,
            30,
            "use `enabled: false` to turn a rule off",
        );
    }

    #[test]
    fn block_seconds_only_on_drop_rules() {
        assert_error(
            &format!("{HEAD}    block_seconds: 60\n    match: {{ttl: {{below: 2}}}}\n"),
            5,
            5,
            "`block_seconds` applies only to rules with `action: drop`",
        );
    }

    #[test]
    fn gid_and_rev_are_whole_numbers_from_one() {
        let set = load_str(
            "t.yaml",
            &format!("{HEAD}    gid: 2\n    rev: 5\n    match: {{ttl: {{below: 2}}}}\n"),
        )
        .unwrap();
        assert_eq!((set.rules[0].gid, set.rules[0].rev), (2, 5));
        assert_error(
            &format!("{HEAD}    rev: 0\n    match: {{ttl: {{below: 2}}}}\n"),
            5,
            10,
            "rev",
        );
        assert_error(
            &format!("{HEAD}    gid: x\n    match: {{ttl: {{below: 2}}}}\n"),
            5,
            10,
            "gid",
        );
    }

    #[test]
    fn words_and_types_are_checked() {
        assert_error(
            "rules:\n  - id: 1\n    name: x\n    severity: hgh\n",
            4,
            15,
            "unknown severity \"hgh\" (expected one of critical, high, medium, low)",
        );
        assert_error(
            &format!("{HEAD}    action: block\n"),
            5,
            13,
            "unknown action \"block\" (expected one of alert, drop)",
        );
        assert_error(
            &format!("{HEAD}    enabled: yes\n"),
            5,
            14,
            "`enabled` must be true or false, not the text \"yes\"",
        );
        assert_error(
            &format!("{HEAD}    match: {{header: {{check: lnd}}}}\n"),
            5,
            29,
            "unknown header check \"lnd\"",
        );
        assert_error(
            &format!(
                "{HEAD}    match: {{syn_flood: {{track: dst, threshold: 1, window_ms: 1}}}}\n"
            ),
            5,
            32,
            "unknown syn_flood track \"dst\"",
        );
        assert_error(
            &format!("{HEAD}    match: {{syn_flood: {{threshold: 1, window_ms: 1}}}}\n"),
            5,
            24,
            "`syn_flood` is missing `track`",
        );
        assert_error("rules:\n  - id: x\n", 2, 9, "`id` must be a whole number");
        assert_error("rules:\n  - 5\n", 2, 5, "a rule must be a mapping");
        assert_error(
            "rules:\n  - id: 1\n    name: ''\n",
            3,
            11,
            "`name` must not be empty",
        );
    }

    #[test]
    fn contradictory_scopes_are_refused() {
        assert_error(
            &format!(
                "{HEAD}    scope: {{protocol: udp}}\n    match: {{tcp_flags: {{set: [SYN]}}}}\n"
            ),
            5,
            23,
            "protocol udp would make this rule match nothing: tcp_flags rules match only TCP",
        );
        assert_error(
            &format!(
                "{HEAD}    scope: {{protocol: icmp, dst_ports: [1]}}\n    match: {{ttl: {{below: 2}}}}\n"
            ),
            5,
            40,
            "`dst_ports` cannot match with protocol icmp",
        );
        assert_error(
            &format!(
                "{HEAD}    scope: {{dst_ports: [1]}}\n    match: {{fragment: {{oversize: true}}}}\n"
            ),
            5,
            24,
            "only first fragments carry ports",
        );
    }

    #[test]
    fn empty_and_malformed_files() {
        assert_error("", 1, 1, "the file is empty");
        assert_error("# only a comment\n", 1, 1, "the file is empty");
        assert_error("other: 1\n", 1, 1, "unknown key \"other\"");
        assert_error("{}\n", 1, 1, "missing the top-level `rules:` list");
        assert_error("rules:\n", 1, 1, "`rules:` is empty");
        assert_error("rules: 5\n", 1, 8, "`rules` must be a list");
        assert_error("- a\n", 1, 1, "the top level must be a mapping");
        assert_error("rules: [\n", 1, 8, "invalid YAML");
        assert_error("rules: []\n---\nrules: []\n", 3, 1, "invalid YAML");
        assert!(load_str("t.yaml", "rules: []\n").unwrap().rules.is_empty());
    }

    #[test]
    fn non_utf8_file_names_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        fs::write(&path, b"rules:\n  - id: \xff\n").unwrap();
        let err = load_path(&path).unwrap_err();
        let err = err.source_error().expect("file error");
        assert_eq!((err.line, err.column), (2, 9));
        assert!(err.message.contains("UTF-8"));
    }

    fn rule_line(id: u32) -> String {
        format!("  - {{id: {id}, name: r{id}, severity: low, match: {{ttl: {{below: 2}}}}}}\n")
    }

    #[test]
    fn more_than_max_enabled_rules_is_an_error_at_the_first_extra() {
        let mut text = String::from("rules:\n");
        text.push_str(
            "  - {id: 9999, name: off, severity: low, enabled: false, match: {ttl: {below: 2}}}\n",
        );
        for id in 1..=MAX_RULES {
            text.push_str(&rule_line(id));
        }
        assert_eq!(load_str("t.yaml", &text).unwrap().enabled().count(), 1024);
        text.push_str(&rule_line(MAX_RULES + 1));
        assert_error(
            &text,
            1027,
            5,
            "too many enabled rules: this is enabled rule 1025, at most 1024 fit",
        );
    }

    #[test]
    fn directory_loads_in_name_order_and_finds_duplicates_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, ids: &[u32]| {
            let mut text = String::from("rules:\n");
            for id in ids {
                text.push_str(&rule_line(*id));
            }
            fs::write(dir.path().join(name), text).unwrap();
        };
        write("b.yaml", &[3, 4]);
        write("a.yml", &[2, 1]);
        write("c.txt", &[1]);
        write(".hidden.yaml", &[1]);
        let set = load_path(dir.path()).unwrap();
        let ids: Vec<_> = set.rules.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 1, 3, 4]);
        let a = dir.path().join("a.yml").display().to_string();
        assert_eq!(set.rules[0].origin, format!("{a}:2"));

        write("c.yaml", &[5, 2]);
        let err = load_path(dir.path()).unwrap_err();
        let c = dir.path().join("c.yaml").display().to_string();
        assert_eq!(
            err.to_string(),
            format!("{c}:3:10: duplicate rule id 2 (first defined at {a}:2)")
        );
    }

    #[test]
    fn missing_path_and_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_path(dir.path()),
            Err(RulesError::NoRuleFiles { .. })
        ));
        assert!(matches!(
            load_path(&dir.path().join("absent.yaml")),
            Err(RulesError::Read { .. })
        ));
    }

    /// A small deterministic generator, so failures reproduce.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % bound.max(1)
        }
    }

    #[test]
    fn garbage_never_panics() {
        let fixed = [
            "\0",
            "\u{feff}",
            ":",
            "- - -",
            "rules: [[[[[[",
            "rules: {a: *b}",
            "rules: &a [*a]",
            "rules: !!binary AAAA",
            "rules:\n  - id: 1\n    name: x\n    severity: low\n    match: {ttl: {below: !!float 2}}\n",
            "rules:\n  - id: 1\n    name: x\n    severity: low\n    scope: {src: [[]], dst: [{}]}\n",
            "rules:\n  - <<: {id: 1, name: x, severity: low}\n    match: {header: {check: land}}\n",
            "? ? ? a\n",
            "rules:\n\t- id: 1",
            "%TAG ! tag:x\n--- !x\nrules: []",
            "rules: [{id: 99999999999999999999999999999999999999999}]",
            "rules: [{id: 1e400}]",
            "rules: [{id: .nan}]",
            "rules: [{id: 0x1, name: \"\\u0000\", severity: low, match: {ttl: {below: 0o7}}}]",
        ];
        for text in fixed {
            let _ = load_str("g.yaml", text);
        }
        let nested = "[".repeat(100_000);
        let _ = load_str("g.yaml", &nested);
        let long_key = format!("{}: 1", "k".repeat(100_000));
        let _ = load_str("g.yaml", &long_key);

        let seed: Vec<char> = VALID.chars().collect();
        let alphabet: Vec<char> = ":-[]{}#&*!|>'\" \n\t,?%@`0123456789abcSYN/."
            .chars()
            .collect();
        let mut rng = Lcg(0x5eed);
        let (mut loaded, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut text = seed.clone();
            for _ in 0..1 + rng.next(6) {
                let at = rng.next(text.len());
                match rng.next(4) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text.insert(at, alphabet[rng.next(alphabet.len())]),
                    2 => text[at] = alphabet[rng.next(alphabet.len())],
                    _ => {
                        let end = (at + rng.next(20)).min(text.len());
                        let chunk: Vec<char> = text[at..end].to_vec();
                        let to = rng.next(text.len());
                        text.splice(to..to, chunk);
                    }
                }
            }
            let text: String = text.into_iter().collect();
            match load_str("g.yaml", &text) {
                Ok(set) => {
                    loaded += 1;
                    // Whatever loads must also compile.
                    let compiled = crate::rules::compile::try_compile(&set, 300);
                    assert!(compiled.is_ok(), "{text}");
                }
                Err(err) => {
                    refused += 1;
                    let text = err.to_string();
                    assert!(text.starts_with("g.yaml:"), "{text}");
                }
            }
        }
        // The mutations must exercise both outcomes to mean anything.
        assert!(
            loaded >= 50 && refused >= 50,
            "loaded {loaded}, refused {refused}"
        );
    }
}
