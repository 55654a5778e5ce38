//! The JSON Schema files: generated from the typed model, shipped in `schemas/`, embedded in
//! the binary, and compiled for validation when a kind is first used.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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
    validator(kind).is_valid(value)
}

/// Compiled validators by kind, each made on first use and dropped again by
/// [`Validators::release_idle`].
struct Validators {
    slots: BTreeMap<Kind, Slot>,
}

struct Slot {
    compiled: Mutex<Option<Arc<jsonschema::Validator>>>,
    used: AtomicBool,
}

impl Validators {
    fn new() -> Self {
        let slots = Kind::ALL
            .into_iter()
            .map(|k| {
                let slot = Slot {
                    compiled: Mutex::new(None),
                    used: AtomicBool::new(false),
                };
                (k, slot)
            })
            .collect();
        Validators { slots }
    }

    fn get(&self, kind: Kind) -> Arc<jsonschema::Validator> {
        let slot = &self.slots[&kind];
        slot.used.store(true, Ordering::Relaxed);
        let mut compiled = slot.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(compiled.get_or_insert_with(|| Arc::new(compile(kind))))
    }

    fn release_idle(&self) -> usize {
        let mut dropped = 0;
        for slot in self.slots.values() {
            if !slot.used.swap(false, Ordering::Relaxed) {
                let mut compiled = slot.compiled.lock().unwrap_or_else(PoisonError::into_inner);
                dropped += usize::from(compiled.take().is_some());
            }
        }
        dropped
    }

    #[cfg(test)]
    fn compiled(&self) -> Vec<Kind> {
        let held = |s: &Slot| {
            s.compiled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        };
        self.slots
            .iter()
            .filter(|(_, s)| held(s))
            .map(|(k, _)| *k)
            .collect()
    }
}

fn compile(kind: Kind) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(embedded(kind))
        .expect("embedded schema files are valid JSON (checked by tests)");
    jsonschema::draft202012::options()
        .should_validate_formats(false)
        .build(&schema)
        .expect("embedded schema files compile (checked by tests)")
}

fn validators() -> &'static Validators {
    static V: OnceLock<Validators> = OnceLock::new();
    V.get_or_init(Validators::new)
}

/// The compiled validator for `kind`. Kinds are compiled one at a time, when a manifest of
/// that kind is first validated: a repository of Deployments and Services never pays for
/// the other kinds' pod templates (every workload kind embeds the whole pod spec, about half
/// a megabyte compiled, patterns included).
pub(crate) fn validator(kind: Kind) -> Arc<jsonschema::Validator> {
    validators().get(kind)
}

/// Drops the compiled validators of the kinds not used since the previous call, and returns
/// how many it dropped. A daemon validates only when a commit arrives, yet the validators
/// of the common kinds hold several megabytes: calling this on a period (the daemon does,
/// every `kommit_runtime::alloc::TRIM_EVERY`) frees them once the cluster has been idle for
/// a whole period, at the cost of recompiling a kind (a few milliseconds) on the next
/// commit. Results never change: a validator is a pure function of its embedded schema.
pub fn release_idle_validators() -> usize {
    validators().release_idle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_are_compiled_on_use_and_released_after_an_idle_period() {
        let cache = Validators::new();
        assert!(cache.compiled().is_empty(), "nothing is compiled up front");
        let map = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "v"}
        });
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": 1});
        assert!(cache.get(Kind::ConfigMap).is_valid(&map));
        assert_eq!(
            cache.compiled(),
            vec![Kind::ConfigMap],
            "only the kind in use"
        );
        // Used in this period: kept, and its mark cleared.
        assert_eq!(cache.release_idle(), 0);
        assert_eq!(cache.compiled(), vec![Kind::ConfigMap]);
        // A whole period without use: dropped.
        assert_eq!(cache.release_idle(), 1);
        assert!(cache.compiled().is_empty());
        // Recompiled on the next use, with the same verdicts.
        assert!(cache.get(Kind::ConfigMap).is_valid(&map));
        assert!(!cache.get(Kind::ConfigMap).is_valid(&bad));
        assert_eq!(cache.compiled(), vec![Kind::ConfigMap]);
    }
}
