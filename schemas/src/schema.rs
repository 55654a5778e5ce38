//! The JSON Schema files: generated from the typed model, shipped in `schemas/`, embedded in
//! the binary, and compiled once for validation.
//!
//! The model is the single source of truth. `generate` derives each kind's schema from it
//! (draft 2020-12, standard keywords only); a test keeps the files on disk byte-identical to
//! what `generate` returns (`KOMMIT_BLESS=1 cargo test -p kommit-schemas` rewrites them), and
//! the binary embeds those same files, so CI pipelines that validate with check-jsonschema or
//! ajv apply exactly the rules `kommit validate` applies.

use crate::model::config::ClusterConfig;
use crate::model::core::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use crate::model::workloads::{CronJob, DaemonSet, Deployment, Job, ReplicaSet, StatefulSet};
use crate::model::Kind;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The schema files as embedded at build time, by kind.
pub fn embedded(kind: Kind) -> &'static str {
    match kind {
        Kind::Namespace => include_str!("../namespace.schema.json"),
        Kind::Pod => include_str!("../pod.schema.json"),
        Kind::Service => include_str!("../service.schema.json"),
        Kind::ConfigMap => include_str!("../configmap.schema.json"),
        Kind::Secret => include_str!("../secret.schema.json"),
        Kind::PersistentVolumeClaim => include_str!("../persistentvolumeclaim.schema.json"),
        Kind::StorageClass => include_str!("../storageclass.schema.json"),
        Kind::PersistentVolume => include_str!("../persistentvolume.schema.json"),
        Kind::PodDisruptionBudget => include_str!("../poddisruptionbudget.schema.json"),
        Kind::Deployment => include_str!("../deployment.schema.json"),
        Kind::DaemonSet => include_str!("../daemonset.schema.json"),
        Kind::ReplicaSet => include_str!("../replicaset.schema.json"),
        Kind::StatefulSet => include_str!("../statefulset.schema.json"),
        Kind::Job => include_str!("../job.schema.json"),
        Kind::CronJob => include_str!("../cronjob.schema.json"),
        Kind::ClusterConfig => include_str!("../kommit.schema.json"),
    }
}

fn root_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// The `format` values JSON Schema 2020-12 defines. schemars also emits Rust-specific ones
/// (`uint32`, `int64`, ...), which strict validators such as ajv reject, so those are removed.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Turns schemars' `oneOf: [{const: "A", description}, ...]` for documented unit enums into a
/// plain `enum`, which every validator reports as "is not one of: ...".
fn consts_to_enum(map: &mut serde_json::Map<String, Value>) {
    let Some(Value::Array(branches)) = map.get("oneOf") else {
        return;
    };
    let consts: Option<Vec<Value>> = branches
        .iter()
        .map(|b| {
            let o = b.as_object()?;
            let only_const = o
                .keys()
                .all(|k| matches!(k.as_str(), "const" | "description" | "type"));
            if only_const {
                o.get("const").cloned()
            } else {
                None
            }
        })
        .collect();
    if let Some(consts) = consts {
        map.remove("oneOf");
        map.insert("type".into(), Value::String("string".into()));
        map.insert("enum".into(), Value::Array(consts));
    }
}

fn strip_nonstandard(v: &mut Value) {
    match v {
        Value::Object(map) => {
            consts_to_enum(map);
            let format = map.get("format").and_then(Value::as_str).map(str::to_owned);
            if let Some(f) = format.filter(|f| !STANDARD_FORMATS.contains(&f.as_str())) {
                map.remove("format");
                // Keep the width the format stood for as standard bounds.
                let (lo, hi): (Option<i64>, Option<u64>) = match f.as_str() {
                    "uint8" => (Some(0), Some(u8::MAX.into())),
                    "uint16" => (Some(0), Some(u16::MAX.into())),
                    "uint32" | "uint" => (Some(0), Some(u32::MAX.into())),
                    "uint64" => (Some(0), Some(u64::MAX)),
                    "int32" | "int" => (Some(i32::MIN.into()), Some(i32::MAX as u64)),
                    _ => (None, None),
                };
                if let Some(lo) = lo {
                    map.entry("minimum").or_insert(Value::from(lo));
                }
                if let Some(hi) = hi {
                    map.entry("maximum").or_insert(Value::from(hi));
                }
            }
            for child in map.values_mut() {
                strip_nonstandard(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nonstandard),
        _ => {}
    }
}

/// Generates a kind's schema from the model.
pub fn generate(kind: Kind) -> Value {
    let mut v = match kind {
        Kind::Namespace => root_schema::<Namespace>(),
        Kind::Pod => root_schema::<Pod>(),
        Kind::Service => root_schema::<Service>(),
        Kind::ConfigMap => root_schema::<ConfigMap>(),
        Kind::Secret => root_schema::<Secret>(),
        Kind::PersistentVolumeClaim => root_schema::<PersistentVolumeClaim>(),
        Kind::StorageClass => root_schema::<crate::model::storage::StorageClass>(),
        Kind::PersistentVolume => root_schema::<crate::model::storage::PersistentVolume>(),
        Kind::PodDisruptionBudget => root_schema::<crate::model::policy::PodDisruptionBudget>(),
        Kind::Deployment => root_schema::<Deployment>(),
        Kind::DaemonSet => root_schema::<DaemonSet>(),
        Kind::ReplicaSet => root_schema::<ReplicaSet>(),
        Kind::StatefulSet => root_schema::<StatefulSet>(),
        Kind::Job => root_schema::<Job>(),
        Kind::CronJob => root_schema::<CronJob>(),
        Kind::ClusterConfig => root_schema::<ClusterConfig>(),
    };
    strip_nonstandard(&mut v);
    if let Value::Object(map) = &mut v {
        map.insert(
            "title".into(),
            Value::String(format!("{} {}", kind.api_version(), kind.name())),
        );
    }
    v
}

/// The file text for a kind's schema: pretty JSON with a trailing newline.
pub fn generate_text(kind: Kind) -> String {
    let mut s = serde_json::to_string_pretty(&generate(kind)).expect("a schema is plain JSON");
    s.push('\n');
    s
}

/// Whether the embedded schema for `kind` accepts `value` (for tests and tools; `validate`
/// reports the reasons).
pub fn accepts(kind: Kind, value: &Value) -> bool {
    validators()[&kind].is_valid(value)
}

/// The compiled validators, built once from the embedded files.
pub(crate) fn validators() -> &'static BTreeMap<Kind, jsonschema::Validator> {
    static V: OnceLock<BTreeMap<Kind, jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let schema: Value = serde_json::from_str(embedded(k))
                    .expect("embedded schema files are valid JSON (checked by tests)");
                let v = jsonschema::draft202012::options()
                    .should_validate_formats(false)
                    .build(&schema)
                    .expect("embedded schema files compile (checked by tests)");
                (k, v)
            })
            .collect()
    })
}
