//! The loader: a [`SourceTree`] in, a validated [`DesiredState`] or every diagnostic out.
//!
//! Stages, each reporting with `file:line:col`:
//! 1. the tree itself: submodules, symlinks, sizes, counts, UTF-8;
//! 2. YAML syntax and budgets (`yaml`);
//! 3. kind and apiVersion dispatch;
//! 4. the kind's JSON Schema (the same file CI pipelines use);
//! 5. the typed model;
//! 6. checks across objects (`checks`): references, selectors, duplicates, policy.

use crate::checks;
use crate::diagnostic::Diagnostic;
use crate::model::{self, DesiredState, Kind, Object};
use crate::schema;
use crate::source::{is_manifest_path, symlink_escapes, Limits, SourceContent, SourceTree};
use crate::yaml::{self, Pos, SpanIndex};
use serde_json::Value;

mod sops;

/// One object that passed stages 1 to 5.
pub(crate) struct Loaded {
    pub kind: Kind,
    pub path: String,
    pub namespace: String,
    pub name: String,
    pub spans: SpanIndex,
    pub object: Object,
    /// A SOPS-encrypted Secret's whole document, for the node that decrypts it.
    pub sealed: Option<crate::sops::SealedDocument>,
}

impl Loaded {
    /// A diagnostic at the value at `pointer` in this object's document.
    pub fn at(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let p = self.spans.value_pos(pointer);
        Diagnostic::new(&self.path, p.line, p.col, message)
    }
    /// `Kind namespace/name` or `Kind name`.
    pub fn display(&self) -> String {
        if self.kind.namespaced() {
            format!("{} {}/{}", self.kind.name(), self.namespace, self.name)
        } else {
            format!("{} {}", self.kind.name(), self.name)
        }
    }
}

/// Renders a JSON pointer as a field path: `/spec/containers/0/name` -> `spec.containers[0].name`.
pub fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "(document)".into()
    } else {
        out
    }
}

fn at(path: &str, pos: Pos, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(path, pos.line, pos.col, message)
}

/// Validates a tree. On success every object is typed, defaulted and cross-checked.
pub fn validate(tree: &SourceTree, limits: &Limits) -> Result<DesiredState, Vec<Diagnostic>> {
    validate_with_warnings(tree, limits).0
}

/// [`validate`], and the warnings: what is valid but unwise (a Secret committed in clear).
pub fn validate_with_warnings(
    tree: &SourceTree,
    limits: &Limits,
) -> (Result<DesiredState, Vec<Diagnostic>>, Vec<Diagnostic>) {
    let mut warnings = Vec::new();
    let result = validate_inner(tree, limits, &mut warnings);
    warnings.sort();
    warnings.dedup();
    (result, warnings)
}

fn validate_inner(
    tree: &SourceTree,
    limits: &Limits,
    warnings: &mut Vec<Diagnostic>,
) -> Result<DesiredState, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut files: Vec<_> = tree.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut total: u64 = 0;
    let mut manifests = 0usize;
    let mut loaded = Vec::new();
    let mut stopped = false;
    for f in files {
        let path = f.path.as_str();
        if path.is_empty()
            || path.starts_with('/')
            || path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            diags.push(Diagnostic::file(path, "invalid path in tree"));
            continue;
        }
        match &f.content {
            SourceContent::Submodule => diags.push(Diagnostic::file(
                path,
                "submodules are not supported in the desired-state tree",
            )),
            SourceContent::Symlink { target } => {
                if symlink_escapes(path, target) {
                    diags.push(Diagnostic::file(
                        path,
                        format!("symlink points outside the tree (to `{target}`)"),
                    ));
                } else if is_manifest_path(path) {
                    diags.push(Diagnostic::file(
                        path,
                        format!("symlinked manifests are not followed (to `{target}`); commit the file itself"),
                    ));
                }
            }
            SourceContent::TooLarge { size } => {
                if is_manifest_path(path) {
                    diags.push(Diagnostic::file(
                        path,
                        format!(
                            "file is {size} bytes, over the limit of {} bytes",
                            limits.max_file_bytes
                        ),
                    ));
                }
            }
            SourceContent::Bytes(bytes) => {
                if !is_manifest_path(path) || stopped {
                    continue;
                }
                manifests += 1;
                if manifests > limits.max_files {
                    diags.push(Diagnostic::file(
                        path,
                        format!(
                            "too many manifest files: the limit is {}; later files were not read",
                            limits.max_files
                        ),
                    ));
                    stopped = true;
                    continue;
                }
                let size = bytes.len() as u64;
                if size > limits.max_file_bytes {
                    diags.push(Diagnostic::file(
                        path,
                        format!(
                            "file is {size} bytes, over the limit of {} bytes",
                            limits.max_file_bytes
                        ),
                    ));
                    continue;
                }
                total += size;
                if total > limits.max_total_bytes {
                    diags.push(Diagnostic::file(
                        path,
                        format!(
                            "manifests total more than {} bytes; later files were not read",
                            limits.max_total_bytes
                        ),
                    ));
                    stopped = true;
                    continue;
                }
                load_file(path, bytes, limits, &mut loaded, &mut diags);
            }
        }
    }
    if loaded.len() > limits.max_objects {
        diags.push(Diagnostic::file(
            &loaded[limits.max_objects].path,
            format!("more than {} objects in the tree", limits.max_objects),
        ));
        loaded.truncate(limits.max_objects);
    }
    let settings = checks::check_all(&loaded, &mut diags, warnings);
    if !diags.is_empty() {
        diags.sort();
        diags.dedup();
        return Err(diags);
    }
    Ok(build(loaded, settings))
}

fn load_file(
    path: &str,
    bytes: &[u8],
    limits: &Limits,
    loaded: &mut Vec<Loaded>,
    diags: &mut Vec<Diagnostic>,
) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let col = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            diags.push(Diagnostic::new(
                path,
                u32::try_from(line).unwrap_or(u32::MAX),
                u32::try_from(col).unwrap_or(u32::MAX),
                format!(
                    "file is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ));
            return;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = match yaml::parse_documents(text, &limits.yaml) {
        Ok(d) => d,
        Err(e) => {
            diags.push(at(path, e.pos, e.message));
            return;
        }
    };
    if docs.len() > 1 {
        if let Some(d) = docs.iter().find(|d| d.value.get("sops").is_some()) {
            diags.push(at(
                path,
                d.spans.key_pos("/sops"),
                "a SOPS-encrypted document must be the only document in its file",
            ));
            return;
        }
    }
    for doc in docs {
        if let Some(mut l) = load_document(path, doc, diags) {
            if matches!(&l.object, Object::Secret(s) if s.sops.is_some()) {
                // The file holds this one document (checked above).
                match crate::sops::SealedDocument::parse(text, &limits.yaml) {
                    Ok(d) => l.sealed = Some(d),
                    Err(e) => {
                        diags.push(at(path, l.spans.key_pos("/sops"), e));
                        continue;
                    }
                }
            }
            loaded.push(l);
        }
    }
}

/// Kinds users often have that kommit does not run, with what to use instead.
fn unsupported_kind_hint(kind: &str) -> &'static str {
    match kind {
        "Ingress" | "IngressClass" | "Gateway" | "HTTPRoute" => {
            "; expose a Service with type NodePort instead"
        }
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "ServiceAccount" => {
            "; kommit has no Kubernetes API for pods to call, so RBAC objects have no effect"
        }
        _ => "",
    }
}

fn supported_kinds() -> String {
    Kind::ALL
        .iter()
        .filter(|k| **k != Kind::ClusterConfig)
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_document(path: &str, doc: yaml::Document, diags: &mut Vec<Diagnostic>) -> Option<Loaded> {
    let spans = doc.spans;
    let Value::Object(map) = &doc.value else {
        diags.push(at(
            path,
            doc.start,
            "a manifest must be a mapping with `apiVersion` and `kind`",
        ));
        return None;
    };
    let api = map.get("apiVersion");
    let kind_v = map.get("kind");
    let (Some(Value::String(api)), Some(Value::String(kind_name))) = (api, kind_v) else {
        if !matches!(kind_v, Some(Value::String(_))) {
            diags.push(at(
                path,
                spans.value_pos(""),
                "`kind` is required and must be a string",
            ));
        }
        if !matches!(api, Some(Value::String(_))) {
            diags.push(at(
                path,
                spans.value_pos(""),
                "`apiVersion` is required and must be a string",
            ));
        }
        return None;
    };
    if map.contains_key("sops") && (kind_name.starts_with("ENC[") || api.starts_with("ENC[")) {
        diags.push(at(
            path,
            spans.value_pos("/kind"),
            format!(
                "`kind` and `apiVersion` are SOPS-encrypted; {}",
                sops::KEEP_CLEAR
            ),
        ));
        return None;
    }
    let Some(kind) = Kind::from_name(kind_name) else {
        diags.push(at(
            path,
            spans.value_pos("/kind"),
            format!(
                "kind `{kind_name}` ({api}) is not supported{}; supported kinds: {}",
                unsupported_kind_hint(kind_name),
                supported_kinds()
            ),
        ));
        return None;
    };
    if api != kind.api_version() {
        diags.push(at(
            path,
            spans.value_pos("/apiVersion"),
            format!(
                "apiVersion `{api}` is not supported for {}; use `{}`",
                kind.name(),
                kind.api_version()
            ),
        ));
        return None;
    }
    let before = diags.len();
    if kind == Kind::Secret && map.contains_key("sops") {
        sops::check_secret(path, &doc.value, &spans, diags);
        if diags.len() > before {
            return None;
        }
    }
    schema_errors(path, kind, &doc.value, &spans, diags);
    if diags.len() > before {
        return None;
    }
    let object = match Object::from_value(kind, &doc.value) {
        Ok(o) => o,
        Err(e) => {
            // The schema and the model agree (a test checks it), so this is rare.
            diags.push(at(path, spans.value_pos(""), format!("{e}")));
            return None;
        }
    };
    let (namespace, name) = match &doc.value["metadata"] {
        Value::Object(m) => (
            m.get("namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            m.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        _ => (None, String::new()),
    };
    if !kind.namespaced() && namespace.is_some() {
        diags.push(at(
            path,
            spans.key_pos("/metadata/namespace"),
            format!(
                "{} objects are not namespaced; remove `metadata.namespace`",
                kind.name()
            ),
        ));
        return None;
    }
    let namespace = if kind.namespaced() {
        namespace.unwrap_or_else(|| "default".to_owned())
    } else {
        String::new()
    };
    Some(Loaded {
        kind,
        path: path.to_owned(),
        namespace,
        name,
        spans,
        object,
        sealed: None,
    })
}

/// Runs the kind's JSON Schema and turns each error into a diagnostic at its field.
fn schema_errors(
    path: &str,
    kind: Kind,
    value: &Value,
    spans: &SpanIndex,
    diags: &mut Vec<Diagnostic>,
) {
    use jsonschema::error::ValidationErrorKind as K;
    let validator = schema::validator(kind);
    let errors: Vec<_> = validator.iter_errors(value).collect();
    // Paths that already have an unknown-field error: a oneOf/anyOf failure there is noise.
    let unknown_at: Vec<String> = errors
        .iter()
        .filter(|e| matches!(e.kind(), K::AdditionalProperties { .. }))
        .map(|e| e.instance_path().as_str().to_owned())
        .collect();
    for e in &errors {
        let ptr = e.instance_path().as_str().to_owned();
        let d = match e.kind() {
            K::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let child = format!("{ptr}/{}", yaml::escape_segment(name));
                    let field = field_path(&child);
                    diags.push(at(
                        path,
                        spans.key_pos(&child),
                        format!(
                            "`{field}` is not supported{}",
                            crate::hints::unsupported_field(kind, &field)
                        ),
                    ));
                }
                continue;
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let child = format!("{ptr}/{}", yaml::escape_segment(name));
                at(
                    path,
                    spans.value_pos(&ptr),
                    format!("`{}` is required", field_path(&child)),
                )
            }
            K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } | K::AnyOf { .. }
                if unknown_at.iter().any(|u| u.starts_with(&ptr)) =>
            {
                continue;
            }
            _ => {
                let (inner, message) = describe(value, e);
                at(path, spans.value_pos(&inner), message)
            }
        };
        diags.push(d);
    }
}

/// A one-line message for a schema error that is not about unknown or missing fields, and
/// the pointer it is about (deeper than the error's own for optional fields).
fn describe(root: &Value, e: &jsonschema::ValidationError<'_>) -> (String, String) {
    use jsonschema::error::ValidationErrorKind as K;
    if let K::AnyOf { context } = e.kind() {
        // Optional fields are `anyOf: [T, null]`: explain the failure against T.
        let is_null_branch = |b: &Vec<jsonschema::ValidationError<'static>>| {
            b.len() == 1
                && matches!(
                    b[0].kind(),
                    K::Type {
                        kind: jsonschema::error::TypeKind::Single(jsonschema::JsonType::Null)
                    }
                )
        };
        let real: Vec<_> = context.iter().filter(|b| !is_null_branch(b)).collect();
        if let [only] = real.as_slice() {
            if let Some(inner) = only.first() {
                return describe(root, inner);
            }
        }
    }
    (
        e.instance_path().as_str().to_owned(),
        describe_inner(root, e),
    )
}

fn describe_inner(root: &Value, e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    let ptr = e.instance_path().as_str();
    let field = &field_path(ptr);
    let instance = root.pointer(ptr).unwrap_or(&Value::Null);
    let shown = match instance {
        Value::String(s) => format!("\"{}\"", s.chars().take(80).collect::<String>()),
        other => {
            let s = other.to_string();
            if s.len() > 80 {
                format!("{}...", &s[..s.floor_char_boundary(80)])
            } else {
                s
            }
        }
    };
    match e.kind() {
        K::Pattern { pattern } if pattern == model::meta::QUANTITY => {
            format!("`{field}`: invalid quantity {shown}: expected a number with an optional suffix such as 128Mi, 1G, 0.5 or 250m")
        }
        K::AnyOf { .. } if instance.is_string() && is_quantity_field(field) => {
            format!("`{field}`: invalid quantity {shown}: expected a number with an optional suffix such as 128Mi, 1G, 0.5 or 250m")
        }
        K::Pattern { pattern }
            if pattern == model::meta::DNS1123_SUBDOMAIN
                || pattern == model::meta::DNS1123_LABEL =>
        {
            let what = if pattern == model::meta::DNS1123_LABEL {
                "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
            } else {
                "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
            };
            format!("`{field}`: invalid name {shown}: must be {what}")
        }
        K::Enum { .. } if !crate::hints::unsupported_value(field, instance).is_empty() => {
            format!(
                "`{field}`: {shown} is not supported{}",
                crate::hints::unsupported_value(field, instance)
            )
        }
        K::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            format!("`{field}`: {shown} is not one of: {}", opts.join(", "))
        }
        K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } => {
            format!("`{field}`: {}", one_of_message(field))
        }
        K::AnyOf { .. } => format!("`{field}`: {shown} does not have an allowed type or form"),
        _ => format!("`{field}`: {}", e.masked()),
    }
}

fn is_quantity_field(field: &str) -> bool {
    field.contains(".requests.") || field.contains(".limits.") || field.ends_with("sizeLimit")
}

fn one_of_message(field: &str) -> &'static str {
    let last = field.rsplit('.').next().unwrap_or(field);
    if last.starts_with("volumes[") {
        "a volume needs exactly one of `emptyDir`, `hostPath`, `configMap`, `secret` or `persistentVolumeClaim`"
    } else if last.ends_with("Probe") {
        "a probe needs exactly one of `httpGet`, `tcpSocket` or `exec`"
    } else if last == "valueFrom" {
        "`valueFrom` needs exactly one of `configMapKeyRef`, `secretKeyRef` or `fieldRef`"
    } else {
        "must match exactly one of the allowed forms"
    }
}

fn build(loaded: Vec<Loaded>, settings: model::config::ClusterSettings) -> DesiredState {
    let mut s = DesiredState {
        config: settings,
        ..DesiredState::default()
    };
    for l in loaded {
        let key = model::key(&l.namespace, &l.name);
        match l.object {
            Object::Namespace(o) => {
                s.namespaces.insert(l.name, o);
            }
            Object::StorageClass(o) => {
                s.storage_classes.insert(l.name, o);
            }
            Object::PersistentVolume(o) => {
                s.persistent_volumes.insert(l.name, o);
            }
            Object::PodDisruptionBudget(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.pod_disruption_budgets.insert(key, o);
            }
            Object::Pod(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.pods.insert(key, o);
            }
            Object::Service(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.services.insert(key, o);
            }
            Object::ConfigMap(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.config_maps.insert(key, o);
            }
            Object::Secret(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                if let Some(d) = l.sealed {
                    s.sealed_secrets.insert(key.clone(), d);
                }
                s.secrets.insert(key, o);
            }
            Object::PersistentVolumeClaim(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.persistent_volume_claims.insert(key, o);
            }
            Object::Deployment(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.deployments.insert(key, o);
            }
            Object::DaemonSet(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.daemon_sets.insert(key, o);
            }
            Object::ReplicaSet(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.replica_sets.insert(key, o);
            }
            Object::StatefulSet(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.stateful_sets.insert(key, o);
            }
            Object::Job(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.jobs.insert(key, o);
            }
            Object::CronJob(mut o) => {
                o.metadata.namespace = Some(ns_label(&l.namespace));
                s.cron_jobs.insert(key, o);
            }
            Object::ClusterConfig(_) => {}
        }
    }
    s
}

fn ns_label(ns: &str) -> model::meta::Label {
    model::meta::Label::new(ns).expect("namespaces were validated as DNS-1123 labels")
}
