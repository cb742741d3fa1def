//! YAML → a tree of JSON values plus a map from JSON pointer to source position.
//!
//! serde stops at the first error, but users want every mistake at once. So the file is
//! parsed once into a spanned tree; schema checks and semantic checks then run over the
//! whole tree and point back into the source through the [`SourceMap`].

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Location, MessageFormatter, Options, Spanned};

/// Where something sits in the source: 1-based line and column, 0-based byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
    pub len: usize,
}

/// Positions of every node, by JSON pointer (`/batch/matrix/voice/1`).
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    duplicates: Vec<(String, Pos)>,
}

impl SourceMap {
    /// The value at `pointer`, or the nearest ancestor that has a position.
    pub fn value(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos::default(),
            }
        }
    }

    /// The key of the mapping entry at `pointer`, falling back to its value.
    pub fn key(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }

    /// Whether the file has a value at exactly `pointer`.
    pub fn contains(&self, pointer: &str) -> bool {
        self.values.contains_key(pointer)
    }

    /// Keys written twice in one mapping: (pointer of the entry, position of the repeat).
    pub fn duplicates(&self) -> &[(String, Pos)] {
        &self.duplicates
    }
}

/// A parsed document.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub map: SourceMap,
}

/// A YAML syntax error, or a limit the input broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

/// Recipes are small; anything this large is a mistake or an attack.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Recipes nest a handful of levels; deeper is a mistake or an attack.
pub const MAX_DEPTH: usize = 32;
/// Values after aliases are expanded: far above any real recipe, far below an alias bomb.
pub const MAX_NODES: usize = 100_000;
pub const MAX_ALIASES: usize = 1_000;

pub fn parse(source: &str) -> Result<Document, SyntaxError> {
    if source.len() > MAX_BYTES {
        return Err(SyntaxError {
            message: format!(
                "file is {} bytes; recipes are limited to {} bytes",
                source.len(),
                MAX_BYTES
            ),
            pos: Pos::default(),
        });
    }
    let mut options = Options::default();
    // Duplicates are collected (all of them) instead of stopping at the first.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    // YAML 1.2 core schema: only `true` and `false` are booleans, so `no`, `n`, `off`
    // and `yes` are the strings they look like (a topic, a voice name).
    options.strict_booleans = true;
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_aliases = MAX_ALIASES;
    budget.max_total_scalar_bytes = MAX_BYTES;
    options.budget = Some(budget);
    let node: Spanned<Node> =
        serde_saphyr::from_str_with_options(source, options).map_err(|e| SyntaxError {
            message: message(&e),
            pos: e
                .location()
                .map(|l| pos_of(source, &l, &mut Lines::new(source)))
                .unwrap_or_default(),
        })?;
    let mut map = SourceMap::default();
    let mut pointer = String::new();
    let value = flatten(
        source,
        &mut Lines::new(source),
        node,
        &mut pointer,
        &mut map,
    );
    Ok(Document { value, map })
}

/// The parser's message, except for broken limits, which it only prints in debug form.
fn message(e: &serde_saphyr::Error) -> String {
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    match inner {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => format!(
                "the file nests deeper than {MAX_DEPTH} levels; recipes are only a few levels deep"
            ),
            BudgetBreach::Nodes { .. } | BudgetBreach::AliasAnchorRatio { .. } => format!(
                "the file holds more than {MAX_NODES} values once aliases (`*name`) \
                 are expanded; a recipe needs far fewer"
            ),
            BudgetBreach::Aliases { .. } => {
                format!("the file uses more than {MAX_ALIASES} aliases (`*name`)")
            }
            other => format!("the file is too large or too complex to read ({other:?})"),
        },
        _ => serde_saphyr::DefaultMessageFormatter
            .format_message(e)
            .into_owned(),
    }
}

fn pos_of(source: &str, loc: &Location, lines: &mut Lines) -> Pos {
    let span = loc.span();
    let offset = span.byte_offset().map_or_else(
        || offset_of(source, loc.line(), loc.column()),
        |o| usize::try_from(o).unwrap_or(0),
    );
    let offset = offset.min(source.len());
    let len = span
        .byte_len()
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(0);
    let (line, col) = if lines.lone_cr {
        // The parser breaks lines at a lone CR too; positions everywhere else count
        // `\n` only, so the line and column come from the offset instead.
        lines.line_col(source, offset)
    } else {
        (
            u32::try_from(loc.line()).unwrap_or(0),
            u32::try_from(loc.column()).unwrap_or(0),
        )
    };
    Pos {
        line,
        col,
        offset,
        len: len.min(source.len().saturating_sub(offset)),
    }
}

/// Whether `source` has a carriage return that is not part of a CRLF.
fn has_lone_cr(source: &str) -> bool {
    let b = source.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'))
}

/// Line and column from byte offsets, for files the parser counts lines in otherwise.
/// Offsets come mostly in order, so each is counted on from the one before.
struct Lines {
    lone_cr: bool,
    offset: usize,
    line: u32,
    col: u32,
}

impl Lines {
    fn new(source: &str) -> Self {
        Self {
            lone_cr: has_lone_cr(source),
            offset: 0,
            line: 1,
            col: 1,
        }
    }

    /// 1-based line (counting `\n`) and character column of a byte offset.
    fn line_col(&mut self, source: &str, offset: usize) -> (u32, u32) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        if offset < self.offset {
            (self.offset, self.line, self.col) = (0, 1, 1);
        }
        for c in source[self.offset..offset].chars() {
            if c == '\n' {
                self.line = self.line.saturating_add(1);
                self.col = 1;
            } else {
                self.col = self.col.saturating_add(1);
            }
        }
        self.offset = offset;
        (self.line, self.col)
    }
}

/// Byte offset of a 1-based line and (character) column.
pub fn offset_of(source: &str, line: u64, col: u64) -> usize {
    let mut offset = 0;
    for (i, text) in source.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let chars = usize::try_from(col.saturating_sub(1)).unwrap_or(0);
            return offset
                + text
                    .char_indices()
                    .nth(chars)
                    .map_or(text.len(), |(b, _)| b);
        }
        offset += text.len();
    }
    source.len()
}

fn flatten(
    source: &str,
    lines: &mut Lines,
    node: Spanned<Node>,
    pointer: &mut String,
    map: &mut SourceMap,
) -> Value {
    map.values
        .insert(pointer.clone(), pos_of(source, &node.referenced, lines));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::Number(i.into()),
        Node::UInt(u) => Value::Number(u.into()),
        Node::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                out.push(flatten(source, lines, item, pointer, map));
                pointer.truncate(len);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = Map::new();
            for (key, value) in entries {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_pointer(&key.value));
                let key_pos = pos_of(source, &key.referenced, lines);
                if out.contains_key(&key.value) {
                    map.duplicates.push((pointer.clone(), key_pos));
                } else {
                    map.keys.insert(pointer.clone(), key_pos);
                    let v = flatten(source, lines, value, pointer, map);
                    out.insert(key.value, v);
                }
                pointer.truncate(len);
            }
            Value::Object(out)
        }
    }
}

/// RFC 6901 escaping of one pointer segment.
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// One YAML node, with every child spanned.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v)
            .map(Node::UInt)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        if v.is_finite() {
            Ok(Node::Float(v))
        } else {
            Err(E::custom("numbers must be finite"))
        }
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = access.next_key::<Spanned<KeyString>>()? {
            let value = access.next_value()?;
            entries.push((
                Spanned {
                    value: key.value.0,
                    referenced: key.referenced,
                    defined: key.defined,
                },
                value,
            ));
        }
        Ok(Node::Map(entries))
    }
}

/// Mapping keys as text: recipes only use string keys, but `1: x` or `true: y` must not
/// abort the parse — they become the strings the user wrote, and the schema reports them.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<KeyString, E> {
                Ok(KeyString(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_keys_and_values() {
        let src = "name: demo\nbatch:\n  matrix:\n    voice: [warm, cold]\n";
        let doc = parse(src).unwrap();
        assert_eq!(doc.value["batch"]["matrix"]["voice"][1], "cold");
        let pos = doc.map.value("/batch/matrix/voice/1");
        assert_eq!((pos.line, pos.col), (4, 19));
        assert_eq!(&src[pos.offset..pos.offset + 4], "cold");
        let key = doc.map.key("/batch/matrix");
        assert_eq!((key.line, key.col), (3, 3));
    }

    #[test]
    fn yes_no_on_off_y_n_are_strings_under_the_yaml_1_2_core_schema() {
        let doc = parse(
            "topic: [Owls, no]\nvoice: [n, y, off, yes, on, NO]\nflag: true\nother: False\nn: 1\n",
        )
        .unwrap();
        assert_eq!(doc.value["topic"], serde_json::json!(["Owls", "no"]));
        assert_eq!(
            doc.value["voice"],
            serde_json::json!(["n", "y", "off", "yes", "on", "NO"])
        );
        assert_eq!(doc.value["flag"], true);
        assert_eq!(doc.value["other"], false);
        assert_eq!(doc.value["n"], 1, "a key `n` stays `n`");
    }

    #[test]
    fn a_lone_carriage_return_does_not_shift_line_numbers() {
        let src = "a: 1\r\r\nb: [x, MARK]\r\n";
        let doc = parse(src).unwrap();
        let pos = doc.map.value("/b/1");
        assert_eq!(&src[pos.offset..pos.offset + 4], "MARK");
        assert_eq!(
            (pos.line, pos.col),
            (2, 8),
            "lines count `\\n` like the snippet"
        );
        // Many values on one long line with a lone CR: positions are counted on, not
        // recounted from the start for each.
        let mut long = String::from("a: 1\rb: [");
        long.push_str(&"x, ".repeat(90_000));
        long.push_str("y]\n");
        let started = std::time::Instant::now();
        let doc = parse(&long).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(doc.map.value("/b/90000").line, 1);
    }

    #[test]
    fn collects_every_duplicate_key() {
        let src = "a: 1\nb: 2\na: 3\nc:\n  d: 1\n  d: 2\n";
        let doc = parse(src).unwrap();
        let dups: Vec<_> = doc
            .map
            .duplicates()
            .iter()
            .map(|(p, pos)| (p.as_str(), pos.line))
            .collect();
        assert_eq!(dups, [("/a", 3), ("/c/d", 6)]);
        assert_eq!(doc.value["a"], 1, "the first occurrence is kept");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            src.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("once aliases"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&src).is_err());
        let depth = MAX_DEPTH + 1;
        let src = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let err = parse(&src).unwrap_err();
        assert!(
            err.message.starts_with("the file nests deeper"),
            "{}",
            err.message
        );
    }
}
