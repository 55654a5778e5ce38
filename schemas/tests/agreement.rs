//! The typed model and the JSON Schema files accept and reject the same documents.
//!
//! The corpus is every valid document under `tests/data/valid`, plus systematic mutations of
//! each: every key deleted, an unknown key added to every mapping, and every value replaced by
//! values of other types and edge values. For every document both sides must agree.

use kommit_schemas::schema::accepts;
use kommit_schemas::{Kind, Object};
use serde_json::{json, Value};
use std::path::Path;

fn typed_accepts(kind: Kind, v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some(kind.name())
        && v.get("apiVersion").and_then(Value::as_str) == Some(kind.api_version())
        && Object::from_value(kind, v).is_ok()
}

fn corpus() -> Vec<(Kind, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid");
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        for doc in kommit_schemas::yaml::parse_documents(&text, &Default::default()).unwrap() {
            let kind = Kind::from_name(doc.value["kind"].as_str().unwrap()).unwrap();
            out.push((kind, doc.value));
        }
    }
    out
}

fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            pointers(
                c,
                format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")),
                out,
            )
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers(c, format!("{here}/{i}"), out)),
        _ => {}
    }
}

fn mutations(doc: &Value) -> Vec<Value> {
    let replacements = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1),
        json!(70000),
        json!(5_000_000_000u64),
        json!(1.5),
        json!(""),
        json!("x"),
        json!("Bad_Name!"),
        json!("25%"),
        json!("100m"),
        json!([]),
        json!(["x"]),
        json!({}),
        json!({"zz": 1}),
    ];
    let mut ptrs = Vec::new();
    pointers(doc, String::new(), &mut ptrs);
    let mut out = Vec::new();
    for p in ptrs.iter().filter(|p| !p.is_empty()) {
        for r in &replacements {
            let mut d = doc.clone();
            *d.pointer_mut(p).unwrap() = r.clone();
            out.push(d);
        }
        // Delete the key or element.
        let (parent, last) = p.rsplit_once('/').unwrap();
        let mut d = doc.clone();
        match d.pointer_mut(parent).unwrap() {
            Value::Object(m) => {
                m.remove(&last.replace("~1", "/").replace("~0", "~"));
            }
            Value::Array(a) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            _ => unreachable!(),
        }
        out.push(d);
    }
    for p in &ptrs {
        let mut d = doc.clone();
        if let Some(Value::Object(m)) = d.pointer_mut(p) {
            m.insert("zzUnknownField".into(), json!(1));
            out.push(d);
        }
    }
    out
}

#[test]
fn model_and_schema_agree_on_every_document() {
    let mut checked = 0;
    let mut disagreements = Vec::new();
    for (kind, doc) in corpus() {
        assert!(
            accepts(kind, &doc) && typed_accepts(kind, &doc),
            "valid corpus document rejected: {doc}"
        );
        for m in mutations(&doc) {
            checked += 1;
            let (s, t) = (accepts(kind, &m), typed_accepts(kind, &m));
            if s != t {
                disagreements.push(format!("{}: schema={s} model={t}: {m}", kind.name()));
            }
        }
    }
    assert!(checked > 5_000, "only {checked} documents");
    assert!(
        disagreements.is_empty(),
        "{} of {checked} documents disagree, first ones:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
