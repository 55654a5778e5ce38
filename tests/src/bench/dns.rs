//! `kommit-bench dns`: the cluster DNS server on 127.0.0.1 serving a zone of 1,000 Services
//! and 10,000 pods, asked a mix of Service (40 %), pod (30 %), SRV (15 %) and NXDOMAIN (15 %)
//! queries by several client sockets, each keeping a few queries in flight, for a few
//! seconds. Every answer is checked (ID, response code, answer count). Prints queries per
//! second and latency percentiles; ends with `RESULT dns qps=<x> p99_us=<y>`.
//!
//! Options: `--seconds N` (5), `--clients N` (2), `--window N` (4 queries in flight per
//! client), `--services N` (1000), `--pods N` (10000), `--udp-sockets N` (2).

use anyhow::{bail, ensure, Context};
use kommit_dns::synthetic::Synth;
use kommit_dns::wire::{self, rtype};
use kommit_dns::{DnsServer, ServerConfig, ZoneHandle};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Latency histogram buckets, 1 µs each, up to 100 ms (slower counts in the last).
const BUCKETS: usize = 100_000;

struct Options {
    seconds: f64,
    clients: usize,
    window: usize,
    services: usize,
    pods: usize,
    udp_sockets: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        seconds: 5.0,
        clients: 2,
        window: 4,
        services: 1000,
        pods: 10_000,
        udp_sockets: 2,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n = || {
            value
                .parse::<usize>()
                .with_context(|| format!("{flag} {value}: not a count"))
        };
        match flag.as_str() {
            "--seconds" => {
                o.seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value}"))?
            }
            "--clients" => o.clients = n()?.max(1),
            "--window" => o.window = n()?.clamp(1, 256),
            "--services" => o.services = n()?.max(1),
            "--pods" => o.pods = n()?,
            "--udp-sockets" => o.udp_sockets = n()?.max(1),
            other => bail!("unknown option {other}"),
        }
    }
    ensure!(
        o.seconds > 0.0 && o.seconds <= 60.0,
        "--seconds must be in (0, 60]"
    );
    Ok(o)
}

/// One prepared query: its bytes (ID at 0..2 patched per send) and what the answer must be.
struct Query {
    bytes: Vec<u8>,
    nxdomain: bool,
}

fn query(name: &str, qtype: u16, nxdomain: bool) -> anyhow::Result<Query> {
    let mut bytes = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    bytes.extend_from_slice(&wire::encode_name(name).with_context(|| format!("bad name {name}"))?);
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&1u16.to_be_bytes());
    wire::push_opt(&mut bytes);
    Ok(Query { bytes, nxdomain })
}

/// The mix, in a fixed pseudo-random order.
fn mix(o: &Options) -> anyhow::Result<Vec<Query>> {
    let mut out = Vec::with_capacity(4096);
    let mut x = 0x853c_49e6_748f_ea9bu64;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let svc = (x >> 8) as usize % o.services;
        let ns = format!("ns-{}", svc % 10);
        let q = match x % 100 {
            0..=39 => query(
                &format!("svc-{svc}.{ns}.svc.cluster.local"),
                rtype::A,
                false,
            )?,
            40..=69 if o.pods > 0 => {
                let j = (x >> 24) as usize % o.pods;
                let ns = format!("ns-{}", (j % o.services) % 10);
                let ip = std::net::Ipv4Addr::from(
                    u32::from(std::net::Ipv4Addr::new(10, 244, 0, 2)) + j as u32,
                );
                let [a, b, c, d] = ip.octets();
                query(
                    &format!("{a}-{b}-{c}-{d}.{ns}.pod.cluster.local"),
                    rtype::A,
                    false,
                )?
            }
            40..=84 => query(
                &format!("_http._tcp.svc-{svc}.{ns}.svc.cluster.local"),
                rtype::SRV,
                false,
            )?,
            _ => query(
                &format!("nope-{svc}.{ns}.svc.cluster.local"),
                rtype::A,
                true,
            )?,
        };
        out.push(q);
    }
    Ok(out)
}

#[derive(Default)]
struct ClientResult {
    answered: u64,
    timeouts: u64,
    wrong: u64,
    hist: Vec<u32>,
}

/// An in-flight query: sent at, query index, ID.
type Slot = Option<(Instant, usize, u16)>;

/// One client: `window` queries in flight on one socket; latencies after `warm` counted.
/// IDs are the slot in the low byte and a per-client counter in the high byte, so an answer
/// that arrives after its slot was re-sent is recognised as stale and ignored.
fn client(
    server: SocketAddr,
    queries: &[Query],
    offset: usize,
    window: usize,
    warm: Instant,
    end: Instant,
) -> anyhow::Result<ClientResult> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut r = ClientResult {
        hist: vec![0; BUCKETS],
        ..ClientResult::default()
    };
    let mut slots: Vec<Slot> = vec![None; window];
    let mut next = offset;
    let mut counter: u8 = 0;
    let mut packet = Vec::with_capacity(128);
    let mut send = |slot: usize, slots: &mut [Slot]| -> anyhow::Result<()> {
        let i = next % queries.len();
        next += 1;
        counter = counter.wrapping_add(1);
        let id = u16::from_be_bytes([counter, slot as u8]);
        packet.clear();
        packet.extend_from_slice(&queries[i].bytes);
        packet[..2].copy_from_slice(&id.to_be_bytes());
        slots[slot] = Some((Instant::now(), i, id));
        sock.send(&packet)?;
        Ok(())
    };
    for slot in 0..window {
        send(slot, &mut slots)?;
    }
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Lost: send every slot again.
                r.timeouts += 1;
                for slot in 0..window {
                    send(slot, &mut slots)?;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        if n < 12 {
            r.wrong += 1;
            continue;
        }
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        let slot = usize::from(buf[1]);
        let Some(Some((sent, i, want_id))) = slots.get(slot).copied() else {
            r.wrong += 1;
            continue;
        };
        if id != want_id {
            continue;
        }
        let rc = buf[3] & 0x0f;
        let ancount = u16::from_be_bytes([buf[6], buf[7]]);
        let ok = buf[2] & 0x80 != 0
            && if queries[i].nxdomain {
                rc == wire::rcode::NXDOMAIN
            } else {
                rc == wire::rcode::NOERROR && ancount > 0
            };
        if !ok {
            r.wrong += 1;
        }
        if sent >= warm {
            let us = now.duration_since(sent).as_micros() as usize;
            r.hist[us.min(BUCKETS - 1)] += 1;
            r.answered += 1;
        }
        send(slot, &mut slots)?;
    }
    Ok(r)
}

fn percentile(hist: &[u64], total: u64, p: f64) -> usize {
    let target = ((total as f64) * p).ceil() as u64;
    let mut seen = 0;
    for (us, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= target.max(1) {
            return us;
        }
    }
    hist.len()
}

/// Runs the benchmark.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let profile = if cfg!(debug_assertions) {
        "dev (unoptimized kommit code; dependencies at opt-level 1)"
    } else {
        "release"
    };
    let t = Instant::now();
    let synth = Synth::cluster(o.services, o.pods)?;
    let built = Instant::now();
    let zone = kommit_dns::from_state(&synth.state, "cluster.local")?;
    let zone_ms = built.elapsed().as_secs_f64() * 1e3;
    println!(
        "zone: {} services, {} pods -> {} names, {} records, built in {zone_ms:.1} ms (state made in {:.1} ms)",
        o.services,
        o.pods,
        zone.names(),
        zone.records(),
        (built - t).as_secs_f64() * 1e3
    );
    let queries = mix(&o)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse()?);
    cfg.udp_sockets = o.udp_sockets;
    let server: DnsServer = rt.block_on(DnsServer::start(cfg, ZoneHandle::new(zone)))?;
    let addr = server.local_addr();
    let start = Instant::now();
    let warm = start + Duration::from_millis(500);
    let end = warm + Duration::from_secs_f64(o.seconds);
    let results: Vec<anyhow::Result<ClientResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.clients)
            .map(|c| {
                let queries = &queries;
                let offset = c * queries.len() / o.clients;
                s.spawn(move || client(addr, queries, offset, o.window, warm, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    let elapsed = end.saturating_duration_since(warm).as_secs_f64();
    rt.block_on(server.shutdown());
    let mut hist = vec![0u64; BUCKETS];
    let (mut answered, mut timeouts, mut wrong) = (0u64, 0u64, 0u64);
    for r in results {
        let r = r?;
        answered += r.answered;
        timeouts += r.timeouts;
        wrong += r.wrong;
        for (h, n) in hist.iter_mut().zip(&r.hist) {
            *h += u64::from(*n);
        }
    }
    ensure!(answered > 0, "no query was answered");
    ensure!(wrong == 0, "{wrong} answers were wrong");
    let qps = answered as f64 / elapsed;
    let (p50, p99, p999) = (
        percentile(&hist, answered, 0.50),
        percentile(&hist, answered, 0.99),
        percentile(&hist, answered, 0.999),
    );
    println!("profile: {profile}");
    println!(
        "{answered} queries in {elapsed:.1} s from {} clients x {} in flight, {} UDP sockets: {qps:.0} queries/s; latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us; {timeouts} client timeouts",
        o.clients, o.window, o.udp_sockets
    );
    println!("RESULT dns qps={qps:.0} p99_us={p99}");
    Ok(())
}
