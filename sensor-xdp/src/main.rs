//! The sensor's XDP program: parse, evaluate the compiled rules, count,
//! and send alert records to userspace. Thin on purpose: the parser and the
//! rule logic live in `sensor-common`, shared with `sensor replay`.
#![no_std]
#![no_main]
// `asm!` on BPF: word loads of packet bytes (see `word_at`).
#![feature(asm_experimental_arch)]
#![deny(clippy::undocumented_unsafe_blocks)]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_CURRENT_CPU, BPF_F_MMAPABLE, BPF_NOEXIST, xdp_action, xdp_md},
    cty::c_void,
    helpers::{
        bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns,
        generated::{bpf_loop, bpf_perf_event_output, bpf_xdp_load_bytes},
    },
    macros::{map, xdp},
    maps::{
        Array, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray,
        ProgramArray, lpm_trie::Key,
    },
    programs::XdpContext,
};
use sensor_common::{
    alert::{AlertRecord, IFINDEX_DIRECT, MAX_IFACES, block, captured_len, outcome},
    bytes::{MAX_PARSE_OFFSET, PacketBytes},
    decap::{candidate, tunnel_candidate, tunnel_protocol},
    detect::{AlertHead, DetectState, RuleTables, SUMMARY_BITS, enforce, process},
    filter::{
        FilterProgram, FilterVm, InspectBudget, InspectConfig, InspectRecord, MAX_FILTER_OPS,
        TalkerStats, inspect_budget_step, inspect_counter, summary,
    },
    ipv6_chain::{ChainWalk, chain_step},
    options::{MAX_OPTION_BYTES, OPTION_BUFFER, OptionWalk, option_step},
    packet::{AddrKey, IP_VERSION_NONE, MAX_IPV6_EXT_HEADERS, PacketMeta, flag},
    parse::{may_carry_ip, open_inner, parse_inner, parse_outer, peek_source_with},
    proof::{judge_block, observe, seen},
    sketch::{SCAN_PER_PAGE, STATE_PAGES, SYN_PER_PAGE, TTL_PER_PAGE},
    tables::{
        ADDR_SCOPE_ENTRIES, AddrStatePage, AlertBudget, BLOCKED_ENTRIES, BlockEntry, BlockPolicy,
        DROP_LIST_ENTRIES, HANDSHAKE_ENTRIES, Handshake, HandshakeKey, MASK_TABLE_LEN, MASK_WORDS,
        MAX_RULES, PROVEN_ENTRIES, RATE_ENTRIES, REPEAT_ENTRIES, RULE_GENERATIONS, RateKey,
        RateState, RepeatWindow, RuleInfo, RuleMask, RuleStats, SCOPE_INDEX_LEN, SCOPE_ROWS_LEN,
        ScanBucket, SensorConfig, SynBucket, TRACK_LINE, TRACK_SLOTS, counter, mode, scope_index,
        scope_key_version, scope_row, value_scope,
    },
    zerocopy::FromBytes,
};

// ---- maps: the compiled rule set (written by userspace) --------------------

#[map]
static MASKS: Array<RuleMask> = Array::with_max_entries(MASK_TABLE_LEN * RULE_GENERATIONS, 0);
#[map]
static RULES: Array<RuleInfo> = Array::with_max_entries(MAX_RULES * RULE_GENERATIONS, 0);
#[map]
static SRC_SCOPE: LpmTrie<AddrKey, RuleMask> =
    LpmTrie::with_max_entries(ADDR_SCOPE_ENTRIES * RULE_GENERATIONS, 0);
#[map]
static DST_SCOPE: LpmTrie<AddrKey, RuleMask> =
    LpmTrie::with_max_entries(ADDR_SCOPE_ENTRIES * RULE_GENERATIONS, 0);
/// Port and VLAN scopes: value to row of `SCOPE_ROWS` (see
/// `sensor_common::tables::value_scope`).
#[map]
static SCOPE_INDEX: Array<u32> = Array::with_max_entries(SCOPE_INDEX_LEN * RULE_GENERATIONS, 0);
#[map]
static SCOPE_ROWS: Array<RuleMask> = Array::with_max_entries(SCOPE_ROWS_LEN * RULE_GENERATIONS, 0);
#[map]
static CONFIG: Array<SensorConfig> = Array::with_max_entries(1, 0);
/// Drop mode: sources never dropped nor blocked.
#[map]
static ALLOWLIST: LpmTrie<AddrKey, u8> = LpmTrie::with_max_entries(DROP_LIST_ENTRIES, 0);
/// Drop mode: sources always dropped.
#[map]
static STATIC_BLOCKLIST: LpmTrie<AddrKey, u8> = LpmTrie::with_max_entries(DROP_LIST_ENTRIES, 0);
/// Drop mode: sources blocked by `drop` rules, until their time is up.
#[map]
static BLOCKED: LruHashMap<AddrKey, BlockEntry> = LruHashMap::with_max_entries(BLOCKED_ENTRIES, 0);
/// Drop mode: when a match blocks its source (`block_when` and its numbers).
#[map]
static DROP_POLICY: Array<BlockPolicy> = Array::with_max_entries(1, 0);
/// Drop mode: TCP handshakes under way (`sensor_common::proof`).
#[map]
static HANDSHAKES: LruHashMap<HandshakeKey, Handshake> =
    LruHashMap::with_max_entries(HANDSHAKE_ENTRIES, 0);
/// Drop mode: proven sources, with the time of their last handshake.
#[map]
static PROVEN: LruHashMap<AddrKey, u64> = LruHashMap::with_max_entries(PROVEN_ENTRIES, 0);
/// Drop mode, `block_when: repeated`: matches per source in its window.
#[map]
static REPEATS: LruHashMap<AddrKey, RepeatWindow> = LruHashMap::with_max_entries(REPEAT_ENTRIES, 0);

// ---- maps: state and counters ------------------------------------------------

/// TTL baselines by source, `syn_flood` / `flood` windows by (rule,
/// address) and `scan` windows by (rule, source), an address's in one page
/// ([`sensor_common::sketch`]). Mmapable: the kernel then aligns the values
/// to pages.
#[map]
static ADDR_STATE: Array<AddrStatePage> = Array::with_max_entries(STATE_PAGES, BPF_F_MMAPABLE);
#[map]
static RATE: LruPerCpuHashMap<RateKey, RateState> =
    LruPerCpuHashMap::with_max_entries(RATE_ENTRIES, 0);
/// Each CPU's filter in front of `RATE`'s tracked check: the low byte of the
/// latest tick a (rule, source) hashing to the slot counted a match on its
/// own account (`tables::TRACK_SLOTS`).
#[map]
static TRACK_FILTER: PerCpuArray<[u8; TRACK_LINE as usize]> =
    PerCpuArray::with_max_entries(TRACK_SLOTS / TRACK_LINE, 0);
/// Each CPU's alert-record budget (see `ALERT_BUDGET`).
#[map]
static ALERT_BUDGET: PerCpuArray<AlertBudget> = PerCpuArray::with_max_entries(1, 0);
#[map]
static RULE_STATS: PerCpuArray<RuleStats> =
    PerCpuArray::with_max_entries(MAX_RULES * RULE_GENERATIONS, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

// ---- maps: output ----------------------------------------------------------------

/// Packets seen per interface (per CPU), by the slot userspace gave the
/// interface in `IFACE_SLOTS`; slot 0 counts the unregistered ones and is
/// never read.
#[map]
static IFACE_PACKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_IFACES + 1, 0);
/// The `IFACE_PACKETS` slot of each interface below [`IFINDEX_DIRECT`], by
/// ifindex (0: not registered). Userspace writes it; the program only reads.
#[map]
static IFACE_SLOTS: Array<u32> = Array::with_max_entries(IFINDEX_DIRECT, 0);
/// Packets seen per interface of index [`IFINDEX_DIRECT`] or above, by
/// ifindex (per CPU). Userspace adds an entry for each such interface.
#[map]
static IFACE_PACKETS_WIDE: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(MAX_IFACES, 0);
#[map]
static EVENTS: PerfEventArray<AlertRecord> = PerfEventArray::new(0);
/// Per-CPU room for the packet's alert record: too big for the BPF stack
/// alongside the parser's locals.
#[map]
static SCRATCH: PerCpuArray<AlertRecord> = PerCpuArray::with_max_entries(1, 0);

// ---- maps: `sensor inspect` ------------------------------------------------------

#[map]
static INSPECT_CONFIG: Array<InspectConfig> = Array::with_max_entries(1, 0);
#[map]
static INSPECT_FILTER: Array<FilterProgram> = Array::with_max_entries(1, 0);
#[map]
static INSPECT_BUDGET: PerCpuArray<InspectBudget> = PerCpuArray::with_max_entries(1, 0);
#[map]
static INSPECT_COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(inspect_counter::COUNT, 0);
#[map]
static INSPECT_EVENTS: PerfEventArray<InspectRecord> = PerfEventArray::new(0);
#[map]
static INSPECT_SCRATCH: PerCpuArray<InspectRecord> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FILTER_VM: PerCpuArray<FilterVm> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SUMMARY_TALKERS: LruPerCpuHashMap<AddrKey, TalkerStats> =
    LruPerCpuHashMap::with_max_entries(summary::TALKER_ENTRIES, 0);
#[map]
static SUMMARY_PROTO: PerCpuArray<u64> = PerCpuArray::with_max_entries(summary::PROTO_SLOTS, 0);
#[map]
static SUMMARY_FLAGS: PerCpuArray<u64> = PerCpuArray::with_max_entries(summary::FLAG_SLOTS, 0);
#[map]
static SUMMARY_TTL: PerCpuArray<u64> = PerCpuArray::with_max_entries(summary::TTL_SLOTS, 0);

/// Prefix length of an exact [`AddrKey`] lookup: the whole key.
const FULL_KEY_BITS: u32 = AddrKey::BITS;

/// Everything after the parse: inspect, drop mode's handshakes, the rules,
/// alerts, drops; the same for a frame's packet (`sensor`) and a tunnel's
/// inner one (`sensor_inner`). A macro, expanded in both programs, rather
/// than a function: `sensor` verifies well within the kernel's budget with
/// this code in its body, and past it when the same code was a function
/// inlined into it (the compiler laid out its stack differently).
macro_rules! judge {
    ($ctx:ident, $record:ident, $config:ident, $dry_run:ident, $judge_drops:ident) => {{
        // SAFETY: the per-CPU record; from here on only shared borrows of
        // `packet` and writes to the other fields.
        let packet = unsafe { &(*$record).packet };
        if packet.ip_version == IP_VERSION_NONE {
            count(counter::NOT_IP);
            return pass();
        }
        // The clock is read only when needed (a rule may match, or inspect is
        // on): it is one of the dearer helpers. 0 = not read yet.
        // SAFETY: the per-CPU record; a field `packet` does not overlap.
        unsafe { (*$record).timestamp_ns = 0 };
        // A session is on for the packets of one interface: one comparison
        // (0, the index of none, when off) keeps the verifier's paths as few
        // as a plain on/off flag did.
        if let Some(inspect) = INSPECT_CONFIG.get(0)
            // SAFETY: the per-CPU record; a field `packet` does not overlap.
            && inspect.ifindex == unsafe { (*$record).ifindex }
        {
            inspect_packet(&$ctx, packet, clock($record), inspect);
        }
        if $config.mode == mode::DROP {
            watch_handshakes($record);
        }
        let tables = KernelTables {
            judge_drops: $judge_drops,
            hash_seed: $config.hash_seed,
            // Read once: the whole packet sees one rule set, even mid-reload.
            generation: $config.generation & 1,
        };
        let decision = process(
            packet,
            0,
            &tables,
            &mut KernelState { record: $record },
            // SAFETY: the per-CPU record; `emit` writes only fields other than
            // `packet`, which `process` is reading.
            &mut |head: &AlertHead| unsafe {
                (*$record).sig_id = head.sig_id;
                (*$record).kind = head.kind;
                // A dry run drops nothing, so every alert says "allowed".
                (*$record).action = if $dry_run {
                    outcome::ALLOWED
                } else {
                    head.action
                };
                (*$record).count = head.count;
                (*$record).aggregate = head.aggregate;
                (*$record).block = if $dry_run && head.block == block::BLOCKED {
                    block::DRY_RUN
                } else {
                    head.block
                };
                send_alert(&$ctx, &mut *$record, $config.alert_packet_bytes);
            },
        );
        let record_block = |block_ns: u64| {
            // No policy means no blocking was configured: counted as a failure.
            let policy = DROP_POLICY.get(0).ok_or(())?;
            let entry = BlockEntry {
                // A drop was decided by a rule walk, which read the clock.
                until_ns: clock($record) + block_ns,
                // SAFETY: the per-CPU record, read after `process` ended.
                sig_id: unsafe { (*$record).sig_id },
                block_when: policy.block_when,
                _pad: [0; 3],
            };
            BLOCKED.insert(packet.src_key(), entry, 0).map_err(|_| ())?;
            Ok(policy.block_when)
        };
        if enforce(&decision, $dry_run, record_block, &mut count) {
            return xdp_action::XDP_DROP;
        }
        pass()
    }};
}

#[xdp]
pub fn sensor(ctx: XdpContext) -> u32 {
    count(counter::PACKETS);
    let Some(record) = SCRATCH.get_ptr_mut(0) else {
        return pass();
    };
    // The derefs of `record` below: a per-CPU slot, and XDP does not
    // re-enter on the same CPU. `process` borrows only the `packet` field;
    // `emit` writes only the other fields.
    // The ingress interface, in the record (map memory, not the stack): the
    // alert carries it, an inspect session for one interface compares it,
    // and it is the key of the interface's packet count (drop_gate uses
    // only the record's `packet` as scratch).
    // SAFETY: the per-CPU record (above); nothing else borrows it yet.
    unsafe {
        (*record).ifindex = ctx.ingress_ifindex() as u32;
        count_iface_packet(&(*record).ifindex);
    }
    // After the interface's count, which every frame is part of.
    if !XdpBytes(&ctx).be16_at(12).is_some_and(may_carry_ip) {
        // What the parse would find anyway (no IP header), for one load.
        count(counter::NOT_IP);
        return pass();
    }
    // A reference into the map's value, not a copy: a copy took stack the
    // rule walk needs. (An array's slot 0 always exists.)
    let Some(config) = CONFIG.get(0) else {
        return pass();
    };

    // Drop mode: a blocked source costs a peek at its address, no more.
    let dry_run = config.dry_run != 0;
    let mut judge_drops = false;
    if config.mode == mode::DROP {
        match drop_gate(ctx.ctx, dry_run) {
            GATE_JUDGE => judge_drops = true,
            GATE_ALLOWED => {}
            verdict => return verdict,
        }
    }

    // SAFETY: the per-CPU record (above); nothing else borrows it yet.
    let ends = parse_frame(ctx.ctx, unsafe { &mut (*record).packet });
    // The protocol first: most packets stop there.
    // SAFETY: the per-CPU record; nothing else borrows it here.
    if tunnel_protocol(unsafe { (*record).packet.proto })
        && wants_decap(record, config, judge_drops, ends) != 0
    {
        // Perhaps a tunnel: `sensor_inner` looks further and judges the
        // inner packet (or this one). A program of its own, with its own
        // stack and verifier budget: this one has room for neither the
        // tunnel's parse nor a second rule walk.
        // SAFETY: the program array holds XDP programs only.
        unsafe { PROGRAMS.tail_call(&ctx, program::INNER) };
        // Not reached unless the loader left the program out: the frame
        // goes unjudged, and is counted.
        count(counter::TUNNEL_LOST);
        return pass();
    }
    judge!(ctx, record, config, dry_run, judge_drops)
}

/// Second and last step for a packet that may carry a tunnel (tail-called
/// by `sensor`): decapsulates the frame's packet when it does carry one,
/// then judges the record's packet, inner or outer, as `sensor` judges any
/// other.
#[xdp]
pub fn sensor_inner(ctx: XdpContext) -> u32 {
    let (Some(record), Some(start)) = (SCRATCH.get_ptr_mut(0), INNER_START.get_ptr_mut(0)) else {
        return pass();
    };
    // A reference into the map's value, not a copy: a copy took stack the
    // rule walk needs. (An array's slot 0 always exists.)
    let Some(config) = CONFIG.get(0) else {
        return pass();
    };
    // SAFETY: a per-CPU slot; XDP does not re-enter on the same CPU.
    let (dry_run, judge_drops) = (config.dry_run != 0, unsafe { (*start).judge_drops } != 0);
    if decap_frame(ctx.ctx, record, start) != 0 && parse_inner_frame(ctx.ctx, record, start) != 0 {
        count(counter::TUNNEL_PACKETS);
    }
    judge!(ctx, record, config, dry_run, judge_drops)
}

/// Covers every offset up to [`MAX_PARSE_OFFSET`].
const OFFSET_MASK: usize = MAX_PARSE_OFFSET.next_power_of_two() - 1;

/// Whether the record's packet carries the tunnel `sensor` saw it may
/// carry, with an inner packet that can be parsed ([`open_inner`]; it then
/// records the tunnel), 1 or 0: notes in `start` where that packet starts
/// for `parse_inner_frame`. Subprograms of their own, like `parse_frame`,
/// and two of them: their frames are not added to the rule walk's, and the
/// inner parse, which starts from offsets read back from the map, is
/// verified once, not once for each way of finding them.
#[inline(never)]
fn decap_frame(ctx: *mut xdp_md, record: *mut AlertRecord, start: *mut InnerStart) -> u32 {
    // SAFETY: per-CPU slots; XDP does not re-enter on the same CPU, and
    // nothing else borrows them here.
    let (start, packet) = unsafe { (&mut *start, &mut (*record).packet) };
    start.l3 = 0;
    // Where `sensor`'s parse found the transport header and the packet's
    // end. Masked as well as checked: the mask bounds every copy of the
    // value the compiler makes, the check only the one it tests; the bound
    // holds for any offset the parse read at, and is for the verifier.
    let (l4, ip_end) = (start.l4 as usize & OFFSET_MASK, start.ip_end as usize);
    let ctx = XdpContext::new(ctx);
    if l4 <= MAX_PARSE_OFFSET
        && let Some((ethertype, l3)) =
            open_inner(&XdpBytes(&ctx), start.candidate, l4, ip_end, packet)
    {
        start.l3 = l3 as u32;
        start.ethertype = ethertype;
        return 1;
    }
    0
}

/// The inner packet `decap_frame` found, parsed into the record in place
/// of the outer one (whose tunnel facts stay): 1, or 0 if there was none.
#[inline(never)]
fn parse_inner_frame(ctx: *mut xdp_md, record: *mut AlertRecord, start: *const InnerStart) -> u32 {
    // SAFETY: a per-CPU slot; XDP does not re-enter on the same CPU.
    let start = unsafe { &*start };
    // Masked and checked as `l4` in `decap_frame`; 0: no inner packet.
    let (ethertype, l3) = (start.ethertype, start.l3 as usize & OFFSET_MASK);
    if l3 != 0 && l3 <= MAX_PARSE_OFFSET {
        let ctx = XdpContext::new(ctx);
        // SAFETY: the per-CPU record; XDP does not re-enter on the same
        // CPU, and nothing else borrows it during the parse.
        parse_inner(&XdpBytes(&ctx), ethertype, l3, unsafe {
            &mut (*record).packet
        });
        return 1;
    }
    0
}

/// What `sensor` hands on to `sensor_inner`: where its parse found the
/// frame's packet's transport header and the packet's end, the tunnel the
/// packet may carry (`tunnel_candidate`), and whether drop mode judges the
/// frame's drops (`drop_gate` ran on the outer packet, in `sensor`); then
/// where `decap_frame` found the inner IP header (0: none) and its
/// ethertype.
#[repr(C)]
#[derive(Clone, Copy)]
struct InnerStart {
    l4: u32,
    ip_end: u32,
    l3: u32,
    ethertype: u16,
    judge_drops: u8,
    candidate: u8,
}

/// Per-CPU: the [`InnerStart`] of the frame being judged.
#[map]
static INNER_START: PerCpuArray<InnerStart> = PerCpuArray::with_max_entries(1, 0);

/// Whether the record's packet may carry a tunnel (`tunnel_candidate`),
/// given the `ends` its parse returned (`parse_frame`; 0: the parse did
/// not reach a transport header, so there is nothing to decapsulate); if
/// so, notes them, the candidate and `judge_drops` for `sensor_inner`.
#[inline(always)]
fn wants_decap(
    record: *mut AlertRecord,
    config: &SensorConfig,
    judge_drops: bool,
    ends: u64,
) -> u32 {
    if ends == 0 {
        return 0;
    }
    // SAFETY: the per-CPU record; XDP does not re-enter on the same CPU.
    let candidate = tunnel_candidate(unsafe { &(*record).packet }, &config.decap);
    if candidate == candidate::NONE {
        return 0;
    }
    let Some(start) = INNER_START.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU slot; XDP does not re-enter on the same CPU.
    unsafe {
        (*start).candidate = candidate;
        (*start).judge_drops = judge_drops as u8;
        (*start).l4 = (ends >> 32) as u32;
        (*start).ip_end = ends as u32;
    }
    1
}

/// The tail-call targets in [`PROGRAMS`] (written by the loader).
mod program {
    pub const INNER: u32 = 0;
}
#[map]
static PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Drop mode: follows TCP handshakes, proving the addresses of clients
/// that complete one. Not inlined: its keys take their own stack frame.
#[inline(never)]
fn watch_handshakes(record: *mut AlertRecord) {
    let (Some(policy), Some(key)) = (DROP_POLICY.get(0), HANDSHAKE_KEY.get_ptr_mut(0)) else {
        return;
    };
    // SAFETY: per-CPU slots; XDP does not re-enter on the same CPU.
    let (packet, key) = unsafe { (&(*record).packet, &mut *key) };
    if observe(packet, 0, policy.proof_ns, &mut KernelState { record }, key) == seen::PROOF {
        count(counter::PROOFS);
    }
}

/// Per-CPU room for a handshake key (40 bytes the stack cannot spare).
#[map]
static HANDSHAKE_KEY: PerCpuArray<HandshakeKey> = PerCpuArray::with_max_entries(1, 0);

/// [`DetectState::judge_block`] in a subprogram of its own: its frame is
/// not added to the rule walk's.
#[inline(never)]
fn judge_source(record: *mut AlertRecord, now: u64, count_repeat: bool) -> u8 {
    let Some(policy) = DROP_POLICY.get(0) else {
        return block::NOT_PROVEN;
    };
    // SAFETY: the per-CPU record; XDP does not re-enter on the same CPU.
    let src = unsafe { (*record).packet.src_key() };
    judge_block(&src, now, policy, count_repeat, &mut KernelState { record })
}

/// The packet's time and CPU, read into the per-CPU record the first time
/// they are needed for this packet. The time is the kernel's coarse
/// monotonic clock (the last tick: 1–4 ms behind, which windows of
/// milliseconds to seconds do not notice): the precise clock costs a
/// clock-source read, about a tenth of a SYN's cost on this project's
/// virtual machine (an A/B of two builds, BENCHMARKS.md). A record that is
/// sent gets the precise time (see `precise_time`).
#[inline(always)]
fn clock(record: *mut AlertRecord) -> u64 {
    // SAFETY: the per-CPU record; XDP does not re-enter on the same CPU.
    unsafe {
        if (*record).timestamp_ns == 0 {
            (*record).timestamp_ns = bpf_ktime_get_coarse_ns();
            (*record).cpu = bpf_get_smp_processor_id();
        }
        (*record).timestamp_ns
    }
}

/// The precise monotonic time, for the records sent to userspace (alert
/// lines and inspect records say when their packet was seen).
#[inline(always)]
fn precise_time() -> u64 {
    // SAFETY: a helper without arguments; it only reads the clock.
    unsafe { bpf_ktime_get_ns() }
}

/// The parse, in a subprogram of its own: its frame (header copies and
/// spills) is not added to the main program's, whose stack the rule walk
/// needs. Returns where the transport header starts (high 32 bits) and
/// the IP packet ends (low), or 0 when the parse did not get that far:
/// handed on, they spare `sensor_inner` a second parse of a tunnel's outer
/// packet (a third of a VXLAN packet's cost, measured), for 44,000 more
/// instructions in this program's verification.
#[inline(never)]
fn parse_frame(ctx: *mut xdp_md, meta: &mut PacketMeta) -> u64 {
    let ctx = XdpContext::new(ctx);
    parse_outer(&XdpBytes(&ctx), meta).map_or(0, |(l4, ip_end)| (l4 as u64) << 32 | ip_end as u64)
}

/// [`drop_gate`]: judge the packet's drops by the rules.
const GATE_JUDGE: u32 = u32::MAX;
/// [`drop_gate`]: allowlisted (or no address found): never dropped nor blocked.
const GATE_ALLOWED: u32 = u32::MAX - 1;

/// Drop mode's checks of the source address before the parse: an XDP
/// verdict, or [`GATE_JUDGE`] / [`GATE_ALLOWED`]. Not inlined: the address
/// peek's temporaries then take their own stack frame, not one that the
/// rule walk's callbacks add to.
#[inline(never)]
fn drop_gate(ctx: *mut xdp_md, dry_run: bool) -> u32 {
    let ctx = XdpContext::new(ctx);
    let (Some(record), Some(key)) = (SCRATCH.get_ptr_mut(0), SCOPE_KEY.get_ptr_mut(0)) else {
        return GATE_ALLOWED;
    };
    // SAFETY: per-CPU slots, and XDP does not re-enter on the same CPU. The
    // record's packet is only scratch here: the parse overwrites it.
    let key = unsafe {
        if !peek_source_with(&XdpBytes(&ctx), &mut (*record).packet, &mut (*key).data) {
            return GATE_ALLOWED;
        }
        (*key).prefix_len = FULL_KEY_BITS;
        &*key
    };
    // By reference: a copy would take stack.
    let (src, key) = (&key.data, key.as_key());
    if ALLOWLIST.get(key).is_some() {
        // The allowlist is never dropped nor blocked, whatever the rules say.
        return GATE_ALLOWED;
    }
    if STATIC_BLOCKLIST.get(key).is_some() {
        if let Some(verdict) = drop_unless_dry_run(dry_run, counter::DROPPED_STATIC_BLOCKLIST) {
            return verdict;
        }
    // SAFETY: an entry is read whole; a concurrent update replaces it.
    } else if unsafe { BLOCKED.get(src) }
        // SAFETY: a helper without arguments; it only reads the clock.
        .is_some_and(|b| b.until_ns > unsafe { bpf_ktime_get_coarse_ns() })
        && let Some(verdict) = drop_unless_dry_run(dry_run, counter::DROPPED_BLOCKED_SOURCE)
    {
        return verdict;
    }
    GATE_JUDGE
}

/// `sensor inspect`: filter, count, summarise, and send within the budget.
#[inline(always)]
fn inspect_packet(ctx: &XdpContext, packet: &PacketMeta, now: u64, config: &InspectConfig) {
    let Some(program) = INSPECT_FILTER.get(0) else {
        return;
    };
    let Some(vm) = FILTER_VM.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU slot; XDP does not re-enter on the same CPU.
    unsafe { *vm = FilterVm::default() };
    let mut walk = FilterWalk {
        vm,
        program,
        packet,
    };
    let len = if program.len as usize > MAX_FILTER_OPS {
        MAX_FILTER_OPS as u32
    } else {
        program.len
    };
    if len > 0 {
        // SAFETY: `filter_step` takes the `FilterWalk` passed here, which
        // outlives the call (bpf_loop returns only after the last step).
        unsafe {
            bpf_loop(
                len,
                filter_step as *mut c_void,
                core::ptr::from_mut(&mut walk).cast(),
                0,
            );
        }
    }
    // SAFETY: the per-CPU filter machine; the walk above has ended.
    if !unsafe { (*vm).verdict(len) } {
        return;
    }
    count_inspect(inspect_counter::MATCHED);
    if config.summary != 0 {
        summarise(packet);
    }
    let Some(budget) = INSPECT_BUDGET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU slot; XDP does not re-enter on the same CPU.
    if !inspect_budget_step(unsafe { &mut *budget }, now, config.max_per_sec) {
        count_inspect(inspect_counter::SKIPPED_RATE);
        return;
    }
    let Some(out) = INSPECT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `out` is the per-CPU inspect record (XDP does not re-enter on
    // the same CPU), valid for the helper's whole call, which reads
    // `size_of::<InspectRecord>()` bytes of it.
    let ret = unsafe {
        (*out).timestamp_ns = precise_time();
        (*out).clock_ns = now;
        (*out).packet = *packet;
        bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::addr_of!(INSPECT_EVENTS).cast_mut().cast(),
            BPF_F_CURRENT_CPU,
            out.cast(),
            core::mem::size_of::<InspectRecord>() as u64,
        )
    };
    count_inspect(if ret == 0 {
        inspect_counter::SENT
    } else {
        inspect_counter::OUTPUT_ERRORS
    });
}

/// The state one `bpf_loop` over the filter program carries.
struct FilterWalk<'a> {
    vm: *mut FilterVm,
    program: &'a FilterProgram,
    packet: &'a PacketMeta,
}

extern "C" fn filter_step(index: u64, walk: *mut c_void) -> i64 {
    // SAFETY: `inspect_packet` passes a live `FilterWalk` to bpf_loop,
    // which hands it to each step and to nothing else.
    let walk = unsafe { &mut *walk.cast::<FilterWalk>() };
    let Some(op) = walk.program.ops.get(index as usize) else {
        return 1;
    };
    // SAFETY: the per-CPU filter machine; XDP does not re-enter on the CPU.
    unsafe { (*walk.vm).step(op, walk.packet) };
    0
}

#[inline(always)]
fn summarise(packet: &PacketMeta) {
    bump(&SUMMARY_PROTO, packet.proto as u32);
    bump(&SUMMARY_TTL, packet.ttl as u32);
    if packet.has(flag::HAS_TCP_FLAGS) {
        bump(&SUMMARY_FLAGS, packet.tcp_flags as u32 & 0x1ff);
    }
    let key = packet.src_key();
    match SUMMARY_TALKERS.get_ptr_mut(key) {
        // SAFETY: a per-CPU map value; XDP does not re-enter on the same CPU.
        Some(stats) => unsafe {
            (*stats).packets += 1;
            (*stats).bytes += packet.frame_len as u64;
        },
        None => {
            let stats = TalkerStats {
                packets: 1,
                bytes: packet.frame_len as u64,
            };
            let _ = SUMMARY_TALKERS.insert(key, stats, 0);
        }
    }
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(value) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot; XDP does not re-enter on the CPU.
        unsafe { *value += 1 };
    }
}

#[inline(always)]
fn count_inspect(index: u32) {
    bump(&INSPECT_COUNTERS, index);
}

#[inline(always)]
fn pass() -> u32 {
    count(counter::PASSED);
    xdp_action::XDP_PASS
}

/// Drops (and counts under `reason`), or in a dry run counts what would
/// have been dropped and lets the packet on to the rules.
#[inline(always)]
fn drop_unless_dry_run(dry_run: bool, reason: u32) -> Option<u32> {
    if dry_run {
        count(counter::WOULD_DROP);
        return None;
    }
    count(reason);
    count(counter::DROPPED);
    Some(xdp_action::XDP_DROP)
}

/// Sends `record` with the frame's first `captured_len` bytes behind it:
/// the helper copies them from the XDP buffer itself (the length rides in
/// the flags' upper 32 bits), so no packet bytes pass through the stack.
#[inline(always)]
fn send_alert(ctx: &XdpContext, record: &mut AlertRecord, packet_bytes: u16) {
    record.timestamp_ns = precise_time();
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    let captured = captured_len(frame_len, packet_bytes);
    record.captured_len = captured;
    let flags = BPF_F_CURRENT_CPU | (u64::from(captured) << 32);
    // SAFETY: `record` is a valid AlertRecord for the whole call; the
    // helper reads `size_of::<AlertRecord>()` bytes of it, and at most the
    // frame's length from the context (checked by the helper too).
    let ret = unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::addr_of!(EVENTS).cast_mut().cast(),
            flags,
            core::ptr::from_mut(record).cast(),
            core::mem::size_of::<AlertRecord>() as u64,
        )
    };
    if ret != 0 {
        count(counter::ALERT_OUTPUT_ERRORS);
    }
}

/// Counts the packet for its interface, when userspace registered it (in
/// `IFACE_SLOTS`, or for a high index in `IFACE_PACKETS_WIDE`). The key is
/// read where it lies (the per-CPU record), so the lookup takes no stack.
#[inline(always)]
fn count_iface_packet(ifindex: &u32) {
    let packets = if *ifindex < IFINDEX_DIRECT {
        // Unregistered: slot 0, never read.
        let slot = IFACE_SLOTS.get(*ifindex).copied().unwrap_or(0);
        IFACE_PACKETS.get_ptr_mut(slot)
    } else {
        IFACE_PACKETS_WIDE.get_ptr_mut(ifindex)
    };
    if let Some(packets) = packets {
        // SAFETY: a per-CPU value; XDP does not re-enter on the same CPU.
        unsafe { *packets += 1 };
    }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot; XDP does not re-enter on the CPU.
        unsafe { *value += 1 };
    }
}

/// Bounded access to the frame between `data` and `data_end`.
struct XdpBytes<'a>(&'a XdpContext);

/// Per-CPU word for [`PacketBytes::opaque`]'s round trip.
#[map]
static OPAQUE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room for one IPv4 or TCP option walk (see
/// [`PacketBytes::option_events`]).
#[map]
static OPTION_WALK: PerCpuArray<OptionWalk> = PerCpuArray::with_max_entries(1, 0);

/// One `bpf_loop` step of an option walk; `walk` points at the per-CPU
/// [`OptionWalk`]'s address.
extern "C" fn option_walk_step(_index: u64, walk: *mut c_void) -> i64 {
    // SAFETY: `option_events` passes the address of a live pointer to the
    // per-CPU walk (XDP does not re-enter on the CPU), for this loop only.
    let walk = unsafe { &mut **walk.cast::<*mut OptionWalk>() };
    if option_step(walk) { 0 } else { 1 }
}

/// Per-CPU room for one IPv6 extension-header chain walk (see
/// [`PacketBytes::ipv6_chain_events`]).
#[map]
static CHAIN_WALK: PerCpuArray<ChainWalk> = PerCpuArray::with_max_entries(1, 0);

/// What one `bpf_loop` over an extension-header chain carries.
struct ChainLoop {
    ctx: *mut xdp_md,
    walk: *mut ChainWalk,
}

/// The frame read through `bpf_xdp_load_bytes`: what a `bpf_loop` step
/// uses, as it holds the context, not packet pointers.
struct HelperBytes(*mut xdp_md);

impl PacketBytes for HelperBytes {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        // SAFETY: the program's context, valid for the whole run.
        unsafe { ((*self.0).data_end - (*self.0).data) as usize }
    }

    #[inline(always)]
    fn load<T: Copy + FromBytes>(&self, offset: usize) -> Option<T> {
        if offset > MAX_PARSE_OFFSET {
            return None;
        }
        let mut value = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes size_of::<T>() bytes into `value`, or
        // fails (outside the frame) and `value` is not read.
        let ret = unsafe {
            bpf_xdp_load_bytes(
                self.0.cast(),
                offset as u32,
                value.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
            )
        };
        if ret != 0 {
            return None;
        }
        // SAFETY: written in full by the helper (ret 0); T is FromBytes.
        Some(unsafe { value.assume_init() })
    }
}

/// One `bpf_loop` step of a chain walk.
extern "C" fn chain_walk_step(_index: u64, state: *mut c_void) -> i64 {
    // SAFETY: `ipv6_chain_events` passes a live `ChainLoop` whose `walk` is
    // the per-CPU walk (XDP does not re-enter on the CPU).
    let state = unsafe { &*state.cast::<ChainLoop>() };
    // SAFETY: as above.
    let walk = unsafe { &mut *state.walk };
    if chain_step(&HelperBytes(state.ctx), walk) {
        0
    } else {
        1
    }
}

impl PacketBytes for XdpBytes<'_> {
    /// A `bpf_loop` over the chain: the verifier checks one step once.
    #[inline(always)]
    fn ipv6_chain_events(&self, offset: usize, ip_end: usize, next: u8) -> u32 {
        let Some(walk) = CHAIN_WALK.get_ptr_mut(0) else {
            return 0;
        };
        // SAFETY: the per-CPU walk (XDP does not re-enter on the CPU).
        unsafe { *walk = ChainWalk::new(offset, ip_end, next) };
        let mut state = ChainLoop {
            ctx: self.0.ctx,
            walk,
        };
        // SAFETY: `chain_walk_step` takes `state`, which outlives the call
        // (bpf_loop returns only after the last step).
        unsafe {
            bpf_loop(
                MAX_IPV6_EXT_HEADERS as u32,
                chain_walk_step as *mut c_void,
                core::ptr::from_mut(&mut state).cast(),
                0,
            );
            (*walk).events
        }
    }

    /// The walk runs in a `bpf_loop` over a copy of the options, so the
    /// verifier checks one step once, not 40 unrolled turns per context.
    #[inline(always)]
    fn option_events(&self, start: usize, len: usize, malformed: u32, source_route: bool) -> u32 {
        if len == 0 || len > MAX_OPTION_BYTES || start > MAX_PARSE_OFFSET {
            return 0;
        }
        let Some(walk) = OPTION_WALK.get_ptr_mut(0) else {
            return 0;
        };
        // 1 to 64 in a form the verifier can bound (LLVM would drop a
        // plain comparison it knows to hold, and the verifier does not know).
        let size =
            (core::hint::black_box(len as u32).wrapping_sub(1) & (OPTION_BUFFER as u32 - 1)) + 1;
        // SAFETY: the per-CPU walk (XDP does not re-enter on the CPU); the
        // helper writes `size` (1 to 64) bytes into its 64-byte buffer.
        let copied = unsafe {
            (*walk).start(len, malformed, source_route);
            bpf_xdp_load_bytes(
                self.0.ctx.cast(),
                start as u32,
                (*walk).bytes.as_mut_ptr().cast(),
                size,
            )
        };
        // The options lie inside a header already checked to be in the
        // frame, so the copy cannot fail; if it did, nothing is judged.
        if copied != 0 {
            return 0;
        }
        let mut walk_ptr = walk;
        // SAFETY: `option_walk_step` takes the address of `walk_ptr`, which
        // outlives the call (bpf_loop returns only after the last step).
        unsafe {
            bpf_loop(
                MAX_OPTION_BYTES as u32,
                option_walk_step as *mut c_void,
                core::ptr::from_mut(&mut walk_ptr).cast(),
                0,
            );
            (*walk).events
        }
    }

    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        match OPAQUE.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot; volatile so LLVM keeps the round trip.
            Some(slot) => unsafe {
                core::ptr::write_volatile(slot, value as u64);
                core::ptr::read_volatile(slot) as usize
            },
            None => value,
        }
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn load<T: Copy + FromBytes>(&self, offset: usize) -> Option<T> {
        // Cap first: the verifier needs a bounded offset before it will
        // accept the pointer arithmetic below.
        if offset > MAX_PARSE_OFFSET {
            return None;
        }
        let start = self.0.data();
        let end = self.0.data_end();
        // Opaque to LLVM, so `ptr + size > end` is not rewritten into
        // `ptr >= end`, a form the verifier cannot turn into a packet range.
        let size = core::hint::black_box(core::mem::size_of::<T>());
        if start + offset + size > end {
            return None;
        }
        // SAFETY: start + offset + size <= data_end was checked above, so
        // the read stays inside the packet; unaligned reads are allowed, and
        // T is FromBytes: every bit pattern of its size is a valid T.
        Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
    }

    #[inline(always)]
    fn load_addr(&self, offset: usize, out: &mut [u8; 16]) -> bool {
        if offset > MAX_PARSE_OFFSET {
            return false;
        }
        let start = self.0.data();
        // Opaque for the same reason as in `load`.
        let size = core::hint::black_box(16);
        if start + offset + size > self.0.data_end() {
            return false;
        }
        let at = start + offset;
        // SAFETY: the 16 bytes at `at` lie inside the packet (checked above).
        let words = unsafe {
            [
                word_at(at),
                word_at(at + 4),
                word_at(at + 8),
                word_at(at + 12),
            ]
        };
        // SAFETY: four words are sixteen bytes, in memory order.
        *out = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words) };
        true
    }
}

/// The four packet bytes at `at` in one load. Rust would split an unaligned
/// read into four byte loads (BPF has no unaligned access in general), but
/// the verifier allows unaligned *packet* loads wherever the CPU handles
/// them, as x86-64 and arm64 do.
///
/// # Safety
/// `at..at + 4` must lie inside the packet, proven to the verifier.
#[inline(always)]
unsafe fn word_at(at: usize) -> u32 {
    let word: u64;
    // SAFETY: the caller's contract; the load only reads packet memory.
    unsafe {
        core::arch::asm!(
            "{word} = *(u32 *)({at} + 0)",
            at = in(reg) at,
            word = lateout(reg) word,
            options(readonly, nostack, preserves_flags),
        );
    }
    word as u32
}

struct KernelTables {
    /// Drop mode, and the source is not allowlisted.
    judge_drops: bool,
    /// [`SensorConfig::hash_seed`].
    hash_seed: u32,
    /// The rule tables in force (0 or 1).
    generation: u8,
}

/// Per-CPU room for a scope-trie key. Built here rather than on the BPF
/// stack, whose 512 bytes the rule walk's `bpf_loop` callbacks share with
/// the main program.
#[map]
static SCOPE_KEY: PerCpuArray<TrieKey> = PerCpuArray::with_max_entries(1, 0);

/// An LPM trie key laid out as aya's `Key<AddrKey>` (the prefix length, then
/// the address key) but word-aligned: aya's is packed, so LLVM would write
/// and copy it a byte at a time.
#[repr(C)]
struct TrieKey {
    prefix_len: u32,
    data: AddrKey,
}

const _: () = assert!(core::mem::size_of::<TrieKey>() == core::mem::size_of::<Key<AddrKey>>());

impl TrieKey {
    #[inline(always)]
    fn as_key(&self) -> &Key<AddrKey> {
        // SAFETY: the same fields at the same offsets (asserted above), and
        // `Key` is packed, so any address is aligned for it.
        unsafe { &*(self as *const TrieKey).cast::<Key<AddrKey>>() }
    }
}

impl KernelTables {
    #[inline(always)]
    fn scope_lookup(
        &self,
        trie: &'static LpmTrie<AddrKey, RuleMask>,
        addr: &AddrKey,
    ) -> Option<&'static RuleMask> {
        let key = SCOPE_KEY.get_ptr_mut(0)?;
        // SAFETY: a per-CPU slot, and XDP does not re-enter on the same CPU;
        // the key is written whole before the lookup reads it.
        unsafe {
            (*key).prefix_len = FULL_KEY_BITS;
            // Field by field: the address moves as four words.
            (*key).data.version = scope_key_version(addr.version, self.generation);
            (*key).data._pad = [0; 3];
            (*key).data.addr = addr.addr;
            trie.get((*key).as_key())
        }
    }

    /// The row of `value` in the value scope table at `table`, if a rule
    /// names it: two array reads, no helper call.
    #[inline(always)]
    fn value_scope(&self, table: u32, value: u16) -> Option<&'static RuleMask> {
        let row = *SCOPE_INDEX.get(scope_index(self.generation, table, value))?;
        if row == 0 {
            return None;
        }
        SCOPE_ROWS.get(scope_row(self.generation, row))
    }
}

impl RuleTables for KernelTables {
    #[inline(always)]
    fn mask(&self, index: u32) -> Option<&RuleMask> {
        MASKS.get(self.generation as u32 * MASK_TABLE_LEN + index)
    }

    #[inline(always)]
    fn src_scope(&self, addr: &AddrKey) -> Option<&RuleMask> {
        self.scope_lookup(&SRC_SCOPE, addr)
    }

    #[inline(always)]
    fn dst_scope(&self, addr: &AddrKey) -> Option<&RuleMask> {
        self.scope_lookup(&DST_SCOPE, addr)
    }

    #[inline(always)]
    fn port_scope(&self, port: u16) -> Option<&RuleMask> {
        self.value_scope(value_scope::DST_PORTS, port)
    }

    #[inline(always)]
    fn src_port_scope(&self, port: u16) -> Option<&RuleMask> {
        self.value_scope(value_scope::SRC_PORTS, port)
    }

    #[inline(always)]
    fn vlan_scope(&self, vlan: u16) -> Option<&RuleMask> {
        self.value_scope(value_scope::VLANS, vlan)
    }

    #[inline(always)]
    fn rule(&self, slot: u32) -> Option<&RuleInfo> {
        RULES.get(self.slot_base() + slot)
    }

    #[inline(always)]
    fn slot_base(&self) -> u32 {
        self.generation as u32 * MAX_RULES
    }

    #[inline(always)]
    fn drop_mode(&self) -> bool {
        self.judge_drops
    }

    #[inline(always)]
    fn hash_seed(&self) -> u32 {
        self.hash_seed
    }

    /// The words are computed first, into a per-CPU buffer, by one
    /// `bpf_loop` (so its body is verified once, not once per word); then
    /// a second `bpf_loop` visits their slots: the verifier checks the
    /// per-rule body once, whatever the number of rules.
    #[inline(always)]
    fn for_each_slot<W: FnMut(u32) -> u64, F: FnMut(u32)>(&self, summary: u32, word: W, f: F) {
        let Some(words) = fill_words(summary, word) else {
            return;
        };
        let mut walk = SlotWalk {
            words,
            left: summary & SUMMARY_BITS,
            base: 0,
            pending: 0,
            f,
        };
        // SAFETY: `walk` outlives the call; `slot_step::<F>` reads it as
        // the `SlotWalk<F>` it is.
        unsafe {
            bpf_loop(
                MAX_RULES + MASK_WORDS as u32,
                slot_step::<F> as *mut c_void,
                core::ptr::from_mut(&mut walk).cast(),
                0,
            );
        }
    }

    #[inline(always)]
    fn any_slot<W: FnMut(u32) -> u64>(&self, summary: u32, word: W) -> bool {
        let Some(words) = fill_words(summary, word) else {
            return false;
        };
        // SAFETY: the per-CPU buffer `fill_words` just wrote.
        let words = unsafe { &*words };
        // Only the words `summary` names: `fill_words` writes those (and
        // zeroes the others below the highest), and the rest of the buffer
        // holds an earlier walk's words. (Reading them all made drop rules
        // of a rule set of more than 64 rules drop packets no drop rule
        // matched, as soon as an earlier walk had filled a higher word.)
        let summary = summary & SUMMARY_BITS;
        let mut any = 0;
        for (w, word) in words.iter().enumerate() {
            if summary & (1 << w) != 0 {
                any |= *word;
            }
        }
        any != 0
    }
}

/// Per-CPU room for the words of the rule set being walked.
#[map]
static WORDS: PerCpuArray<[u64; MASK_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// `word(0)`. Not inlined: a subprogram with its own stack frame, so the
/// main program's frame (which the `bpf_loop` callbacks add to) does not grow.
#[inline(never)]
fn word_zero<W: FnMut(u32) -> u64>(word: &mut W) -> u64 {
    word(0)
}

/// The state of one `bpf_loop` filling [`WORDS`].
struct WordFill<W> {
    words: *mut [u64; MASK_WORDS],
    summary: u32,
    word: W,
}

/// Fills the per-CPU [`WORDS`] with `word(w)` for the words `w` in
/// `summary` (0 for the others); `None` when `summary` names none.
#[inline(always)]
fn fill_words<W: FnMut(u32) -> u64>(summary: u32, word: W) -> Option<*mut [u64; MASK_WORDS]> {
    let summary = summary & SUMMARY_BITS;
    if summary == 0 {
        return None;
    }
    let words = WORDS.get_ptr_mut(0)?;
    if summary == 1 {
        // Word 0 alone (every rule set of up to 64 rules): no loop.
        let mut word = word;
        // SAFETY: the per-CPU buffer; XDP does not re-enter on the same CPU.
        unsafe { (*words)[0] = word_zero(&mut word) };
        return Some(words);
    }
    let mut fill = WordFill {
        words,
        summary,
        word,
    };
    // SAFETY: `fill` outlives the call; `fill_step::<W>` reads it as the
    // `WordFill<W>` it is. Walks run one after the other, never nested, so
    // one per-CPU buffer serves them all.
    unsafe {
        bpf_loop(
            // Up to the highest word named: 1 step when only word 0 is.
            u32::BITS - summary.leading_zeros(),
            fill_step::<W> as *mut c_void,
            core::ptr::from_mut(&mut fill).cast(),
            0,
        );
    }
    Some(words)
}

extern "C" fn fill_step<W: FnMut(u32) -> u64>(index: u64, fill: *mut c_void) -> i64 {
    // SAFETY: `fill_words` passes a live `WordFill<W>`.
    let fill = unsafe { &mut *fill.cast::<WordFill<W>>() };
    let w = index as u32 & (MASK_WORDS as u32 - 1);
    let value = if fill.summary & (1 << w) != 0 {
        (fill.word)(w)
    } else {
        0
    };
    // SAFETY: the per-CPU buffer, `w` < MASK_WORDS.
    unsafe { (*fill.words)[w as usize] = value };
    0
}

/// The state one `bpf_loop` over the matching rules carries.
struct SlotWalk<F> {
    words: *mut [u64; MASK_WORDS],
    /// Words not read yet.
    left: u32,
    /// First slot of the word being walked.
    base: u32,
    /// Its slots not yet visited.
    pending: u64,
    f: F,
}

/// One `bpf_loop` step: visits the lowest pending slot, or when the current
/// word is done reads the next one; stops after the last word.
extern "C" fn slot_step<F: FnMut(u32)>(_index: u64, walk: *mut c_void) -> i64 {
    // SAFETY: `for_each_slot` passes a live `SlotWalk<F>`, whose `words`
    // points at the per-CPU buffer it filled.
    let walk = unsafe { &mut *walk.cast::<SlotWalk<F>>() };
    if walk.pending == 0 {
        if walk.left == 0 {
            return 1;
        }
        let w = walk.left.trailing_zeros() & (MASK_WORDS as u32 - 1);
        walk.left &= walk.left - 1;
        walk.base = w * 64;
        // SAFETY: `words` points at the per-CPU buffer (see above); `w` is
        // masked to a valid index.
        walk.pending = unsafe { (*walk.words)[w as usize] };
        return 0;
    }
    let slot = walk.base + walk.pending.trailing_zeros();
    walk.pending &= walk.pending - 1;
    (walk.f)(slot);
    0
}

struct KernelState {
    /// The per-CPU alert record, which holds the packet's time once read.
    record: *mut AlertRecord,
}

impl DetectState for KernelState {
    #[inline(always)]
    fn now(&mut self, _given: u64) -> u64 {
        clock(self.record)
    }

    #[inline(always)]
    fn ttl_slot<R, F: FnOnce(&mut u64) -> R>(&mut self, index: u32, step: F) -> Option<R> {
        let page = ADDR_STATE.get_ptr_mut(index / TTL_PER_PAGE)?;
        // SAFETY: an element of an array map, valid for this program run.
        let slot = unsafe { &raw mut (*page).ttl[(index & (TTL_PER_PAGE - 1)) as usize] };
        // SAFETY: an element of a shared array map, valid for this program
        // run. Another CPU may write the same slot at once: a slot is one
        // u64, written whole, so a reader sees one source's entry or the
        // other's, never a mix.
        Some(step(unsafe { &mut *slot }))
    }

    #[inline(always)]
    fn syn_bucket<R, F: FnOnce(&mut SynBucket) -> R>(&mut self, index: u32, step: F) -> Option<R> {
        let page = ADDR_STATE.get_ptr_mut(index / SYN_PER_PAGE)?;
        // SAFETY: an element of an array map, valid for this program run.
        let bucket = unsafe { &raw mut (*page).syn[(index & (SYN_PER_PAGE - 1)) as usize] };
        // SAFETY: an element of a shared array map, valid for this program
        // run. Another CPU may update the same bucket at once; that race is
        // accepted (an increment can be lost under it), as with any shared
        // counter updated without atomics.
        Some(step(unsafe { &mut *bucket }))
    }

    #[inline(always)]
    fn scan_bucket<R, F: FnOnce(&mut ScanBucket) -> R>(
        &mut self,
        index: u32,
        step: F,
    ) -> Option<R> {
        let page = ADDR_STATE.get_ptr_mut(index / SCAN_PER_PAGE)?;
        // SAFETY: an element of an array map, valid for this program run.
        let bucket = unsafe { &raw mut (*page).scan[(index & (SCAN_PER_PAGE - 1)) as usize] };
        // SAFETY: as for `syn_bucket`.
        Some(step(unsafe { &mut *bucket }))
    }

    #[inline(always)]
    fn rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R> {
        let state = match RATE.get_ptr_mut(key) {
            Some(state) => state,
            None => {
                let _ = RATE.insert(key, RateState::default(), BPF_NOEXIST as u64);
                RATE.get_ptr_mut(key)?
            }
        };
        // SAFETY: a per-CPU map value, valid for this program run; XDP does
        // not re-enter on the same CPU.
        Some(step(unsafe { &mut *state }))
    }

    #[inline(always)]
    fn tracked_rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R> {
        let state = RATE.get_ptr_mut(key)?;
        // SAFETY: this CPU's value of a per-CPU map; XDP does not re-enter
        // on the same CPU.
        Some(step(unsafe { &mut *state }))
    }

    #[inline(always)]
    fn track_stamp<R, F: FnOnce(&mut u8) -> R>(&mut self, slot: u32, step: F) -> Option<R> {
        let line = TRACK_FILTER.get_ptr_mut(slot / TRACK_LINE)?;
        // SAFETY: this CPU's value of a per-CPU array; XDP does not re-enter
        // on the same CPU.
        let stamp = unsafe { (*line).get_mut((slot % TRACK_LINE) as usize)? };
        Some(step(stamp))
    }

    #[inline(always)]
    fn alert_budget<R, F: FnOnce(&mut AlertBudget) -> R>(&mut self, step: F) -> Option<R> {
        let budget = ALERT_BUDGET.get_ptr_mut(0)?;
        // SAFETY: this CPU's value of a per-CPU array; XDP does not re-enter
        // on the same CPU.
        Some(step(unsafe { &mut *budget }))
    }

    #[inline(always)]
    fn count_hit(&mut self, slot: u32) {
        if let Some(stats) = RULE_STATS.get_ptr_mut(slot) {
            // SAFETY: a per-CPU array slot; XDP does not re-enter on the CPU.
            unsafe { (*stats).hits += 1 };
        }
    }

    #[inline(always)]
    fn count_alert(&mut self, slot: u32) {
        if let Some(stats) = RULE_STATS.get_ptr_mut(slot) {
            // SAFETY: a per-CPU array slot; XDP does not re-enter on the CPU.
            unsafe { (*stats).alerts += 1 };
        }
    }

    #[inline(always)]
    fn handshake(&mut self, key: &HandshakeKey) -> Option<Handshake> {
        // SAFETY: read whole; a concurrent update replaces the entry.
        unsafe { HANDSHAKES.get(key) }.copied()
    }

    #[inline(always)]
    fn set_handshake(&mut self, key: &HandshakeKey, value: &Handshake) {
        // A full map evicts its least recently used handshake: that client
        // proves nothing this time, which can refuse a block, never cause one.
        let _ = HANDSHAKES.insert(key, value, 0);
    }

    #[inline(always)]
    fn forget_handshake(&mut self, key: &HandshakeKey) {
        let _ = HANDSHAKES.remove(key);
    }

    #[inline(always)]
    fn prove(&mut self, src: &AddrKey, now: u64) {
        let _ = PROVEN.insert(src, now, 0);
    }

    #[inline(always)]
    fn proven_at(&mut self, src: &AddrKey) -> Option<u64> {
        // SAFETY: a u64 read; a concurrent update writes it whole.
        unsafe { PROVEN.get(src) }.copied()
    }

    #[inline(always)]
    fn repeat_window<R, F: FnOnce(&mut RepeatWindow) -> R>(
        &mut self,
        src: &AddrKey,
        step: F,
    ) -> Option<R> {
        let window = match REPEATS.get_ptr_mut(src) {
            Some(window) => window,
            None => {
                let _ = REPEATS.insert(src, RepeatWindow::default(), BPF_NOEXIST as u64);
                REPEATS.get_ptr_mut(src)?
            }
        };
        // SAFETY: a map value the helper returned; a concurrent update of
        // the same source from another CPU may interleave (a window's count
        // is advisory, like the other per-source LRU state).
        Some(step(unsafe { &mut *window }))
    }

    #[inline(always)]
    fn judge_block(&mut self, _meta: &PacketMeta, now_ns: u64, count_repeat: bool) -> u8 {
        judge_source(self.record, now_ns, count_repeat)
    }

    #[inline(always)]
    fn block_policy(&self) -> BlockPolicy {
        // Not written (never in drop mode): the safe policy, nothing proven.
        DROP_POLICY.get(0).copied().unwrap_or(BlockPolicy {
            proof_ns: 0,
            ..BlockPolicy::DEFAULT
        })
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
