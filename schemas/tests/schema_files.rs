//! The schema files on disk, the embedded copies and the model agree.
//!
//! `KOMMIT_BLESS=1 cargo test -p kommit-schemas --test schema_files` rewrites the files from
//! the model after a deliberate model change.

use kommit_schemas::schema::{embedded, generate_text};
use kommit_schemas::Kind;
use std::path::PathBuf;

fn file(kind: Kind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(kind.schema_file())
}

#[test]
fn files_on_disk_match_the_model_and_the_embedded_copies() {
    let bless = std::env::var_os("KOMMIT_BLESS").is_some();
    for kind in Kind::ALL {
        let want = generate_text(kind);
        let path = file(kind);
        if bless {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap();
        assert!(
            on_disk == want,
            "{} is stale: regenerate with KOMMIT_BLESS=1 cargo test -p kommit-schemas --test schema_files",
            path.display()
        );
        assert_eq!(
            embedded(kind),
            on_disk,
            "embedded copy of {} differs",
            path.display()
        );
    }
}

#[test]
fn schemas_are_plain_draft_2020_12() {
    // Only standard keywords: a strict validator must not meet anything it does not know.
    const KNOWN: &[&str] = &[
        "$schema",
        "$defs",
        "$ref",
        "title",
        "description",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "not",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "format",
        "default",
    ];
    fn walk(v: &serde_json::Value, path: &str, in_properties: bool) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    if !in_properties && !KNOWN.contains(&k.as_str()) {
                        panic!("non-standard keyword `{k}` at {path}");
                    }
                    let props = !in_properties && (k == "properties" || k == "$defs");
                    walk(child, &format!("{path}/{k}"), props);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, path, false)),
            _ => {}
        }
    }
    for kind in Kind::ALL {
        let v: serde_json::Value = serde_json::from_str(embedded(kind)).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
        walk(&v, kind.schema_file(), false);
    }
}
