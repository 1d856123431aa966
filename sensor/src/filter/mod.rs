//! `--filter`: a documented subset of pcap-filter (see `docs/inspect.md`),
//! parsed into an expression tree and compiled to the postfix
//! [`FilterProgram`] the XDP program runs before it emits anything.
//!
//! Grammar (keywords are case-insensitive; `&&`, `||`, `!` are accepted
//! for `and`, `or`, `not`):
//!
//! ```text
//! filter    := empty | or
//! or        := and ( "or" and )*
//! and       := unary ( "and" unary )*
//! unary     := "not" unary | "(" or ")" | primitive
//! primitive := tcp | udp | icmp | icmp6 | ip | ip6
//!            | [ip|ip6] proto N
//!            | [proto-kw] [src | dst | src or dst | src and dst] [host | net | port] VALUE
//!            | VALUE                      (repeats the previous primitive's qualifiers)
//!            | vlan [N]
//!            | tcp[tcpflags] [& V] (== | != | > 0) V       (tcp[13] works too)
//!            | flags LETTERS[/LETTERS]
//! ```
//!
//! Precedence: `not` binds tightest, then `and`, then `or`. pcap-filter
//! gives `and` and `or` equal precedence (left to right), so a filter that
//! mixes them without parentheses gets a warning saying how it was read.
//!
//! Here: the public API, the expression tree and its compilation to ops
//! (codegen); `lexer` (text → tokens), `parser` (tokens → tree), `values`
//! (the primitives' tests and their values).

use std::fmt;

use sensor_common::filter::{FilterOp, FilterProgram, MAX_FILTER_OPS, MAX_STACK, VLAN_ANY, op};
use sensor_common::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use crate::alert::tcp_flag_letters;

/// What is wrong with a filter, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based character column of the problem; `None` when it concerns
    /// the filter as a whole (too complex for the kernel).
    pub column: Option<usize>,
    pub message: String,
}

impl FilterError {
    fn at(column: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            column: Some(column),
            message: message.into(),
        }
    }

    /// The message with the filter quoted and a caret under the column.
    pub fn render(&self, expr: &str) -> String {
        match self.column {
            Some(column) => format!(
                "invalid filter at column {column}: {}\n  {expr}\n  {}^",
                self.message,
                " ".repeat(column.saturating_sub(1))
            ),
            None => format!("invalid filter: {}", self.message),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FilterError {}

/// One-line list of what the language has, for error messages.
pub const SUPPORTED: &str = "tcp, udp, icmp, icmp6, ip, ip6, [ip|ip6] proto N, \
    [src|dst] host ADDR, [src|dst] net CIDR, [tcp|udp] [src|dst] port N, vlan [N], \
    tcp[tcpflags] & MASK == VALUE (or != / > 0), flags LETTERS[/MASK], \
    combined with and, or, not and parentheses";

/// A parsed filter: a tree of kernel tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// One test op (pushes a boolean).
    Test(FilterOp),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Expr) -> Expr {
        match a {
            // `not not x` is `x`: one op less.
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// Postfix ops, appended to `out`.
    fn emit(&self, out: &mut Vec<FilterOp>) {
        match self {
            Expr::Test(test) => out.push(*test),
            Expr::Not(a) => {
                a.emit(out);
                out.push(logic(op::NOT));
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.emit(out);
                b.emit(out);
                let code = if matches!(self, Expr::And(..)) {
                    op::AND
                } else {
                    op::OR
                };
                out.push(logic(code));
            }
        }
    }
}

/// The expression with every operator parenthesised, in filter syntax.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Test(test) => f.write_str(&describe_op(test)),
            Expr::Not(a) => write!(f, "not {a}"),
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
        }
    }
}

fn logic(code: u8) -> FilterOp {
    FilterOp {
        code,
        ..FilterOp::default()
    }
}

/// A test op in filter syntax (for [`Expr`]'s `Display`).
pub fn describe_op(test: &FilterOp) -> String {
    match test.code {
        op::IP_VERSION if test.value == 4 => "ip".to_owned(),
        op::IP_VERSION => "ip6".to_owned(),
        op::PROTO => match test.value as u8 {
            PROTO_TCP => "tcp".to_owned(),
            PROTO_UDP => "udp".to_owned(),
            PROTO_ICMP => "icmp".to_owned(),
            PROTO_ICMPV6 => "icmp6".to_owned(),
            other => format!("proto {other}"),
        },
        op::SRC_NET | op::DST_NET => {
            let dir = if test.code == op::SRC_NET {
                "src"
            } else {
                "dst"
            };
            let addr = crate::alert::ip_addr(test.addr.version, &test.addr.addr);
            let bits: u32 = test.net_mask.iter().map(|b| b.count_ones()).sum();
            format!("{dir} net {addr}/{bits}")
        }
        op::SRC_PORT => format!("src port {}", test.value),
        op::DST_PORT => format!("dst port {}", test.value),
        op::VLAN if test.value == VLAN_ANY => "vlan".to_owned(),
        op::VLAN => format!("vlan {}", test.value),
        op::TCP_FLAGS => {
            let value = tcp_flag_letters(test.value as u16);
            let value = if value.is_empty() { "0".into() } else { value };
            let mask = tcp_flag_letters(test.mask);
            let mask = if mask.is_empty() { "0".into() } else { mask };
            format!("flags {value}/{mask}")
        }
        other => format!("op {other}"),
    }
}

/// A filter ready for the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFilter {
    pub program: FilterProgram,
    /// The parsed expression (`None`: empty filter, everything matches).
    pub expr: Option<Expr>,
    /// Stack slots the program needs at most.
    pub stack_depth: u32,
    /// Notes for the user (the filter is valid, but read it carefully).
    pub warnings: Vec<String>,
}

impl CompiledFilter {
    pub fn ops(&self) -> usize {
        self.program.len as usize
    }
}

/// Parses and compiles `text`; an empty (or blank) filter matches every packet.
pub fn compile(text: &str) -> Result<CompiledFilter, FilterError> {
    let (expr, warnings) = parse(text)?;
    let mut ops = Vec::new();
    if let Some(expr) = &expr {
        expr.emit(&mut ops);
    }
    let stack_depth = stack_depth(&ops);
    if ops.len() > MAX_FILTER_OPS || stack_depth > MAX_STACK {
        return Err(FilterError {
            column: None,
            message: format!(
                "the filter is too complex for the kernel: it needs {} ops (at most {MAX_FILTER_OPS}) \
                 and {stack_depth} stack slots (at most {MAX_STACK}). Costs: tcp, udp, icmp, icmp6, \
                 ip, ip6, proto, vlan, net, src/dst host, src/dst port and flag tests 1 op each; \
                 host and port (either direction) 3; `proto port` 5; ip/ip6 proto 3; each and, \
                 or, not 1; a `!=` flag test up to 4. Use net instead of several hosts, or a \
                 shorter filter. Supported: {SUPPORTED}",
                ops.len()
            ),
        });
    }
    let mut program = FilterProgram {
        len: ops.len() as u32,
        ..FilterProgram::default()
    };
    program.ops[..ops.len()].copy_from_slice(&ops);
    Ok(CompiledFilter {
        program,
        expr,
        stack_depth,
        warnings,
    })
}

/// The deepest the machine's stack gets running `ops`.
fn stack_depth(ops: &[FilterOp]) -> u32 {
    let (mut depth, mut max) = (0i64, 0i64);
    for test in ops {
        match test.code {
            op::AND | op::OR => depth -= 1,
            op::NOT => {}
            _ => depth += 1,
        }
        max = max.max(depth);
    }
    max as u32
}

/// Parses `text` into an expression (`None` when empty) and warnings.
pub fn parse(text: &str) -> Result<(Option<Expr>, Vec<String>), FilterError> {
    let tokens = lex(text)?;
    let end_column = text.chars().count() + 1;
    if tokens.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        end_column,
        last_qualifiers: None,
        mixed_and_or: None,
    };
    let expr = parser.parse_or()?;
    if let Some(token) = parser.peek() {
        return Err(parser.unexpected_after_expression(token));
    }
    let mut warnings = Vec::new();
    if let Some(column) = parser.mixed_and_or {
        warnings.push(format!(
            "`and` and `or` are mixed without parentheses (column {column}): `and` binds \
             tighter here, while tcpdump reads them left to right with equal precedence. \
             The filter means: {expr}"
        ));
    }
    Ok((Some(expr), warnings))
}

mod lexer;
mod parser;
mod values;

use self::lexer::*;
use self::parser::*;

#[cfg(test)]
mod tests {
    use super::values::*;
    use super::*;
    use crate::testing::frames::{self, Ipv4, flags};
    use sensor_common::packet::PacketMeta;
    use sensor_common::parse::parse_ethernet;

    fn ops(text: &str) -> Vec<FilterOp> {
        let filter = compile(text).unwrap_or_else(|e| panic!("{text}: {}", e.render(text)));
        filter.program.ops[..filter.ops()].to_vec()
    }

    fn err(text: &str) -> FilterError {
        match compile(text) {
            Ok(f) => panic!("{text} compiled to {:?}", f.expr),
            Err(e) => e,
        }
    }

    fn column(text: &str) -> Option<usize> {
        err(text).column
    }

    fn matches(text: &str, meta: &PacketMeta) -> bool {
        compile(text)
            .unwrap_or_else(|e| panic!("{}", e.render(text)))
            .program
            .matches(meta)
    }

    fn test_op(code: u8, value: u32) -> FilterOp {
        FilterOp {
            code,
            value,
            ..FilterOp::default()
        }
    }

    fn net_op(code: u8, addr: &str, prefix: u8) -> FilterOp {
        match net_test(code, addr.parse().unwrap(), prefix) {
            Expr::Test(op) => op,
            _ => unreachable!(),
        }
    }

    const A: [u8; 4] = [198, 51, 100, 7];
    const B: [u8; 4] = [192, 0, 2, 10];

    fn syn() -> PacketMeta {
        parse_ethernet(&frames::ipv4_tcp(A, B, 41000, 80, flags::SYN)[..])
    }

    fn synack_back() -> PacketMeta {
        parse_ethernet(&frames::ipv4_tcp(B, A, 80, 41000, flags::SYN | flags::ACK)[..])
    }

    fn dns() -> PacketMeta {
        let frame = frames::ethernet(
            &[(frames::TPID_8021Q, 100)],
            frames::ETH_IPV4,
            &Ipv4::new(A, B, 17)
                .ttl(128)
                .build(&frames::udp(53000, 53, b"q")),
        );
        parse_ethernet(&frame[..])
    }

    fn ping6() -> PacketMeta {
        let frame = frames::ethernet(
            &[],
            frames::ETH_IPV6,
            &frames::ipv6(
                frames::doc_v6(2),
                frames::doc_v6(1),
                64,
                58,
                &frames::icmp_echo(128, 1, 1),
            ),
        );
        parse_ethernet(&frame[..])
    }

    #[test]
    fn empty_filter_matches_everything() {
        for text in ["", "   ", "\t"] {
            let filter = compile(text).unwrap();
            assert_eq!(filter.ops(), 0);
            assert!(filter.program.matches(&syn()));
            assert!(filter.program.matches(&ping6()));
        }
    }

    #[test]
    fn protocols_compile_to_one_op() {
        assert_eq!(ops("tcp"), [test_op(op::PROTO, 6)]);
        assert_eq!(ops("udp"), [test_op(op::PROTO, 17)]);
        assert_eq!(ops("icmp"), [test_op(op::PROTO, 1)]);
        assert_eq!(ops("ICMP6"), [test_op(op::PROTO, 58)]);
        assert_eq!(ops("ip"), [test_op(op::IP_VERSION, 4)]);
        assert_eq!(ops("ip6"), [test_op(op::IP_VERSION, 6)]);
        assert_eq!(ops("proto 132"), [test_op(op::PROTO, 132)]);
        assert_eq!(
            ops("ip6 proto 17"),
            [
                test_op(op::IP_VERSION, 6),
                test_op(op::PROTO, 17),
                logic(op::AND)
            ]
        );
        assert!(matches("tcp", &syn()) && !matches("tcp", &dns()));
        assert!(matches("udp", &dns()) && !matches("udp", &syn()));
        assert!(matches("icmp6", &ping6()) && !matches("icmp", &ping6()));
        assert!(matches("ip", &syn()) && !matches("ip", &ping6()));
        assert!(matches("ip6", &ping6()) && !matches("ip6", &dns()));
    }

    #[test]
    fn host_is_source_or_destination() {
        assert_eq!(
            ops("host 198.51.100.7"),
            [
                net_op(op::SRC_NET, "198.51.100.7", 32),
                net_op(op::DST_NET, "198.51.100.7", 32),
                logic(op::OR)
            ]
        );
        assert_eq!(
            ops("src host 198.51.100.7"),
            [net_op(op::SRC_NET, "198.51.100.7", 32)]
        );
        assert_eq!(
            ops("dst 192.0.2.10"),
            [net_op(op::DST_NET, "192.0.2.10", 32)]
        );
        assert!(matches("host 198.51.100.7", &syn()));
        assert!(matches("host 198.51.100.7", &synack_back()));
        assert!(matches("src host 198.51.100.7", &syn()));
        assert!(!matches("src host 198.51.100.7", &synack_back()));
        assert!(matches("dst host 198.51.100.7", &synack_back()));
        assert!(matches("198.51.100.7", &syn()), "a bare address is a host");
        assert!(!matches("host 198.51.100.8", &syn()));
        assert!(!matches("src and dst host 198.51.100.7", &syn()));
        assert!(matches("src or dst host 192.0.2.10", &synack_back()));
        let v6 = "host 2001:db8::2";
        assert_eq!(ops(v6)[0], net_op(op::SRC_NET, "2001:db8::2", 128));
        assert!(matches(v6, &ping6()));
        assert!(!matches("host 2001:db8::3", &ping6()));
        // The version is part of every address test.
        assert!(!matches("host ::", &syn()));
    }

    #[test]
    fn nets_with_prefixes_short_forms_and_inheritance() {
        assert_eq!(
            ops("src net 10.0.0.0/8"),
            [net_op(op::SRC_NET, "10.0.0.0", 8)]
        );
        assert_eq!(ops("net 10"), ops("net 10.0.0.0/8"));
        assert_eq!(ops("net 192.168"), ops("net 192.168.0.0/16"));
        assert_eq!(ops("net 192.0.2"), ops("net 192.0.2.0/24"));
        assert_eq!(ops("net 192.0.2.10"), ops("host 192.0.2.10"));
        assert_eq!(ops("198.51.100.0/24"), ops("net 198.51.100.0/24"));
        assert!(matches("net 198.51.100.0/24", &syn()));
        assert!(matches("src net 198.51.100.0/24", &syn()));
        assert!(!matches("dst net 198.51.100.0/24", &syn()));
        assert!(matches("dst net 0.0.0.0/0", &syn()));
        assert!(
            !matches("dst net 0.0.0.0/0", &ping6()),
            "v4 nets never match v6"
        );
        assert!(matches("src net 2001:db8::/32", &ping6()));
        assert!(!matches("src net 2001:db9::/32", &ping6()));
        // pcap: "host A or B" is "host A or host B".
        assert_eq!(
            ops("src host 10.0.0.1 or 10.0.0.2"),
            ops("src host 10.0.0.1 or src host 10.0.0.2")
        );
        assert_eq!(
            ops("tcp dst port 22 or 80"),
            ops("(tcp and dst port 22) or (tcp and dst port 80)")
        );
    }

    #[test]
    fn ports_vlans_and_qualified_protocols() {
        assert_eq!(
            ops("port 53"),
            [
                test_op(op::SRC_PORT, 53),
                test_op(op::DST_PORT, 53),
                logic(op::OR)
            ]
        );
        assert_eq!(ops("dst port 80"), [test_op(op::DST_PORT, 80)]);
        assert_eq!(ops("src port 0x50"), [test_op(op::SRC_PORT, 80)]);
        assert_eq!(
            ops("udp src port 53"),
            [
                test_op(op::PROTO, 17),
                test_op(op::SRC_PORT, 53),
                logic(op::AND)
            ]
        );
        assert!(matches("port 80", &syn()) && matches("port 80", &synack_back()));
        assert!(matches("dst port 80", &syn()) && !matches("dst port 80", &synack_back()));
        assert!(matches("udp port 53", &dns()) && !matches("tcp port 53", &dns()));
        assert!(!matches("port 0", &ping6()), "ICMP has no ports");
        assert_eq!(ops("vlan"), [test_op(op::VLAN, VLAN_ANY)]);
        assert_eq!(ops("vlan 100"), [test_op(op::VLAN, 100)]);
        assert!(matches("vlan", &dns()) && matches("vlan 100", &dns()));
        assert!(!matches("vlan 101", &dns()) && !matches("vlan", &syn()));
        assert!(matches("vlan and udp", &dns()));
        assert!(matches("not vlan", &syn()));
    }

    #[test]
    fn tcp_flag_tests_pcap_style_and_short_form() {
        let syn_only = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
        assert_eq!(
            ops(syn_only),
            [FilterOp {
                code: op::TCP_FLAGS,
                mask: 0x12,
                value: 0x02,
                ..FilterOp::default()
            }]
        );
        assert_eq!(ops(syn_only), ops("tcp[13] & 18 = 2"));
        assert_eq!(ops(syn_only), ops("tcp[tcpflags]&0x12==0x02"));
        assert_eq!(ops(syn_only), ops("flags S/SA"));
        assert!(matches(syn_only, &syn()) && !matches(syn_only, &synack_back()));
        // != 0 on one bit is one op; on several it requires TCP flags first.
        assert_eq!(ops("tcp[tcpflags] & tcp-syn != 0"), ops("flags S/S"));
        assert_eq!(ops("tcp[tcpflags] & tcp-syn > 0"), ops("flags S/S"));
        assert_eq!(ops("tcp[tcpflags] & tcp-ack != tcp-ack"), ops("flags 0/A"));
        assert_eq!(ops("tcp[tcpflags] & (tcp-syn|tcp-fin) != 0").len(), 4);
        let any = "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0";
        assert!(matches(any, &syn()) && !matches(any, &dns()));
        assert!(!matches("tcp[tcpflags] & tcp-rst != 0", &syn()));
        assert!(
            !matches("tcp[tcpflags] & tcp-syn == 0", &dns()),
            "flag tests never match a packet without TCP flags, as in pcap"
        );
        assert!(matches("not tcp[tcpflags] & tcp-syn != 0", &dns()));
        // Short form: letters compare all nine bits unless a mask is given.
        assert_eq!(ops("flags S")[0].mask, 0x1ff);
        assert!(matches("flags S", &syn()) && !matches("flags S", &synack_back()));
        assert!(matches("flags SA", &synack_back()) && matches("flags as", &synack_back()));
        assert!(matches("flags SA/SA", &synack_back()) && !matches("flags SA/SA", &syn()));
        assert!(matches("flags S/S", &syn()) && matches("flags S/S", &synack_back()));
        assert!(!matches("flags 0", &syn()));
        let null = parse_ethernet(&frames::ipv4_tcp(A, B, 1, 2, 0)[..]);
        assert!(matches("flags 0", &null) && matches("tcp[13] == 0", &null));
        assert!(matches("flags /SA", &null));
    }

    #[test]
    fn precedence_not_over_and_over_or_and_parentheses() {
        // a or b and c == a or (b and c)
        let text = "udp or tcp and dst port 443";
        assert_eq!(ops(text), ops("udp or (tcp and dst port 443)"));
        assert!(matches(text, &dns()));
        assert!(!matches(text, &syn()));
        assert!(!matches("(udp or tcp) and dst port 443", &dns()));
        let warnings = compile(text).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("column 5"), "{}", warnings[0]);
        assert!(warnings[0].contains("(udp or (tcp and dst port 443))"));
        assert!(
            compile("(udp or tcp) and port 1")
                .unwrap()
                .warnings
                .is_empty()
        );
        assert!(
            compile("udp or (tcp and port 1)")
                .unwrap()
                .warnings
                .is_empty()
        );
        // not binds tighter than and.
        assert_eq!(ops("not tcp and udp"), ops("(not tcp) and udp"));
        assert_eq!(
            ops("! tcp && udp || icmp"),
            ops("((not tcp) and udp) or icmp")
        );
        assert_eq!(ops("not not tcp"), ops("tcp"));
        assert_eq!(ops("((tcp))"), ops("tcp"));
        assert!(matches("not (tcp or udp)", &ping6()));
        assert!(!matches("not (tcp or udp)", &syn()));
        assert_eq!(ops("not tcp"), [test_op(op::PROTO, 6), logic(op::NOT)]);
    }

    #[test]
    fn a_realistic_filter_matches_and_rejects_as_expected() {
        let text = "vlan 100 and src net 198.51.100.0/24 and (udp dst port 53 or tcp[tcpflags] & tcp-syn != 0)";
        assert!(matches(text, &dns()));
        assert!(!matches(text, &syn()), "untagged");
        let filter = compile(text).unwrap();
        assert!(filter.ops() <= MAX_FILTER_OPS);
        assert!(filter.stack_depth <= 4);
    }

    #[test]
    fn parse_errors_point_at_the_column() {
        assert_eq!(column("tcp and"), Some(8));
        assert!(err("tcp and").message.contains("the end of the filter"));
        assert_eq!(column("tcp udp"), Some(5));
        assert!(
            err("tcp udp")
                .message
                .contains("join primitives with `and` or `or`")
        );
        assert_eq!(column("host 10.0.0.300"), Some(6));
        assert_eq!(column("host example.com"), Some(6));
        assert!(err("host example.com").message.contains("not resolved"));
        assert_eq!(column("host 10.0.0.0/8"), Some(6));
        assert!(err("host 10.0.0.0/8").message.contains("net 10.0.0.0/8"));
        assert_eq!(column("tcp and port 70000"), Some(14));
        assert_eq!(column("port http"), Some(6));
        assert_eq!(column("net 10.0.0.0/33"), Some(14));
        assert_eq!(column("net 10.0.0.1/8"), Some(5));
        assert!(err("net 10.0.0.1/8").message.contains("10.0.0.0/8"));
        assert_eq!(column("(tcp or udp"), Some(12));
        assert!(err("(tcp or udp").message.contains("column 1"));
        assert_eq!(column("tcp)"), Some(4));
        assert_eq!(column("tcp and (udp icmp)"), Some(14));
        assert_eq!(column("vlan 5000"), Some(6));
        assert_eq!(column("ether host 1.2.3.4"), Some(1));
        assert!(err("ether host 1.2.3.4").message.contains("Supported:"));
        assert_eq!(column("udp and portrange 1-5"), Some(9));
        assert_eq!(column("tcp and host"), Some(13));
        assert_eq!(column("host and tcp"), Some(6));
        assert_eq!(column("and tcp"), Some(1));
        assert_eq!(column("tcp #"), Some(5));
        assert_eq!(column("foo"), Some(1));
        assert_eq!(column("80"), Some(1));
        assert!(err("80").message.contains("port 80"));
        assert_eq!(column("src 80"), Some(5));
        assert_eq!(column("ip[8] < 5"), Some(1));
        assert_eq!(column("tcp[12] & 1 != 0"), Some(5));
        assert_eq!(column("tcp[tcpflags] & tcp-syn < 1"), Some(25));
        assert_eq!(column("tcp[tcpflags] & tcp-syn"), Some(24));
        assert_eq!(column("tcp[tcpflags] & tcp-syn == tcp-ack"), Some(28));
        assert_eq!(column("tcp[tcpflags] & tcp-bogus == 0"), Some(17));
        assert_eq!(column("tcp[tcpflags] == 256"), Some(18));
        assert_eq!(column("flags SX"), Some(8));
        assert_eq!(column("flags S/AF"), Some(7));
        assert_eq!(column("flags"), Some(6));
        assert_eq!(column("proto 300"), Some(7));
        let rendered = err("tcp and").render("tcp and");
        assert_eq!(
            rendered,
            "invalid filter at column 8: expected a primitive (for example tcp, host \
             192.0.2.1, port 80), found the end of the filter\n  tcp and\n         ^"
        );
    }

    #[test]
    fn too_complex_filters_are_refused_with_the_limits() {
        // Each host costs 3 ops, each `or` 1: 8 hosts = 31 ops, 9 = 35.
        let hosts = |n: usize| {
            (1..=n)
                .map(|i| format!("host 10.0.0.{i}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        assert_eq!(compile(&hosts(8)).unwrap().ops(), 31);
        let e = err(&hosts(9));
        assert_eq!(e.column, None);
        assert!(e.message.contains("35 ops (at most 32)"), "{}", e.message);
        assert!(e.message.contains("Supported:"));
        assert!(
            e.render(&hosts(9))
                .starts_with("invalid filter: the filter is too complex")
        );
    }

    #[test]
    fn stack_depth_is_computed() {
        assert_eq!(compile("tcp").unwrap().stack_depth, 1);
        assert_eq!(compile("tcp or udp or icmp").unwrap().stack_depth, 2);
        assert_eq!(
            compile("tcp or (udp or (icmp or ip))").unwrap().stack_depth,
            4
        );
    }

    #[test]
    fn display_shows_how_the_filter_was_read() {
        let (expr, _) = parse("tcp and not src net 10.0.0.0/8 or vlan 7 or flags S/SA").unwrap();
        assert_eq!(
            expr.unwrap().to_string(),
            "(((tcp and not src net 10.0.0.0/8) or vlan 7) or flags S/SA)"
        );
    }
}
