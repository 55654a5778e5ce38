//! YAML to a JSON value plus a span index, under strict budgets.
//!
//! Every later stage (JSON Schema, typed model, semantic checks) works on a
//! `serde_json::Value` and reports problems as JSON pointers. This module is the only place
//! that knows YAML: it parses one file into documents with serde-saphyr, keeps the line and
//! column of every node in a [`SpanIndex`] keyed by JSON pointer, and enforces the budgets that
//! make alias bombs and deep nesting fail fast in bounded memory.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;

pub use crate::tree::Tree;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// Limits applied while parsing one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlBudget {
    /// Deepest allowed nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most nodes in one file, counting every alias expansion.
    pub max_nodes: usize,
    /// Most alias references in one file.
    pub max_aliases: usize,
    /// Most documents in one file.
    pub max_documents: usize,
    /// Most events replayed through aliases in one file (what an alias bomb inflates).
    pub max_alias_events: usize,
}

impl Default for YamlBudget {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_nodes: 250_000,
            max_aliases: 1_000,
            max_documents: 1_000,
            max_alias_events: 20_000,
        }
    }
}

/// One YAML document: its value and the position of every node in it.
#[derive(Debug)]
pub struct Document {
    /// The document as JSON.
    pub value: serde_json::Value,
    /// Positions by JSON pointer ("" is the root).
    pub spans: SpanIndex,
    /// Where the document starts.
    pub start: Pos,
}

/// Positions of nodes by JSON pointer. Keys point at the key itself for mapping entries, so
/// an unknown field is reported where its name is written.
#[derive(Debug, Default)]
pub struct SpanIndex {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl SpanIndex {
    /// The position of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn value_pos(&self, pointer: &str) -> Pos {
        self.lookup(pointer, false)
    }

    /// The position of the key that introduces `pointer` (falls back to the value position).
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.lookup(pointer, true)
    }

    fn lookup(&self, pointer: &str, prefer_key: bool) -> Pos {
        let mut p = pointer;
        loop {
            if prefer_key {
                if let Some(pos) = self.keys.get(p) {
                    return *pos;
                }
            }
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, col: 1 },
            }
        }
    }
}

/// A YAML problem with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// The raw spanned tree serde-saphyr builds for us.
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
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
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
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        String::from_utf8(v.to_vec())
            .map(Node::Str)
            .map_err(|_| E::custom("binary scalars are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyString>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            let key = Spanned::new(key.value.0, key.referenced, key.defined);
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Mapping keys: Kubernetes keys are strings, but YAML allows `80: x` or `true: y`.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_owned()))
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
        d.deserialize_any(V)
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn pos_of(l: &serde_saphyr::Location) -> Pos {
    Pos {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        col: u32::try_from(l.column()).unwrap_or(u32::MAX),
    }
}

struct Converter<'a> {
    spans: &'a mut SpanIndex,
    nodes: usize,
    max_nodes: usize,
}

impl Converter<'_> {
    fn convert(
        &mut self,
        node: Spanned<Node>,
        pointer: &mut String,
    ) -> Result<serde_json::Value, YamlError> {
        use serde_json::Value;
        let pos = pos_of(&node.referenced);
        self.nodes += 1;
        if self.nodes > self.max_nodes {
            return Err(YamlError {
                pos,
                message: format!(
                    "document expands to more than {} nodes (alias bomb?)",
                    self.max_nodes
                ),
            });
        }
        self.spans.values.entry(pointer.clone()).or_insert(pos);
        Ok(match node.value {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::from(i),
            Node::UInt(u) => Value::from(u),
            Node::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| YamlError {
                    pos,
                    message: format!("number {f} is not finite"),
                })?,
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    out.push(self.convert(item, pointer)?);
                    pointer.truncate(len);
                }
                Value::Array(out)
            }
            Node::Map(entries) => {
                let mut out = serde_json::Map::new();
                for (key, value) in entries {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&escape_segment(&key.value));
                    let key_pos = pos_of(&key.referenced);
                    if out.contains_key(&key.value) {
                        return Err(YamlError {
                            pos: key_pos,
                            message: format!("duplicate key `{}`", key.value),
                        });
                    }
                    self.spans.keys.entry(pointer.clone()).or_insert(key_pos);
                    let v = self.convert(value, pointer)?;
                    pointer.truncate(len);
                    out.insert(key.value, v);
                }
                Value::Object(out)
            }
        })
    }
}

/// `strict_booleans`: only `true`/`false` are booleans (YAML 1.2, as SOPS's Go YAML reads
/// it), not YAML 1.1's `yes`/`no`/`on`/`off`/`y`/`n` (as Kubernetes reads them).
fn parse_nodes(
    text: &str,
    budget: &YamlBudget,
    strict_booleans: bool,
) -> Result<Vec<Spanned<Node>>, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: strict_booleans,
        budget: serde_saphyr::budget! {
            max_depth: budget.max_depth,
            max_nodes: budget.max_nodes,
            max_aliases: budget.max_aliases,
            max_documents: budget.max_documents,
            max_events: budget.max_nodes.saturating_mul(4),
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: budget.max_alias_events,
            max_replay_stack_depth: 16,
        },
        // Kubernetes reads YAML 1.1 octals (`defaultMode: 0400` is 256), and so does kommit.
        legacy_octal_numbers: true,
    };
    serde_saphyr::from_multiple_with_options(text, options).map_err(|e| saphyr_error(e, budget))
}

/// Parses every document of one file. Empty documents are skipped.
pub fn parse_documents(text: &str, budget: &YamlBudget) -> Result<Vec<Document>, YamlError> {
    let docs = parse_nodes(text, budget, false)?;
    let mut out = Vec::with_capacity(docs.len());
    let mut total_nodes = 0usize;
    for doc in docs {
        if matches!(doc.value, Node::Null) {
            continue;
        }
        let start = pos_of(&doc.referenced);
        let mut spans = SpanIndex::default();
        let mut conv = Converter {
            spans: &mut spans,
            nodes: total_nodes,
            max_nodes: budget.max_nodes,
        };
        let mut pointer = String::new();
        let value = conv.convert(doc, &mut pointer)?;
        total_nodes = conv.nodes;
        out.push(Document {
            value,
            spans,
            start,
        });
    }
    Ok(out)
}

/// Parses every document of one file as ordered trees (mapping keys in document order, as
/// SOPS computes its MAC), under the same budgets, reading scalars as SOPS's Go YAML does
/// (YAML 1.2 booleans, `0755` octal). Empty documents are skipped.
pub fn parse_trees(text: &str, budget: &YamlBudget) -> Result<Vec<Tree>, YamlError> {
    fn convert(node: Spanned<Node>, nodes: &mut usize, max: usize) -> Result<Tree, YamlError> {
        *nodes += 1;
        if *nodes > max {
            return Err(YamlError {
                pos: pos_of(&node.referenced),
                message: format!("document expands to more than {max} nodes (alias bomb?)"),
            });
        }
        Ok(match node.value {
            Node::Null => Tree::Null,
            Node::Bool(b) => Tree::Bool(b),
            Node::Int(i) => Tree::Int(i),
            Node::UInt(u) => Tree::UInt(u),
            Node::Float(f) => Tree::Float(f),
            Node::Str(s) => Tree::Str(s),
            Node::Seq(items) => Tree::Seq(
                items
                    .into_iter()
                    .map(|i| convert(i, nodes, max))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(entries) => Tree::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Ok((k.value, convert(v, nodes, max)?)))
                    .collect::<Result<_, YamlError>>()?,
            ),
        })
    }
    let mut nodes = 0usize;
    let mut out = Vec::new();
    for doc in parse_nodes(text, budget, true)? {
        if !matches!(doc.value, Node::Null) {
            out.push(convert(doc, &mut nodes, budget.max_nodes)?);
        }
    }
    Ok(out)
}

fn saphyr_error(e: serde_saphyr::Error, budget: &YamlBudget) -> YamlError {
    let pos = e
        .location()
        .map(|l| pos_of(&l))
        .unwrap_or(Pos { line: 1, col: 1 });
    // serde-saphyr renders a snippet over several lines; keep the first line, without the
    // position it repeats (the diagnostic carries it).
    let text = e.to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid YAML");
    let mut message = first.trim_start_matches("error: ").trim_end_matches('.');
    if let Some(rest) = message.strip_prefix("line ") {
        if let Some((_, after)) = rest.split_once(": ") {
            message = after;
        }
    }
    let message = if message.contains("budget breached: Depth") {
        format!("YAML nests deeper than {} levels", budget.max_depth)
    } else if message.contains("alias replay limit exceeded") {
        format!(
            "aliases expand to more than {} events (alias bomb?)",
            budget.max_alias_events
        )
    } else if let Some(what) = message.strip_prefix("budget breached: ") {
        format!("YAML exceeds a parser budget ({what})")
    } else {
        message.to_owned()
    };
    YamlError {
        pos,
        message: format!("invalid YAML: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_values() {
        let text = "a: 1\nb:\n  - x\n  - c: true\n---\n---\nz: ~\n";
        let docs = parse_documents(text, &YamlBudget::default()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            serde_json::json!({"a": 1, "b": ["x", {"c": true}]})
        );
        assert_eq!(docs[0].spans.value_pos("/b/1/c"), Pos { line: 4, col: 8 });
        assert_eq!(docs[0].spans.key_pos("/b/1/c"), Pos { line: 4, col: 5 });
        assert_eq!(
            docs[0].spans.key_pos("/b/1/c/nope"),
            Pos { line: 4, col: 5 }
        );
        assert_eq!(docs[1].spans.key_pos("/z"), Pos { line: 7, col: 1 });
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n", &YamlBudget::default()).unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
        assert!(err.message.starts_with("invalid YAML"), "{err:?}");
    }
}
