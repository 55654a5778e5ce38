//! A SOPS-encrypted document as the desired state carries it to the node that decrypts it.
//!
//! The MAC of a SOPS file covers its values in document order, and a Secret's typed model
//! (`BTreeMap`s) has lost that order, so the desired state keeps each encrypted Secret's
//! whole document, `sops` block included, as a [`SealedDocument`]: the ordered tree the file
//! parses to, not its text, so comments and layout do not reach the digest. It holds only
//! what Git holds: ciphertext, recipients' stanzas and the encrypted MAC.
//!
//! Its serialized form spells every node's type and keeps mapping entries as a list of
//! pairs, so no JSON reader can reorder them (a `serde_json::Value` sorts object keys) or
//! blur an integer into a float.

use crate::tree::Tree;
use serde::{Deserialize, Serialize};

/// Most bytes of the file an encrypted Secret is read from (Kubernetes caps a Secret at 1 MiB).
pub const MAX_SEALED_BYTES: usize = 1 << 20;

/// One encrypted document, in document order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "Node", into = "Node")]
pub struct SealedDocument(pub Tree);

/// [`Tree`] with derived, order-keeping serde.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl From<Node> for SealedDocument {
    fn from(n: Node) -> Self {
        fn tree(n: Node) -> Tree {
            match n {
                Node::Null => Tree::Null,
                Node::Bool(b) => Tree::Bool(b),
                Node::Int(i) => Tree::Int(i),
                Node::UInt(u) => Tree::UInt(u),
                Node::Float(f) => Tree::Float(f),
                Node::Str(s) => Tree::Str(s),
                Node::Seq(items) => Tree::Seq(items.into_iter().map(tree).collect()),
                Node::Map(entries) => {
                    Tree::Map(entries.into_iter().map(|(k, v)| (k, tree(v))).collect())
                }
            }
        }
        SealedDocument(tree(n))
    }
}

impl From<SealedDocument> for Node {
    fn from(d: SealedDocument) -> Self {
        fn node(t: Tree) -> Node {
            match t {
                Tree::Null => Node::Null,
                Tree::Bool(b) => Node::Bool(b),
                Tree::Int(i) => Node::Int(i),
                Tree::UInt(u) => Node::UInt(u),
                Tree::Float(f) => Node::Float(f),
                Tree::Str(s) => Node::Str(s),
                Tree::Seq(items) => Node::Seq(items.into_iter().map(node).collect()),
                Tree::Map(entries) => {
                    Node::Map(entries.into_iter().map(|(k, v)| (k, node(v))).collect())
                }
            }
        }
        node(d.0)
    }
}

impl SealedDocument {
    /// Reads the one document of an encrypted file, or why it cannot be carried: larger
    /// than [`MAX_SEALED_BYTES`], not exactly one document, or a number JSON cannot hold.
    pub fn parse(text: &str, budget: &crate::yaml::YamlBudget) -> Result<SealedDocument, String> {
        if text.len() > MAX_SEALED_BYTES {
            return Err(format!(
                "an encrypted Secret's file is {} bytes, over the limit of {MAX_SEALED_BYTES}",
                text.len()
            ));
        }
        let mut docs = crate::yaml::parse_trees(text, budget).map_err(|e| e.message)?;
        if docs.len() != 1 {
            return Err(format!(
                "a SOPS-encrypted document must be the only document in its file, found {}",
                docs.len()
            ));
        }
        let doc = docs.remove(0);
        if let Err(f) = doc.to_json() {
            return Err(format!(
                "the number {f} cannot be carried; quote it or remove it"
            ));
        }
        Ok(SealedDocument(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::YamlBudget;

    #[test]
    fn order_and_types_survive_json_and_json_values() {
        let text =
            "z: 1\na: [x, {y: true, b: 1.5}]\nbig: 18446744073709551615\nn: ~\nq: \"7\"\nf: 2.0\n";
        let doc = SealedDocument::parse(text, &YamlBudget::default()).unwrap();
        let bytes = serde_json::to_vec(&doc).unwrap();
        let back: SealedDocument = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, doc);
        // Through a Value (sorted maps) too.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let back: SealedDocument = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
        let Tree::Map(entries) = &back.0 else {
            panic!("not a map")
        };
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "big", "n", "q", "f"]);
        assert_eq!(back.0.get("f"), Some(&Tree::Float(2.0)));
        assert!(matches!(
            back.0.get("z"),
            Some(Tree::Int(1) | Tree::UInt(1))
        ));
    }

    #[test]
    fn bounded() {
        let budget = YamlBudget::default();
        let big = format!("a: {}\n", "x".repeat(MAX_SEALED_BYTES));
        assert!(SealedDocument::parse(&big, &budget)
            .unwrap_err()
            .contains("over the limit"));
        assert!(SealedDocument::parse("a: 1\n---\nb: 2\n", &budget)
            .unwrap_err()
            .contains("only document"));
        // Not a number JSON can hold: refused (by the YAML reader or here), never a panic.
        assert!(SealedDocument::parse("a: .nan\n", &budget).is_err());
    }
}
