//! Drop mode's `block_when` settings (CONTRACT section 5): the config keys
//! `drop.block_when`, `drop.block_repeat` and `drop.proof_seconds`, read into
//! the kernel's [`BlockPolicy`], and the names alerts and metrics use for
//! them, and the blocked sources as `sensor inspect --summary` lists them.
//! The judgement itself is shared with the kernel (`sensor_common::proof`);
//! the proof metrics are read in `run::proof`.
//!
//! May use: `settings`, `alert` (address and block names), `rules` (the YAML reader).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use sensor_common::alert::block;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{BLOCK_RESTORED, BlockEntry, BlockPolicy, block_when};

use crate::alert::format::block_name;
use crate::alert::ip_addr;
use crate::rules::yaml::{Located, Node};
use crate::settings::DropMapSizes;

/// The `drop:` keys this module reads.
pub const KEYS: &[&str] = &[
    "block_when",
    "block_repeat",
    "proof_seconds",
    "handshake_entries",
    "proven_entries",
    "repeat_entries",
];

/// Longest `block_repeat.window_seconds` and `proof_seconds`: a day.
const MAX_SECONDS: i128 = 86_400;
/// Largest `block_repeat.count`.
const MAX_REPEAT_COUNT: i128 = 1_000;
const NS_PER_SECOND: u64 = 1_000_000_000;

/// `block_when` spellings, by [`block_when`] value.
const MODES: [(&str, u8); 3] = [
    ("proven", block_when::PROVEN),
    ("repeated", block_when::REPEATED),
    ("first_match", block_when::FIRST_MATCH),
];

/// Reads `drop.<key>` (one of [`KEYS`]) into `policy`.
pub(crate) fn parse_key(
    key: &str,
    node: &Node,
    policy: &mut BlockPolicy,
    maps: &mut DropMapSizes,
) -> Result<(), Located> {
    let entries = |node: &Node| -> Result<u32, Located> {
        let range = DropMapSizes::RANGE;
        Ok(node.as_int(key, i128::from(*range.start())..=i128::from(*range.end()))? as u32)
    };
    match key {
        "handshake_entries" => maps.handshakes = entries(node)?,
        "proven_entries" => maps.proven = entries(node)?,
        "repeat_entries" => maps.repeats = entries(node)?,
        "block_when" => policy.block_when = node.as_choice("block_when", "block_when", &MODES)?,
        "proof_seconds" => {
            policy.proof_ns = node.as_int("proof_seconds", 1..=MAX_SECONDS)? as u64 * NS_PER_SECOND;
        }
        _ => {
            let fields = node.as_map("`block_repeat`", &["count", "window_seconds"])?;
            for field in &fields.fields {
                if field.key == "count" {
                    policy.repeat_count = field.value.as_int("count", 1..=MAX_REPEAT_COUNT)? as u32;
                } else {
                    policy.repeat_window_ns =
                        field.value.as_int("window_seconds", 1..=MAX_SECONDS)? as u64
                            * NS_PER_SECOND;
                }
            }
        }
    }
    Ok(())
}

/// The configuration name of a [`block_when`] value.
pub fn mode_name(value: u8) -> &'static str {
    MODES
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("proven", |(name, _)| name)
}

/// A source blocked now, as `sensor inspect --summary` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedNow {
    pub src_ip: IpAddr,
    /// The rule whose match blocked it.
    pub signature_id: u32,
    /// Why it could be blocked: the `block_when` in force then (`proven`,
    /// `repeated`, `first_match`), or `restored` from `drop.state_file`.
    pub block_when: String,
    pub seconds_left: u64,
}

/// The blocks of the kernel's map that have not ended at `now` (kernel
/// monotonic clock), longest left first.
pub fn blocked_now(entries: &[(AddrKey, BlockEntry)], now: u64) -> Vec<BlockedNow> {
    let mut list: Vec<BlockedNow> = entries
        .iter()
        .filter(|(_, entry)| entry.until_ns > now)
        .map(|(key, entry)| BlockedNow {
            src_ip: ip_addr(key.version, &key.addr),
            signature_id: entry.sig_id,
            block_when: if entry.block_when == BLOCK_RESTORED {
                "restored".to_owned()
            } else {
                mode_name(entry.block_when).to_owned()
            },
            seconds_left: (entry.until_ns - now).div_ceil(NS_PER_SECOND),
        })
        .collect();
    list.sort_by(|a, b| {
        b.seconds_left
            .cmp(&a.seconds_left)
            .then(a.src_ip.cmp(&b.src_ip))
    });
    list
}

/// The text report's lines for `blocked` (none when it is empty).
pub fn blocked_text(blocked: &[BlockedNow]) -> String {
    let mut out = String::new();
    if blocked.is_empty() {
        return out;
    }
    out.push_str("  blocked sources (source, rule, block_when, seconds left):\n");
    for b in blocked {
        out.push_str(&format!(
            "    {:<39} {:>10} {:<11} {:>8}\n",
            b.src_ip.to_string(),
            b.signature_id,
            b.block_when,
            b.seconds_left
        ));
    }
    out
}

/// Dry run: logs what a `drop` rule's match would have done to its source.
pub fn report_would_block(src: &IpAddr, rule: u32, verdict: u8) {
    match verdict {
        block::DRY_RUN => {
            tracing::warn!(src = %src, rule, "dry run: would drop, and block the source");
        }
        _ => tracing::warn!(
            src = %src,
            rule,
            not_blocked = block_name(verdict).unwrap_or("drop_only"),
            "dry run: would drop, and not block the source"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, parse_config};

    fn policy_of(text: &str) -> BlockPolicy {
        parse_config("c.yaml", text).expect("valid").drop.block
    }

    /// (line, column, message) of a config error.
    fn error_of(text: &str) -> (u64, u64, String) {
        match parse_config("c.yaml", text) {
            Err(ConfigError::Invalid(err)) => (err.line, err.column, err.to_string()),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_proven_600_seconds_and_3_in_10() {
        let policy = policy_of("drop: {dry_run: true}\n");
        assert_eq!(policy, BlockPolicy::DEFAULT);
        assert_eq!(policy.block_when, block_when::PROVEN);
        assert_eq!(policy.proof_ns, 600_000_000_000);
        assert_eq!(
            (policy.repeat_count, policy.repeat_window_ns),
            (3, 10_000_000_000)
        );
    }

    #[test]
    fn map_sizes_are_read_and_bounded() {
        let maps = |text: &str| parse_config("c.yaml", text).expect("valid").drop.maps;
        assert_eq!(maps("drop: {dry_run: true}\n"), DropMapSizes::default());
        let sized = maps(
            "drop:\n  handshake_entries: 262144\n  proven_entries: 1024\n  repeat_entries: 4194304\n",
        );
        assert_eq!(
            (sized.handshakes, sized.proven, sized.repeats),
            (262_144, 1_024, 4_194_304)
        );
        let (line, column, message) = error_of("drop:\n  handshake_entries: 1023\n");
        assert_eq!((line, column), (2, 22), "{message}");
        assert!(message.contains("handshake_entries"), "{message}");
        let (line, _, message) = error_of("drop:\n  repeat_entries: 4194305\n");
        assert_eq!(line, 2, "{message}");
    }

    #[test]
    fn every_key_is_read() {
        let policy = policy_of(
            "drop:\n  block_when: repeated\n  block_repeat: { count: 5, window_seconds: 2 }\n  proof_seconds: 30\n",
        );
        assert_eq!(policy.block_when, block_when::REPEATED);
        assert_eq!(
            (policy.repeat_count, policy.repeat_window_ns),
            (5, 2_000_000_000)
        );
        assert_eq!(policy.proof_ns, 30_000_000_000);
        let policy = policy_of("drop: {block_when: first_match}\n");
        assert_eq!(policy.block_when, block_when::FIRST_MATCH);
    }

    #[test]
    fn bad_values_name_line_column_and_what() {
        let (line, column, message) = error_of("drop:\n  block_when: always\n");
        assert_eq!((line, column), (2, 15), "{message}");
        assert!(
            message.contains("unknown block_when \"always\""),
            "{message}"
        );
        assert!(
            message.contains("proven, repeated, first_match"),
            "{message}"
        );
        let (line, column, message) = error_of("drop:\n  block_repeat: { count: 0 }\n");
        assert_eq!((line, column), (2, 26), "{message}");
        assert!(message.contains("count"), "{message}");
        let (line, _, message) = error_of("drop:\n  block_repeat: { cnt: 3 }\n");
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("unknown key \"cnt\""), "{message}");
        let (line, _, message) = error_of("drop:\n  proof_seconds: 0\n");
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("proof_seconds"), "{message}");
        let (_, _, message) = error_of("drop:\n  block_repeat: { window_seconds: 86401 }\n");
        assert!(message.contains("window_seconds"), "{message}");
    }

    // ---- the shared judgement, over replay's in-memory state ----

    use crate::replay::state::MemoryState;
    use crate::testing::frames::{self, flags};
    use sensor_common::detect::DetectState;
    use sensor_common::packet::PacketMeta;
    use sensor_common::parse::parse_ethernet;
    use sensor_common::proof::{judge_block, observe, repeat_step, seen};
    use sensor_common::tables::{HandshakeKey, RepeatWindow};

    const PROOF_NS: u64 = 1_000;

    fn seg(from_client: bool, f: u16, seq: u32, ack: u32) -> PacketMeta {
        let (c, s) = ([192, 0, 2, 1], [198, 51, 100, 2]);
        let frame = if from_client {
            frames::ipv4_tcp_numbered((c, s), (40000, 80), f, seq, ack)
        } else {
            frames::ipv4_tcp_numbered((s, c), (80, 40000), f, seq, ack)
        };
        parse_ethernet(frame.as_slice())
    }

    /// Runs (time, from_client, flags, seq, ack) segments; what each made.
    fn watch(state: &mut MemoryState, segments: &[(u64, bool, u16, u32, u32)]) -> Vec<u8> {
        let mut key = HandshakeKey::default();
        segments
            .iter()
            .map(|&(t, c, f, seq, ack)| observe(&seg(c, f, seq, ack), t, PROOF_NS, state, &mut key))
            .collect()
    }

    fn client() -> sensor_common::packet::AddrKey {
        seg(true, flags::ACK, 0, 0).src_key()
    }

    #[test]
    fn a_handshake_proves_at_its_final_ack_and_for_proof_ns() {
        let mut state = MemoryState::new();
        let (syn, syn_ack, ack) = (flags::SYN, flags::SYN | flags::ACK, flags::ACK);
        let seen = watch(
            &mut state,
            &[
                (10, true, syn, u32::MAX, 0),
                (11, false, syn_ack, u32::MAX, 0),
                (12, true, ack, 0, 0),
            ],
        );
        assert_eq!(seen, [seen::NOTHING, seen::NOTHING, seen::PROOF]);
        assert_eq!(state.proven_at(&client()), Some(12));
        let policy = BlockPolicy {
            proof_ns: PROOF_NS,
            ..BlockPolicy::DEFAULT
        };
        let verdict =
            |state: &mut MemoryState, now| judge_block(&client(), now, &policy, true, state);
        assert_eq!(verdict(&mut state, 12 + PROOF_NS - 1), block::BLOCKED);
        assert_eq!(verdict(&mut state, 12 + PROOF_NS), block::NOT_PROVEN);
    }

    #[test]
    fn a_handshake_slower_than_proof_ns_or_with_a_wrong_ack_proves_nothing() {
        let (syn, syn_ack, ack) = (flags::SYN, flags::SYN | flags::ACK, flags::ACK);
        let mut state = MemoryState::new();
        let late = watch(
            &mut state,
            &[
                (0, true, syn, 5, 0),
                (1, false, syn_ack, 9, 6),
                (PROOF_NS, true, ack, 6, 10),
            ],
        );
        assert_eq!(late[2], seen::NOTHING);
        let mut state = MemoryState::new();
        let wrong = watch(
            &mut state,
            &[
                (0, true, syn, 5, 0),
                (1, false, syn_ack, 9, 6),
                (2, true, ack, 6, 11),
                (3, true, ack, 6, 10),
            ],
        );
        assert_eq!(wrong[2..], [seen::BAD_ACK, seen::NOTHING]);
        assert_eq!(state.proven_at(&client()), None);
        // A SYN-ACK that does not acknowledge the SYN is not the peer's answer.
        let mut state = MemoryState::new();
        let stray = watch(
            &mut state,
            &[
                (0, true, syn, 5, 0),
                (1, false, syn_ack, 9, 7),
                (2, true, ack, 6, 10),
            ],
        );
        assert_eq!(stray[2], seen::NOTHING);
        // SYN+FIN opens nothing.
        let mut state = MemoryState::new();
        let scan = watch(
            &mut state,
            &[
                (0, true, syn | flags::FIN, 5, 0),
                (1, false, syn_ack, 9, 6),
                (2, true, ack, 6, 10),
            ],
        );
        assert_eq!(scan[2], seen::NOTHING);
    }

    #[test]
    fn repeat_windows_count_to_the_threshold_and_start_again() {
        let mut window = RepeatWindow::default();
        assert!(!repeat_step(&mut window, 100, 10, 3));
        assert!(!repeat_step(&mut window, 105, 10, 3));
        assert!(
            repeat_step(&mut window, 109, 10, 3),
            "third within the window"
        );
        assert!(
            !repeat_step(&mut window, 110, 10, 3),
            "a block starts a new count"
        );
        assert!(!repeat_step(&mut window, 115, 10, 3));
        assert!(
            !repeat_step(&mut window, 120, 10, 3),
            "the window of 110 ended at 120"
        );
        let mut once = RepeatWindow::default();
        assert!(repeat_step(&mut once, 0, 10, 1), "count 1 is first_match");
    }

    #[test]
    fn blocked_now_lists_unended_blocks_with_why_and_time_left() {
        let entry = |last: u8, until_ns: u64, block_when: u8| {
            let mut key = AddrKey {
                version: 4,
                ..AddrKey::default()
            };
            key.addr[..4].copy_from_slice(&[198, 51, 100, last]);
            let entry = BlockEntry {
                until_ns,
                sig_id: 500 + u32::from(last),
                block_when,
                _pad: [0; 3],
            };
            (key, entry)
        };
        let now = 100 * NS_PER_SECOND;
        let list = blocked_now(
            &[
                entry(1, now, block_when::PROVEN),
                entry(2, now + 1, block_when::REPEATED),
                entry(3, now + 300 * NS_PER_SECOND, BLOCK_RESTORED),
            ],
            now,
        );
        let shown: Vec<(String, u32, &str, u64)> = list
            .iter()
            .map(|b| {
                (
                    b.src_ip.to_string(),
                    b.signature_id,
                    b.block_when.as_str(),
                    b.seconds_left,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("198.51.100.3".to_owned(), 503, "restored", 300),
                ("198.51.100.2".to_owned(), 502, "repeated", 1),
            ]
        );
        let text = blocked_text(&list);
        assert!(text.contains("blocked sources"), "{text}");
        assert!(
            text.contains("198.51.100.2") && text.contains("repeated"),
            "{text}"
        );
        assert_eq!(blocked_text(&[]), "");
    }

    #[test]
    fn every_block_value_has_a_name_and_none_has_none() {
        for value in [
            block::BLOCKED,
            block::NOT_PROVEN,
            block::NOT_REPEATED,
            block::DRY_RUN,
            block::DROP_ONLY,
        ] {
            assert!(block_name(value).is_some(), "{value}");
        }
        assert_eq!(block_name(block::NONE), None);
        assert_eq!(mode_name(block_when::REPEATED), "repeated");
        assert_eq!(mode_name(block_when::FIRST_MATCH), "first_match");
    }
}
