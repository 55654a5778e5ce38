//! A SOPS-encrypted Secret, checked without its key (CI has none): the `sops` block's
//! recipients, stanzas, MAC and timestamp; every value its selector encrypts is an
//! `ENC[...]` value; and only `data` and `stringData` are encrypted, so the Secret's kind,
//! name and keys stay readable to the loader, the scheduler and auditors.

use crate::diagnostic::Diagnostic;
use crate::load::field_path;
use crate::sops::{check_metadata, check_values, SopsMetadata, ValueType};
use crate::yaml::SpanIndex;
use serde_json::Value;

/// What to do when more than a Secret's values are encrypted.
pub(crate) const KEEP_CLEAR: &str = "kommit reads a Secret's apiVersion, kind and metadata in clear: encrypt only `data` and `stringData` (`kommit secrets encrypt` does; with sops, `--encrypted-regex '^(data|stringData)$'`)";

/// The fields of a `sops` block (`SopsMetadata`).
const FIELDS: &[&str] = &[
    "age",
    "lastmodified",
    "mac",
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "mac_only_encrypted",
    "version",
    "kms",
    "gcp_kms",
    "azure_kv",
    "hc_vault",
    "pgp",
    "key_groups",
    "shamir_threshold",
];

/// Checks one Secret document that has a `sops` key.
pub(crate) fn check_secret(
    path: &str,
    doc: &Value,
    spans: &SpanIndex,
    diags: &mut Vec<Diagnostic>,
) {
    let at = |pointer: &str, message: String| {
        let p = spans.value_pos(pointer);
        Diagnostic::new(path, p.line, p.col, message)
    };
    let before = diags.len();
    let Some(block) = doc.get("sops") else {
        return;
    };
    // The block's keys first, with their positions (the schema's errors inside an optional
    // field are less precise).
    if let Value::Object(m) = block {
        for k in m.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            let pointer = format!("/sops/{}", crate::yaml::escape_segment(k));
            let p = spans.key_pos(&pointer);
            diags.push(Diagnostic::new(
                path,
                p.line,
                p.col,
                format!(
                    "`{}` is not a SOPS field kommit knows (it knows {})",
                    field_path(&pointer),
                    FIELDS.join(", ")
                ),
            ));
        }
        for k in ["lastmodified", "mac"]
            .into_iter()
            .filter(|k| !m.contains_key(*k))
        {
            diags.push(at("/sops", format!("`sops.{k}` is required")));
        }
        if diags.len() > before {
            return;
        }
    }
    let metadata: SopsMetadata = match serde_json::from_value(block.clone()) {
        Ok(m) => m,
        // The schema reports the block's shape with positions.
        Err(_) => return,
    };
    let mut problems = check_metadata(&metadata);
    problems.sort();
    for (field, message) in problems {
        let pointer = format!("/sops/{field}");
        diags.push(at(
            &pointer,
            format!("`{}`: {message}", field_path(&pointer)),
        ));
    }
    let Ok(selector) = metadata.selector() else {
        return;
    };
    let mut values = doc.clone();
    if let Value::Object(m) = &mut values {
        m.remove("sops");
    }
    let mut found = 0usize;
    let problems = check_values(&values, &selector, &mut |pointer, v| {
        found += 1;
        let field = field_path(pointer);
        let under = |p: &str| pointer.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
        if !under("/data") && !under("/stringData") {
            diags.push(at(
                pointer,
                format!("`{field}` is SOPS-encrypted; {KEEP_CLEAR}"),
            ));
        } else if v.kind != ValueType::Str {
            diags.push(at(
                pointer,
                format!(
                    "`{field}` is encrypted as type {}; Secret values are strings",
                    v.kind.name()
                ),
            ));
        }
    });
    for p in problems {
        diags.push(at(
            &p.pointer,
            format!("`{}`: {}", field_path(&p.pointer), p.message),
        ));
    }
    if found == 0 && diags.len() == before {
        diags.push(at(
            "/sops",
            "the file has a `sops` block but no encrypted value; encrypt `data` or `stringData`, or remove the block".into(),
        ));
    }
}
