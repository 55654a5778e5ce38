//! The schema files work with an independent validator: check-jsonschema (Python, installed by
//! `.ci/run`) accepts the valid corpus and rejects the same structural errors kommit rejects.
//!
//! Set `KOMMIT_SKIP_EXTERNAL=1` to skip when check-jsonschema is not installed; without that
//! variable a missing tool is a failure, never a silent pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_schemas::{validate, Kind, Limits, SourceTree};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool() -> Option<&'static str> {
    let ok = Command::new("check-jsonschema")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("check-jsonschema");
    }
    if std::env::var_os("KOMMIT_SKIP_EXTERNAL").is_some() {
        eprintln!("skipping: check-jsonschema not installed and KOMMIT_SKIP_EXTERNAL is set");
        return None;
    }
    panic!("check-jsonschema is not installed (pip install check-jsonschema), set KOMMIT_SKIP_EXTERNAL=1 to skip");
}

fn schema_path(kind: Kind) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(kind.schema_file())
}

/// Runs check-jsonschema once per kind over every document of that kind; returns, per
/// document index, whether it was accepted. One process per kind keeps the test fast.
fn external_verdicts(tool: &str, docs: &[(Kind, String)], dir: &Path) -> Vec<bool> {
    let mut verdicts = vec![true; docs.len()];
    for kind in Kind::ALL {
        let files: Vec<(usize, PathBuf)> = docs
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| *k == kind)
            .map(|(i, (_, d))| {
                let f = dir.join(format!("doc{i}.yaml"));
                std::fs::write(&f, d).unwrap();
                (i, f)
            })
            .collect();
        if files.is_empty() {
            continue;
        }
        let out = Command::new(tool)
            .arg("--schemafile")
            .arg(schema_path(kind))
            .args(["-o", "json"])
            .args(files.iter().map(|(_, f)| f))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check-jsonschema output is not JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            report["parse_errors"]
                .as_array()
                .is_none_or(|a| a.is_empty()),
            "{report}"
        );
        for err in report["errors"].as_array().into_iter().flatten() {
            let name = err["filename"].as_str().unwrap();
            let (i, _) = files
                .iter()
                .find(|(_, f)| f.to_str() == Some(name) || f.ends_with(name))
                .unwrap();
            verdicts[*i] = false;
        }
    }
    verdicts
}

fn kommit_accepts(yaml: &str) -> bool {
    let mut t = SourceTree::default();
    t.add("doc.yaml", yaml.as_bytes());
    match validate(&t, &Limits::default()) {
        Ok(_) => true,
        Err(d) => {
            // Only structural (schema) errors count here; reference checks are kommit's own.
            !d.iter().any(|d| d.message.starts_with('`'))
        }
    }
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{containerPort: 80}]
        resources:
          requests: {cpu: 100m, memory: 64Mi}
";

/// A Secret as `kommit secrets encrypt` writes it (values and stanza shortened: validation
/// never decrypts).
const SOPS_SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: ENC[AES256_GCM,data:Wz7mfLb3fQ==,iv:q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=,tag:3q2+796tvu/erb7v3q2+7w==,type:str]
sops:
  age:
  - recipient: age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569
    enc: |
      -----BEGIN AGE ENCRYPTED FILE-----
      YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==
      -----END AGE ENCRYPTED FILE-----
  lastmodified: \"2025-11-24T16:00:00Z\"
  mac: ENC[AES256_GCM,data:AAAA,iv:q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=,tag:3q2+796tvu/erb7v3q2+7w==,type:str]
  encrypted_regex: ^(data|stringData)$
  version: 3.9.4
";

#[test]
fn check_jsonschema_agrees_on_valid_and_structurally_invalid_documents() {
    let Some(tool) = tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    // (description, kind, document, valid?)
    let table: Vec<(&str, Kind, String, bool)> = vec![
        ("valid deployment", Kind::Deployment, DEPLOY.into(), true),
        ("unsupported field", Kind::Deployment, DEPLOY.replace("      containers:", "      hostNetwork: true\n      containers:"), false),
        ("missing selector", Kind::Deployment, DEPLOY.replace("  selector:\n    matchLabels: {app: web}\n", ""), false),
        ("replicas as a word", Kind::Deployment, DEPLOY.replace("replicas: 2", "replicas: two"), false),
        ("negative replicas", Kind::Deployment, DEPLOY.replace("replicas: 2", "replicas: -1"), false),
        ("bad quantity", Kind::Deployment, DEPLOY.replace("memory: 64Mi", "memory: 64XB"), false),
        ("bad name", Kind::Deployment, DEPLOY.replace("name: web\nspec", "name: Web_App\nspec"), false),
        ("port zero", Kind::Deployment, DEPLOY.replace("containerPort: 80", "containerPort: 0"), false),
        ("no containers", Kind::Deployment, DEPLOY.replace("      containers:\n      - name: web\n        image: nginx\n        ports: [{containerPort: 80}]\n        resources:\n          requests: {cpu: 100m, memory: 64Mi}\n", "      containers: []\n"), false),
        ("bad restart policy", Kind::Deployment, DEPLOY.replace("      containers:", "      restartPolicy: Sometimes\n      containers:"), false),
        ("metadata as a list", Kind::Deployment, DEPLOY.replace("metadata:\n  name: web\n", "metadata: [web]\n"), false),
        ("probe with two handlers", Kind::Pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    livenessProbe:\n      exec: {command: [true]}\n      tcpSocket: {port: 80}\n".into(), false),
        ("volume without source", Kind::Pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: busybox}\n  volumes:\n  - name: v\n".into(), false),
        ("service type LoadBalancer", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n".into(), true),
        ("service type ExternalName", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: ExternalName\n  externalName: db.example.com\n".into(), true),
        ("load balancer with policies", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Cluster\n  allocateLoadBalancerNodePorts: false\n  loadBalancerClass: example.com/lb\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  ipFamilies: [IPv4]\n  ipFamilyPolicy: SingleStack\n  ports: [{port: 80}]\n".into(), true),
        ("service type Magic", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: Magic\n  ports: [{port: 80}]\n".into(), false),
        ("affinity timeout zero", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n".into(), false),
        ("IPv6 family", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n".into(), false),
        ("RequireDualStack", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n".into(), false),
        ("traffic policy Nearest", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: NodePort\n  externalTrafficPolicy: Nearest\n  ports: [{port: 80}]\n".into(), false),
        ("externalIPs", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  externalIPs: [192.0.2.1]\n  ports: [{port: 80}]\n".into(), false),
        ("dnsPolicy None with dnsConfig", Kind::Pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsPolicy: None\n  dnsConfig:\n    nameservers: [1.1.1.1]\n    options: [{name: ndots, value: \"2\"}]\n  containers:\n  - {name: c, image: busybox}\n".into(), true),
        ("dnsConfig option without a name", Kind::Pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsConfig:\n    options: [{value: \"2\"}]\n  containers:\n  - {name: c, image: busybox}\n".into(), false),
        ("node port range", Kind::ClusterConfig, "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  serviceNodePortRange: 30000-32767\n".into(), true),
        ("node port range as a number", Kind::ClusterConfig, "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  serviceNodePortRange: 30000\n".into(), false),
        ("valid service", Kind::Service, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n".into(), true),
        ("valid cluster config", Kind::ClusterConfig, "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  podCIDR: 10.244.0.0/16\n".into(), true),
        ("bad cidr", Kind::ClusterConfig, "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  podCIDR: 10.244.0.0/99\n".into(), false),
        ("encrypted secrets required", Kind::ClusterConfig, "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  requireEncryptedSecrets: true\n".into(), true),
        ("SOPS-encrypted secret", Kind::Secret, SOPS_SECRET.into(), true),
        ("SOPS block with an unknown field", Kind::Secret, SOPS_SECRET.replace("  version:", "  surprise: 1\n  version:"), false),
        ("SOPS block without a MAC", Kind::Secret, SOPS_SECRET.replace("  mac: ENC", "  nomac: ENC"), false),
    ];
    let docs: Vec<(Kind, String)> = table.iter().map(|(_, k, d, _)| (*k, d.clone())).collect();
    let verdicts = external_verdicts(tool, &docs, dir.path());
    let mut mismatches = Vec::new();
    for (n, (what, kind, doc, valid)) in table.iter().enumerate() {
        let ext = verdicts[n];
        let ours = if *kind == Kind::ClusterConfig {
            let mut t = SourceTree::default();
            t.add("kommit.yaml", doc.as_bytes());
            validate(&t, &Limits::default()).is_ok()
        } else {
            kommit_accepts(doc)
        };
        if ext != *valid || ours != *valid {
            mismatches.push(format!(
                "{what}: expected valid={valid}, check-jsonschema={ext}, kommit={ours}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn check_jsonschema_accepts_the_valid_corpus() {
    let Some(tool) = tool() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid");
    let tmp = tempfile::tempdir().unwrap();
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in text.split("\n---\n") {
            let kind_line = doc.lines().find(|l| l.starts_with("kind: ")).unwrap();
            let kind = Kind::from_name(kind_line.trim_start_matches("kind: ").trim()).unwrap();
            docs.push((kind, doc.to_string()));
        }
    }
    assert!(docs.len() >= 12);
    for (ok, (_, doc)) in external_verdicts(tool, &docs, tmp.path()).iter().zip(&docs) {
        assert!(ok, "check-jsonschema rejected:\n{doc}");
    }
}
