//! Shared between the XDP program (`sensor-xdp`) and userspace (`sensor`).
//!
//! - [`bytes`]: bounded byte access, implemented for `[u8]` here and for the
//!   XDP context in the kernel program.
//! - [`options`]: the IPv4/TCP option walk, one step at a time.
//! - [`ipv6_chain`]: the IPv6 extension-header chain checks, one header at a time.
//! - [`parse`]: the one header parser (Ethernet, VLAN/QinQ, IPv4, IPv6 with
//!   extension headers, TCP, UDP, ICMP, ICMPv6) producing a [`PacketMeta`].
//! - [`decap`]: tunnels (VXLAN, GENEVE, GRE, ERSPAN, IP-in-IP): where the
//!   inner packet starts, which `parse` then parses with the same steps.
//! - [`tables`]: the compiled form of the rules, as the BPF maps hold it.
//! - [`detect`]: per-packet rule evaluation over those tables, generic over
//!   where the tables and the per-source state live (BPF maps or memory).
//! - [`alert`]: the record the kernel sends to userspace for each alert.
//! - [`proof`]: drop mode's proof of address (TCP handshakes) and the
//!   `block_when` judgement.
//! - [`sketch`]: the fixed-size, hash-indexed per-address state (TTL
//!   baselines, `syn_flood` windows) that a spoofed flood cannot thrash.
//!
//! Nothing here allocates or knows about aya (except `Pod` impls under the
//! `user` feature).
//!
//! Every `#[repr(C)]` type shared with the kernel has explicit padding
//! fields, derives zerocopy's `IntoBytes` (which refuses to compile a type
//! with padding) and `FromBytes` (every bit pattern valid), and has a
//! `const` size and alignment assertion next to it ([`layout`]). Byte views
//! go through those traits, never through pointer casts.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod alert;
pub mod bytes;
pub mod decap;
pub mod detect;
pub mod filter;
pub mod ipv6_chain;
pub mod layout;
pub mod options;
pub mod packet;
pub mod parse;
pub mod proof;
pub mod sketch;
pub mod tables;

pub use alert::AlertRecord;
pub use bytes::PacketBytes;
pub use packet::PacketMeta;
/// The byte-view traits of the shared types, for their users.
pub use zerocopy;
