//! Loads the XDP program, fills its rule maps, attaches it, and reads its
//! counters. The one place that talks to aya about the kernel program; the
//! inspect session's maps are in `inspect`.

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{
    Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues, PerfEventArray,
    ProgramArray,
};
use aya::programs::xdp::{XdpError, XdpLinkId};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};
use sensor_common::alert::{
    DEFAULT_ALERT_PACKET_BYTES, IFINDEX_DIRECT, MAX_ALERT_PACKET_BYTES, MAX_IFACES,
};
use sensor_common::decap::DecapConfig;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{
    AddrStatePage, BlockEntry, BlockPolicy, MASK_TABLE_LEN, MAX_RULES, RULE_GENERATIONS, RateKey,
    RateState, RuleInfo, RuleMask, RuleStats, SCOPE_ROWS_LEN, SensorConfig, block_when, mode,
    scope_index, scope_key_version, scope_row, value_scope,
};

use crate::kernel::preflight;
use crate::rules::CompiledRules;
use crate::settings::{AttachMode, DropMapSizes, DropPolicy, SensorMode};

mod inspect;
mod readings;

pub use self::inspect::{InspectCounters, InspectSummary};
pub use self::readings::KernelReader;

/// The kernel program, built by build.rs for the bpf target.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-xdp"));

/// The program's name in the object (its function name).
const PROGRAM: &str = "sensor";
/// The program `sensor` tail-calls for a packet that may carry a tunnel:
/// the decapsulation, and the inner packet's parse and judgement.
const INNER_PROGRAM: &str = "sensor_inner";

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(
        "this sensor binary was built without its XDP program (AYA_BUILD_SKIP was set); \
         rebuild without it"
    )]
    NoProgram,
    #[error(
        "missing capabilities: {}: the sensor needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
         (run it as root, or grant them as dist/sensor.service does)",
        .0.join(", ")
    )]
    MissingCapabilities(Vec<&'static str>),
    #[error(
        "the kernel refused to create map {name} (permission denied): a missing capability, \
         the memlock limit (`ulimit -l`; LimitMEMLOCK= in systemd) or a security policy"
    )]
    MapPermission { name: String },
    #[error(
        "not enough memory for map {name}: raise the memlock limit (`ulimit -l`; \
         LimitMEMLOCK= in systemd) or the cgroup's memory limit"
    )]
    MapMemory { name: String },
    #[error("loading the XDP object: {0}")]
    Object(#[from] EbpfError),
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error(
        "an XDP program is already attached to {iface}{}: stop whoever attached it, or \
         detach it (`ip link set dev {iface} xdp off`), and try again",
        holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    AlreadyAttached {
        iface: String,
        /// Program and owning processes, when they can be told.
        holder: Option<String>,
    },
    #[error("the kernel rejected the XDP program: {0}")]
    Verifier(String),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} is missing from the XDP object")]
    MissingMap(&'static str),
    #[error("cannot attach XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// Global packet counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub passed: u64,
    pub dropped: u64,
    pub not_ip: u64,
    pub alert_output_errors: u64,
    pub dropped_blocked_source: u64,
    pub dropped_static_blocklist: u64,
    pub dropped_by_rule: u64,
    pub would_drop: u64,
    pub block_errors: u64,
    /// Frames that may carry a tunnel whose tail call failed (unjudged).
    pub tunnel_lost: u64,
    /// Frames judged on a tunnel's inner packet.
    pub tunnel_packets: u64,
    /// Handshakes that proved their client's address.
    pub proofs: u64,
    /// Matches that did not block: source not proven / not repeated enough.
    pub refused_not_proven: u64,
    pub refused_not_repeated: u64,
    /// Sources blocked, by `block_when` (proven, repeated, first_match).
    pub blocks: [u64; block_when::COUNT as usize],
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> LoaderError {
    move |source| LoaderError::Map { name, source }
}

/// Every key of map `name`: an iteration error is an error, never an early
/// end (a half-cleared table would leave stale entries behind).
fn all_keys<K>(
    name: &'static str,
    keys: impl Iterator<Item = Result<K, MapError>>,
) -> Result<Vec<K>, LoaderError> {
    keys.collect::<Result<_, _>>().map_err(map_err(name))
}

/// A removal whose key may already be gone (LRU eviction, the kernel's own
/// expiry): only a real failure is an error.
fn removed_or_gone(name: &'static str, result: Result<(), MapError>) -> Result<(), LoaderError> {
    match result {
        Err(MapError::SyscallError(err)) if err.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        other => other.map_err(map_err(name)),
    }
}

/// A failed load as the user is told it: a map the kernel refused to
/// create names the map and the limit that refused it.
fn load_error(err: EbpfError) -> LoaderError {
    match err {
        EbpfError::MapError(MapError::CreateError { name, io_error }) => {
            match io_error.raw_os_error() {
                Some(libc::EPERM) => LoaderError::MapPermission { name },
                Some(libc::ENOMEM | libc::E2BIG) => LoaderError::MapMemory { name },
                _ => LoaderError::Object(EbpfError::MapError(MapError::CreateError {
                    name,
                    io_error,
                })),
            }
        }
        other => LoaderError::Object(other),
    }
}

/// The loaded (verified) kernel program and its maps.
pub struct Kernel {
    ebpf: Ebpf,
    /// The XDP links, by interface name, while attached: one program
    /// attached to every watched interface, so all share its maps.
    links: Vec<(String, XdpLinkId)>,
    /// The `IFACE_PACKETS` slot of each registered interface whose index
    /// is below [`IFINDEX_DIRECT`] (as written to `IFACE_SLOTS`).
    iface_slots: Vec<(u32, u32)>,
    /// The `SCOPE_INDEX` entries each generation's rules set, which the
    /// next rule set written there must clear.
    scope_entries: [Vec<u32>; RULE_GENERATIONS as usize],
}

impl Kernel {
    /// Loads the object and runs the verifier on the program.
    pub fn load() -> Result<Kernel, LoaderError> {
        Kernel::load_sized(&DropMapSizes::default())
    }

    /// [`Kernel::load`] with drop mode's maps sized as the config says.
    pub fn load_sized(sizes: &DropMapSizes) -> Result<Kernel, LoaderError> {
        if XDP_OBJECT.is_empty() {
            return Err(LoaderError::NoProgram);
        }
        let missing = preflight::missing_capabilities();
        if !missing.is_empty() {
            return Err(LoaderError::MissingCapabilities(missing));
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("HANDSHAKES", sizes.handshakes)
            .map_max_entries("PROVEN", sizes.proven)
            .map_max_entries("REPEATS", sizes.repeats)
            .load(XDP_OBJECT)
            .map_err(load_error)?;
        for name in [PROGRAM, INNER_PROGRAM] {
            let program: &mut Xdp = xdp_program_mut(&mut ebpf, name)?;
            program.load().map_err(|err| match err {
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                } => LoaderError::Verifier(format!(
                    "{name}: {io_error}\n{}",
                    log_tail(&verifier_log.to_string())
                )),
                other => LoaderError::Program(other),
            })?;
        }
        // `sensor` hands a packet that may carry a tunnel to
        // `sensor_inner` (entry 0) by a tail call through this array.
        {
            let fd = xdp_program_mut(&mut ebpf, INNER_PROGRAM)?
                .fd()?
                .try_clone()
                .map_err(|io_error| {
                    LoaderError::Program(ProgramError::SyscallError(aya::sys::SyscallError {
                        call: "dup",
                        io_error,
                    }))
                })?;
            let map = ebpf
                .map_mut("PROGRAMS")
                .ok_or(LoaderError::MissingMap("PROGRAMS"))?;
            let mut programs: ProgramArray<_> =
                ProgramArray::try_from(map).map_err(map_err("PROGRAMS"))?;
            programs.set(0, &fd, 0).map_err(map_err("PROGRAMS"))?;
        }
        let mut kernel = Kernel {
            ebpf,
            links: Vec::new(),
            iface_slots: Vec::new(),
            scope_entries: Default::default(),
        };
        kernel.write_alert_packet_bytes(DEFAULT_ALERT_PACKET_BYTES)?;
        kernel.write_decap(&DecapConfig::DEFAULT)?;
        Ok(kernel)
    }

    /// Which tunnels the program decapsulates (`decap:`).
    pub fn write_decap(&mut self, decap: &DecapConfig) -> Result<(), LoaderError> {
        let decap = *decap;
        self.update_config(|config| config.decap = decap)
    }

    /// How many of each alerting frame's first bytes the alert records
    /// carry (EVE's `packet`); 0 turns the capture off.
    pub fn write_alert_packet_bytes(&mut self, bytes: u16) -> Result<(), LoaderError> {
        let bytes = bytes.min(MAX_ALERT_PACKET_BYTES);
        self.update_config(|config| config.alert_packet_bytes = bytes)
    }

    /// Installs `rules` and the mode. The rules go into the generation of
    /// the tables not in force, which then replaces the other in one write:
    /// no packet ever sees half of a rule set. Returns that generation.
    pub fn write_rules(
        &mut self,
        rules: &CompiledRules,
        sensor_mode: SensorMode,
    ) -> Result<u8, LoaderError> {
        let generation = 1 - self.generation()?;
        let mask_base = generation as u32 * MASK_TABLE_LEN;
        let mut masks: Array<_, RuleMask> = self.map_mut("MASKS")?;
        for index in 0..MASK_TABLE_LEN {
            let value = rules
                .masks
                .get(index as usize)
                .copied()
                .unwrap_or(RuleMask::EMPTY);
            masks
                .set(mask_base + index, value, 0)
                .map_err(map_err("MASKS"))?;
        }
        let slot_base = generation as u32 * MAX_RULES;
        let mut infos: Array<_, RuleInfo> = self.map_mut("RULES")?;
        for slot in 0..MAX_RULES {
            let info = rules.rules.get(slot as usize).copied().unwrap_or_default();
            infos
                .set(slot_base + slot, info, 0)
                .map_err(map_err("RULES"))?;
        }
        for (name, prefixes) in [
            ("SRC_SCOPE", &rules.src_prefixes),
            ("DST_SCOPE", &rules.dst_prefixes),
        ] {
            let mut trie: LpmTrie<_, AddrKey, RuleMask> = self.map_mut(name)?;
            let stale: Vec<Key<AddrKey>> = all_keys(name, trie.keys())?
                .into_iter()
                .filter(|key| key.data().version >> 7 == generation)
                .collect();
            for key in stale {
                trie.remove(&key).map_err(map_err(name))?;
            }
            for (prefix, mask) in prefixes.iter() {
                let mut key = prefix.key;
                key.version = scope_key_version(key.version, generation);
                trie.insert(&Key::new(prefix.prefix_len, key), mask, 0)
                    .map_err(map_err(name))?;
            }
        }
        self.write_value_scopes(rules, generation)?;
        // The switch: one write of the config entry.
        self.update_config(|config| {
            config.generation = generation;
            config.mode = match sensor_mode {
                SensorMode::Ids => mode::IDS,
                SensorMode::Drop => mode::DROP,
            }
        })?;
        Ok(generation)
    }

    /// The port and VLAN scopes of `rules` into generation `generation`:
    /// each distinct mask once in `SCOPE_ROWS`, each value's row in
    /// `SCOPE_INDEX`, after clearing the entries the rule set last written
    /// to this generation had set.
    fn write_value_scopes(
        &mut self,
        rules: &CompiledRules,
        generation: u8,
    ) -> Result<(), LoaderError> {
        let mut rows: Vec<RuleMask> = Vec::new();
        let mut row_of: std::collections::HashMap<RuleMask, u32> = Default::default();
        let mut entries: Vec<(u32, u32)> = Vec::new();
        for (table, values) in [
            (value_scope::DST_PORTS, &rules.ports),
            (value_scope::SRC_PORTS, &rules.src_ports),
            (value_scope::VLANS, &rules.vlans),
        ] {
            for (value, mask) in values {
                let row = *row_of.entry(*mask).or_insert_with(|| {
                    rows.push(*mask);
                    rows.len() as u32
                });
                entries.push((scope_index(generation, table, *value), row));
            }
        }
        // The rule loader's limits keep the rows within the table.
        if rows.len() >= SCOPE_ROWS_LEN as usize {
            return Err(LoaderError::Map {
                name: "SCOPE_ROWS",
                source: MapError::OutOfBounds {
                    index: rows.len() as u32,
                    max_entries: SCOPE_ROWS_LEN,
                },
            });
        }
        let mut row_map: Array<_, RuleMask> = self.map_mut("SCOPE_ROWS")?;
        for (at, mask) in rows.iter().enumerate() {
            row_map
                .set(scope_row(generation, at as u32 + 1), mask, 0)
                .map_err(map_err("SCOPE_ROWS"))?;
        }
        // Cleared first, then written: the generation is not in force.
        let stale: Vec<u32> = std::mem::take(&mut self.scope_entries[generation as usize & 1]);
        let mut index: Array<_, u32> = self.map_mut("SCOPE_INDEX")?;
        for at in stale {
            index.set(at, 0, 0).map_err(map_err("SCOPE_INDEX"))?;
        }
        for (at, row) in &entries {
            index.set(*at, row, 0).map_err(map_err("SCOPE_INDEX"))?;
        }
        self.scope_entries[generation as usize & 1] = entries.iter().map(|(at, _)| *at).collect();
        Ok(())
    }

    /// The rule tables in force.
    pub fn generation(&self) -> Result<u8, LoaderError> {
        let map = self
            .ebpf
            .map("CONFIG")
            .ok_or(LoaderError::MissingMap("CONFIG"))?;
        let config: Array<_, SensorConfig> = Array::try_from(map).map_err(map_err("CONFIG"))?;
        Ok(config.get(&0, 0).map_err(map_err("CONFIG"))?.generation & 1)
    }

    /// Drop mode's safety settings: the allowlist (never dropped nor
    /// blocked), the static blocklist (always dropped), and dry run.
    pub fn write_drop_policy(&mut self, policy: &DropPolicy) -> Result<(), LoaderError> {
        for (name, nets) in [
            ("ALLOWLIST", &policy.allowlist),
            ("STATIC_BLOCKLIST", &policy.blocklist),
        ] {
            let mut trie: LpmTrie<_, AddrKey, u8> = self.map_mut(name)?;
            let stale: Vec<Key<AddrKey>> = all_keys(name, trie.keys())?;
            for key in stale {
                trie.remove(&key).map_err(map_err(name))?;
            }
            for net in nets {
                let prefix = crate::rules::compile::addr_prefix(net);
                trie.insert(&Key::new(prefix.prefix_len, prefix.key), 1, 0)
                    .map_err(map_err(name))?;
            }
        }
        let mut block: Array<_, BlockPolicy> = self.map_mut("DROP_POLICY")?;
        block
            .set(0, policy.block, 0)
            .map_err(map_err("DROP_POLICY"))?;
        let dry_run = policy.dry_run;
        self.update_config(|config| config.dry_run = dry_run as u8)
    }

    /// The size the kernel gave the hash map `name` when it was loaded.
    pub fn hash_map_entries(&self, name: &'static str) -> Result<u32, LoaderError> {
        use aya::maps::Map;
        let data = match self.ebpf.map(name).ok_or(LoaderError::MissingMap(name))? {
            Map::HashMap(data) | Map::LruHashMap(data) => data,
            _ => return Err(LoaderError::MissingMap(name)),
        };
        Ok(data.info().map_err(map_err(name))?.max_entries())
    }

    /// Keys the hash that places per-address state in the kernel's tables
    /// (`sensor_common::sketch`), so that spoofed sources cannot be aimed at
    /// one source's slot. `sensor run` sets a random one; tests that compare
    /// the kernel with replay leave it at 0, replay's.
    pub fn set_hash_seed(&mut self, seed: u32) -> Result<(), LoaderError> {
        self.update_config(|config| config.hash_seed = seed)
    }

    fn update_config(&mut self, change: impl FnOnce(&mut SensorConfig)) -> Result<(), LoaderError> {
        let mut config: Array<_, SensorConfig> = self.map_mut("CONFIG")?;
        let mut value = config.get(&0, 0).map_err(map_err("CONFIG"))?;
        change(&mut value);
        config.set(0, value, 0).map_err(map_err("CONFIG"))
    }

    /// Puts a block back (one saved by an earlier run).
    pub fn restore_block(&mut self, src: &AddrKey, entry: &BlockEntry) -> Result<(), LoaderError> {
        let mut hash: HashMap<_, AddrKey, BlockEntry> = self.map_mut("BLOCKED")?;
        hash.insert(src, entry, 0).map_err(map_err("BLOCKED"))
    }

    /// Attaches to `iface` (as well as to any interface it is attached to
    /// already). Returns the mode actually used.
    pub fn attach(&mut self, iface: &str, how: AttachMode) -> Result<&'static str, LoaderError> {
        if preflight::interface_index(iface).is_none() {
            return Err(LoaderError::NoInterface(iface.to_owned()));
        }
        let attempts: &[(XdpMode, &'static str)] = match how {
            AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
            AttachMode::Native => &[(XdpMode::Driver, "native")],
            AttachMode::Skb => &[(XdpMode::Skb, "skb")],
        };
        let program = program_mut(&mut self.ebpf)?;
        let mut last_error = None;
        for (xdp_mode, name) in attempts {
            match program.attach(iface, *xdp_mode) {
                Ok(link) => {
                    self.links.push((iface.to_owned(), link));
                    return Ok(name);
                }
                Err(err @ ProgramError::UnknownInterface { .. }) => {
                    return Err(LoaderError::Attach {
                        iface: iface.to_string(),
                        mode: name,
                        source: err,
                    });
                }
                Err(err) => {
                    tracing::warn!(iface, mode = name, error = %err, "XDP attach refused");
                    last_error = Some((name, err));
                }
            }
        }
        let (mode, source) = last_error.expect("at least one attach attempt");
        let errno = match &source {
            ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
            ProgramError::XdpError(XdpError::NetlinkError(e)) => e.raw_os_error(),
            _ => None,
        };
        if matches!(errno, Some(libc::EBUSY | libc::EEXIST)) {
            return Err(LoaderError::AlreadyAttached {
                iface: iface.to_owned(),
                holder: preflight::xdp_holder(iface),
            });
        }
        Err(LoaderError::Attach {
            iface: iface.to_string(),
            mode,
            source,
        })
    }

    /// Detaches from every interface (dropping the `Kernel` does too).
    /// Every link is tried; the first error is returned.
    pub fn detach(&mut self) -> Result<(), LoaderError> {
        let mut first_error = None;
        let ifaces: Vec<String> = self.links.iter().map(|(iface, _)| iface.clone()).collect();
        for iface in ifaces {
            if let Err(err) = self.detach_from(&iface) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Detaches from `iface` only (a no-op when not attached to it).
    pub fn detach_from(&mut self, iface: &str) -> Result<(), LoaderError> {
        if let Some(at) = self.links.iter().position(|(name, _)| name == iface) {
            let (_, link) = self.links.remove(at);
            program_mut(&mut self.ebpf)?.detach(link)?;
        }
        Ok(())
    }

    /// Starts counting the packets of interface `ifindex` (a slot of
    /// `IFACE_PACKETS`, zeroed, or for a high index an entry of zeros in
    /// `IFACE_PACKETS_WIDE`; kept if there is one already).
    pub fn count_iface_packets(&mut self, ifindex: u32) -> Result<(), LoaderError> {
        if ifindex >= IFINDEX_DIRECT {
            return self.count_wide_iface_packets(ifindex);
        }
        if self
            .iface_slots
            .iter()
            .any(|(counted, _)| *counted == ifindex)
        {
            return Ok(());
        }
        let free = (1..=MAX_IFACES).find(|slot| self.iface_slots.iter().all(|(_, s)| s != slot));
        let Some(slot) = free else {
            return Err(LoaderError::Map {
                name: "IFACE_PACKETS",
                source: MapError::OutOfBounds {
                    index: MAX_IFACES + 1,
                    max_entries: MAX_IFACES + 1,
                },
            });
        };
        let cpus = possible_cpus("IFACE_PACKETS")?;
        let mut packets: PerCpuArray<_, u64> = self.map_mut("IFACE_PACKETS")?;
        packets
            .set(slot, per_cpu_zeros("IFACE_PACKETS", cpus)?, 0)
            .map_err(map_err("IFACE_PACKETS"))?;
        let mut slots: Array<_, u32> = self.map_mut("IFACE_SLOTS")?;
        slots
            .set(ifindex, slot, 0)
            .map_err(map_err("IFACE_SLOTS"))?;
        self.iface_slots.push((ifindex, slot));
        Ok(())
    }

    /// [`Kernel::count_iface_packets`] for an index of [`IFINDEX_DIRECT`]
    /// or above.
    fn count_wide_iface_packets(&mut self, ifindex: u32) -> Result<(), LoaderError> {
        let cpus = possible_cpus("IFACE_PACKETS_WIDE")?;
        let mut map: PerCpuHashMap<_, u32, u64> = self.map_mut("IFACE_PACKETS_WIDE")?;
        // Only userspace adds entries, so nothing can come between.
        match map.get(&ifindex, 0) {
            Ok(_) => Ok(()),
            Err(MapError::KeyNotFound) => map
                .insert(ifindex, per_cpu_zeros("IFACE_PACKETS_WIDE", cpus)?, 0)
                .map_err(map_err("IFACE_PACKETS_WIDE")),
            Err(err) => Err(map_err("IFACE_PACKETS_WIDE")(err)),
        }
    }

    /// Packets seen on interface `ifindex`, summed over CPUs (0 when it is
    /// not counted).
    pub fn iface_packets(&self, ifindex: u32) -> Result<u64, LoaderError> {
        readings::IfaceMaps::of(self)?.packets(ifindex)
    }

    /// Stops counting interface `ifindex` (gone): returns its last count.
    pub fn forget_iface_packets(&mut self, ifindex: u32) -> Result<u64, LoaderError> {
        let last = self.iface_packets(ifindex)?;
        if ifindex >= IFINDEX_DIRECT {
            let mut map: PerCpuHashMap<_, u32, u64> = self.map_mut("IFACE_PACKETS_WIDE")?;
            removed_or_gone("IFACE_PACKETS_WIDE", map.remove(&ifindex))?;
            return Ok(last);
        }
        if let Some(at) = self.iface_slots.iter().position(|(i, _)| *i == ifindex) {
            let mut slots: Array<_, u32> = self.map_mut("IFACE_SLOTS")?;
            slots.set(ifindex, 0, 0).map_err(map_err("IFACE_SLOTS"))?;
            self.iface_slots.remove(at);
        }
        Ok(last)
    }

    /// Runs the program `repeat` times on `frame` in the kernel
    /// (BPF_PROG_TEST_RUN); returns the verdict and the kernel's average
    /// time per run. For benchmarks.
    pub fn test_run_repeat(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), LoaderError> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM)
            .ok_or(LoaderError::Verifier("program missing".into()))?
            .try_into()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let result = program.test_run(opts)?;
        Ok((result.return_value, result.duration))
    }

    /// Instructions the verifier processed to accept the program (its
    /// complexity, against the kernel's limit of one million).
    pub fn verified_insns(&self) -> Result<Option<u32>, LoaderError> {
        self.verified_insns_of(PROGRAM)
    }

    /// [`Kernel::verified_insns`] of one of the object's programs by name
    /// (`sensor_inner`: verified on its own, with its
    /// own budget).
    pub fn program_verified_insns(&self, name: &str) -> Result<Option<u32>, LoaderError> {
        self.verified_insns_of(name)
    }

    fn verified_insns_of(&self, name: &str) -> Result<Option<u32>, LoaderError> {
        let program: &Xdp = self
            .ebpf
            .program(name)
            .ok_or(LoaderError::Verifier("program missing".into()))?
            .try_into()?;
        Ok(program.info()?.verified_instruction_count())
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN); returns the XDP verdict.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, LoaderError> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM)
            .ok_or(LoaderError::Verifier("program missing".into()))?
            .try_into()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        Ok(program.test_run(opts)?.return_value)
    }

    /// Takes the perf event array the alerts arrive on.
    pub fn take_events(&mut self) -> Result<PerfEventArray<MapData>, LoaderError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(LoaderError::MissingMap("EVENTS"))?;
        PerfEventArray::try_from(map).map_err(map_err("EVENTS"))
    }

    /// Per-slot hit and alert counters of the rule set in force, summed
    /// over CPUs (index = slot, as in `CompiledRules::rules`).
    pub fn rule_stats(&self) -> Result<Vec<RuleStats>, LoaderError> {
        let base = (self.generation()? as u32 * MAX_RULES) as usize;
        let all = self.rule_stats_all()?;
        Ok(all[base..base + MAX_RULES as usize].to_vec())
    }

    /// Readies the generation not in force for a new rule set: returns its
    /// slots' final counters, zeroes them, and forgets the flood and scan
    /// windows keyed by its slots (the rate limiter, keyed by rule id,
    /// outlives reloads).
    pub fn recycle_generation(&mut self, generation: u8) -> Result<Vec<RuleStats>, LoaderError> {
        let base = generation as u32 * MAX_RULES;
        let finals = self.rule_stats_all()?[base as usize..(base + MAX_RULES) as usize].to_vec();
        let cpus = possible_cpus("RULE_STATS")?;
        let mut array: PerCpuArray<_, RuleStats> = self.map_mut("RULE_STATS")?;
        for slot in base..base + MAX_RULES {
            let zeros = per_cpu_zeros("RULE_STATS", cpus)?;
            array.set(slot, zeros, 0).map_err(map_err("RULE_STATS"))?;
        }
        // The rate limiter is keyed by rule id, not slot: it outlives
        // reloads on purpose (see `RateKey`), so it is not cleared here.
        // Flood and scan windows of the recycled generation's rules:
        // emptied, so the new rule set's windows start from zero.
        let in_generation = |slot: u32| slot / MAX_RULES == generation as u32;
        // Page by page (the map holds the TTL baselines too, which a reload
        // keeps). A page is read, then written back: an update the program
        // makes to the same page in between (a count, a baseline) is undone,
        // as a racing CPU's can be — a window one packet short, a baseline
        // taught again by the source's next segment.
        let mut pages: Array<_, AddrStatePage> = self.map_mut("ADDR_STATE")?;
        for index in 0..pages.len() {
            let mut page = pages.get(&index, 0).map_err(map_err("ADDR_STATE"))?;
            let mut stale = false;
            for way in page.syn.iter_mut().flat_map(|bucket| &mut bucket.ways) {
                if way.fingerprint != 0 && in_generation(way.slot) {
                    *way = Default::default();
                    stale = true;
                }
            }
            // The same for the scan windows.
            for way in page.scan.iter_mut().flat_map(|bucket| &mut bucket.ways) {
                if way.fingerprint != 0 && in_generation(way.slot as u32) {
                    *way = Default::default();
                    stale = true;
                }
            }
            if stale {
                pages.set(index, page, 0).map_err(map_err("ADDR_STATE"))?;
            }
        }
        Ok(finals)
    }

    /// Every (rule slot, source, cpu) rate-limiter entry, for the aggregator's sweep.
    pub fn rate_entries(&self) -> Result<Vec<(RateKey, u32, RateState)>, LoaderError> {
        let map = self
            .ebpf
            .map("RATE")
            .ok_or(LoaderError::MissingMap("RATE"))?;
        let hash: PerCpuHashMap<_, RateKey, RateState> =
            PerCpuHashMap::try_from(map).map_err(map_err("RATE"))?;
        crate::kernel::rate::read_entries(&hash)
    }

    /// Takes the rate map out of the program, for reading elsewhere (then
    /// [`Kernel::rate_entries`] reports it missing).
    pub fn take_rate_reader(&mut self) -> Result<crate::kernel::rate::RateReader, LoaderError> {
        let map = self
            .ebpf
            .take_map("RATE")
            .ok_or(LoaderError::MissingMap("RATE"))?;
        let hash = PerCpuHashMap::try_from(map).map_err(map_err("RATE"))?;
        Ok(crate::kernel::rate::RateReader::new(hash))
    }

    fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, LoaderError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(LoaderError::MissingMap(name))?;
        M::try_from(map).map_err(map_err(name))
    }
}

/// The number of possible CPUs: the length of every per-CPU value.
fn possible_cpus(name: &'static str) -> Result<usize, LoaderError> {
    aya::util::nr_cpus().map_err(|(what, err)| LoaderError::Map {
        name,
        source: MapError::SyscallError(aya::sys::SyscallError {
            call: what,
            io_error: err,
        }),
    })
}

/// A zero value for every CPU.
fn per_cpu_zeros<V: aya::Pod + Default>(
    name: &'static str,
    cpus: usize,
) -> Result<PerCpuValues<V>, LoaderError> {
    let zeros: Vec<V> = (0..cpus).map(|_| V::default()).collect();
    PerCpuValues::try_from(zeros).map_err(|err| LoaderError::Map {
        name,
        source: MapError::SyscallError(aya::sys::SyscallError {
            call: "PerCpuValues",
            io_error: err,
        }),
    })
}

/// The end of a verifier log: where it gave up, and its statistics.
fn log_tail(log: &str) -> String {
    const LINES: usize = 40;
    let lines: Vec<&str> = log.lines().collect();
    let skipped = lines.len().saturating_sub(LINES);
    let mut tail = lines[skipped..].join("\n");
    if skipped > 0 {
        tail = format!("[... {skipped} earlier lines of the verifier log ...]\n{tail}");
    }
    tail
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoaderError> {
    xdp_program_mut(ebpf, PROGRAM)
}

fn xdp_program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, LoaderError> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| LoaderError::Verifier(format!("program {name} missing from the object")))?;
    Ok(program.try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::filter::FilterProgram;

    fn syscall_error(errno: i32) -> MapError {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_get_next_key",
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    /// A map whose key walk fails part-way: the clearing of a rule
    /// generation, the drop lists and the summary maps must see the error,
    /// never a short list of keys (which would leave stale entries behind).
    #[test]
    fn a_key_walk_that_fails_is_an_error_not_a_short_list() {
        let walk = vec![Ok(1u32), Ok(2), Err(syscall_error(libc::EFAULT)), Ok(3)];
        match all_keys("PORT_SCOPE", walk.into_iter()) {
            Err(LoaderError::Map { name, source }) => {
                assert_eq!(name, "PORT_SCOPE");
                assert!(
                    source.to_string().contains("bpf_map_get_next_key"),
                    "{source}"
                );
            }
            other => panic!("a failed walk must be an error: {other:?}"),
        }
        let whole = all_keys("PORT_SCOPE", vec![Ok(1u32), Ok(2)].into_iter()).unwrap();
        assert_eq!(whole, [1, 2]);
    }

    /// A key already gone (LRU eviction, the kernel's own expiry) is fine;
    /// any other failed removal is an error.
    #[test]
    fn a_removal_fails_unless_the_key_is_already_gone() {
        assert!(removed_or_gone("BLOCKED", Ok(())).is_ok());
        assert!(removed_or_gone("BLOCKED", Err(syscall_error(libc::ENOENT))).is_ok());
        for errno in [libc::EPERM, libc::EBUSY, libc::EINVAL] {
            match removed_or_gone("SUMMARY_TALKERS", Err(syscall_error(errno))) {
                Err(LoaderError::Map { name, .. }) => assert_eq!(name, "SUMMARY_TALKERS"),
                other => panic!("errno {errno} must be an error: {other:?}"),
            }
        }
        assert!(removed_or_gone("BLOCKED", Err(MapError::KeyNotFound)).is_err());
    }

    /// Map creation refused (memlock, the memory cgroup, a security
    /// policy): one line naming the map and what to raise, not aya's error.
    #[test]
    fn a_refused_map_creation_names_the_map_and_the_limit() {
        let refused = |errno: i32| {
            load_error(EbpfError::MapError(MapError::CreateError {
                name: "RATE".into(),
                io_error: std::io::Error::from_raw_os_error(errno),
            }))
        };
        for errno in [libc::ENOMEM, libc::E2BIG] {
            let message = refused(errno).to_string();
            assert!(
                message.starts_with("not enough memory for map RATE: raise the memlock limit"),
                "{message}"
            );
            assert!(message.contains("cgroup's memory limit"), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        let message = refused(libc::EPERM).to_string();
        assert!(
            message.starts_with("the kernel refused to create map RATE (permission denied)"),
            "{message}"
        );
        assert!(matches!(refused(libc::EINVAL), LoaderError::Object(_)));
    }

    /// The second handles read the same maps as the program's own.
    #[test]
    fn the_reader_sees_what_the_kernel_counts() {
        if !crate::testing::bpf_available("the_reader_sees_what_the_kernel_counts") {
            return;
        }
        use crate::testing::frames::{self, flags};
        let mut kernel = Kernel::load().expect("XDP program loads");
        kernel
            .write_rules(&CompiledRules::default(), SensorMode::Ids)
            .unwrap();
        let mut reader = kernel.reader().expect("second handles");
        let frame = frames::ipv4_tcp([198, 51, 100, 7], [192, 0, 2, 10], 41000, 80, flags::SYN);
        for _ in 0..4 {
            kernel.test_run(&frame).unwrap();
        }
        assert_eq!(reader.counters().unwrap().packets, 4);
        assert_eq!(reader.counters().unwrap(), kernel.counters().unwrap());
        assert_eq!(
            reader.rule_stats_all().unwrap(),
            kernel.rule_stats_all().unwrap()
        );
        let src = AddrKey::default();
        let entry = BlockEntry {
            until_ns: 5,
            ..BlockEntry::default()
        };
        kernel.restore_block(&src, &entry).unwrap();
        assert_eq!(reader.blocked_sources().unwrap(), [(src, entry)]);
        assert_eq!(reader.expire_blocks(10).unwrap(), [(src, entry)]);
        assert!(kernel.blocked_sources().unwrap().is_empty());
        assert!(reader.proven_sources().unwrap().is_empty());
    }

    /// The verifier is part of the test suite: load the real program.
    #[test]
    fn kernel_program_passes_the_verifier() {
        if !crate::testing::bpf_available("kernel_program_passes_the_verifier") {
            return;
        }
        let kernel = Kernel::load().expect("XDP program loads");
        // Shown for the record: the verifier's limit is 1,000,000.
        eprintln!(
            "verifier: {:?} instructions processed",
            kernel.verified_insns().expect("program info")
        );
        let counters = kernel.counters().expect("counters readable");
        assert_eq!(counters.packets, 0);
    }

    /// `sensor run` hosts one inspect session after another in the same
    /// program: each starts with zero counters, summary maps and budget.
    #[test]
    fn drop_maps_take_the_configured_sizes() {
        if !crate::testing::bpf_available("drop_maps_take_the_configured_sizes") {
            return;
        }
        let sizes = DropMapSizes {
            handshakes: 1_024,
            proven: 2_048,
            repeats: 4_096,
        };
        let kernel = Kernel::load_sized(&sizes).expect("XDP program loads");
        for (name, want) in [("HANDSHAKES", 1_024), ("PROVEN", 2_048), ("REPEATS", 4_096)] {
            assert_eq!(kernel.hash_map_entries(name).unwrap(), want, "{name}");
        }
        let default = Kernel::load().expect("XDP program loads");
        assert_eq!(
            default.hash_map_entries("HANDSHAKES").unwrap(),
            DropMapSizes::default().handshakes
        );
    }

    #[test]
    fn inspect_sessions_start_from_zero() {
        if !crate::testing::bpf_available("inspect_sessions_start_from_zero") {
            return;
        }
        use crate::testing::frames::{self, flags};
        let mut kernel = Kernel::load().expect("XDP program loads");
        kernel
            .write_rules(&CompiledRules::default(), SensorMode::Ids)
            .unwrap();
        let frame = frames::ipv4_tcp([198, 51, 100, 7], [192, 0, 2, 10], 41000, 80, flags::SYN);
        let all = FilterProgram::default();
        // BPF_PROG_TEST_RUN frames arrive on the namespace's loopback.
        let lo = preflight::interface_index("lo").expect("lo");

        kernel.start_inspect(&all, 1, true, lo).unwrap();
        for _ in 0..3 {
            kernel.test_run(&frame).unwrap();
        }
        let counters = kernel.inspect_counters().unwrap();
        assert_eq!(counters.matched, 3, "{counters:?}");
        assert_eq!(counters.skipped_rate, 2, "a budget of 1: {counters:?}");
        let summary = kernel.inspect_summary(0).unwrap();
        assert_eq!((summary.protocols[6], summary.talkers.len()), (3, 1));
        kernel.stop_inspect().unwrap();
        kernel.test_run(&frame).unwrap();
        assert_eq!(kernel.inspect_counters().unwrap().matched, 3, "off");

        kernel.start_inspect(&all, 1, true, lo).unwrap();
        assert_eq!(
            kernel.inspect_counters().unwrap(),
            InspectCounters::default()
        );
        let summary = kernel.inspect_summary(0).unwrap();
        assert!(summary.talkers.is_empty(), "{summary:?}");
        assert!(
            [&summary.protocols, &summary.tcp_flags, &summary.ttl]
                .iter()
                .all(|counts| counts.iter().all(|&n| n == 0))
        );
        kernel.test_run(&frame).unwrap();
        let counters = kernel.inspect_counters().unwrap();
        assert_eq!(counters.matched, 1, "{counters:?}");
        assert_eq!(counters.skipped_rate, 0, "a fresh budget: {counters:?}");
        assert_eq!(counters.sent + counters.output_errors, 1, "{counters:?}");
    }
}
