//! The layout the kernel and userspace agree on: the size and alignment of
//! every `#[repr(C)]` type they share, checked at compile time. A field
//! added or moved without its padding changes a number here (and zerocopy's
//! `IntoBytes` derive refuses implicit padding outright).

use core::mem::{align_of, size_of};

use crate::alert::AlertRecord;
use crate::decap::DecapConfig;
use crate::filter::{
    FilterOp, FilterProgram, FilterVm, InspectBudget, InspectConfig, InspectRecord, MAX_FILTER_OPS,
    TalkerStats,
};
use crate::ipv6_chain::ChainWalk;
use crate::options::OptionWalk;
use crate::packet::{AddrKey, PacketMeta, Tunnel};
use crate::tables::{
    AlertBudget, BlockEntry, BlockPolicy, Handshake, HandshakeKey, MASK_WORDS, RateKey, RateState,
    RepeatWindow, RuleInfo, RuleMask, RuleStats, ScanBucket, ScanWindow, SensorConfig, SynBucket,
    SynSlot, SynWindow,
};

macro_rules! layout {
    ($($ty:ty: size $size:expr, align $align:expr;)*) => {
        $(
            const _: () = assert!(size_of::<$ty>() == $size, concat!("size of ", stringify!($ty)));
            const _: () = assert!(align_of::<$ty>() == $align, concat!("alignment of ", stringify!($ty)));
        )*
    };
}

layout! {
    AddrKey: size 20, align 4;
    PacketMeta: size 128, align 8;
    Tunnel: size 44, align 4;
    DecapConfig: size 18, align 2;
    OptionWalk: size 84, align 4;
    ChainWalk: size 20, align 4;
    AlertRecord: size 168, align 8;
    RuleMask: size 8 + 8 * MASK_WORDS, align 8;
    RuleInfo: size 40, align 8;
    SensorConfig: size 32, align 4;
    BlockEntry: size 16, align 8;
    SynWindow: size 32, align 8;
    SynSlot: size 48, align 8;
    SynBucket: size 96, align 8;
    ScanWindow: size 32, align 8;
    ScanBucket: size 320, align 8;
    RateKey: size 24, align 4;
    RateState: size 24, align 8;
    RuleStats: size 16, align 8;
    AlertBudget: size 16, align 8;
    BlockPolicy: size 24, align 8;
    HandshakeKey: size 40, align 4;
    Handshake: size 24, align 8;
    RepeatWindow: size 16, align 8;
    FilterOp: size 44, align 4;
    FilterProgram: size 8 + 44 * MAX_FILTER_OPS, align 4;
    FilterVm: size 16, align 8;
    InspectRecord: size 144, align 8;
    InspectConfig: size 16, align 4;
    InspectBudget: size 16, align 8;
    TalkerStats: size 16, align 8;
}
