//! Drop mode's answer to forged sources: proof of address, and the
//! `block_when` judgement that uses it. Shared by the kernel and replay.
//!
//! A source address is *proven* when the sensor saw it complete a TCP
//! three-way handshake: its SYN, the peer's SYN-ACK acknowledging that SYN,
//! and its ACK acknowledging exactly the SYN-ACK's sequence number plus one.
//! An attacker who forges the address is not on the path of the SYN-ACK,
//! cannot read its sequence number, and so cannot produce that ACK.
//!
//! Cost: only TCP is looked at. A SYN or SYN-ACK is a handshake packet; a
//! segment with ACK set and SYN, RST, FIN clear (an established
//! connection's) costs one LRU lookup, which misses unless it is a
//! handshake's last packet; every other packet costs nothing.

use crate::alert::block;
use crate::detect::DetectState;
use crate::packet::tcp::{ACK, FIN, RST, SYN};
use crate::packet::{AddrKey, PacketMeta, flag};
use crate::tables::{BlockPolicy, Handshake, HandshakeKey, RepeatWindow, block_when, stage};

/// What [`observe`] made of a packet.
pub mod seen {
    /// Not part of a watched handshake (or only a step of one).
    pub const NOTHING: u8 = 0;
    /// The handshake completed: the client's address is proven.
    pub const PROOF: u8 = 1;
    /// A final ACK with the wrong acknowledgement number: the handshake
    /// is forgotten (a guess must not get a second try).
    pub const BAD_ACK: u8 = 2;
}

/// Writes into `key` the handshake `meta` belongs to, as its client opened
/// it: `from_client` says whether `meta` travels from client to server.
#[inline(always)]
fn key_of(meta: &PacketMeta, from_client: bool, key: &mut HandshakeKey) {
    key.client.version = meta.ip_version;
    key.client._pad = [0; 3];
    if from_client {
        key.client.addr = meta.src_addr;
        key.server = meta.dst_addr;
        key.client_port = meta.src_port;
        key.server_port = meta.dst_port;
    } else {
        key.client.addr = meta.dst_addr;
        key.server = meta.src_addr;
        key.client_port = meta.dst_port;
        key.server_port = meta.src_port;
    }
}

/// Follows TCP handshakes and proves the address of clients that complete
/// one (see the module docs); `proof_ns` also bounds how long a handshake
/// may take. `now` is the packet's time as [`DetectState::now`] takes it;
/// `key` is room for a map key (the kernel's is not on its small stack).
#[inline(always)]
pub fn observe<S: DetectState>(
    meta: &PacketMeta,
    now: u64,
    proof_ns: u64,
    state: &mut S,
    key: &mut HandshakeKey,
) -> u8 {
    if !meta.has(flag::HAS_TCP_FLAGS) || !meta.has(flag::HAS_PORTS) {
        return seen::NOTHING;
    }
    // A handshake's segments carry exactly these of the four flags (a
    // SYN+FIN scan is no handshake).
    let flags = meta.tcp_flags & (SYN | ACK | RST | FIN);
    if flags == ACK {
        return final_ack(meta, now, proof_ns, state, key);
    }
    if flags == SYN {
        // The client's SYN opens (or, with a new sequence number, reopens)
        // the handshake; a retransmission of the same SYN changes nothing.
        key_of(meta, true, key);
        let now = state.now(now);
        if let Some(known) = state.handshake(key)
            && known.client_isn == meta.tcp_seq
            && now.wrapping_sub(known.syn_ns) < proof_ns
        {
            return seen::NOTHING;
        }
        let opened = Handshake {
            syn_ns: now,
            client_isn: meta.tcp_seq,
            server_isn: 0,
            stage: stage::SYN,
            _pad: [0; 7],
        };
        state.set_handshake(key, &opened);
    } else if flags == SYN | ACK {
        // The server's SYN-ACK: it must acknowledge the client's SYN. A
        // retransmission carries the same sequence number; a different one
        // means one of the two was forged.
        key_of(meta, false, key);
        let Some(mut known) = state.handshake(key) else {
            return seen::NOTHING;
        };
        if meta.tcp_ack != known.client_isn.wrapping_add(1) {
            return seen::NOTHING;
        }
        if known.stage == stage::SYN {
            known.stage = stage::SYN_ACK;
            known.server_isn = meta.tcp_seq;
        } else if known.stage == stage::SYN_ACK && known.server_isn != meta.tcp_seq {
            known.stage = stage::CONFLICT;
        } else {
            return seen::NOTHING;
        }
        state.set_handshake(key, &known);
    }
    seen::NOTHING
}

/// A segment with ACK set and SYN, RST, FIN clear: the third packet of a
/// watched handshake, or (nearly always) not part of one.
#[inline(always)]
fn final_ack<S: DetectState>(
    meta: &PacketMeta,
    now: u64,
    proof_ns: u64,
    state: &mut S,
    key: &mut HandshakeKey,
) -> u8 {
    key_of(meta, true, key);
    // The one lookup every established-connection segment pays.
    let Some(known) = state.handshake(key) else {
        return seen::NOTHING;
    };
    if known.stage != stage::SYN_ACK {
        return seen::NOTHING;
    }
    state.forget_handshake(key);
    let now = state.now(now);
    if now.wrapping_sub(known.syn_ns) >= proof_ns {
        return seen::NOTHING;
    }
    if meta.tcp_ack != known.server_isn.wrapping_add(1) {
        return seen::BAD_ACK;
    }
    state.prove(&key.client, now);
    seen::PROOF
}

/// Whether a source proven at `proven_ns` still is at `now`.
#[inline(always)]
pub fn proof_holds(proven_ns: u64, now: u64, proof_ns: u64) -> bool {
    now.wrapping_sub(proven_ns) < proof_ns
}

/// Advances a source's `repeated` window by one match; whether this match
/// blocks (the `count`-th within `window_ns` of the window's first). A block
/// starts the count again.
#[inline(always)]
pub fn repeat_step(window: &mut RepeatWindow, now: u64, window_ns: u64, count: u32) -> bool {
    if window.count == 0 || now.wrapping_sub(window.start_ns) >= window_ns {
        window.start_ns = now;
        window.count = 0;
    }
    window.count = window.count.saturating_add(1);
    if window.count >= count {
        window.count = 0;
        return true;
    }
    false
}

/// Whether the source of a packet that a `drop` rule matched is to be
/// blocked: a [`block`] value, `BLOCKED` or why not. Called at most once
/// per packet with `count_repeat` (a `repeated` match counts once, however
/// many rules matched); without it `repeated` blocks at once (for
/// `syn_flood` rules, whose threshold already counts repetitions).
#[inline(always)]
pub fn judge_block<S: DetectState>(
    src: &AddrKey,
    now: u64,
    policy: &BlockPolicy,
    count_repeat: bool,
    state: &mut S,
) -> u8 {
    match policy.block_when {
        block_when::FIRST_MATCH => block::BLOCKED,
        block_when::REPEATED if !count_repeat => block::BLOCKED,
        block_when::REPEATED => {
            let (window_ns, count) = (policy.repeat_window_ns, policy.repeat_count);
            match state.repeat_window(src, |w| repeat_step(w, now, window_ns, count)) {
                Some(true) => block::BLOCKED,
                _ => block::NOT_REPEATED,
            }
        }
        _ => match state.proven_at(src) {
            Some(at) if proof_holds(at, now, policy.proof_ns) => block::BLOCKED,
            _ => block::NOT_PROVEN,
        },
    }
}
