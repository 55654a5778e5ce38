//! An ordered YAML tree: what a document holds, with mapping keys in the order they are
//! written.
//!
//! The loader works on `serde_json::Value`, whose maps are sorted. SOPS is order-sensitive
//! (its MAC hashes the values in document order, and a file it writes should read like the
//! file it was given), so its reader and writer use this tree instead. [`crate::yaml::parse_trees`]
//! reads it; [`to_yaml`] writes it.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One YAML node.
#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    /// `~` or `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Tree>),
    /// A mapping, keys in document order.
    Map(Vec<(String, Tree)>),
}

impl Tree {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Tree> {
        match self {
            Tree::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes and returns the value under `key` of a mapping.
    pub fn remove(&mut self, key: &str) -> Option<Tree> {
        match self {
            Tree::Map(entries) => {
                let i = entries.iter().position(|(k, _)| k == key)?;
                Some(entries.remove(i).1)
            }
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Tree::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The same value as JSON (maps sorted), or the first float JSON cannot hold.
    pub fn to_json(&self) -> Result<serde_json::Value, f64> {
        use serde_json::Value;
        Ok(match self {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(*b),
            Tree::Int(i) => Value::from(*i),
            Tree::UInt(u) => Value::from(*u),
            Tree::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or(*f)?,
            Tree::Str(s) => Value::String(s.clone()),
            Tree::Seq(items) => {
                Value::Array(items.iter().map(Tree::to_json).collect::<Result<_, _>>()?)
            }
            Tree::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.to_json()?)))
                    .collect::<Result<_, f64>>()?,
            ),
        })
    }
}

impl Serialize for Tree {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Int(i) => s.serialize_i64(*i),
            Tree::UInt(u) => s.serialize_u64(*u),
            Tree::Float(f) => s.serialize_f64(*f),
            Tree::Str(v) if v.contains('\n') => serde_saphyr::LitStr(v).serialize(s),
            Tree::Str(v) => s.serialize_str(v),
            Tree::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Tree::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Writes one document as YAML: block style, two-space indents, multi-line strings as
/// literal blocks, long single-line strings (SOPS values) left on their line.
pub fn to_yaml(tree: &Tree) -> Result<String, String> {
    let options = serde_saphyr::ser_options! {
        prefer_block_scalars: false,
    };
    serde_saphyr::to_string_with_options(tree, options).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse_trees, YamlBudget};

    #[test]
    fn order_survives_a_round_trip() {
        let text =
            "z: 1\na:\n  - x\n  - y: true\n    b: 1.5\nm: |\n  two\n  lines\nq: \"123\"\nn: ~\n";
        let trees = parse_trees(text, &YamlBudget::default()).unwrap();
        assert_eq!(trees.len(), 1);
        let keys: Vec<_> = match &trees[0] {
            Tree::Map(e) => e.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("not a map"),
        };
        assert_eq!(keys, ["z", "a", "m", "q", "n"]);
        let out = to_yaml(&trees[0]).unwrap();
        assert!(out.contains("m: |"), "{out}");
        let again = parse_trees(&out, &YamlBudget::default()).unwrap();
        assert_eq!(again, trees, "{out}");
    }

    #[test]
    fn long_strings_stay_on_their_line() {
        let long = format!("ENC[AES256_GCM,data:{},type:str]", "A".repeat(200));
        let tree = Tree::Map(vec![("k".into(), Tree::Str(long.clone()))]);
        let out = to_yaml(&tree).unwrap();
        assert_eq!(out, format!("k: {long}\n"));
    }
}
