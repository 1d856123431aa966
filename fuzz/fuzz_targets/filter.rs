//! The inspect filter language: parse and compile arbitrary text, then check
//! the kernel's stack machine against the parsed expression tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::filter::{Expr, compile};
use sensor_common::PacketMeta;
use sensor_common::filter::FilterProgram;

/// The tree's meaning, one test op at a time.
fn eval(expr: &Expr, meta: &PacketMeta) -> bool {
    match expr {
        Expr::Test(test) => {
            let mut one = FilterProgram {
                len: 1,
                ..FilterProgram::default()
            };
            one.ops[0] = *test;
            one.matches(meta)
        }
        Expr::Not(a) => !eval(a, meta),
        Expr::And(a, b) => eval(a, meta) && eval(b, meta),
        Expr::Or(a, b) => eval(a, meta) || eval(b, meta),
    }
}

/// Packets built from the input's first bytes, so the comparison sees
/// matching and non-matching fields alike.
fn packets(seed: &[u8]) -> Vec<PacketMeta> {
    let mut out = Vec::new();
    for chunk in seed.chunks(12).take(4) {
        let byte = |i: usize| chunk.get(i).copied().unwrap_or(0);
        let mut meta = PacketMeta {
            ip_version: if byte(0) & 1 == 0 { 4 } else { 6 },
            proto: [6, 17, 1, 58][(byte(0) >> 1) as usize & 3],
            flags: u16::from(byte(1)),
            src_port: u16::from_be_bytes([byte(2), byte(3)]) % 1024,
            dst_port: u16::from_be_bytes([byte(4), byte(5)]) % 1024,
            tcp_flags: u16::from_be_bytes([byte(6), byte(7)]) & 0x1ff,
            vlan_count: byte(8) % 3,
            vlan: [u16::from(byte(9)), 0, 0, 0],
            ..PacketMeta::default()
        };
        meta.src_addr[..4].copy_from_slice(&[192, 0, 2, byte(10)]);
        meta.dst_addr[..4].copy_from_slice(&[10, 0, 0, byte(11)]);
        if meta.ip_version == 6 {
            meta.src_addr = [
                0x20,
                0x01,
                0x0d,
                0xb8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                byte(10),
            ];
            meta.dst_addr = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(11)];
        }
        out.push(meta);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let compiled = match compile(text) {
        Ok(compiled) => compiled,
        Err(err) => {
            let _ = err.render(text);
            return;
        }
    };
    let seed = data.get(split + 1..).unwrap_or(&[]);
    for meta in packets(seed) {
        let expected = compiled.expr.as_ref().is_none_or(|expr| eval(expr, &meta));
        assert_eq!(
            compiled.program.matches(&meta),
            expected,
            "{text:?} on {meta:?}"
        );
    }
    if let Some(expr) = &compiled.expr {
        let _ = expr.to_string();
    }
});
