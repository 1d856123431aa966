//! YAML read into a tree whose every value knows its line and column, and
//! the checked accessors that turn it into typed values.
//!
//! Rule and config files are not deserialized straight into structs: with
//! `deny_unknown_fields`, serde-saphyr 0.0.16 reports an unknown key at the
//! position of the key before it. Reading a [`Node`] tree first (serde-saphyr
//! still does all the YAML parsing, anchors, merge keys and duplicate-key
//! checks) lets every error point at the offending key or value and say
//! what is wrong in our own words.

use std::fmt;
use std::ops::RangeInclusive;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, Options, Spanned, options::AliasLimits};

/// Deepest nesting accepted. Valid files need about 6 levels; the limit keeps
/// hostile input from exhausting the stack in the recursive tree code.
const MAX_DEPTH: usize = 64;

/// A problem at a place in a YAML file: displays as `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SourceError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Line and column (1-based, in characters) within one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    /// Where errors without a better place point: the start of the file.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl From<serde_saphyr::Location> for Pos {
    fn from(loc: serde_saphyr::Location) -> Self {
        if loc.line() == 0 {
            Pos::START
        } else {
            Pos {
                line: loc.line(),
                column: loc.column().max(1),
            }
        }
    }
}

/// A problem at a position of the file being read; the reader adds the file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    pub at: Pos,
    pub message: String,
}

impl Located {
    pub fn new(at: Pos, message: impl Into<String>) -> Self {
        Located {
            at,
            message: message.into(),
        }
    }

    pub fn in_file(self, file: &str) -> SourceError {
        SourceError {
            file: file.to_owned(),
            line: self.at.line,
            column: self.at.column,
            message: self.message,
        }
    }
}

/// One YAML value and where it starts. For an alias, the position is where
/// the alias is used.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub at: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order (serde-saphyr has already rejected duplicates).
    Map(Vec<(Node, Node)>),
}

/// Parses one YAML document. `None` when the file holds no document at all
/// (empty, or only comments).
pub(crate) fn parse(text: &str) -> Result<Option<Node>, Located> {
    let options = Options {
        budget: Some(Budget {
            max_depth: MAX_DEPTH,
            ..Budget::default()
        }),
        alias_limits: AliasLimits {
            max_total_replayed_events: 100_000,
            ..AliasLimits::default()
        },
        // `yes`/`no`/`on`/`off` stay text: only `true` and `false` are booleans.
        strict_booleans: true,
        with_snippet: false,
        ..Options::default()
    };
    serde_saphyr::from_str_with_options::<Option<Node>>(text, options)
        .map_err(|err| yaml_error(&err))
}

fn yaml_error(err: &serde_saphyr::Error) -> Located {
    let err = err.without_snippet();
    let location = err.location();
    let at = location.map_or(Pos::START, Pos::from);
    let message = match err {
        serde_saphyr::Error::Budget { breach, .. } => {
            format!("YAML too large or too deeply nested ({breach:?})")
        }
        _ => {
            let text = err.to_string();
            // The library appends its own position; ours leads the line instead.
            match location {
                Some(loc) => {
                    let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
                    text.strip_suffix(&suffix)
                        .map(str::to_owned)
                        .unwrap_or(text)
                }
                None => text,
            }
        }
    };
    Located::new(at, format!("invalid YAML: {message}"))
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            at: spanned.referenced.into(),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        // Beyond i128 is out of every range we accept anyway.
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_char<E>(self, v: char) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("unsupported YAML value"))
    }
}

impl Node {
    /// What the value is, for messages: "a number", "a list", ...
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "empty".to_owned(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(i) => format!("the number {i}"),
            Value::Float(x) => format!("the number {x}"),
            Value::Str(s) => format!("the text {}", quote(s)),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> Located {
        Located::new(self.at, message)
    }

    fn wrong_type(&self, field: &str, expected: &str) -> Located {
        self.error(format!(
            "`{field}` must be {expected}, not {}",
            self.describe()
        ))
    }

    pub fn as_str(&self, field: &str) -> Result<&str, Located> {
        match &self.value {
            Value::Str(s) => Ok(s),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                Err(self.wrong_type(field, "text (put it in quotes)"))
            }
            _ => Err(self.wrong_type(field, "text")),
        }
    }

    pub fn as_bool(&self, field: &str) -> Result<bool, Located> {
        match self.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.wrong_type(field, "true or false")),
        }
    }

    /// A whole number within `range`.
    pub fn as_int(&self, field: &str, range: RangeInclusive<i128>) -> Result<i128, Located> {
        let bounds = || format!("a whole number from {} to {}", range.start(), range.end());
        match self.value {
            Value::Int(i) if range.contains(&i) => Ok(i),
            Value::Int(_) | Value::Float(_) => Err(self.error(format!(
                "`{field}` must be {}, not {}",
                bounds(),
                self.describe()
            ))),
            _ => Err(self.wrong_type(field, &bounds())),
        }
    }

    pub fn as_list(&self, field: &str) -> Result<&[Node], Located> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.wrong_type(field, "a list")),
        }
    }

    /// A mapping whose keys are all among `allowed`. `what` names it in
    /// messages as written ("`scope`", "a rule", "the top level").
    pub fn as_map(
        &self,
        what: &str,
        allowed: &'static [&'static str],
    ) -> Result<Fields<'_>, Located> {
        let Value::Map(entries) = &self.value else {
            return Err(self.error(format!(
                "{what} must be a mapping (keys: {}), not {}",
                allowed.join(", "),
                self.describe()
            )));
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                return Err(key.error(format!(
                    "keys of {what} must be names, not {}",
                    key.describe()
                )));
            };
            if !allowed.contains(&name.as_str()) {
                return Err(key.error(format!(
                    "unknown key {} in {what} (expected one of {})",
                    quote(name),
                    allowed.join(", ")
                )));
            }
            fields.push(Field {
                key: name,
                key_at: key.at,
                value,
            });
        }
        Ok(Fields {
            at: self.at,
            fields,
        })
    }

    /// Text that must be one of `choices` (exact spelling).
    pub fn as_choice<T: Copy>(
        &self,
        field: &str,
        noun: &str,
        choices: &[(&str, T)],
    ) -> Result<T, Located> {
        let names = || {
            choices
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = match &self.value {
            Value::Str(s) => s.as_str(),
            _ => return Err(self.wrong_type(field, &format!("one of {}", names()))),
        };
        choices
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                self.error(format!(
                    "unknown {noun} {} (expected one of {})",
                    quote(text),
                    names()
                ))
            })
    }
}

/// One key of a mapping and its value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field<'a> {
    pub key: &'a str,
    pub key_at: Pos,
    pub value: &'a Node,
}

/// The checked keys of one mapping, in file order.
#[derive(Clone, Debug)]
pub(crate) struct Fields<'a> {
    /// Where the mapping starts.
    pub at: Pos,
    pub fields: Vec<Field<'a>>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.field(key).map(|f| f.value)
    }

    pub fn field(&self, key: &str) -> Option<Field<'a>> {
        self.fields.iter().find(|f| f.key == key).copied()
    }

    /// The value of `key`; `what` names the mapping as in [`Node::as_map`].
    pub fn required(&self, key: &str, what: &str) -> Result<&'a Node, Located> {
        self.get(key)
            .ok_or_else(|| Located::new(self.at, format!("{what} is missing `{key}`")))
    }

    /// The one key present, when exactly one of the allowed keys must be given.
    pub fn exactly_one(&self, what: &str, allowed: &[&str]) -> Result<Field<'a>, Located> {
        match self.fields.as_slice() {
            [only] => Ok(*only),
            [] => Err(Located::new(
                self.at,
                format!("{what} needs one of {}", allowed.join(", ")),
            )),
            [first, second, ..] => Err(Located::new(
                second.key_at,
                format!(
                    "{what} takes exactly one of {}, but has both `{}` and `{}`",
                    allowed.join(", "),
                    first.key,
                    second.key
                ),
            )),
        }
    }
}

/// `text` in double quotes, with control characters escaped.
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn tree_records_positions_of_keys_and_values() {
        let node = parse("a: 1\nb:\n  - x\n  - {c: true}\n").unwrap().unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map: {node:?}")
        };
        assert_eq!(entries[0].0.at, pos(1, 1));
        assert_eq!(entries[0].1.value, Value::Int(1));
        assert_eq!(entries[0].1.at, pos(1, 4));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a list")
        };
        assert_eq!(items[0].value, Value::Str("x".into()));
        assert_eq!(items[0].at, pos(3, 5));
        assert_eq!(items[1].at, pos(4, 5));
    }

    #[test]
    fn empty_and_comment_only_documents_are_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# nothing\n\n").unwrap(), None);
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let node = parse("a: 1\nbogus: 2\n").unwrap().unwrap();
        let err = node.as_map("the top level", &["a"]).unwrap_err();
        assert_eq!(err.at, pos(2, 1));
        assert_eq!(
            err.message,
            "unknown key \"bogus\" in the top level (expected one of a)"
        );
    }

    #[test]
    fn syntax_errors_carry_positions_without_library_suffix() {
        let err = parse("a: [1,\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML: "), "{err:?}");
        assert!(!err.message.contains(" at line "), "{err:?}");
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.at, pos(2, 1));
        assert!(err.message.contains("duplicate"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&text).is_err());
    }

    #[test]
    fn yaml11_words_stay_text() {
        let node = parse("a: yes\n").unwrap().unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].1.value, Value::Str("yes".into()));
    }

    #[test]
    fn int_range_and_type_messages() {
        let node = parse("300").unwrap().unwrap();
        let err = node.as_int("below", 1..=255).unwrap_err();
        assert_eq!(
            err.message,
            "`below` must be a whole number from 1 to 255, not the number 300"
        );
        let node = parse("abc").unwrap().unwrap();
        let err = node.as_int("below", 1..=255).unwrap_err();
        assert_eq!(
            err.message,
            "`below` must be a whole number from 1 to 255, not the text \"abc\""
        );
    }
}
