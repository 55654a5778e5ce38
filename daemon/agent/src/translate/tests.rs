use super::*;
use crate::view::view;
use kommit_reconcilers::{ClusterState, Entry, NodeInfo};
use kommit_schemas::{Limits, SourceTree};

/// The state after adopting `files` on one node `n1`, and n1's view of it.
fn adopted(files: &[(&str, &str)]) -> (ClusterState, crate::view::View) {
    let mut tree = SourceTree::default();
    for (p, y) in files {
        tree.add(*p, y.as_bytes().to_vec());
    }
    let desired = match kommit_schemas::validate(&tree, &Limits::default()) {
        Ok(d) => d,
        Err(d) => panic!("invalid test manifests: {d:?}"),
    };
    let mut s = ClusterState::new();
    s.apply(
        &Entry::NodeUp {
            info: NodeInfo {
                name: "n1".into(),
                address: "192.0.2.7:7946".into(),
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                pods: 110,
                labels: BTreeMap::new(),
                taints: vec![],
            },
        },
        1,
    );
    s.apply(
        &Entry::Adopt {
            commit: "c1".into(),
            parent: None,
            by: None,
            digest: desired.digest(),
            desired,
        },
        2,
    );
    let v = view(&s, "n1", HOST_RESOLV, &SecretKeys::default());
    (s, v)
}

/// The node's resolv.conf: systemd-resolved's loopback resolver (unreachable from pods) and a search
/// domain pods inherit.
const HOST_RESOLV: &str = "nameserver 127.0.0.53\nsearch corp.example\noptions edns0\n";

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data:
  GREETING: hello
  index.html: "<p>hi</p>"
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data:
  password: c2VjcmV0
stringData:
  user: admin
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations: {kommit.dev/at-most-once: "true"}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: setup
    image: busybox:1.36
    command: ["true"]
  containers:
  - name: app
    image: registry.local:5000/app:latest
    command: ["/bin/app", "--greet=$(GREETING)", "$$(GREETING)", "$(MISSING)"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: GREETING}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: USER, valueFrom: {secretKeyRef: {name: creds, key: user}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: MSG, value: "say $(GREETING)"}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: cfg}}
    ports:
    - {name: http, containerPort: 8080, hostPort: 18080}
    readinessProbe:
      httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-A, value: b}]}
    livenessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 3
      failureThreshold: 2
    startupProbe:
      exec: {command: ["cat", "/tmp/ready"]}
    resources:
      requests: {cpu: 250m}
      limits: {cpu: "1", memory: 64Mi}
    volumeMounts:
    - {name: content, mountPath: /www, readOnly: true}
    - {name: scratch, mountPath: /scratch}
    - {name: secret, mountPath: /etc/creds}
  volumes:
  - name: content
    configMap:
      name: cfg
      items: [{key: index.html, path: site/index.html, mode: 0600}]
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 16Mi}
  - name: secret
    secret: {secretName: creds}
"#;

#[test]
fn a_pod_becomes_runtime_specs() {
    let (s, v) = adopted(&[("app.yaml", APP)]);
    assert_eq!(v.plans.len(), 1);
    let p = &v.plans[0];
    let rec = &s.pods["default/web"];
    assert_eq!(p.uid, rec.uid);
    assert_eq!(p.address.map(|a| a.ip), rec.pod_ip);
    assert_eq!(p.address.map(|a| a.cidr), s.nodes["n1"].pod_cidr);
    assert_eq!(p.grace_ms, 5000);
    assert_eq!(p.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(p.sandbox.labels[LABEL_AT_MOST_ONCE], "true");
    assert_eq!(p.sandbox.labels[LABEL_OWNER_KIND], "Pod");
    // ClusterFirst: the cluster DNS on the node's bridge gateway, the kubelet's search path
    // then the node's, ndots:5.
    let gw = kommit_runtime::network::gateway(&s.nodes["n1"].pod_cidr.unwrap()).unwrap();
    assert_eq!(
        p.sandbox.resolv_conf,
        format!(
            "nameserver {gw}\nsearch default.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        )
    );
    assert!(p.sandbox.id.starts_with("default_web_"), "{}", p.sandbox.id);
    // dnsPolicy None: only the pod's dnsConfig; with ClusterFirst, dnsConfig is merged in.
    for (policy, want) in [
        (
            "None",
            "nameserver 192.0.2.53\nsearch corp.internal\noptions ndots:2\n",
        ),
        (
            "ClusterFirst",
            "search default.svc.cluster.local svc.cluster.local cluster.local corp.example corp.internal\noptions ndots:2\n",
        ),
    ] {
        let pod = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: d}}\nspec:\n  dnsPolicy: {policy}\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [corp.internal]\n    options: [{{name: ndots, value: \"2\"}}]\n  containers:\n  - {{name: c, image: busybox:1.36}}\n");
        let (_, v) = adopted(&[("d.yaml", &pod)]);
        let conf = &v.plans[0].sandbox.resolv_conf;
        assert!(conf.ends_with(want), "{policy}: {conf}");
    }
    assert_eq!(p.config_error, None);
    assert_eq!(p.init.len(), 1);
    let c = &p.containers[0];
    let env = &c.spec.env;
    for (k, want) in [
        ("GREETING", "hello"),
        ("PASSWORD", "secret"),
        ("USER", "admin"),
        ("POD", "web"),
        ("NODE", "n1"),
        ("HOST_IP", "192.0.2.7"),
        ("MSG", "say hello"),
        ("CFG_GREETING", "hello"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(want), "env {k}");
    }
    assert_eq!(
        c.spec.command,
        vec!["/bin/app", "--greet=hello", "$(GREETING)", "$(MISSING)"]
    );
    assert_eq!(c.pull, PullPolicy::Always, ":latest pulls always");
    assert_eq!(c.spec.resources.cpu_request_millis, Some(250));
    assert_eq!(c.spec.resources.cpu_limit_millis, Some(1000));
    assert_eq!(c.spec.resources.memory_limit, Some(64 << 20));
    assert_eq!(
        c.probes.readiness.as_ref().map(|r| &r.handler),
        Some(&Handler::Http {
            host: None,
            port: 8080,
            path: "/healthz".into(),
            https: false,
            headers: vec![("X-A".into(), "b".into())]
        })
    );
    let live = c.probes.liveness.as_ref().expect("liveness");
    assert_eq!(
        (live.period_s, live.failure_threshold, live.timeout_s),
        (3, 2, 1)
    );
    assert!(matches!(
        c.probes.startup.as_ref().map(|s| &s.handler),
        Some(Handler::Exec(_))
    ));
    assert_eq!(p.ports.len(), 1);
    assert_eq!(
        (p.ports[0].host_port, p.ports[0].container_port),
        (18080, 8080)
    );
    match &p.volumes["content"] {
        VolumePlan::Projected { files, .. } => {
            assert_eq!(files.keys().collect::<Vec<_>>(), vec!["site/index.html"]);
            assert_eq!(files["site/index.html"].data, b"<p>hi</p>");
            assert_eq!(files["site/index.html"].mode, 0o600);
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(
        p.volumes["scratch"],
        VolumePlan::EmptyDir {
            medium: Medium::Memory,
            size_limit: Some(16 << 20)
        }
    );
    match &p.volumes["secret"] {
        VolumePlan::Projected { files, medium } => {
            // Secrets on a tmpfs, as the kubelet keeps them.
            assert_eq!(*medium, Medium::Memory);
            assert_eq!(files["password"].data, b"secret");
            assert_eq!(files["user"].data, b"admin");
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(c.mounts.len(), 3);
    assert!(c.mounts[0].read_only && !c.mounts[1].read_only);
}

#[test]
fn missing_references_are_config_errors_unless_optional() {
    // The validator refuses dangling references, so the agent sees one only when the
    // object changed under it (a key removed from a ConfigMap the pod still names): the
    // translation must say which, not panic.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    env:\n    - {name: X, valueFrom: {configMapKeyRef: {name: cfg, key: a}}}\n    - {name: Z, valueFrom: {configMapKeyRef: {name: cfg, key: b, optional: true}}}\n";
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: one, b: two}\n";
    let (s, v) = adopted(&[("cm.yaml", cm), ("p.yaml", pod)]);
    assert_eq!(v.plans[0].config_error, None);
    assert_eq!(v.plans[0].containers[0].spec.env["X"], "one");
    let ctx = NodeContext {
        name: "n1".into(),
        host_ip: "192.0.2.7".into(),
        pod_cidr: s.nodes["n1"].pod_cidr,
        host_resolv_conf: String::new(),
        secrets: SecretKeys::default(),
        claims: BTreeMap::new(),
    };
    // (keys left in the ConfigMap, config error containing)
    let rows: [(&[&str], Option<&str>); 3] = [
        (&["a", "b"], None),
        (&["a"], None),
        (&["b"], Some("couldn't find key a in ConfigMap default/cfg")),
    ];
    for (keys, want) in rows {
        let mut desired = s.desired.clone();
        let data = &mut desired
            .config_maps
            .get_mut("default/cfg")
            .expect("cfg")
            .data;
        data.retain(|k, _| keys.contains(&k.as_str()));
        let p = translate(&s.pods["default/p"], &BTreeMap::new(), &desired, &ctx);
        match want {
            None => assert_eq!(p.config_error, None, "{keys:?}"),
            Some(w) => assert!(
                p.config_error.as_deref().is_some_and(|g| g.contains(w)),
                "{keys:?}: {:?}",
                p.config_error
            ),
        }
    }
}

#[test]
fn variable_expansion_follows_kubernetes() {
    let env = BTreeMap::from([
        ("A".to_string(), "1".to_string()),
        ("B".to_string(), "x y".to_string()),
    ]);
    let rows = [
        ("$(A)", "1"),
        ("$(A)$(B)", "1x y"),
        ("$$(A)", "$(A)"),
        ("$(C)", "$(C)"),
        ("$(A", "$(A"),
        ("a$", "a$"),
        ("ü$(A)ü", "ü1ü"),
    ];
    for (input, want) in rows {
        assert_eq!(expand(input, &env), want, "{input}");
    }
}

#[test]
fn pull_policy_defaults_and_sandbox_ids() {
    for (image, want) in [
        ("busybox", PullPolicy::Always),
        ("busybox:latest", PullPolicy::Always),
        ("busybox:1.36", PullPolicy::IfNotPresent),
        ("localhost:5000/busybox", PullPolicy::Always),
        ("localhost:5000/busybox:1", PullPolicy::IfNotPresent),
        ("busybox@sha256:abc", PullPolicy::IfNotPresent),
    ] {
        assert_eq!(default_pull_policy(image), want, "{image}");
    }
    let long = "x".repeat(200);
    let id = sandbox_id("default", &long, "0123456789abcdef0123");
    assert!(id.len() <= kommit_runtime::spec::MAX_NAME_LEN);
    assert!(id.ends_with("_0123456789abcdef"));
    assert!(kommit_runtime::spec::validate_name(
        "pod",
        &sandbox_id("kube-system", "dns.a-1", "ABC")
    )
    .is_ok());
}

#[test]
fn image_pull_secrets_become_registry_credentials() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let json = r#"{"auths": {"registry.local:5000": {"username": "u1", "password": "p1"}, "https://index.docker.io/v1/": {"auth": "dTI6cDI="}}}"#;
    let files = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  imagePullSecrets: [{{name: regcred}}, {{name: absent}}]\n  containers:\n  - name: c\n    image: registry.local:5000/app:1\n",
        b64(json)
    );
    let (_, v) = adopted(&[("p.yaml", &files)]);
    let creds = &v.plans[0].pull_credentials;
    assert_eq!(
        creds.keys().collect::<Vec<_>>(),
        vec!["docker.io", "registry.local:5000"]
    );
    assert_eq!(
        (
            creds["registry.local:5000"].username.as_str(),
            creds["registry.local:5000"].password.as_str()
        ),
        ("u1", "p1")
    );
    assert_eq!(
        (
            creds["docker.io"].username.as_str(),
            creds["docker.io"].password.as_str()
        ),
        ("u2", "p2")
    );
}

/// `secret` encrypted as `kommit secrets encrypt` does, to `ring`'s current recipient.
fn encrypted(secret: &str, ring: &kommit_sops::Keyring) -> String {
    use kommit_schemas::yaml::{parse_trees, YamlBudget};
    let doc = parse_trees(secret, &YamlBudget::default())
        .expect("yaml")
        .remove(0);
    let recipient = kommit_sops::parse_recipient(ring.current().expect("a key")).expect("r");
    let key = [7u8; 32];
    let stanza = kommit_sops::wrap_data_key(&key, &recipient).expect("wrap");
    let options = kommit_sops::EncryptOptions {
        encrypted_regex: Some("^(data|stringData)$".into()),
        ..Default::default()
    };
    let tree = kommit_sops::encrypt(
        doc,
        &options,
        &key,
        vec![stanza],
        1_764_000_000,
        &mut rand::rngs::OsRng,
    )
    .expect("encrypt");
    kommit_schemas::tree::to_yaml(&tree).expect("yaml")
}

const SEALED_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    env:\n    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}\n    envFrom:\n    - secretRef: {name: creds}\n      prefix: ALL_\n    volumeMounts:\n    - {name: s, mountPath: /etc/creds}\n  volumes:\n  - name: s\n    secret: {secretName: creds}\n";
const SEALED_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: czNjcjN0LXBhc3M=}\nstringData: {user: the-admin-user}\n";

#[test]
fn encrypted_secrets_open_on_the_node_with_the_key() {
    let ring = kommit_sops::Keyring::generate("2026-01-01T00:00:00Z");
    let text = encrypted(SEALED_SECRET, &ring);
    let (s, v) = adopted(&[("secret.yaml", &text), ("p.yaml", SEALED_POD)]);
    // The desired state (what Raft carries) holds ciphertext only.
    let bytes = String::from_utf8(s.desired.canonical_bytes()).expect("utf8");
    for plain in ["s3cr3t-pass", "czNjcjN0LXBhc3M", "the-admin-user"] {
        assert!(!bytes.contains(plain), "{plain} in the desired state");
    }
    assert!(s.desired.sealed_secrets.contains_key("default/creds"));
    // Without the key: a one-line config error, no plaintext, no ciphertext either.
    let err = v.plans[0].config_error.clone().expect("no key, no pod");
    assert!(
        err.contains("secret default/creds: cannot decrypt: no age identity"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    // With it: the environment and the volume hold the plaintext.
    let keys = SecretKeys::new(&ring);
    let v = view(&s, "n1", HOST_RESOLV, &keys);
    let p = &v.plans[0];
    assert_eq!(p.config_error, None);
    let env = &p.containers[0].spec.env;
    assert_eq!(env["PASSWORD"], "s3cr3t-pass");
    assert_eq!(env["ALL_user"], "the-admin-user");
    assert_eq!(env["ALL_password"], "s3cr3t-pass");
    match &p.volumes["s"] {
        VolumePlan::Projected { files, .. } => {
            assert_eq!(files["password"].data, b"s3cr3t-pass");
            assert_eq!(files["user"].data, b"the-admin-user");
        }
        other => panic!("not projected: {other:?}"),
    }
    // A rotated ring (a newer identity first) still opens it.
    let mut rotated = ring.clone();
    rotated.insert_new("2026-02-01T00:00:00Z").expect("room");
    let v = view(&s, "n1", HOST_RESOLV, &SecretKeys::new(&rotated));
    assert_eq!(v.plans[0].config_error, None);
    // A value in clear edited after encryption fails the MAC, in one line.
    let mut tampered = s.clone();
    let doc = tampered
        .desired
        .sealed_secrets
        .get_mut("default/creds")
        .expect("sealed");
    let kommit_schemas::tree::Tree::Map(entries) = &mut doc.0 else {
        panic!("not a map")
    };
    entries[0].1 = kommit_schemas::tree::Tree::Str("v2".into());
    let v = view(&tampered, "n1", HOST_RESOLV, &keys);
    let err = v.plans[0].config_error.clone().expect("tampered");
    assert!(err.contains("MAC mismatch"), "{err}");
    assert!(!err.contains('\n') && !err.contains("s3cr3t"), "{err}");
}

#[test]
fn seccomp_profiles_default_to_the_runtime_filter_and_containers_override_the_pod() {
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: s}
spec:
  securityContext:
    seccompProfile: {type: Unconfined}
  containers:
  - {name: inherits, image: busybox:1.36}
  - name: own
    image: busybox:1.36
    securityContext:
      seccompProfile: {type: RuntimeDefault}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - {name: c, image: busybox:1.36}
"#;
    let (_, v) = adopted(&[("s.yaml", pod)]);
    let seccomp = |pod: &str, ctr: &str| {
        let p = v
            .plans
            .iter()
            .find(|p| p.sandbox.id.starts_with(&format!("default_{pod}_")))
            .expect("pod planned");
        let c = p
            .containers
            .iter()
            .find(|c| c.spec.name == ctr)
            .expect("container");
        c.spec.security.seccomp
    };
    assert_eq!(seccomp("s", "inherits"), Seccomp::Unconfined);
    assert_eq!(seccomp("s", "own"), Seccomp::RuntimeDefault);
    assert_eq!(seccomp("plain", "c"), Seccomp::RuntimeDefault);
}

#[test]
fn claims_mount_their_node_local_volumes() {
    let files = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared}
spec:
  accessModes: [ReadOnlyMany]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: pre}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: disk-a}
spec:
  storageClassName: manual
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  local: {path: /mnt/disk-a}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [n1]}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: busybox:1.36
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: shared, mountPath: /shared}
    - {name: pre, mountPath: /pre}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
  - {name: shared, persistentVolumeClaim: {claimName: shared}}
  - {name: pre, persistentVolumeClaim: {claimName: pre}}
"#;
    let (s, v) = adopted(&[("a.yaml", files)]);
    let p = &v.plans[0];
    assert_eq!(p.config_error, None);
    let vol = |c: &str| s.claims[&format!("default/{c}")].volume.clone().unwrap();
    assert_eq!(p.volumes["data"], VolumePlan::Local { name: vol("data") });
    assert_eq!(
        p.volumes["pre"],
        VolumePlan::HostPath {
            path: "/mnt/disk-a".into(),
            kind: kommit_runtime::traits::HostPathKind::Directory
        }
    );
    let ro: Vec<(&str, bool)> = p.containers[0]
        .mounts
        .iter()
        .map(|m| (m.volume.as_str(), m.read_only))
        .collect();
    assert_eq!(ro, [("data", false), ("shared", true), ("pre", false)]);
    // The node keeps its local-path volumes, not the pre-provisioned one.
    assert_eq!(
        v.local_volumes,
        Some([vol("data"), vol("shared")].into_iter().collect())
    );
}
