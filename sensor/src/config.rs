//! The `--config` YAML file (CONTRACT section 5). Every key is optional and
//! a command-line flag overrides it; unknown keys and bad values are errors
//! that name the file, line and column.
//!
//! Relative `rules` and `json` paths are taken relative to the directory of
//! the config file, so the file works whatever the working directory.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use sensor_common::alert::{MAX_ALERT_PACKET_BYTES, MAX_IFACES};
use sensor_common::decap::{DecapConfig, MAX_DECAP_PORTS};
use sensor_common::tables::{BlockPolicy, DROP_LIST_ENTRIES};

use crate::rules::SourceError;
use crate::rules::load::parse_prefix;
use crate::rules::yaml::{self, Located, Node};
use crate::settings::{AttachMode, DropMapSizes, RedisMode, SensorMode, SyslogFormat};
use crate::settings::{MAX_IFACE_LEN, valid_iface_name};
use crate::sinks::redis::RedisTarget;
use crate::sinks::syslog::SyslogTarget;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `iface: X` or `ifaces: [X, Y]`: the interfaces to watch (empty when
    /// the file names none).
    pub ifaces: Vec<String>,
    /// Rule file or directory.
    pub rules: Option<PathBuf>,
    pub mode: Option<SensorMode>,
    pub xdp_mode: Option<AttachMode>,
    /// Alert file, or `-` for stdout.
    pub json: Option<String>,
    /// `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:///PATH`,
    /// parsed here by the sink's own parser.
    pub syslog: Option<SyslogTarget>,
    pub syslog_format: Option<SyslogFormat>,
    /// `tls://` only: CA, client certificate and key files (checked by `load_config`).
    pub syslog_ca: Option<PlacedPath>,
    pub syslog_cert: Option<PlacedPath>,
    pub syslog_key: Option<PlacedPath>,
    /// Where to serve `/metrics`.
    pub metrics: Option<SocketAddr>,
    /// Frame bytes each alert carries in `packet` (0: none).
    pub packet_bytes: Option<u16>,
    /// Seed of the alert lines' `community_id`.
    pub community_id_seed: Option<u16>,
    /// `redis://` or `rediss://` URL of the Redis sink.
    pub redis: Option<String>,
    pub redis_key: Option<String>,
    pub redis_mode: Option<RedisMode>,
    pub redis_stream_maxlen: Option<u64>,
    /// `rediss://` only: CA file for the server.
    pub redis_ca: Option<PlacedPath>,
    pub drop: DropConfig,
    /// The `decap:` section: which tunnels are judged on their inner packet.
    pub decap: DecapSettings,
}

/// The `decap:` section (contract section 5), in the form the kernel's
/// config entry and replay's parser take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecapSettings(pub DecapConfig);

impl Default for DecapSettings {
    fn default() -> Self {
        DecapSettings(DecapConfig::DEFAULT)
    }
}

/// A file named in the config file, with the place of its name, so a
/// problem with the file itself points there too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedPath {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl PlacedPath {
    /// How messages name it: the key and its place, e.g.
    /// ``syslog_ca` (sensor.yaml:7:12)`.
    pub fn role(&self, key: &str, file: &str) -> String {
        format!("`{key}` ({file}:{}:{})", self.line, self.column)
    }
}

impl Config {
    /// Block length when neither the rule nor `drop.block_seconds` says otherwise.
    pub const DEFAULT_BLOCK_SECONDS: u32 = 300;
}

/// The `drop:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropConfig {
    /// Default block length for drop rules without their own `block_seconds`.
    pub block_seconds: u32,
    /// Sources never dropped or blocked (alerts still raised).
    pub allowlist: Vec<IpNet>,
    /// Sources always dropped.
    pub blocklist: Vec<IpNet>,
    /// Report what would be blocked, drop nothing.
    pub dry_run: bool,
    /// Where blocked sources are kept across restarts (none: not kept).
    pub state_file: Option<PathBuf>,
    /// When a match blocks its source (`block_when`, `block_repeat`,
    /// `proof_seconds`; see `crate::kernel::drop_policy`).
    pub block: BlockPolicy,
    /// `handshake_entries`, `proven_entries`, `repeat_entries`.
    pub maps: DropMapSizes,
}

impl Default for DropConfig {
    fn default() -> Self {
        DropConfig {
            block_seconds: Config::DEFAULT_BLOCK_SECONDS,
            allowlist: Vec::new(),
            blocklist: Vec::new(),
            dry_run: false,
            state_file: None,
            block: BlockPolicy::DEFAULT,
            maps: DropMapSizes::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A problem inside the file, with its line and column.
    #[error(transparent)]
    Invalid(#[from] SourceError),
}

const TOP_KEYS: &[&str] = &[
    "iface",
    "ifaces",
    "rules",
    "mode",
    "xdp_mode",
    "json",
    "syslog",
    "syslog_format",
    "metrics",
    "packet_bytes",
    "community_id_seed",
    "redis",
    "redis_key",
    "redis_mode",
    "redis_stream_maxlen",
    "syslog_ca",
    "syslog_cert",
    "syslog_key",
    "redis_ca",
    "drop",
    "decap",
];
const DECAP_KEYS: &[&str] = &["enabled", "vxlan_ports", "geneve_ports"];
const DROP_KEYS: &[&str] = &[
    "block_seconds",
    "allowlist",
    "blocklist",
    "dry_run",
    "state_file",
    "block_when",
    "block_repeat",
    "proof_seconds",
    "handshake_entries",
    "proven_entries",
    "repeat_entries",
];

/// Reads and checks the config file at `path`; relative paths in it are
/// resolved against its directory.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    let mut config = parse_config(&name, &text)?;
    let base = path.parent().unwrap_or(Path::new(""));
    if let Some(rules) = &mut config.rules
        && rules.is_relative()
    {
        *rules = base.join(&*rules);
    }
    if let Some(state_file) = &mut config.drop.state_file
        && state_file.is_relative()
    {
        *state_file = base.join(&*state_file);
    }
    if let Some(json) = &mut config.json
        && json != "-"
        && Path::new(json).is_relative()
    {
        *json = base.join(&*json).display().to_string();
    }
    check_tls_files(&name, base, &mut config)?;
    Ok(config)
}

/// Resolves the TLS files against the config's folder and reads each, so a
/// missing or unusable one is reported at its place in the file.
fn check_tls_files(file: &str, base: &Path, config: &mut Config) -> Result<(), ConfigError> {
    type Check = fn(&str, &Path) -> Result<(), crate::sinks::tls::TlsFileError>;
    let roots: Check = |role, path| crate::sinks::tls::read_roots(role, path).map(drop);
    let chain: Check = |role, path| crate::sinks::tls::read_chain(role, path).map(drop);
    let key: Check = |role, path| crate::sinks::tls::read_key(role, path).map(drop);
    for (name, placed, check) in [
        ("syslog_ca", &mut config.syslog_ca, roots),
        ("syslog_cert", &mut config.syslog_cert, chain),
        ("syslog_key", &mut config.syslog_key, key),
        ("redis_ca", &mut config.redis_ca, roots),
    ] {
        let Some(placed) = placed else { continue };
        if placed.path.is_relative() {
            placed.path = base.join(&placed.path);
        }
        check(&format!("`{name}`"), &placed.path).map_err(|err| {
            ConfigError::Invalid(SourceError {
                file: file.to_owned(),
                line: placed.line,
                column: placed.column,
                message: err.to_string(),
            })
        })?;
    }
    Ok(())
}

/// Checks config text; `file` names it in messages. Paths stay as written.
pub fn parse_config(file: &str, text: &str) -> Result<Config, ConfigError> {
    parse_document(text).map_err(|err| ConfigError::Invalid(err.in_file(file)))
}

fn parse_document(text: &str) -> Result<Config, Located> {
    let mut config = Config::default();
    let Some(root) = yaml::parse(text)? else {
        return Ok(config);
    };
    let fields = root.as_map("the config file", TOP_KEYS)?;
    if let (Some(_), Some(second)) = (fields.field("iface"), fields.field("ifaces")) {
        let later = match fields.field("iface") {
            Some(first) if first.key_at.line > second.key_at.line => first,
            _ => second,
        };
        return Err(Located::new(
            later.key_at,
            "give `iface` (one interface) or `ifaces` (a list), not both",
        ));
    }
    for field in &fields.fields {
        let node = field.value;
        match field.key {
            "iface" => config.ifaces = vec![parse_iface(node, "iface")?],
            "ifaces" => config.ifaces = parse_ifaces(node)?,
            "rules" => config.rules = Some(non_empty_text(node, "rules")?.into()),
            "mode" => {
                let modes = [("ids", SensorMode::Ids), ("drop", SensorMode::Drop)];
                config.mode = Some(node.as_choice("mode", "mode", &modes)?);
            }
            "xdp_mode" => {
                let modes = [
                    ("auto", AttachMode::Auto),
                    ("native", AttachMode::Native),
                    ("skb", AttachMode::Skb),
                ];
                config.xdp_mode = Some(node.as_choice("xdp_mode", "xdp_mode", &modes)?);
            }
            "json" => config.json = Some(non_empty_text(node, "json")?.to_owned()),
            "syslog" => config.syslog = Some(parse_syslog_url(node)?),
            "syslog_format" => {
                let formats = [
                    ("rfc5424", SyslogFormat::Rfc5424),
                    ("rfc3164", SyslogFormat::Rfc3164),
                ];
                config.syslog_format =
                    Some(node.as_choice("syslog_format", "syslog_format", &formats)?);
            }
            "metrics" => {
                let text = node.as_str("metrics")?;
                let addr = text.trim().parse().map_err(|_| {
                    node.error(format!(
                        "`metrics` must be ADDR:PORT (e.g. 127.0.0.1:9464 or [::1]:9464), not {}",
                        yaml::quote(text)
                    ))
                })?;
                config.metrics = Some(addr);
            }
            "redis" => {
                let url = non_empty_text(node, "redis")?;
                RedisTarget::check_url(url).map_err(|message| node.error(message))?;
                config.redis = Some(url.to_owned());
            }
            "syslog_ca" => config.syslog_ca = Some(placed_path(node, "syslog_ca")?),
            "syslog_cert" => config.syslog_cert = Some(placed_path(node, "syslog_cert")?),
            "syslog_key" => config.syslog_key = Some(placed_path(node, "syslog_key")?),
            "redis_ca" => config.redis_ca = Some(placed_path(node, "redis_ca")?),
            "redis_key" => config.redis_key = Some(non_empty_text(node, "redis_key")?.to_owned()),
            "redis_mode" => {
                let modes = [
                    ("list", RedisMode::List),
                    ("channel", RedisMode::Channel),
                    ("stream", RedisMode::Stream),
                ];
                config.redis_mode = Some(node.as_choice("redis_mode", "redis_mode", &modes)?);
            }
            "redis_stream_maxlen" => {
                let max = node.as_int("redis_stream_maxlen", 1..=i64::MAX.into())?;
                config.redis_stream_maxlen = Some(max as u64);
            }
            "community_id_seed" => {
                let seed = node.as_int("community_id_seed", 0..=u16::MAX.into())?;
                config.community_id_seed = Some(seed as u16);
            }
            "packet_bytes" => {
                let max = MAX_ALERT_PACKET_BYTES.into();
                config.packet_bytes = Some(node.as_int("packet_bytes", 0..=max)? as u16);
            }
            "decap" => config.decap = parse_decap(node)?,
            _ => config.drop = parse_drop(node)?,
        }
    }
    Ok(config)
}

fn non_empty_text<'a>(node: &'a Node, field: &str) -> Result<&'a str, Located> {
    let text = node.as_str(field)?.trim();
    if text.is_empty() {
        return Err(node.error(format!("`{field}` must not be empty")));
    }
    Ok(text)
}

fn placed_path(node: &Node, field: &str) -> Result<PlacedPath, Located> {
    Ok(PlacedPath {
        path: non_empty_text(node, field)?.into(),
        line: node.at.line,
        column: node.at.column,
    })
}

/// The checks Linux applies to interface names (`dev_valid_name`).
fn parse_iface(node: &Node, field: &str) -> Result<String, Located> {
    let name = non_empty_text(node, field)?;
    if !valid_iface_name(name) {
        return Err(node.error(format!(
            "`{field}` {} is not a valid interface name (at most {MAX_IFACE_LEN} bytes, \
             no '/', ':' or spaces)",
            yaml::quote(name)
        )));
    }
    Ok(name.to_owned())
}

/// `ifaces:`: 1 to [`MAX_IFACES`] valid names, none twice.
fn parse_ifaces(node: &Node) -> Result<Vec<String>, Located> {
    let items = node.as_list("ifaces")?;
    if items.is_empty() {
        return Err(node.error("`ifaces` must name at least one interface"));
    }
    if items.len() > MAX_IFACES as usize {
        return Err(node.error(format!(
            "`ifaces` has {} entries; one sensor watches at most {MAX_IFACES}",
            items.len()
        )));
    }
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let name = parse_iface(item, "ifaces")?;
        if names.contains(&name) {
            return Err(item.error(format!(
                "interface {} is listed twice in `ifaces`",
                yaml::quote(&name)
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// Parsed by the syslog sink's parser, the one that `--syslog` goes through
/// too; the error keeps this value's place in the file.
fn parse_syslog_url(node: &Node) -> Result<SyslogTarget, Located> {
    let url = non_empty_text(node, "syslog")?;
    SyslogTarget::parse(url).map_err(|err| {
        node.error(format!(
            "`syslog` must be udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH, not {}: {}",
            yaml::quote(url),
            err.reason
        ))
    })
}

fn parse_drop(node: &Node) -> Result<DropConfig, Located> {
    let fields = node.as_map("`drop`", DROP_KEYS)?;
    let mut drop = DropConfig::default();
    for field in &fields.fields {
        let node = field.value;
        match field.key {
            "block_seconds" => {
                drop.block_seconds = node.as_int("block_seconds", 0..=u32::MAX.into())? as u32;
            }
            "allowlist" => drop.allowlist = parse_prefix_list(node, "allowlist")?,
            "blocklist" => drop.blocklist = parse_prefix_list(node, "blocklist")?,
            "state_file" => drop.state_file = Some(non_empty_text(node, "state_file")?.into()),
            key if crate::kernel::drop_policy::KEYS.contains(&key) => {
                crate::kernel::drop_policy::parse_key(key, node, &mut drop.block, &mut drop.maps)?;
            }
            _ => drop.dry_run = node.as_bool("dry_run")?,
        }
    }
    Ok(drop)
}

fn parse_decap(node: &Node) -> Result<DecapSettings, Located> {
    let fields = node.as_map("`decap`", DECAP_KEYS)?;
    let mut decap = DecapConfig::DEFAULT;
    let (mut vxlan_list, mut geneve_list) = (None, None);
    for field in &fields.fields {
        let node = field.value;
        match field.key {
            "enabled" => decap.enabled = node.as_bool("enabled")? as u8,
            "vxlan_ports" => {
                decap.vxlan_ports = parse_decap_ports(node, "vxlan_ports")?;
                vxlan_list = Some(node);
            }
            _ => {
                decap.geneve_ports = parse_decap_ports(node, "geneve_ports")?;
                geneve_list = Some(node);
            }
        }
    }
    // One port in both lists is refused: which tunnel its packets carry
    // would be the parser's choice, not the file's. Reported at an item of
    // a list the file gives (the other may be its default).
    let in_both =
        |port: u16| decap.vxlan_ports.contains(&port) && decap.geneve_ports.contains(&port);
    for (list, field, other, other_given) in [
        (
            geneve_list,
            "geneve_ports",
            "vxlan_ports",
            vxlan_list.is_some(),
        ),
        (
            vxlan_list,
            "vxlan_ports",
            "geneve_ports",
            geneve_list.is_some(),
        ),
    ] {
        let Some(list) = list else { continue };
        for item in list.as_list(field)? {
            let port = item.as_int(field, 1..=u16::MAX.into())? as u16;
            if in_both(port) {
                let default = if other_given { "" } else { " (by default)" };
                return Err(item.error(format!(
                    "port {port} is in both `{field}` and `{other}`{default}: a port opens one kind of tunnel"
                )));
            }
        }
    }
    Ok(DecapSettings(decap))
}

/// 0 to [`MAX_DECAP_PORTS`] UDP ports (1 to 65535), none twice; unused
/// slots are 0.
fn parse_decap_ports(node: &Node, field: &str) -> Result<[u16; MAX_DECAP_PORTS], Located> {
    let items = node.as_list(field)?;
    if items.len() > MAX_DECAP_PORTS {
        return Err(node.error(format!(
            "`{field}` has {} ports; at most {MAX_DECAP_PORTS} are allowed",
            items.len()
        )));
    }
    let mut ports = [0; MAX_DECAP_PORTS];
    for (slot, item) in items.iter().enumerate() {
        let port = item.as_int(field, 1..=u16::MAX.into())? as u16;
        if ports.contains(&port) {
            return Err(item.error(format!("port {port} is listed twice in `{field}`")));
        }
        ports[slot] = port;
    }
    Ok(ports)
}

fn parse_prefix_list(node: &Node, field: &str) -> Result<Vec<IpNet>, Located> {
    let mut prefixes = Vec::new();
    let items = node.as_list(field)?;
    // Checked here, where the file position is known, not when the kernel
    // map refuses the entry past its size.
    if items.len() > DROP_LIST_ENTRIES as usize {
        return Err(node.error(format!(
            "`{field}` has {} entries; the kernel's list holds at most {DROP_LIST_ENTRIES}",
            items.len()
        )));
    }
    for item in items {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifaces_take_a_list_of_distinct_valid_names() {
        let config = parse_config("sensor.yaml", "ifaces: [eth1, eth2]\n").unwrap();
        assert_eq!(config.ifaces, ["eth1", "eth2"]);
        let config = parse_config("sensor.yaml", "ifaces:\n  - eth1\n").unwrap();
        assert_eq!(config.ifaces, ["eth1"]);
        let config = parse_config("sensor.yaml", "iface: eth3\n").unwrap();
        assert_eq!(config.ifaces, ["eth3"]);
        assert_error(
            "iface: eth0\nifaces: [eth1]\n",
            2,
            1,
            "give `iface` (one interface) or `ifaces` (a list), not both",
        );
        assert_error("ifaces: [eth1]\nmode: ids\niface: eth0\n", 3, 1, "not both");
        assert_error(
            "ifaces: [eth1, eth2, eth1]\n",
            1,
            22,
            "interface \"eth1\" is listed twice in `ifaces`",
        );
        assert_error(
            "ifaces:\n  - eth1\n  - 'a/b'\n",
            3,
            5,
            "`ifaces` \"a/b\" is not a valid interface name",
        );
        assert_error("ifaces: []\n", 1, 9, "at least one interface");
        assert_error("ifaces: eth0\n", 1, 9, "`ifaces` must be a list");
        let many: Vec<String> = (0..65).map(|i| format!("e{i}")).collect();
        assert_error(
            &format!("ifaces: [{}]\n", many.join(", ")),
            1,
            9,
            "at most 64",
        );
    }

    fn error_of(text: &str) -> (u64, u64, String) {
        match parse_config("sensor.yaml", text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(ConfigError::Invalid(err)) => {
                assert_eq!(err.file, "sensor.yaml");
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

    const FULL: &str = "\
iface: eth0
rules: /etc/sensor/rules
mode: drop
xdp_mode: skb
json: /var/log/sensor/alerts.json
syslog: tcp://127.0.0.1:514
syslog_format: rfc3164
metrics: 127.0.0.1:9464
packet_bytes: 256
community_id_seed: 7
redis: redis://127.0.0.1:6379/1
redis_key: alerts
redis_mode: stream
redis_stream_maxlen: 5000
syslog_ca: tls/ca.pem
syslog_cert: /etc/sensor/tls/sensor.pem
syslog_key:   sensor.key
redis_ca: tls/redis-ca.pem
drop:
  block_seconds: 600
  allowlist: [10.0.0.0/8, \"2001:db8::1\"]
  blocklist: [198.51.100.0/24]
  dry_run: true
  state_file: /var/lib/sensor/blocked.json
decap:
  enabled: true
  vxlan_ports: [4789, 8472]
  geneve_ports: []
";

    #[test]
    fn the_shipped_example_config_loads() {
        let config = parse_config("dist/sensor.yaml", include_str!("../../dist/sensor.yaml"))
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            config.drop.state_file.as_deref(),
            Some(Path::new("/var/lib/sensor/blocked.json"))
        );
    }

    fn placed(path: &str, line: u64, column: u64) -> PlacedPath {
        PlacedPath {
            path: path.into(),
            line,
            column,
        }
    }

    /// TLS files are taken from the config's folder and read at load time:
    /// a missing or unusable one is an error at its value's place.
    #[test]
    fn tls_files_are_resolved_and_checked_where_they_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sensor.yaml");
        let name = config_path.display().to_string();
        std::fs::write(
            &config_path,
            "syslog: tls://192.0.2.1:6514\nsyslog_ca: ca.pem\n",
        )
        .unwrap();
        let err = load_config(&config_path).unwrap_err().to_string();
        let missing = dir.path().join("ca.pem");
        assert!(
            err.starts_with(&format!(
                "{name}:2:12: cannot read `syslog_ca` {}",
                missing.display()
            )),
            "{err}"
        );
        std::fs::write(&missing, "no PEM here\n").unwrap();
        std::fs::write(&config_path, "redis_ca:\n  ca.pem\n").unwrap();
        let err = load_config(&config_path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{name}:2:3: `redis_ca` ")) && err.contains("no PEM"),
            "{err}"
        );
        assert_error("syslog_key: ''\n", 1, 13, "`syslog_key` must not be empty");
        assert_eq!(
            PlacedPath {
                path: "x".into(),
                line: 4,
                column: 9
            }
            .role("syslog_ca", "s.yaml"),
            "`syslog_ca` (s.yaml:4:9)"
        );
    }

    #[test]
    fn full_config_loads() {
        let config = parse_config("sensor.yaml", FULL).unwrap();
        assert_eq!(
            config,
            Config {
                ifaces: vec!["eth0".into()],
                rules: Some("/etc/sensor/rules".into()),
                mode: Some(SensorMode::Drop),
                xdp_mode: Some(AttachMode::Skb),
                json: Some("/var/log/sensor/alerts.json".into()),
                syslog: Some(SyslogTarget::parse("tcp://127.0.0.1:514").unwrap()),
                syslog_format: Some(SyslogFormat::Rfc3164),
                metrics: Some("127.0.0.1:9464".parse().unwrap()),
                packet_bytes: Some(256),
                community_id_seed: Some(7),
                redis: Some("redis://127.0.0.1:6379/1".into()),
                redis_key: Some("alerts".into()),
                redis_mode: Some(RedisMode::Stream),
                redis_stream_maxlen: Some(5000),
                syslog_ca: Some(placed("tls/ca.pem", 15, 12)),
                syslog_cert: Some(placed("/etc/sensor/tls/sensor.pem", 16, 14)),
                syslog_key: Some(placed("sensor.key", 17, 15)),
                redis_ca: Some(placed("tls/redis-ca.pem", 18, 11)),
                drop: DropConfig {
                    block_seconds: 600,
                    allowlist: vec![
                        "10.0.0.0/8".parse().unwrap(),
                        "2001:db8::1/128".parse().unwrap()
                    ],
                    blocklist: vec!["198.51.100.0/24".parse().unwrap()],
                    dry_run: true,
                    state_file: Some("/var/lib/sensor/blocked.json".into()),
                    block: BlockPolicy::DEFAULT,
                    maps: DropMapSizes::default(),
                },
                decap: DecapSettings(DecapConfig {
                    vxlan_ports: [4789, 8472, 0, 0],
                    geneve_ports: [0; MAX_DECAP_PORTS],
                    ..DecapConfig::DEFAULT
                }),
            }
        );
    }

    #[test]
    fn decap_defaults_turns_off_and_checks_its_ports() {
        assert_eq!(Config::default().decap.0, DecapConfig::DEFAULT);
        let config = parse_config("c.yaml", "decap: {enabled: false}\n").unwrap();
        assert_eq!(
            config.decap.0,
            DecapConfig {
                enabled: 0,
                ..DecapConfig::DEFAULT
            }
        );
        let config = parse_config("c.yaml", "decap:\n  geneve_ports: [6081, 6082]\n").unwrap();
        assert_eq!(config.decap.0.geneve_ports, [6081, 6082, 0, 0]);
        assert_eq!(config.decap.0.vxlan_ports, DecapConfig::DEFAULT.vxlan_ports);
        assert_error(
            "decap:\n  vxlan_ports: [4789, 0]\n",
            2,
            23,
            "`vxlan_ports` must be",
        );
        assert_error(
            "decap:\n  vxlan_ports: [4789, 65536]\n",
            2,
            23,
            "`vxlan_ports` must be",
        );
        assert_error(
            "decap:\n  geneve_ports: [1, 2, 3, 4, 5]\n",
            2,
            17,
            "at most 4",
        );
        assert_error(
            "decap:\n  vxlan_ports: [4789, 4789]\n",
            2,
            23,
            "port 4789 is listed twice",
        );
        assert_error(
            "decap:\n  vxlan_ports: [4789, 7000]\n  geneve_ports: [6081, 7000]\n",
            3,
            24,
            "port 7000 is in both `geneve_ports` and `vxlan_ports`:",
        );
        assert_error(
            "decap:\n  geneve_ports: [4789]\n",
            2,
            18,
            "port 4789 is in both `geneve_ports` and `vxlan_ports` (by default)",
        );
        assert_error(
            "decap:\n  vxlan_ports: [6081]\n",
            2,
            17,
            "port 6081 is in both `vxlan_ports` and `geneve_ports` (by default)",
        );
        assert_error("decap:\n  enabled: maybe\n", 2, 12, "enabled");
        assert_error(
            "decap:\n  ports: [1]\n",
            2,
            3,
            "unknown key \"ports\" in `decap`",
        );
    }

    #[test]
    fn every_key_is_optional() {
        assert_eq!(parse_config("c.yaml", "").unwrap(), Config::default());
        assert_eq!(
            parse_config("c.yaml", "# nothing\n").unwrap(),
            Config::default()
        );
        let config = parse_config("c.yaml", "drop: {dry_run: true}\n").unwrap();
        assert_eq!(config.drop.block_seconds, Config::DEFAULT_BLOCK_SECONDS);
        assert!(config.drop.dry_run);
    }

    #[test]
    fn unknown_keys_are_errors_at_the_key() {
        assert_error(
            "iface: eth0\ninterface: eth1\n",
            2,
            1,
            "unknown key \"interface\" in the config file",
        );
        assert_error(
            "drop:\n  block_seconds: 5\n  allow: []\n",
            3,
            3,
            "unknown key \"allow\" in `drop`",
        );
    }

    #[test]
    fn bad_values_are_errors_at_the_value() {
        assert_error(
            "mode: block\n",
            1,
            7,
            "unknown mode \"block\" (expected one of ids, drop)",
        );
        assert_error("xdp_mode: hw\n", 1, 11, "unknown xdp_mode \"hw\"");
        assert_error("packet_bytes: 1025\n", 1, 15, "packet_bytes");
        let long: Vec<String> = (0..=DROP_LIST_ENTRIES)
            .map(|i| format!("198.51.{}.{}/32", i / 256 % 256, i % 256))
            .collect();
        assert_error(
            &format!("drop:\n  allowlist: [{}]\n", long.join(", ")),
            2,
            14,
            "`allowlist` has 16385 entries; the kernel's list holds at most 16384",
        );
        assert_error("packet_bytes: -1\n", 1, 15, "packet_bytes");
        assert_error(
            "syslog_format: json\n",
            1,
            16,
            "unknown syslog_format \"json\"",
        );
        assert_error("metrics: localhost\n", 1, 10, "`metrics` must be ADDR:PORT");
        assert_error(
            "syslog: http://x:1\n",
            1,
            9,
            "`syslog` must be udp://HOST:PORT",
        );
        assert_error("syslog: udp://host\n", 1, 9, "`syslog` must be");
        assert_error("syslog: tcp://:514\n", 1, 9, "`syslog` must be");
        assert_error(
            "iface: a-very-long-interface-name\n",
            1,
            8,
            "not a valid interface name",
        );
        assert_error("iface: 'eth 0'\n", 1, 8, "not a valid interface name");
        assert_error(
            "iface: 5\n",
            1,
            8,
            "`iface` must be text (put it in quotes)",
        );
        assert_error(
            "drop:\n  blocklist: [1.2.3.4/40]\n",
            2,
            15,
            "invalid address or CIDR",
        );
        assert_error(
            "drop:\n  block_seconds: -1\n",
            2,
            18,
            "from 0 to 4294967295",
        );
        assert_error(
            "drop:\n  dry_run: 1\n",
            2,
            12,
            "`dry_run` must be true or false",
        );
        assert_error("drop: [1]\n", 1, 7, "`drop` must be a mapping");
        assert_error("rules: ''\n", 1, 8, "`rules` must not be empty");
        assert_error("- iface\n", 1, 1, "the config file must be a mapping");
        assert_error("iface: [\n", 1, 8, "invalid YAML");
    }

    #[test]
    fn other_accepted_forms() {
        let text = "syslog: unix:///dev/log\nmetrics: \"[::1]:9464\"\njson: '-'\n";
        let config = parse_config("c.yaml", text).unwrap();
        assert_eq!(
            config.syslog.map(|target| target.to_string()).as_deref(),
            Some("unix:///dev/log")
        );
        assert_eq!(config.metrics, Some("[::1]:9464".parse().unwrap()));
        assert_eq!(config.json.as_deref(), Some("-"));
        let config = parse_config("c.yaml", "syslog: udp://[2001:db8::1]:514\n").unwrap();
        assert_eq!(
            config.syslog.map(|target| target.to_string()).as_deref(),
            Some("udp://[2001:db8::1]:514")
        );
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sensor.yaml");
        std::fs::write(&path, "rules: rules.d\njson: '-'\n").unwrap();
        let config = load_config(&path).unwrap();
        assert_eq!(config.rules, Some(dir.path().join("rules.d")));
        assert_eq!(config.json.as_deref(), Some("-"));
        std::fs::write(&path, "rules: /abs/rules\njson: out.json\n").unwrap();
        let config = load_config(&path).unwrap();
        assert_eq!(config.rules, Some(PathBuf::from("/abs/rules")));
        assert_eq!(
            config.json,
            Some(dir.path().join("out.json").display().to_string())
        );
        assert!(matches!(
            load_config(&dir.path().join("absent.yaml")),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let inputs = [
            "\0",
            ":",
            "drop: {allowlist: [[[]]]}",
            "drop: &a {block_seconds: *a}",
            "metrics: [1:2]",
            "iface: !!binary AAAA",
            "mode: ~",
            "? [a]\n: b",
            "drop: {block_seconds: 1e99}",
        ];
        for text in inputs {
            let _ = parse_config("c.yaml", text);
        }
        let chars: Vec<char> = FULL.chars().collect();
        for cut in 0..chars.len() {
            let text: String = chars[..cut].iter().chain(&chars[cut + 1..]).collect();
            let _ = parse_config("c.yaml", &text);
        }
    }

    /// The config file and `--syslog` answer alike: both go through
    /// `SyslogTarget::parse`, and a config error keeps its place.
    #[test]
    fn syslog_urls_are_judged_as_the_command_line_judges_them() {
        for url in [
            "unix://relative/log",
            "udp://host",
            "tcp://[::1:514",
            "ftp://h:1",
        ] {
            assert!(SyslogTarget::parse(url).is_err(), "{url}");
            assert_error(&format!("syslog: {url}\n"), 1, 9, "`syslog` must be");
        }
        for url in [
            "TCP://127.0.0.1:514",
            "udp://[2001:db8::1]:514",
            "unix:///dev/log",
        ] {
            let config = parse_config("c.yaml", &format!("syslog: {url}\n")).unwrap();
            assert_eq!(
                config.syslog,
                Some(SyslogTarget::parse(url).unwrap()),
                "{url}"
            );
        }
    }
}
