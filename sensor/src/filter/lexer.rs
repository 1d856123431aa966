//! The filter text as tokens, each with its column for error messages.

use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
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
pub(super) struct Token {
    pub(super) tok: Tok,
    /// 1-based character column.
    pub(super) column: usize,
}

impl Token {
    pub(super) fn text(&self) -> String {
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
    pub(super) fn keyword(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
}

pub(super) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_')
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
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
