//! Pre-provisioned PersistentVolumes, one table test each: which volume a claim binds to
//! (class, access modes, capacity, selector, claimRef, volumeName; the smallest that fits),
//! volume node affinity, and reclaim policies when a claim leaves Git.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry};

fn pv(name: &str, size: &str, modes: &str, class: Option<&str>, extra: &str) -> String {
    let class = class
        .map(|c| format!("  storageClassName: \"{c}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\n  labels: {{size: \"{size}\"}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [{modes}]\n{class}  local: {{path: /mnt/{name}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n        - matchExpressions:\n            - {{key: kubernetes.io/hostname, operator: In, values: [n2]}}\n{extra}"
    )
}

fn claim(name: &str, size: &str, modes: &str, class: Option<&str>, extra: &str) -> String {
    let class = class
        .map(|c| format!("  storageClassName: \"{c}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [{modes}]\n{class}  resources: {{requests: {{storage: {size}}}}}\n{extra}"
    )
}

fn pod_using(claim: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: user\nspec:\n  containers:\n    - name: c\n      image: busybox:1\n      volumeMounts: [{{name: d, mountPath: /d}}]\n  volumes:\n    - name: d\n      persistentVolumeClaim: {{claimName: {claim}}}\n")
}

fn cluster() -> ClusterState {
    let mut s = ClusterState::new();
    for n in ["n1", "n2", "n3"] {
        s.apply(
            &Entry::NodeUp {
                info: node(n, 4000, 8 * GI, 110),
            },
            1,
        );
    }
    s
}

fn adopt(s: &mut ClusterState, n: u32, files: &[(&str, &str)]) {
    let d = desired(files);
    let parent = (n > 1).then(|| format!("c{}", n - 1));
    let fx = s.apply(
        &adopt_entry(&format!("c{n}"), parent.as_deref(), &d),
        u64::from(n) * 1000,
    );
    assert!(fx.rejected.is_none(), "{:?}", fx.rejected);
}

#[test]
fn a_claim_binds_the_smallest_free_volume_that_fits() {
    let m = Some("manual");
    let rwo = "ReadWriteOnce";
    let cases: Vec<(&str, Vec<String>, String, Option<&str>)> = vec![
        (
            "smallest that fits",
            vec![
                pv("big", "10Gi", rwo, m, ""),
                pv("mid", "5Gi", rwo, m, ""),
                pv("small", "1Gi", rwo, m, ""),
            ],
            claim("data", "2Gi", rwo, m, ""),
            Some("mid"),
        ),
        (
            "ties go to the first name",
            vec![pv("b", "5Gi", rwo, m, ""), pv("a", "5Gi", rwo, m, "")],
            claim("data", "5Gi", rwo, m, ""),
            Some("a"),
        ),
        (
            "too small",
            vec![pv("small", "1Gi", rwo, m, "")],
            claim("data", "2Gi", rwo, m, ""),
            None,
        ),
        (
            "access modes must all be offered",
            vec![
                pv("rwo", "1Gi", rwo, m, ""),
                pv("both", "9Gi", "ReadWriteOnce, ReadOnlyMany", m, ""),
            ],
            claim("data", "1Gi", "ReadOnlyMany", m, ""),
            Some("both"),
        ),
        (
            "another class",
            vec![pv("slow", "1Gi", rwo, Some("slow"), "")],
            claim("data", "1Gi", rwo, Some("fast"), ""),
            None,
        ),
        (
            "a claim without a class takes local-path volumes",
            vec![
                pv("manual", "1Gi", rwo, m, ""),
                pv("lp", "1Gi", rwo, Some("local-path"), ""),
            ],
            claim("data", "1Gi", rwo, None, ""),
            Some("lp"),
        ),
        (
            "a volume without a class fits a claim asking for \"\"",
            vec![pv("plain", "1Gi", rwo, None, "")],
            claim("data", "1Gi", rwo, Some(""), ""),
            Some("plain"),
        ),
        (
            "selector",
            vec![pv("a", "1Gi", rwo, m, ""), pv("b", "5Gi", rwo, m, "")],
            claim(
                "data",
                "1Gi",
                rwo,
                m,
                "  selector:\n    matchLabels: {size: 5Gi}\n",
            ),
            Some("b"),
        ),
        (
            "claimRef reserves a volume for another claim",
            vec![
                pv("a", "1Gi", rwo, m, "  claimRef: {name: other}\n"),
                pv("b", "5Gi", rwo, m, ""),
            ],
            claim("data", "1Gi", rwo, m, ""),
            Some("b"),
        ),
        (
            "claimRef for this claim",
            vec![
                pv(
                    "a",
                    "9Gi",
                    rwo,
                    m,
                    "  claimRef: {name: data, namespace: default}\n",
                ),
                pv("b", "1Gi", rwo, m, ""),
            ],
            claim("data", "1Gi", rwo, m, ""),
            Some("a"),
        ),
        (
            "volumeName",
            vec![pv("a", "1Gi", rwo, m, ""), pv("b", "9Gi", rwo, m, "")],
            claim("data", "1Gi", rwo, m, "  volumeName: b\n"),
            Some("b"),
        ),
    ];
    for (case, pvs, c, want) in cases {
        let mut s = cluster();
        let mut files: Vec<(String, String)> = pvs
            .iter()
            .enumerate()
            .map(|(i, y)| (format!("pv{i}.yaml"), y.clone()))
            .collect();
        files.push(("claim.yaml".into(), c));
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, y)| (p.as_str(), y.as_str()))
            .collect();
        adopt(&mut s, 1, &refs);
        let got = &s.claims["default/data"];
        assert_eq!(got.volume.as_deref(), want, "{case}");
        assert_eq!(got.pre_provisioned, want.is_some(), "{case}");
    }
}

#[test]
fn two_claims_never_share_a_volume() {
    let m = Some("manual");
    let mut s = cluster();
    let a = claim("a", "1Gi", "ReadWriteOnce", m, "");
    let b = claim("b", "1Gi", "ReadWriteOnce", m, "");
    let v = pv("only", "1Gi", "ReadWriteOnce", m, "");
    adopt(
        &mut s,
        1,
        &[("a.yaml", &a), ("b.yaml", &b), ("pv.yaml", &v)],
    );
    assert_eq!(s.claims["default/a"].volume.as_deref(), Some("only"));
    assert_eq!(s.claims["default/b"].volume, None);
}

#[test]
fn pods_follow_the_volume_node_affinity() {
    let m = Some("manual");
    let mut s = cluster();
    let c = claim("data", "1Gi", "ReadWriteOnce", m, "");
    let v = pv("vol", "1Gi", "ReadWriteOnce", m, "");
    let p = pod_using("data");
    // n2 holds the volume and is down: the pod waits, saying why.
    s.apply(&Entry::NodeDown { node: "n2".into() }, 500);
    adopt(
        &mut s,
        1,
        &[("c.yaml", &c), ("pv.yaml", &v), ("p.yaml", &p)],
    );
    let pod = &s.pods["default/user"];
    assert_eq!(pod.node, None);
    let why = pod.reason.clone().unwrap();
    assert!(
        why.contains("\"vol\"") && why.contains("node affinity"),
        "{why}"
    );
    // Back up: the pod runs there and the claim records the node.
    s.apply(
        &Entry::NodeUp {
            info: node("n2", 4000, 8 * GI, 110),
        },
        1500,
    );
    assert_eq!(s.pods["default/user"].node.as_deref(), Some("n2"));
    assert_eq!(s.claims["default/data"].node.as_deref(), Some("n2"));
    assert_eq!(s.claims["default/data"].volume.as_deref(), Some("vol"));
}

#[test]
fn reclaim_policies_when_a_claim_leaves_git() {
    let m = Some("manual");
    let c = claim("data", "1Gi", "ReadWriteOnce", m, "");
    let c2 = claim("again", "1Gi", "ReadWriteOnce", m, "");
    for policy in ["Retain", "Delete"] {
        let v = pv(
            "vol",
            "1Gi",
            "ReadWriteOnce",
            m,
            &format!("  persistentVolumeReclaimPolicy: {policy}\n"),
        );
        let mut s = cluster();
        adopt(&mut s, 1, &[("c.yaml", &c), ("pv.yaml", &v)]);
        assert_eq!(s.claims["default/data"].volume.as_deref(), Some("vol"));
        // The claim goes: the volume is Released (kommit deletes no data it did not make)
        // and a new claim does not get it.
        adopt(&mut s, 2, &[("c2.yaml", &c2), ("pv.yaml", &v)]);
        assert!(!s.claims.contains_key("default/data"), "{policy}");
        let r = &s.released_volumes["vol"];
        assert_eq!(r.claim, "default/data", "{policy}");
        assert_eq!(s.claims["default/again"].volume, None, "{policy}");
        // The volume leaves Git and comes back: Available again.
        adopt(&mut s, 3, &[("c2.yaml", &c2)]);
        assert!(s.released_volumes.is_empty(), "{policy}");
        adopt(&mut s, 4, &[("c2.yaml", &c2), ("pv.yaml", &v)]);
        assert_eq!(
            s.claims["default/again"].volume.as_deref(),
            Some("vol"),
            "{policy}"
        );
    }

    // local-path: Delete (the default) keeps nothing; a class with Retain keeps the
    // directory on its node.
    for (class, kept) in [
        ("", false),
        ("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local-path\nprovisioner: kommit.dev/local-path\nreclaimPolicy: Retain\n", true),
    ] {
        let mut s = cluster();
        let c = claim("data", "1Gi", "ReadWriteOnce", None, "");
        let p = pod_using("data");
        let mut files = vec![("c.yaml", c.as_str()), ("p.yaml", p.as_str())];
        if !class.is_empty() {
            files.push(("sc.yaml", class));
        }
        adopt(&mut s, 1, &files);
        let bound = s.claims["default/data"].clone();
        let volume = bound.volume.clone().unwrap();
        assert!(volume.starts_with("pvc-"), "{volume}");
        let rest: Vec<(&str, &str)> = files
            .iter()
            .filter(|(p, _)| *p == "sc.yaml")
            .copied()
            .collect();
        let mut rest = rest;
        rest.push(("kommit.yaml", KOMMIT_YAML));
        adopt(&mut s, 2, &rest);
        assert!(s.claims.is_empty());
        assert_eq!(s.released_volumes.contains_key(&volume), kept, "{class}");
        if kept {
            assert_eq!(s.released_volumes[&volume].node, bound.node);
        }
    }
}

#[test]
fn read_only_many_claims_are_read_only() {
    let mut s = cluster();
    let rox = claim("rox", "1Gi", "ReadOnlyMany", None, "");
    let rwo = claim("rwo", "1Gi", "ReadWriteOnce", None, "");
    adopt(&mut s, 1, &[("a.yaml", &rox), ("b.yaml", &rwo)]);
    assert!(s.claims["default/rox"].read_only());
    assert!(!s.claims["default/rwo"].read_only());
}
