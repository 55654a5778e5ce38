//! Node identities and join tokens on real daemons (issue 16 items 4 and 5): four hosts in
//! network namespaces. A single-use token made on n2 admits n4 through n3 after n2 was
//! SIGKILLed (tokens live in the replicated state, not on their maker); then
//! `kommit node remove n4` revokes n4's certificate, and the remaining nodes' cluster ports
//! refuse a TLS client presenting it (alert `CertificateRevoked`) while n3's certificate
//! still works.
//!
//! Root only; skipped only with KOMMIT_SKIP_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_daemon::consensus::tls::NodeIdentity;
use kommit_tests::cluster::Cluster;
use kommit_tests::fixtures::tls_alert;
use kommit_tests::runtime_support::skip_privileged;
use std::time::{Duration, Instant};

#[test]
fn a_token_outlives_its_maker_and_a_removed_nodes_certificate_is_refused() {
    if skip_privileged("cluster trust") {
        return;
    }
    let mut c = Cluster::new(4);
    let names = c.names();
    c.start_first(3);
    let (ok, token, err) = c.node(2).kommit(&["token", "create", "--uses", "1"]);
    assert!(ok, "kommit token create on n2: {err}");
    c.node_mut(2).kill9();
    c.join(4, 3, token.trim());
    c.wait_state(Duration::from_secs(60), "n4 Ready", |s| {
        s.nodes.get("n4").is_some_and(|n| n.ready)
    });
    let id = token
        .trim()
        .split('.')
        .nth(2)
        .expect("token id")
        .to_string();
    let s = c.node(1).state();
    assert_eq!(
        s.trust.tokens[&id].uses_left,
        Some(0),
        "the single use is spent"
    );

    let (ok, out, err) = c.node(1).kommit(&["node", "remove", "n4"]);
    assert!(ok, "kommit node remove n4: {out}{err}");
    let n4 = NodeIdentity::load(&c.node(4).data.join("tls")).expect("n4 identity");
    let n3 = NodeIdentity::load(&c.node(3).data.join("tls")).expect("n3 identity");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    for i in [1, 3] {
        let addr = c.node(i).address();
        // Each node refuses from the entry on, once it has applied it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let alert = loop {
            let a = rt.block_on(tls_alert(&n4, &addr));
            if a.contains("CertificateRevoked") || Instant::now() > deadline {
                break a;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            alert.contains("CertificateRevoked"),
            "n{i} answered n4's certificate: {alert}"
        );
        let ok = rt.block_on(tls_alert(&n3, &addr));
        assert!(
            ok.starts_with("HTTP/1.1 200"),
            "n{i} answered n3's certificate: {ok}"
        );
    }
    assert!(
        c.node(1)
            .log()
            .contains("refused the client certificate of removed node n4"),
        "n1 logs the refusal naming the node"
    );
    c.teardown();
    let left = Cluster::leftovers(&names);
    assert!(left.is_empty(), "teardown left {left:?}");
}
