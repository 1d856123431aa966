//! Tokens to an [`Expr`](super::Expr): the grammar in the module docs, with
//! qualifiers carried from one primitive to the next as pcap-filter does.

use sensor_common::filter::{FilterOp, VLAN_ANY, op};
use sensor_common::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, tcp};

use crate::alert::tcp_flag_letters;

use super::lexer::*;
use super::values::*;
use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    Src,
    Dst,
    /// `src or dst` (the default)
    Either,
    /// `src and dst`
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Host,
    Net,
    Port,
}

/// What a bare value after `and` / `or` inherits (pcap's "tcp dst port 21
/// or 22" is "tcp dst port 21 or tcp dst port 22").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Qualifiers {
    pub(super) proto: Option<ProtoKw>,
    pub(super) dir: Dir,
    pub(super) kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProtoKw {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Ip,
    Ip6,
}

impl ProtoKw {
    pub(super) fn from_keyword(word: &str) -> Option<ProtoKw> {
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

    pub(super) fn test(self) -> Expr {
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

pub(super) struct Parser {
    pub(super) tokens: Vec<Token>,
    pub(super) pos: usize,
    pub(super) end_column: usize,
    pub(super) last_qualifiers: Option<Qualifiers>,
    /// Column of the first `or` whose operands include an unparenthesised `and`.
    pub(super) mixed_and_or: Option<usize>,
}

impl Parser {
    pub(super) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    pub(super) fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead)
    }

    pub(super) fn peek_keyword(&self) -> Option<String> {
        self.peek().and_then(Token::keyword)
    }

    pub(super) fn column(&self) -> usize {
        self.peek().map_or(self.end_column, |t| t.column)
    }

    pub(super) fn found(&self) -> String {
        match self.peek() {
            Some(token) => format!("`{}`", token.text()),
            None => "the end of the filter".to_owned(),
        }
    }

    pub(super) fn error_here(&self, expected: &str) -> FilterError {
        FilterError::at(
            self.column(),
            format!("expected {expected}, found {}", self.found()),
        )
    }

    pub(super) fn is_or(token: &Token) -> bool {
        token.tok == Tok::OrOr || token.keyword().as_deref() == Some("or")
    }

    pub(super) fn is_and(token: &Token) -> bool {
        token.tok == Tok::AndAnd || token.keyword().as_deref() == Some("and")
    }

    pub(super) fn is_not(token: &Token) -> bool {
        token.tok == Tok::Bang || token.keyword().as_deref() == Some("not")
    }

    /// What to say about a token left over after a complete expression.
    pub(super) fn unexpected_after_expression(&self, token: &Token) -> FilterError {
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

    pub(super) fn parse_or(&mut self) -> Result<Expr, FilterError> {
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
    pub(super) fn parse_and(&mut self) -> Result<(Expr, bool), FilterError> {
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

    pub(super) fn parse_unary(&mut self) -> Result<Expr, FilterError> {
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

    pub(super) fn primitive(&mut self) -> Result<Expr, FilterError> {
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
    pub(super) fn after_proto_keyword(
        &mut self,
        proto: ProtoKw,
        token: &Token,
    ) -> Result<Expr, FilterError> {
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

    pub(super) fn protocol_number(&mut self) -> Result<u8, FilterError> {
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
    pub(super) fn qualified(&mut self, proto: Option<ProtoKw>) -> Result<Expr, FilterError> {
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
    pub(super) fn bare_value(&mut self) -> Result<Expr, FilterError> {
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

    pub(super) fn vlan(&mut self) -> Result<Expr, FilterError> {
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
    pub(super) fn flags_short(&mut self) -> Result<Expr, FilterError> {
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
    pub(super) fn tcp_byte_test(&mut self) -> Result<Expr, FilterError> {
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

    pub(super) fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A one-byte value: numbers and tcp-* names joined with `|`, in
    /// parentheses or not. Returns the value and where it starts.
    pub(super) fn byte_value(&mut self) -> Result<(u16, usize), FilterError> {
        let column = self.column();
        let mut value = self.byte_term()?;
        while self.eat(&Tok::Pipe) {
            value |= self.byte_term()?;
        }
        Ok((value, column))
    }

    pub(super) fn byte_term(&mut self) -> Result<u16, FilterError> {
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
