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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use sensor_common::filter::{
    FilterOp, FilterProgram, MAX_FILTER_OPS, MAX_STACK, VLAN_ANY, net_mask, op,
};
use sensor_common::packet::{AddrKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, tcp};

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

// ---- lexer ---------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `&` (bitwise, in flag tests)
    Amp,
    /// `|` (bitwise, in flag tests)
    Pipe,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `!`
    Bang,
    /// `==` or `=`
    Eq,
    /// `!=`
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    tok: Tok,
    /// 1-based character column.
    column: usize,
}

impl Token {
    fn text(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::LBracket => "[".into(),
            Tok::RBracket => "]".into(),
            Tok::Amp => "&".into(),
            Tok::Pipe => "|".into(),
            Tok::AndAnd => "&&".into(),
            Tok::OrOr => "||".into(),
            Tok::Bang => "!".into(),
            Tok::Eq => "==".into(),
            Tok::Ne => "!=".into(),
            Tok::Lt => "<".into(),
            Tok::Gt => ">".into(),
            Tok::Le => "<=".into(),
            Tok::Ge => ">=".into(),
        }
    }

    /// The word, lower-cased (keywords are case-insensitive).
    fn keyword(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_')
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_word_char(c) {
            let start = i;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                column,
            });
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('!', Some('=')) => (Tok::Ne, 2),
            ('=', Some('=')) => (Tok::Eq, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('&', _) => (Tok::Amp, 1),
            ('|', _) => (Tok::Pipe, 1),
            ('!', _) => (Tok::Bang, 1),
            ('=', _) => (Tok::Eq, 1),
            ('<', _) => (Tok::Lt, 1),
            ('>', _) => (Tok::Gt, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            _ => {
                return Err(FilterError::at(
                    column,
                    format!("unexpected character `{c}`"),
                ));
            }
        };
        tokens.push(Token { tok, column });
        i += len;
    }
    Ok(tokens)
}

// ---- parser ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    /// `src or dst` (the default)
    Either,
    /// `src and dst`
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
}

/// What a bare value after `and` / `or` inherits (pcap's "tcp dst port 21
/// or 22" is "tcp dst port 21 or tcp dst port 22").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Qualifiers {
    proto: Option<ProtoKw>,
    dir: Dir,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProtoKw {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Ip,
    Ip6,
}

impl ProtoKw {
    fn from_keyword(word: &str) -> Option<ProtoKw> {
        Some(match word {
            "tcp" => ProtoKw::Tcp,
            "udp" => ProtoKw::Udp,
            "icmp" => ProtoKw::Icmp,
            "icmp6" => ProtoKw::Icmp6,
            "ip" => ProtoKw::Ip,
            "ip6" => ProtoKw::Ip6,
            _ => return None,
        })
    }

    fn test(self) -> Expr {
        match self {
            ProtoKw::Tcp => proto_test(PROTO_TCP),
            ProtoKw::Udp => proto_test(PROTO_UDP),
            ProtoKw::Icmp => proto_test(PROTO_ICMP),
            ProtoKw::Icmp6 => proto_test(PROTO_ICMPV6),
            ProtoKw::Ip => version_test(4),
            ProtoKw::Ip6 => version_test(6),
        }
    }
}

fn proto_test(proto: u8) -> Expr {
    Expr::Test(FilterOp {
        code: op::PROTO,
        value: u32::from(proto),
        ..FilterOp::default()
    })
}

fn version_test(version: u32) -> Expr {
    Expr::Test(FilterOp {
        code: op::IP_VERSION,
        value: version,
        ..FilterOp::default()
    })
}

fn net_test(code: u8, addr: IpAddr, prefix_len: u8) -> Expr {
    let mut key = AddrKey::default();
    match addr {
        IpAddr::V4(v4) => {
            key.version = 4;
            key.addr[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            key.version = 6;
            key.addr = v6.octets();
        }
    }
    Expr::Test(FilterOp {
        code,
        addr: key,
        net_mask: net_mask(prefix_len),
        ..FilterOp::default()
    })
}

fn port_test(code: u8, port: u16) -> Expr {
    Expr::Test(FilterOp {
        code,
        value: u32::from(port),
        ..FilterOp::default()
    })
}

fn flags_test(mask: u16, value: u16) -> Expr {
    Expr::Test(FilterOp {
        code: op::TCP_FLAGS,
        mask,
        value: u32::from(value),
        ..FilterOp::default()
    })
}

/// `(src X)`, `(dst X)`, either or both, for a pair of src/dst tests.
fn directed(dir: Dir, src: Expr, dst: Expr) -> Expr {
    match dir {
        Dir::Src => src,
        Dir::Dst => dst,
        Dir::Either => Expr::or(src, dst),
        Dir::Both => Expr::and(src, dst),
    }
}

/// pcap-filter words this first version does not have, with a hint.
fn unsupported(word: &str) -> Option<&'static str> {
    Some(match word {
        "ether" | "fddi" | "tr" | "wlan" | "arp" | "rarp" | "decnet" | "atalk" | "aarp" | "ipx"
        | "iso" | "stp" | "netbeui" | "lat" | "moprc" | "mopdl" | "sca" | "llc" | "mpls"
        | "pppoed" | "pppoes" | "geneve" | "vxlan" | "ifname" | "on" | "rnr" | "rulenum"
        | "reason" | "rset" | "srnr" | "subrulenum" | "action" | "type" | "subtype" | "dir"
        | "ra" | "ta" | "addr1" | "addr2" | "addr3" | "addr4" | "inbound" | "outbound"
        | "iso-proto" | "esis" | "isis" | "clnp" | "l1" | "l2" | "iih" | "lsp" | "snp" | "csnp"
        | "psnp" | "es-is" | "is-is" | "ah" | "esp" | "pim" | "vrrp" | "carp" | "igmp" | "igrp"
        | "sctp" | "ip6protochain" | "protochain" => {
            "the kernel filter tests IPv4/IPv6 fields only (use `proto N` for another IP protocol)"
        }
        "portrange" => "port ranges are not supported: combine `port N` tests with `or`",
        "less" | "greater" | "len" => "packet length tests are not supported",
        "gateway" | "broadcast" | "multicast" => {
            "link-layer and broadcast/multicast tests are not supported"
        }
        "mask" => "write the network as CIDR instead: `net 10.0.0.0/8`",
        _ => return None,
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end_column: usize,
    last_qualifiers: Option<Qualifiers>,
    /// Column of the first `or` whose operands include an unparenthesised `and`.
    mixed_and_or: Option<usize>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead)
    }

    fn peek_keyword(&self) -> Option<String> {
        self.peek().and_then(Token::keyword)
    }

    fn column(&self) -> usize {
        self.peek().map_or(self.end_column, |t| t.column)
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(token) => format!("`{}`", token.text()),
            None => "the end of the filter".to_owned(),
        }
    }

    fn error_here(&self, expected: &str) -> FilterError {
        FilterError::at(
            self.column(),
            format!("expected {expected}, found {}", self.found()),
        )
    }

    fn is_or(token: &Token) -> bool {
        token.tok == Tok::OrOr || token.keyword().as_deref() == Some("or")
    }

    fn is_and(token: &Token) -> bool {
        token.tok == Tok::AndAnd || token.keyword().as_deref() == Some("and")
    }

    fn is_not(token: &Token) -> bool {
        token.tok == Tok::Bang || token.keyword().as_deref() == Some("not")
    }

    /// What to say about a token left over after a complete expression.
    fn unexpected_after_expression(&self, token: &Token) -> FilterError {
        match &token.tok {
            Tok::Word(_) => FilterError::at(
                token.column,
                format!(
                    "`{}` follows another primitive: join primitives with `and` or `or`",
                    token.text()
                ),
            ),
            Tok::RParen => FilterError::at(token.column, "`)` without a matching `(`"),
            Tok::LParen => FilterError::at(
                token.column,
                "`(` follows a primitive: join primitives with `and` or `or`",
            ),
            _ => FilterError::at(
                token.column,
                format!(
                    "unexpected `{}` (expected `and`, `or` or the end)",
                    token.text()
                ),
            ),
        }
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let (mut left, mut has_and_chain) = self.parse_and()?;
        let mut first_or = None;
        while let Some(token) = self.peek() {
            if !Self::is_or(token) {
                break;
            }
            first_or.get_or_insert(token.column);
            self.pos += 1;
            let (right, chain) = self.parse_and()?;
            has_and_chain |= chain;
            left = Expr::or(left, right);
        }
        if let Some(column) = first_or
            && has_and_chain
        {
            self.mixed_and_or.get_or_insert(column);
        }
        Ok(left)
    }

    /// The `and` chain, and whether it had more than one operand.
    fn parse_and(&mut self) -> Result<(Expr, bool), FilterError> {
        let mut left = self.parse_unary()?;
        let mut chain = false;
        while let Some(token) = self.peek() {
            if !Self::is_and(token) {
                break;
            }
            self.pos += 1;
            let right = self.parse_unary()?;
            left = Expr::and(left, right);
            chain = true;
        }
        Ok((left, chain))
    }

    fn parse_unary(&mut self) -> Result<Expr, FilterError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error_here("a primitive (for example tcp, host 192.0.2.1, port 80)"));
        };
        if Self::is_not(&token) {
            self.pos += 1;
            return Ok(Expr::not(self.parse_unary()?));
        }
        if token.tok == Tok::LParen {
            self.pos += 1;
            let inner = self.parse_or()?;
            return match self.peek() {
                Some(t) if t.tok == Tok::RParen => {
                    self.pos += 1;
                    Ok(inner)
                }
                None => Err(FilterError::at(
                    self.end_column,
                    format!("missing `)` to close the `(` at column {}", token.column),
                )),
                Some(t) => Err(self.unexpected_after_expression(&t.clone())),
            };
        }
        self.primitive()
    }

    fn primitive(&mut self) -> Result<Expr, FilterError> {
        let token = self.peek().cloned().expect("caller checked");
        let Some(word) = token.keyword() else {
            return Err(self.error_here("a primitive (for example tcp, host 192.0.2.1, port 80)"));
        };
        if matches!(word.as_str(), "and" | "or") {
            return Err(FilterError::at(
                token.column,
                format!("expected a primitive before `{word}`"),
            ));
        }
        if let Some(proto) = ProtoKw::from_keyword(&word) {
            self.pos += 1;
            return self.after_proto_keyword(proto, &token);
        }
        match word.as_str() {
            "src" | "dst" | "host" | "net" | "port" => self.qualified(None),
            "vlan" => {
                self.pos += 1;
                self.vlan()
            }
            "proto" => {
                self.pos += 1;
                let proto = self.protocol_number()?;
                Ok(proto_test(proto))
            }
            "flags" => {
                self.pos += 1;
                self.flags_short()
            }
            _ => {
                if let Some(hint) = unsupported(&word) {
                    return Err(FilterError::at(
                        token.column,
                        format!("`{word}` is not supported: {hint}. Supported: {SUPPORTED}"),
                    ));
                }
                self.bare_value()
            }
        }
    }

    /// After `tcp`, `ip`, ...: a flag test, `proto N`, qualifiers, or the
    /// protocol test alone.
    fn after_proto_keyword(&mut self, proto: ProtoKw, token: &Token) -> Result<Expr, FilterError> {
        if self.peek().is_some_and(|t| t.tok == Tok::LBracket) {
            if proto != ProtoKw::Tcp {
                return Err(FilterError::at(
                    token.column,
                    format!(
                        "`{}[...]` is not supported: the only byte test is tcp[tcpflags] (tcp[13])",
                        token.text()
                    ),
                ));
            }
            return self.tcp_byte_test();
        }
        match self.peek_keyword().as_deref() {
            Some("proto") if matches!(proto, ProtoKw::Ip | ProtoKw::Ip6) => {
                self.pos += 1;
                let number = self.protocol_number()?;
                Ok(Expr::and(proto.test(), proto_test(number)))
            }
            Some("src" | "dst" | "host" | "net" | "port") => self.qualified(Some(proto)),
            _ => Ok(proto.test()),
        }
    }

    fn protocol_number(&mut self) -> Result<u8, FilterError> {
        let column = self.column();
        let Some(word) = self.peek_keyword() else {
            return Err(self.error_here("a protocol number (0-255) or tcp, udp, icmp, icmp6"));
        };
        let number = match word.as_str() {
            "tcp" => PROTO_TCP,
            "udp" => PROTO_UDP,
            "icmp" => PROTO_ICMP,
            "icmp6" => PROTO_ICMPV6,
            _ => match parse_number(&word) {
                Some(n) if n <= 255 => n as u8,
                Some(_) => {
                    return Err(FilterError::at(column, "a protocol number is 0-255"));
                }
                None => {
                    return Err(
                        self.error_here("a protocol number (0-255) or tcp, udp, icmp, icmp6")
                    );
                }
            },
        };
        self.pos += 1;
        Ok(number)
    }

    /// `[src|dst|src or dst|src and dst] [host|net|port] VALUE`.
    fn qualified(&mut self, proto: Option<ProtoKw>) -> Result<Expr, FilterError> {
        let mut dir = None;
        if let Some(first @ ("src" | "dst")) = self.peek_keyword().as_deref() {
            let first_is_src = first == "src";
            self.pos += 1;
            let combined = match (
                self.peek().map(|t| (Self::is_or(t), Self::is_and(t))),
                self.peek_at(1).and_then(Token::keyword),
            ) {
                (Some((true, _)), Some(second))
                    if second == if first_is_src { "dst" } else { "src" } =>
                {
                    Some(Dir::Either)
                }
                (Some((_, true)), Some(second))
                    if second == if first_is_src { "dst" } else { "src" } =>
                {
                    Some(Dir::Both)
                }
                _ => None,
            };
            if let Some(combined) = combined {
                self.pos += 2;
                dir = Some(combined);
            } else {
                dir = Some(if first_is_src { Dir::Src } else { Dir::Dst });
            }
        }
        let mut kind = None;
        match self.peek_keyword().as_deref() {
            Some("host") => kind = Some(Kind::Host),
            Some("net") => kind = Some(Kind::Net),
            Some("port") => kind = Some(Kind::Port),
            Some("portrange") => {
                return Err(FilterError::at(
                    self.column(),
                    "port ranges are not supported: combine `port N` tests with `or`",
                ));
            }
            _ => {}
        }
        if kind.is_some() {
            self.pos += 1;
        }
        let dir = dir.unwrap_or(Dir::Either);
        let after = match kind {
            Some(Kind::Host) => "an IP address after `host`",
            Some(Kind::Net) => "a network (CIDR) after `net`",
            Some(Kind::Port) => "a port number after `port`",
            None => "an address, a network, or `host`, `net` or `port`",
        };
        let Some(value) = self.peek().cloned() else {
            return Err(self.error_here(after));
        };
        let Some(text) = value.keyword().filter(|w| !is_reserved(w)) else {
            return Err(self.error_here(after));
        };
        let kind = match kind {
            Some(kind) => kind,
            None => match classify(&text) {
                Some(kind) => kind,
                None if parse_number(&text).is_some() => {
                    return Err(FilterError::at(
                        value.column,
                        format!(
                            "`{text}` after src/dst is read as a host by pcap-filter: write \
                             `port {text}` for a port"
                        ),
                    ));
                }
                None => {
                    return Err(FilterError::at(
                        value.column,
                        format!(
                            "`{text}` is not an IP address or network (names are not resolved)"
                        ),
                    ));
                }
            },
        };
        self.pos += 1;
        let qualifiers = Qualifiers { proto, dir, kind };
        self.last_qualifiers = Some(qualifiers);
        build_value(qualifiers, &text, value.column)
    }

    /// A value with no qualifiers of its own.
    fn bare_value(&mut self) -> Result<Expr, FilterError> {
        let token = self.peek().cloned().expect("caller checked");
        let text = token.keyword().expect("a word");
        let qualifiers = match (self.last_qualifiers, classify(&text)) {
            (Some(q), _) => q,
            (None, Some(kind)) => Qualifiers {
                proto: None,
                dir: Dir::Either,
                kind,
            },
            (None, None) if parse_number(&text).is_some() => {
                return Err(FilterError::at(
                    token.column,
                    format!(
                        "a bare number needs a qualifier: `port {text}`, `vlan {text}` or `proto {text}`"
                    ),
                ));
            }
            (None, None) => {
                return Err(FilterError::at(
                    token.column,
                    format!("unknown word `{}`. Supported: {SUPPORTED}", token.text()),
                ));
            }
        };
        self.pos += 1;
        self.last_qualifiers = Some(qualifiers);
        build_value(qualifiers, &text, token.column)
    }

    fn vlan(&mut self) -> Result<Expr, FilterError> {
        let mut id = VLAN_ANY;
        if let Some(token) = self.peek()
            && let Some(word) = token.keyword()
            && word.starts_with(|c: char| c.is_ascii_digit())
        {
            let column = token.column;
            match parse_number(&word) {
                Some(n) if n <= 4095 => id = n,
                _ => return Err(FilterError::at(column, "a VLAN id is 0-4095")),
            }
            self.pos += 1;
        }
        Ok(Expr::Test(FilterOp {
            code: op::VLAN,
            value: id,
            ..FilterOp::default()
        }))
    }

    /// `flags VALUE[/MASK]` with letters F S R P A U E C N (or 0 for none).
    /// Without a mask every one of the nine flags is compared.
    fn flags_short(&mut self) -> Result<Expr, FilterError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error_here("flag letters after `flags` (for example S, SA/SA, 0/SA)"));
        };
        let Tok::Word(word) = &token.tok else {
            return Err(self.error_here("flag letters after `flags` (for example S, SA/SA, 0/SA)"));
        };
        let (value_text, mask_text) = match word.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (word.as_str(), None),
        };
        let value = flag_letters(value_text, token.column, mask_text.is_some())?;
        let mask = match mask_text {
            Some(m) => {
                let column = token.column + value_text.chars().count() + 1;
                let mask = flag_letters(m, column, false)?;
                if mask == 0 {
                    return Err(FilterError::at(column, "the mask after `/` names no flag"));
                }
                mask
            }
            None => 0x1ff,
        };
        if value & !mask != 0 {
            return Err(FilterError::at(
                token.column,
                format!(
                    "flags {} are outside the mask {}: the test could never match",
                    tcp_flag_letters(value & !mask),
                    tcp_flag_letters(mask)
                ),
            ));
        }
        self.pos += 1;
        Ok(flags_test(mask, value))
    }

    /// `tcp[tcpflags] [& V] (==|!=|> 0) V`, after `tcp`.
    fn tcp_byte_test(&mut self) -> Result<Expr, FilterError> {
        self.pos += 1; // `[`
        let index_column = self.column();
        match self.peek_keyword().as_deref() {
            Some("tcpflags" | "13") => self.pos += 1,
            _ => {
                return Err(FilterError::at(
                    index_column,
                    format!(
                        "only tcp[tcpflags] (byte 13, one byte) can be tested, found {}",
                        self.found()
                    ),
                ));
            }
        }
        if !self.eat(&Tok::RBracket) {
            return Err(self.error_here("`]`"));
        }
        let mut mask = 0xff;
        if self.eat(&Tok::Amp) {
            mask = self.byte_value()?.0;
        }
        let relation = self.peek().cloned();
        let relation_column = self.column();
        let negate = match relation.as_ref().map(|t| &t.tok) {
            Some(Tok::Eq) => false,
            Some(Tok::Ne) => true,
            Some(Tok::Gt) => {
                self.pos += 1;
                let (value, column) = self.byte_value()?;
                if value != 0 {
                    return Err(FilterError::at(
                        column,
                        "only `> 0` is supported (it means `!= 0`); use == or != otherwise",
                    ));
                }
                return Ok(flags_relation(mask, 0, true));
            }
            Some(Tok::Lt | Tok::Le | Tok::Ge) => {
                return Err(FilterError::at(
                    relation_column,
                    "only ==, != and > 0 compare tcp[tcpflags]",
                ));
            }
            _ => return Err(self.error_here("`==` or `!=` after tcp[tcpflags]")),
        };
        self.pos += 1;
        let (value, value_column) = self.byte_value()?;
        if value & !mask != 0 {
            return Err(FilterError::at(
                value_column,
                format!(
                    "the value {value:#04x} has bits outside the mask {mask:#04x}: the test \
                     could never {}",
                    if negate { "fail" } else { "match" }
                ),
            ));
        }
        Ok(flags_relation(mask, value, negate))
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A one-byte value: numbers and tcp-* names joined with `|`, in
    /// parentheses or not. Returns the value and where it starts.
    fn byte_value(&mut self) -> Result<(u16, usize), FilterError> {
        let column = self.column();
        let mut value = self.byte_term()?;
        while self.eat(&Tok::Pipe) {
            value |= self.byte_term()?;
        }
        Ok((value, column))
    }

    fn byte_term(&mut self) -> Result<u16, FilterError> {
        if self.eat(&Tok::LParen) {
            let (value, _) = self.byte_value()?;
            if !self.eat(&Tok::RParen) {
                return Err(self.error_here("`)`"));
            }
            return Ok(value);
        }
        let column = self.column();
        let expected = "a number or a flag name (tcp-fin, tcp-syn, tcp-rst, tcp-push, \
                        tcp-ack, tcp-urg, tcp-ece, tcp-cwr)";
        let Some(word) = self.peek_keyword() else {
            return Err(self.error_here(expected));
        };
        let value = match word.as_str() {
            "tcp-fin" => tcp::FIN,
            "tcp-syn" => tcp::SYN,
            "tcp-rst" => tcp::RST,
            "tcp-push" => tcp::PSH,
            "tcp-ack" => tcp::ACK,
            "tcp-urg" => tcp::URG,
            "tcp-ece" => tcp::ECE,
            "tcp-cwr" => tcp::CWR,
            _ => match parse_number(&word) {
                Some(n) if n <= 0xff => n as u16,
                Some(_) => {
                    return Err(FilterError::at(
                        column,
                        "tcp[tcpflags] is one byte: values are 0-255",
                    ));
                }
                None => return Err(self.error_here(expected)),
            },
        };
        self.pos += 1;
        Ok(value)
    }
}

/// `flags & mask == value`, or its negation restricted to TCP packets with
/// flags (as pcap's `tcp[13] & M != V` never matches a non-TCP packet).
fn flags_relation(mask: u16, value: u16, negate: bool) -> Expr {
    if !negate {
        return flags_test(mask, value);
    }
    // One flag bit: `!= 0` is `== bit` and `!= bit` is `== 0`.
    if mask.count_ones() == 1 {
        return flags_test(mask, mask ^ value);
    }
    Expr::and(flags_test(0, 0), Expr::not(flags_test(mask, value)))
}

fn flag_letters(text: &str, column: usize, empty_ok: bool) -> Result<u16, FilterError> {
    if text == "0" || (text.is_empty() && empty_ok) {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(FilterError::at(
            column,
            "expected flag letters (F S R P A U E C N)",
        ));
    }
    let mut bits = 0u16;
    for (i, c) in text.chars().enumerate() {
        let upper = c.to_ascii_uppercase();
        let Some((bit, _)) = tcp::LETTERS.iter().find(|(_, letter)| *letter == upper) else {
            return Err(FilterError::at(
                column + i,
                format!("`{c}` is not a TCP flag letter (F S R P A U E C N, or 0 for none)"),
            ));
        };
        bits |= bit;
    }
    Ok(bits)
}

/// Words that cannot be a value (so `host and` says what is missing).
fn is_reserved(word: &str) -> bool {
    matches!(
        word,
        "and"
            | "or"
            | "not"
            | "host"
            | "net"
            | "port"
            | "src"
            | "dst"
            | "tcp"
            | "udp"
            | "icmp"
            | "icmp6"
            | "ip"
            | "ip6"
            | "vlan"
            | "proto"
            | "flags"
    )
}

/// The kind an unqualified value implies: an address is a host, a CIDR a net.
fn classify(text: &str) -> Option<Kind> {
    if text.parse::<IpAddr>().is_ok() {
        Some(Kind::Host)
    } else if text
        .split_once('/')
        .is_some_and(|(a, p)| a.parse::<IpAddr>().is_ok() && p.parse::<u8>().is_ok())
    {
        Some(Kind::Net)
    } else {
        None
    }
}

/// Decimal, or hexadecimal with `0x`.
fn parse_number(text: &str) -> Option<u32> {
    if let Some(hex) = text.strip_prefix("0x") {
        u32::from_str_radix(hex, 16).ok()
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

fn build_value(q: Qualifiers, text: &str, column: usize) -> Result<Expr, FilterError> {
    let test = match q.kind {
        Kind::Host => {
            let addr = parse_host(text, column)?;
            let full = if addr.is_ipv4() { 32 } else { 128 };
            directed(
                q.dir,
                net_test(op::SRC_NET, addr, full),
                net_test(op::DST_NET, addr, full),
            )
        }
        Kind::Net => {
            let (addr, prefix) = parse_net(text, column)?;
            directed(
                q.dir,
                net_test(op::SRC_NET, addr, prefix),
                net_test(op::DST_NET, addr, prefix),
            )
        }
        Kind::Port => {
            let port = match parse_number(text) {
                Some(n) if n <= 65535 => n as u16,
                Some(_) => return Err(FilterError::at(column, "a port is 0-65535")),
                None => {
                    return Err(FilterError::at(
                        column,
                        format!("`{text}` is not a port number (service names are not looked up)"),
                    ));
                }
            };
            directed(
                q.dir,
                port_test(op::SRC_PORT, port),
                port_test(op::DST_PORT, port),
            )
        }
    };
    Ok(match q.proto {
        Some(proto) => Expr::and(proto.test(), test),
        None => test,
    })
}

fn parse_host(text: &str, column: usize) -> Result<IpAddr, FilterError> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(addr);
    }
    if text.contains('/') {
        return Err(FilterError::at(
            column,
            format!("`host` takes one address; for a network write `net {text}`"),
        ));
    }
    Err(FilterError::at(
        column,
        format!("`{text}` is not an IPv4 or IPv6 address (host names are not resolved)"),
    ))
}

/// `A/len`, a whole address (a /32 or /128), or pcap's short IPv4 forms
/// (`10` = 10.0.0.0/8, `192.168` = /16, `192.168.1` = /24).
fn parse_net(text: &str, column: usize) -> Result<(IpAddr, u8), FilterError> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr = match addr_text.parse::<IpAddr>() {
        Ok(addr) => addr,
        Err(_) if prefix_text.is_none() => match short_ipv4(addr_text) {
            Some(net) => return Ok(net),
            None => {
                return Err(FilterError::at(
                    column,
                    format!("`{text}` is not a network (write it as CIDR, e.g. 10.0.0.0/8)"),
                ));
            }
        },
        Err(_) => {
            return Err(FilterError::at(
                column,
                format!("`{addr_text}` is not an IPv4 or IPv6 address"),
            ));
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                let prefix_column = column + addr_text.chars().count() + 1;
                return Err(FilterError::at(
                    prefix_column,
                    format!(
                        "the prefix length of an IPv{} network is 0-{max}",
                        if max == 32 { 4 } else { 6 }
                    ),
                ));
            }
        },
    };
    let network = network_of(addr, prefix);
    if network != addr {
        return Err(FilterError::at(
            column,
            format!("`{text}` has host bits set: did you mean {network}/{prefix}?"),
        ));
    }
    Ok((addr, prefix))
}

fn short_ipv4(text: &str) -> Option<(IpAddr, u8)> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = part.parse().ok()?;
    }
    Some((IpAddr::V4(Ipv4Addr::from(octets)), (parts.len() * 8) as u8))
}

fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    let mask = net_mask(prefix);
    match addr {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            for (byte, m) in o.iter_mut().zip(mask) {
                *byte &= m;
            }
            IpAddr::V4(o.into())
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            for (byte, m) in o.iter_mut().zip(mask) {
                *byte &= m;
            }
            IpAddr::V6(o.into())
        }
    }
}

#[cfg(test)]
mod tests {
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
