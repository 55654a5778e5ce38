//! `validate` over whole trees: a table of valid Kubernetes-shaped manifests covering every
//! kind, and a table of invalid ones, one per check, each pinned to its exact
//! `file:line:col: error: message`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_schemas::{validate, Limits, SourceContent, SourceFile, SourceTree};
use std::path::Path;
use std::time::{Duration, Instant};

fn tree_from_dir(dir: &Path) -> SourceTree {
    let mut tree = SourceTree::default();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        tree.add(name, std::fs::read(&p).unwrap());
    }
    tree
}

fn tree(files: &[(&str, &str)]) -> SourceTree {
    let mut t = SourceTree::default();
    for (p, c) in files {
        t.add(*p, c.as_bytes());
    }
    t
}

fn valid_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid")
}

#[test]
fn valid_tree_covering_every_kind() {
    let state = match validate(&tree_from_dir(&valid_dir()), &Limits::default()) {
        Ok(s) => s,
        Err(d) => panic!(
            "unexpected diagnostics:\n{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    assert_eq!(state.config.name, "test-cluster");
    assert_eq!(
        state.config.host_path_allowlist,
        vec!["/var/log".to_string()]
    );
    assert_eq!(state.namespaces.keys().collect::<Vec<_>>(), ["shop"]);
    assert_eq!(state.pods.keys().collect::<Vec<_>>(), ["shop/debug"]);
    assert_eq!(state.deployments.keys().collect::<Vec<_>>(), ["shop/web"]);
    assert_eq!(
        state.daemon_sets.keys().collect::<Vec<_>>(),
        ["default/node-exporter"]
    );
    assert_eq!(state.stateful_sets.keys().collect::<Vec<_>>(), ["shop/db"]);
    assert_eq!(state.jobs.keys().collect::<Vec<_>>(), ["default/pi"]);
    assert_eq!(
        state.cron_jobs.keys().collect::<Vec<_>>(),
        ["default/hello"]
    );
    assert_eq!(
        state.services.keys().collect::<Vec<_>>(),
        [
            "shop/db",
            "shop/search",
            "shop/web",
            "shop/web-external",
            "shop/web-lb",
            "shop/web-public"
        ]
    );
    assert_eq!(
        state.config.service_node_port_range.to_string(),
        "30000-32000"
    );
    assert_eq!(state.config_maps.len(), 1);
    assert_eq!(state.secrets.len(), 1);
    assert_eq!(state.persistent_volume_claims.len(), 1);
    // Defaults that identify objects are filled in.
    assert_eq!(
        state.daemon_sets["default/node-exporter"]
            .metadata
            .namespace
            .as_ref()
            .unwrap()
            .as_str(),
        "default"
    );
    let web = &state.deployments["shop/web"].spec.template.spec.containers[0];
    assert_eq!(
        web.resources.as_ref().unwrap().requests["memory"].units(),
        128 * 1024 * 1024
    );
    assert_eq!(
        state.persistent_volumes.keys().collect::<Vec<_>>(),
        ["disk-a"]
    );
    assert_eq!(
        state.pod_disruption_budgets.keys().collect::<Vec<_>>(),
        ["shop/db"]
    );
    assert_eq!(state.object_ids().len(), 18);
}

#[test]
fn digest_ignores_file_order_and_layout() {
    let a = validate(&tree_from_dir(&valid_dir()), &Limits::default()).unwrap();
    // The same documents, in reverse order and merged into differently named files.
    let mut t = tree_from_dir(&valid_dir());
    t.files.reverse();
    for f in &mut t.files {
        if f.path != "kommit.yaml" {
            f.path = format!("moved/{}", f.path);
        }
    }
    let b = validate(&t, &Limits::default()).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.canonical_bytes(), b.canonical_bytes());
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
";

/// One row: the files, extra limits, and every diagnostic expected, in order.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    limits: Limits,
    want: Vec<&'static str>,
}

fn case(name: &'static str, files: &[(&'static str, &str)], want: &[&'static str]) -> Case {
    Case {
        name,
        files: files.iter().map(|(p, c)| (*p, c.to_string())).collect(),
        limits: Limits::default(),
        want: want.to_vec(),
    }
}

fn invalid_cases() -> Vec<Case> {
    let mut cases = vec![
        case("yaml syntax", &[("bad.yaml", "apiVersion: v1\nkind: [Pod\nmetadata: {}\n")], &[
            "bad.yaml:3:9: error: invalid YAML: illegal placement of ':' indicator",
        ]),
        case("dns-1123 name", &[("a.yaml", &DEPLOY.replace("name: web\nspec", "name: Web_1\nspec"))], &[
            "a.yaml:4:9: error: `metadata.name`: invalid name \"Web_1\": must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
        ]),
        case("quantity", &[("a.yaml", &format!("{DEPLOY}        resources:\n          limits: {{memory: 12XB}}\n"))], &[
            "a.yaml:16:28: error: `spec.template.spec.containers[0].resources.limits.memory`: invalid quantity \"12XB\": expected a number with an optional suffix such as 128Mi, 1G, 0.5 or 250m",
        ]),
        case("node-local seccomp profile", &[("p.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  securityContext:\n    seccompProfile:\n      type: Localhost\n  containers:\n  - name: c\n    image: busybox:1.36\n")], &[
            "p.yaml:8:13: error: `spec.securityContext.seccompProfile.type`: \"Localhost\" is not supported: kommit has no node-local seccomp profiles; RuntimeDefault (the default) is the container runtimes' filter",
        ]),
        case("selector mismatch", &[("a.yaml", &DEPLOY.replace("matchLabels: {app: web}", "matchLabels: {app: api}"))], &[
            "a.yaml:7:5: error: `spec.selector` does not match the template's labels (`spec.template.metadata.labels`)",
        ]),
        case("duplicate across files", &[("a.yaml", DEPLOY), ("b/c.yaml", DEPLOY)], &[
            "b/c.yaml:4:9: error: duplicate Deployment default/web: first defined at a.yaml:4:9",
        ]),
        case("dangling configMap, secret and claim", &[("a.yaml", &format!(
            "{DEPLOY}        envFrom:\n        - secretRef: {{name: creds}}\n      volumes:\n      - name: c\n        configMap: {{name: settings}}\n      - name: d\n        persistentVolumeClaim: {{claimName: data}}\n      - name: e\n        configMap: {{name: maybe, optional: true}}\n"))], &[
            "a.yaml:16:29: error: Secret `creds` is not defined in namespace `default` by any file (mark the reference `optional: true` if that is intended)",
            "a.yaml:19:27: error: ConfigMap `settings` is not defined in namespace `default` by any file (mark the reference `optional: true` if that is intended)",
            "a.yaml:21:44: error: PersistentVolumeClaim `data` is not defined in namespace `default` by any file (mark the reference `optional: true` if that is intended)",
        ]),
        case("missing configMap key", &[("a.yaml", &format!(
            "{DEPLOY}        env:\n        - name: X\n          valueFrom:\n            configMapKeyRef: {{name: cm, key: nope}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{yes: \"1\"}}\n"))], &[
            "a.yaml:18:46: error: ConfigMap `cm` has no key `nope`",
        ]),
        case("hostPath outside the allowlist and with ..", &[
            ("kommit.yaml", "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  hostPathAllowlist: [/srv]\n"),
            ("a.yaml", &format!("{DEPLOY}      volumes:\n      - name: a\n        hostPath: {{path: /etc}}\n      - name: b\n        hostPath: {{path: /srv/../etc}}\n")),
        ], &[
            "a.yaml:17:26: error: hostPath \"/etc\" is not under an allowlisted path (/srv)",
            "a.yaml:19:26: error: hostPath \"/srv/../etc\" must not contain `..`",
        ]),
        case("unknown kind and apiVersion", &[("a.yaml", "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n---\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: y}\n")], &[
            "a.yaml:2:7: error: kind `HorizontalPodAutoscaler` (autoscaling/v2) is not supported; supported kinds: Namespace, Pod, Service, ConfigMap, Secret, PersistentVolumeClaim, StorageClass, PersistentVolume, PodDisruptionBudget, Deployment, DaemonSet, ReplicaSet, StatefulSet, Job, CronJob",
            "a.yaml:5:13: error: apiVersion `extensions/v1beta1` is not supported for Deployment; use `apps/v1`",
        ]),
        case("pod disruption budget bounds", &[("a.yaml", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec:\n  minAvailable: 1\n  maxUnavailable: 120%\n  selector: {matchLabels: {app: x}}\n")], &[
            "a.yaml:6:19: error: `maxUnavailable`: \"120%\" must be a count or a percentage such as \"25%\"",
            "a.yaml:6:19: error: `minAvailable` and `maxUnavailable` cannot both be set",
        ]),
        case("persistent volume sources", &[("a.yaml", "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nspec:\n  capacity: {storage: 1Gi}\n  local: {path: /mnt/a}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: b}\nspec:\n  capacity: {storage: 1Gi}\n  hostPath: {path: /etc}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: c}\nspec:\n  capacity: {}\n  accessModes: [ReadWriteOnce]\n")], &[
            "a.yaml:6:10: error: a `local` PersistentVolume needs `spec.nodeAffinity`: the nodes that hold it",
            "a.yaml:13:20: error: hostPath \"/etc\" is not allowed: kommit.yaml spec.hostPathAllowlist is empty",
            "a.yaml:19:3: error: a PersistentVolume needs `local` or `hostPath`: kommit has node-local volumes only",
            "a.yaml:19:13: error: `spec.capacity.storage` is required",
        ]),
        case("unsupported field", &[("a.yaml", &DEPLOY.replace("      containers:", "      hostNetwork: true\n      containers:"))], &[
            "a.yaml:12:7: error: `spec.template.spec.hostNetwork` is not supported: every kommit pod has its own network namespace; expose it with a NodePort or LoadBalancer Service, or a container's `hostPort`",
        ]),
        case("required field", &[("a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")], &[
            "a.yaml:1:1: error: `spec` is required",
        ]),
        case("enum value", &[("a.yaml", &DEPLOY.replace("      containers:", "      restartPolicy: Sometimes\n      containers:"))], &[
            "a.yaml:12:22: error: `spec.template.spec.restartPolicy`: \"Sometimes\" is not one of: Always, OnFailure, Never",
        ]),
        case("privileged denied", &[("a.yaml", &format!("{DEPLOY}        securityContext: {{privileged: true}}\n"))], &[
            "a.yaml:15:39: error: privileged containers are not allowed (set spec.allowPrivileged in kommit.yaml)",
        ]),
        case("namespace not defined", &[("a.yaml", &DEPLOY.replace("name: web\nspec", "name: web\n  namespace: shop\nspec"))], &[
            "a.yaml:5:14: error: namespace `shop` is not defined in any file (add a Namespace manifest)",
        ]),
        case("alias bomb", &[("bomb.yaml", &alias_bomb())], &[
            "bomb.yaml:5:8: error: invalid YAML: aliases expand to more than 20000 events (alias bomb?)",
        ]),
        case("deep nesting", &[("deep.yaml", &format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200)))], &[
            "deep.yaml:1:67: error: invalid YAML: YAML nests deeper than 64 levels",
        ]),
    ];
    let mut small = case(
        "per-file size cap",
        &[("a.yaml", DEPLOY)],
        &["a.yaml:1:1: error: file is 223 bytes, over the limit of 100 bytes"],
    );
    small.limits.max_file_bytes = 100;
    cases.push(small);
    let mut total = case(
        "total size cap",
        &[
            ("a.yaml", DEPLOY),
            ("b.yaml", &DEPLOY.replace("web", "api")),
        ],
        &["b.yaml:1:1: error: manifests total more than 300 bytes; later files were not read"],
    );
    total.limits.max_total_bytes = 300;
    cases.push(total);
    cases
}

fn alias_bomb() -> String {
    let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='m' {
        s.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        prev = c;
    }
    s
}

#[test]
fn invalid_trees_report_exact_positions_and_messages() {
    let mut failures = Vec::new();
    for c in invalid_cases() {
        let mut t = SourceTree::default();
        for (p, content) in &c.files {
            t.add(*p, content.as_bytes());
        }
        let start = Instant::now();
        let got: Vec<String> = match validate(&t, &c.limits) {
            Ok(_) => vec!["(valid)".into()],
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        };
        // Budgets must refuse hostile input fast; the explicit goal is well under 1 s.
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{}: took {:?}",
            c.name,
            start.elapsed()
        );
        if got != c.want {
            failures.push(format!(
                "case `{}`:\n  want {:#?}\n  got  {:#?}",
                c.name, c.want, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tree_level_problems() {
    let mut t = tree(&[("ok.yaml", DEPLOY)]);
    t.files.push(SourceFile {
        path: "link.yaml".into(),
        content: SourceContent::Symlink {
            target: "../../etc/passwd".into(),
        },
    });
    t.files.push(SourceFile {
        path: "inside.yaml".into(),
        content: SourceContent::Symlink {
            target: "ok.yaml".into(),
        },
    });
    t.files.push(SourceFile {
        path: "docs/readme".into(),
        content: SourceContent::Symlink {
            target: "../README.md".into(),
        },
    });
    t.files.push(SourceFile {
        path: "vendor/lib".into(),
        content: SourceContent::Submodule,
    });
    t.files.push(SourceFile {
        path: "big.yaml".into(),
        content: SourceContent::TooLarge { size: 5_000_000 },
    });
    t.add(
        "latin1.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n".to_vec(),
    );
    t.add("notes.txt", b"\xff\xfe not yaml, ignored".to_vec());
    let got: Vec<String> = validate(&t, &Limits::default())
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(got, vec![
        "big.yaml:1:1: error: file is 5000000 bytes, over the limit of 1048576 bytes",
        "inside.yaml:1:1: error: symlinked manifests are not followed (to `ok.yaml`); commit the file itself",
        "latin1.yaml:3:21: error: file is not valid UTF-8 (invalid byte at offset 51)",
        "link.yaml:1:1: error: symlink points outside the tree (to `../../etc/passwd`)",
        "vendor/lib:1:1: error: submodules are not supported in the desired-state tree",
    ]);
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let files: Vec<(&str, String)> = vec![
        (
            "a.yaml",
            DEPLOY.replace("name: web\nspec", "name: Bad_Name\nspec"),
        ),
        (
            "b.yaml",
            "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n".into(),
        ),
        ("c.yaml", "key: [unclosed\n".into()),
        (
            "d.yaml",
            DEPLOY.replace(
                "      containers:",
                "      hostIPC: true\n      containers:",
            ),
        ),
    ];
    let mut t = SourceTree::default();
    for (p, c) in &files {
        t.add(*p, c.as_bytes());
    }
    let diags = validate(&t, &Limits::default()).unwrap_err();
    let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]);
}

#[test]
fn commit_url_reaches_the_settings_and_a_bad_one_is_one_line() {
    let good = "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\nspec:\n  commitURL: \"https://forge.example/o/r/commit/{sha}\"\n";
    let d = validate(&tree(&[("kommit.yaml", good)]), &Limits::default()).expect("valid");
    assert_eq!(
        d.config.commit_url.as_deref(),
        Some("https://forge.example/o/r/commit/{sha}")
    );
    let unset = validate(&tree(&[]), &Limits::default()).expect("valid");
    assert_eq!(unset.config.commit_url, None);
    for bad in [
        "https://forge.example/o/r/commit/HEAD",
        "javascript:alert(1)//{sha}",
        "https://forge.example/\"><script>/{sha}",
    ] {
        let text = good.replace(
            "https://forge.example/o/r/commit/{sha}",
            &bad.replace('"', "\\\""),
        );
        let errs = validate(&tree(&[("kommit.yaml", &text)]), &Limits::default()).expect_err(bad);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        let line = errs[0].to_string();
        assert!(
            line.starts_with("kommit.yaml:5:14: error:") && line.contains("commitURL"),
            "{line}"
        );
    }
}
