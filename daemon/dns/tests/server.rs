//! The server on 127.0.0.1, asked by hickory's client over UDP and TCP; forwarding to a fake
//! upstream (a hickory-server on 127.0.0.1). Loopback only.

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::{Time, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use kommit_dns::synthetic::Synth;
use kommit_dns::{from_state, DnsServer, ServerConfig, ZoneBuilder, ZoneHandle};
use serde_json::json;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Res<T> = anyhow::Result<T>;

fn cluster() -> Res<Synth> {
    let mut s = Synth::new();
    s.service(
        "default",
        "web",
        Some([10, 96, 0, 10].into()),
        &[(Some("http"), "TCP", 80, None)],
        false,
    )?;
    s.service(
        "shop",
        "db",
        None,
        &[(Some("pg"), "TCP", 5432, Some(json!(5432)))],
        false,
    )?;
    s.pod("default", "web-1", [10, 244, 0, 5].into(), None, None, &[])?;
    s.pod(
        "shop",
        "db-0",
        [10, 244, 1, 2].into(),
        Some("db-0"),
        Some("db"),
        &[],
    )?;
    s.pod(
        "shop",
        "db-1",
        [10, 244, 1, 3].into(),
        Some("db-1"),
        Some("db"),
        &[],
    )?;
    s.endpoint("default", "web", "web-1", true);
    s.endpoint("shop", "db", "db-0", true);
    s.endpoint("shop", "db", "db-1", true);
    Ok(s)
}

async fn start(zone: kommit_dns::Zone, upstreams: Vec<SocketAddr>) -> Res<DnsServer> {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse()?);
    cfg.udp_sockets = 2;
    cfg.forward.upstreams = upstreams;
    cfg.forward.timeout = Duration::from_millis(300);
    Ok(DnsServer::start(cfg, ZoneHandle::new(zone)).await?)
}

async fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    client
}

async fn tcp_client(addr: SocketAddr) -> Res<Client<TokioRuntimeProvider>> {
    let (stream, sender) = TcpClientStream::new(addr, None, None, TokioRuntimeProvider::new());
    let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await?, sender);
    tokio::spawn(bg);
    Ok(client)
}

/// (response code, answers rendered and sorted, TC bit).
async fn ask(
    c: &mut Client<TokioRuntimeProvider>,
    name: &str,
    t: RecordType,
) -> Res<(ResponseCode, Vec<String>, bool)> {
    let r = c.query(Name::from_str(name)?, DNSClass::IN, t).await?;
    let mut answers: Vec<String> = r
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => format!("A {a}"),
            RData::CNAME(c) => format!("CNAME {}", c.0),
            RData::PTR(p) => format!("PTR {}", p.0),
            RData::SRV(s) => format!("SRV {} {}", s.port, s.target),
            other => format!("{other:?}"),
        })
        .collect();
    answers.sort();
    Ok((r.response_code, answers, r.truncation))
}

#[tokio::test]
async fn answers_the_zone_over_udp_and_tcp() -> Res<()> {
    let server = start(from_state(&cluster()?.state, "cluster.local")?, vec![]).await?;
    let addr = server.local_addr();
    let ok = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    let cases: Vec<(&str, RecordType, ResponseCode, Vec<&str>)> = vec![
        (
            "web.default.svc.cluster.local.",
            RecordType::A,
            ok,
            vec!["A 10.96.0.10"],
        ),
        (
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            ok,
            vec!["SRV 80 web.default.svc.cluster.local."],
        ),
        (
            "10.0.96.10.in-addr.arpa.",
            RecordType::PTR,
            ok,
            vec!["PTR web.default.svc.cluster.local."],
        ),
        (
            "5.0.244.10.in-addr.arpa.",
            RecordType::PTR,
            ok,
            vec!["PTR 10-244-0-5.default.pod.cluster.local."],
        ),
        (
            "10-244-0-5.default.pod.cluster.local.",
            RecordType::A,
            ok,
            vec!["A 10.244.0.5"],
        ),
        (
            "db.shop.svc.cluster.local.",
            RecordType::A,
            ok,
            vec!["A 10.244.1.2", "A 10.244.1.3"],
        ),
        (
            "db-1.db.shop.svc.cluster.local.",
            RecordType::A,
            ok,
            vec!["A 10.244.1.3"],
        ),
        (
            "_pg._tcp.db.shop.svc.cluster.local.",
            RecordType::SRV,
            ok,
            vec![
                "SRV 5432 db-0.db.shop.svc.cluster.local.",
                "SRV 5432 db-1.db.shop.svc.cluster.local.",
            ],
        ),
        ("nope.default.svc.cluster.local.", RecordType::A, nx, vec![]),
        (
            "web.default.svc.cluster.local.",
            RecordType::AAAA,
            ok,
            vec![],
        ),
        // No upstream: names outside the zone fail, they are not made up.
        (
            "example.com.",
            RecordType::A,
            ResponseCode::ServFail,
            vec![],
        ),
    ];
    let mut udp = udp_client(addr).await;
    let mut tcp = tcp_client(addr).await?;
    for (name, t, rc, want) in cases {
        for (proto, c) in [("udp", &mut udp), ("tcp", &mut tcp)] {
            let (got_rc, got, tc) = ask(c, name, t).await?;
            assert_eq!(
                (got_rc, got, tc),
                (rc, want.iter().map(|s| s.to_string()).collect(), false),
                "{proto} {name} {t}"
            );
        }
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn cname_truncation_and_zone_swap() -> Res<()> {
    let mut b = ZoneBuilder::new("cluster.local", &[], 1)?;
    kommit_dns::zone::external_name(&mut b, "default", "search", "search.example.com");
    let big = b.name(&["big", "default", "svc"]).expect("fits");
    for i in 0..200u8 {
        b.add_a(big.clone(), [10, 244, 2, i].into());
    }
    let server = start(b.build(), vec![]).await?;
    let addr = server.local_addr();
    let mut udp = udp_client(addr).await;
    let mut tcp = tcp_client(addr).await?;
    let (rc, got, _) = ask(&mut udp, "search.default.svc.cluster.local.", RecordType::A).await?;
    assert_eq!(
        (rc, got),
        (
            ResponseCode::NoError,
            vec!["CNAME search.example.com.".to_string()]
        )
    );
    // 200 A records do not fit 1232 bytes: truncated over UDP, whole over TCP.
    let (_, got, tc) = ask(&mut udp, "big.default.svc.cluster.local.", RecordType::A).await?;
    assert!(tc && got.is_empty());
    let (_, got, tc) = ask(&mut tcp, "big.default.svc.cluster.local.", RecordType::A).await?;
    assert!(!tc && got.len() == 200);

    // The state changes: the zone is swapped, and the old names are gone at once.
    let mut s = cluster()?;
    server.zone().store(from_state(&s.state, "cluster.local")?);
    let (rc, _, _) = ask(&mut udp, "search.default.svc.cluster.local.", RecordType::A).await?;
    assert_eq!(rc, ResponseCode::NXDomain);
    assert_eq!(
        ask(&mut udp, "web.default.svc.cluster.local.", RecordType::A)
            .await?
            .0,
        ResponseCode::NoError
    );
    s.remove_service("default", "web");
    server.zone().store(from_state(&s.state, "cluster.local")?);
    for c in [&mut udp, &mut tcp] {
        assert_eq!(
            ask(c, "web.default.svc.cluster.local.", RecordType::A)
                .await?
                .0,
            ResponseCode::NXDomain
        );
    }
    Ok(())
}

#[tokio::test]
async fn malformed_packets_are_survived() -> Res<()> {
    let server = start(from_state(&cluster()?.state, "cluster.local")?, vec![]).await?;
    let addr = server.local_addr();
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut seed = 0x2545f4914f6cdd1du64;
    for i in 0..500usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed as usize) % 80;
        let mut junk: Vec<u8> = (0..len).map(|k| (seed >> (k % 56)) as u8).collect();
        if i % 2 == 0 && len > 12 {
            junk[2] &= 0x7f; // a "query" with a junk body
        }
        raw.send_to(&junk, addr).await?;
    }
    // A response is never answered (no reflection).
    let mut resp = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
    raw.send_to(&resp, addr).await?;
    // A FORMERR for two questions. UDP may drop it behind the burst above (a socket buffer
    // full under load), so it is sent again, as a resolver would, until answered.
    resp[2] = 0x01;
    resp[5] = 2;
    let mut buf = [0u8; 512];
    let mut answered = false;
    for _ in 0..20 {
        raw.send_to(&resp, addr).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(r) = tokio::time::timeout_at(deadline, raw.recv(&mut buf)).await {
            let n = r?;
            if n >= 12 && buf[..2] == [0, 1] {
                assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
                answered = true;
                break;
            }
        }
        if answered {
            break;
        }
    }
    assert!(answered, "no FORMERR for a query with two questions");
    let mut udp = udp_client(addr).await;
    let (rc, got, _) = ask(&mut udp, "web.default.svc.cluster.local.", RecordType::A).await?;
    assert_eq!(
        (rc, got),
        (ResponseCode::NoError, vec!["A 10.96.0.10".to_string()])
    );
    // TCP: a connection that sends a length and hangs up, then junk, then a real client.
    use tokio::io::AsyncWriteExt;
    let mut t = tokio::net::TcpStream::connect(addr).await?;
    t.write_all(&[0, 200, 1, 2, 3]).await?;
    drop(t);
    let mut t = tokio::net::TcpStream::connect(addr).await?;
    t.write_all(&[0, 3, 1, 2, 3, 0, 0]).await?;
    drop(t);
    let mut tcp = tcp_client(addr).await?;
    assert_eq!(
        ask(&mut tcp, "web.default.svc.cluster.local.", RecordType::A)
            .await?
            .0,
        ResponseCode::NoError
    );
    Ok(())
}

/// A fake upstream: `a.example.com` A 192.0.2.7 (TTL 60), `tc.example.com` truncated over
/// UDP and 3 records over TCP, anything else NXDOMAIN with a SOA (minimum 30). Counts queries.
#[derive(Clone, Default)]
struct Upstream {
    queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let tcp = request.protocol() == Protocol::Tcp;
        if tcp {
            self.tcp_queries.fetch_add(1, Ordering::SeqCst);
        }
        let name = request.queries.queries()[0].name().to_string();
        let owner = Name::from_str(&name).expect("a query name is a name");
        let mut meta = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Query);
        meta.recursion_available = true;
        let mut answers = Vec::new();
        let mut soa = Vec::new();
        match name.as_str() {
            "a.example.com." => answers.push(Record::from_rdata(
                owner,
                60,
                RData::A(A::new(192, 0, 2, 7)),
            )),
            "tc.example.com." if !tcp => meta.truncation = true,
            "tc.example.com." => {
                for i in 1..=3 {
                    answers.push(Record::from_rdata(
                        owner.clone(),
                        60,
                        RData::A(A::new(192, 0, 2, i)),
                    ));
                }
            }
            _ => {
                meta.response_code = ResponseCode::NXDomain;
                let apex = Name::from_str("example.com.").expect("valid");
                let data = SOA::new(apex.clone(), apex.clone(), 1, 60, 60, 60, 30);
                soa.push(Record::from_rdata(apex, 300, RData::SOA(data)));
            }
        }
        let response = MessageResponseBuilder::from_message_request(request).build(
            meta,
            answers.iter(),
            soa.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => panic!("fake upstream could not answer: {e}"),
        }
    }
}

async fn fake_upstream() -> Res<(Upstream, SocketAddr, hickory_server::Server<Upstream>)> {
    let up = Upstream::default();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = udp.local_addr()?;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let mut server = hickory_server::Server::new(up.clone());
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65535);
    Ok((up, addr, server))
}

#[tokio::test]
async fn forwards_with_a_cache() -> Res<()> {
    let (up, up_addr, _upstream) = fake_upstream().await?;
    let server = start(
        from_state(&cluster()?.state, "cluster.local")?,
        vec![up_addr],
    )
    .await?;
    let addr = server.local_addr();
    let mut udp = udp_client(addr).await;
    let mut tcp = tcp_client(addr).await?;

    let want = (
        ResponseCode::NoError,
        vec!["A 192.0.2.7".to_string()],
        false,
    );
    assert_eq!(ask(&mut udp, "a.example.com.", RecordType::A).await?, want);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);
    // Cached: the upstream is not asked again, over UDP or TCP, whatever the case.
    assert_eq!(ask(&mut udp, "A.Example.COM.", RecordType::A).await?, want);
    assert_eq!(ask(&mut tcp, "a.example.com.", RecordType::A).await?, want);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);
    assert_eq!(server.forward_stats().cache_hits.load(Ordering::SeqCst), 2);

    // Negative answers are cached too.
    assert_eq!(
        ask(&mut udp, "gone.example.com.", RecordType::A).await?.0,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(&mut udp, "gone.example.com.", RecordType::A).await?.0,
        ResponseCode::NXDomain
    );
    assert_eq!(up.queries.load(Ordering::SeqCst), 2);

    // A truncated upstream answer is asked again over TCP.
    let (rc, got, _) = ask(&mut udp, "tc.example.com.", RecordType::A).await?;
    assert_eq!((rc, got.len()), (ResponseCode::NoError, 3));
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);

    // The cluster's names never reach the upstream.
    let before = up.queries.load(Ordering::SeqCst);
    assert_eq!(
        ask(&mut udp, "nope.default.svc.cluster.local.", RecordType::A)
            .await?
            .0,
        ResponseCode::NXDomain
    );
    assert_eq!(up.queries.load(Ordering::SeqCst), before);
    Ok(())
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_and_the_next_one_answers() -> Res<()> {
    // Bound but never read: queries to it time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let (up, up_addr, _upstream) = fake_upstream().await?;
    let server = start(
        from_state(&cluster()?.state, "cluster.local")?,
        vec![silent.local_addr()?],
    )
    .await?;
    let mut udp = udp_client(server.local_addr()).await;
    assert_eq!(
        ask(&mut udp, "a.example.com.", RecordType::A).await?.0,
        ResponseCode::ServFail
    );
    // SERVFAIL is not cached; with a live upstream behind the silent one the name resolves.
    let server2 = start(
        from_state(&cluster()?.state, "cluster.local")?,
        vec![silent.local_addr()?, up_addr],
    )
    .await?;
    let mut udp2 = udp_client(server2.local_addr()).await;
    assert_eq!(
        ask(&mut udp2, "a.example.com.", RecordType::A).await?.1,
        vec!["A 192.0.2.7".to_string()]
    );
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);
    assert_eq!(server.forward_stats().failures.load(Ordering::SeqCst), 1);
    Ok(())
}
