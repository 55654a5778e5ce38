//! Probes: startup, readiness and liveness, each as exec, TCP or HTTP, on the kubelet's
//! schedule (initial delay, period, timeout, success and failure thresholds).
//!
//! The agent loop tells the prober which running containers to probe ([`Prober::sync`]);
//! one scheduler thread runs due probes on a bounded set of worker threads and folds each
//! result into the container's counters. When a verdict changes (started, ready, unhealthy)
//! the prober kicks the agent loop, so readiness reaches the replicated state at once.
//! The counting rules are a pure function ([`Counter::record`]), tested by tables.

use crate::translate::{Handler, ProbeSpec};
use kommit_reconcilers::Millis;
use kommit_runtime::ContainerRuntime;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Most probes running at once on a node.
pub const MAX_IN_FLIGHT: usize = 8;
/// Most bytes of an HTTP probe's body that are read.
pub const MAX_HTTP_BODY: usize = 10 * 1024;

/// The three kinds of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Startup.
    Startup,
    /// Readiness.
    Readiness,
    /// Liveness.
    Liveness,
}

/// Consecutive results and the verdict of one probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Successes in a row.
    pub successes: u32,
    /// Failures in a row.
    pub failures: u32,
    /// The verdict: Some(true) passing, Some(false) failing, None not decided yet.
    pub verdict: Option<bool>,
    /// The last failure's message.
    pub last_error: Option<String>,
}

impl Counter {
    /// Folds one result in; returns whether the verdict changed.
    pub fn record(&mut self, spec: &ProbeSpec, ok: Result<(), String>) -> bool {
        let before = self.verdict;
        match ok {
            Ok(()) => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                if self.successes >= spec.success_threshold {
                    self.verdict = Some(true);
                }
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                self.last_error = Some(e);
                if self.failures >= spec.failure_threshold {
                    self.verdict = Some(false);
                }
            }
        }
        before != self.verdict
    }
}

/// A running container to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Sandbox id.
    pub sandbox: String,
    /// Runtime container name (`name.attempt`).
    pub runtime_name: String,
    /// The pod's IP (TCP and HTTP probes dial it).
    pub pod_ip: Option<Ipv4Addr>,
    /// When the container started.
    pub started_at: Millis,
    /// Its probes.
    pub probes: crate::translate::Probes,
}

/// What the probes say about a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// The startup probe passed, or there is none.
    pub started: bool,
    /// Readiness passes (true without a readiness probe once started).
    pub ready: bool,
    /// Liveness or startup failed: restart it. Carries the message.
    pub unhealthy: Option<String>,
    /// Events to report: (reason, message).
    pub events: Vec<(String, String)>,
}

struct Entry {
    target: Target,
    next: BTreeMap<Kind, Millis>,
    counters: BTreeMap<Kind, Counter>,
    running: BTreeMap<Kind, bool>,
    events: Vec<(String, String)>,
}

impl Entry {
    fn spec(&self, k: Kind) -> Option<&ProbeSpec> {
        match k {
            Kind::Startup => self.target.probes.startup.as_ref(),
            Kind::Readiness => self.target.probes.readiness.as_ref(),
            Kind::Liveness => self.target.probes.liveness.as_ref(),
        }
    }

    fn started(&self) -> bool {
        self.target.probes.startup.is_none()
            || self.counters.get(&Kind::Startup).and_then(|c| c.verdict) == Some(true)
    }

    fn verdicts(&self) -> Verdicts {
        let started = self.started();
        let v = |k: Kind| self.counters.get(&k).and_then(|c| c.verdict);
        let ready = started
            && match self.target.probes.readiness {
                None => true,
                Some(_) => v(Kind::Readiness) == Some(true),
            };
        let failed = |k: Kind| {
            (v(k) == Some(false)).then(|| {
                self.counters
                    .get(&k)
                    .and_then(|c| c.last_error.clone())
                    .unwrap_or_default()
            })
        };
        let unhealthy = if started {
            failed(Kind::Liveness)
        } else {
            failed(Kind::Startup)
        };
        Verdicts {
            started,
            ready,
            unhealthy,
            events: self.events.clone(),
        }
    }
}

type Key = (String, String);

struct State {
    entries: BTreeMap<Key, Entry>,
    in_flight: usize,
    stop: bool,
}

/// The node's prober.
pub struct Prober {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Prober {
    /// Starts the scheduler thread. `kick` is called when a verdict changes.
    pub fn start(runtime: Arc<dyn ContainerRuntime>, kick: Arc<dyn Fn() + Send + Sync>) -> Prober {
        let state = Arc::new((
            Mutex::new(State {
                entries: BTreeMap::new(),
                in_flight: 0,
                stop: false,
            }),
            Condvar::new(),
        ));
        let st = state.clone();
        kommit_runtime::tls::install_crypto_provider();
        let http = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::limited(10))
            .no_proxy()
            .build()
            .ok();
        let thread = std::thread::Builder::new()
            .name("kommit-prober".into())
            .spawn(move || schedule(st, runtime, kick, http))
            .ok();
        Prober { state, thread }
    }

    /// Probe exactly these containers from now on (new ones start their schedule, gone ones
    /// are forgotten).
    pub fn sync(&self, targets: Vec<Target>) {
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = BTreeMap::new();
        for t in targets {
            let key = (t.sandbox.clone(), t.runtime_name.clone());
            let e = match s.entries.remove(&key) {
                Some(mut e) if e.target.started_at == t.started_at => {
                    e.target = t;
                    e
                }
                _ => {
                    let mut next = BTreeMap::new();
                    for (k, p) in [
                        (Kind::Startup, &t.probes.startup),
                        (Kind::Readiness, &t.probes.readiness),
                        (Kind::Liveness, &t.probes.liveness),
                    ] {
                        if let Some(p) = p {
                            next.insert(k, t.started_at + u64::from(p.initial_delay_s) * 1000);
                        }
                    }
                    Entry {
                        target: t,
                        next,
                        counters: BTreeMap::new(),
                        running: BTreeMap::new(),
                        events: Vec::new(),
                    }
                }
            };
            keep.insert(key, e);
        }
        s.entries = keep;
        cv.notify_all();
    }

    /// The verdicts for a container, draining its pending events.
    pub fn verdicts(&self, sandbox: &str, runtime_name: &str) -> Option<Verdicts> {
        let (m, _) = &*self.state;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        let e = s
            .entries
            .get_mut(&(sandbox.to_string(), runtime_name.to_string()))?;
        let v = e.verdicts();
        e.events.clear();
        Some(v)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.state;
            m.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn schedule(
    st: Arc<(Mutex<State>, Condvar)>,
    runtime: Arc<dyn ContainerRuntime>,
    kick: Arc<dyn Fn() + Send + Sync>,
    http: Option<reqwest::blocking::Client>,
) {
    let (m, cv) = &*st;
    let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if s.stop {
            return;
        }
        let now = now_ms();
        let mut due = Vec::new();
        let mut next_wake = now + 1000;
        for (key, e) in s.entries.iter() {
            let started = e.started();
            for (k, at) in &e.next {
                // Readiness and liveness wait for the startup probe.
                let gated = *k != Kind::Startup && !started;
                // Startup stops once it passed.
                let done = *k == Kind::Startup && started;
                if gated || done || e.running.get(k) == Some(&true) {
                    continue;
                }
                if *at <= now {
                    due.push((key.clone(), *k));
                } else {
                    next_wake = next_wake.min(*at);
                }
            }
        }
        for (key, k) in due {
            if s.in_flight >= MAX_IN_FLIGHT {
                next_wake = now + 50;
                break;
            }
            let Some(e) = s.entries.get_mut(&key) else {
                continue;
            };
            let Some(spec) = e.spec(k).cloned() else {
                continue;
            };
            e.running.insert(k, true);
            e.next.insert(k, now + u64::from(spec.period_s) * 1000);
            let target = e.target.clone();
            s.in_flight += 1;
            let (st2, rt, kick2, http2) = (st.clone(), runtime.clone(), kick.clone(), http.clone());
            let key2 = key.clone();
            let spawned = std::thread::Builder::new()
                .name("kommit-probe".into())
                .spawn(move || {
                    let r = run_probe(&*rt, http2.as_ref(), &target, &spec);
                    let (m, cv) = &*st2;
                    let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                    s.in_flight -= 1;
                    let changed = match s.entries.get_mut(&key2) {
                        Some(e) if e.target.started_at == target.started_at => {
                            e.running.insert(k, false);
                            let msg = r.as_ref().err().cloned();
                            let changed = e.counters.entry(k).or_default().record(&spec, r);
                            if let Some(msg) = msg {
                                let what = match k {
                                    Kind::Startup => "Startup",
                                    Kind::Readiness => "Readiness",
                                    Kind::Liveness => "Liveness",
                                };
                                if e.events.len() < 8 {
                                    e.events.push((
                                        "Unhealthy".into(),
                                        format!("{what} probe failed: {msg}"),
                                    ));
                                }
                            }
                            changed
                        }
                        _ => false,
                    };
                    cv.notify_all();
                    drop(s);
                    if changed {
                        kick2();
                    }
                });
            if spawned.is_err() {
                s.in_flight -= 1;
                if let Some(e) = s.entries.get_mut(&key) {
                    e.running.insert(k, false);
                }
            }
        }
        let wait = next_wake.saturating_sub(now_ms()).clamp(10, 1000);
        s = cv
            .wait_timeout(s, Duration::from_millis(wait))
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

/// Runs one probe or hook handler against a container; Ok on success.
pub fn run_handler(
    rt: &dyn ContainerRuntime,
    http: Option<&reqwest::blocking::Client>,
    sandbox: &str,
    runtime_name: &str,
    pod_ip: Option<Ipv4Addr>,
    handler: &Handler,
    timeout: Duration,
) -> Result<(), String> {
    match handler {
        Handler::Exec(cmd) => {
            let out = rt
                .exec(sandbox, runtime_name, cmd, timeout)
                .map_err(|e| e.to_string())?;
            if out.exit_code == 0 {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let err: String = err.trim().chars().take(200).collect();
                Err(format!("command exited {}: {err}", out.exit_code))
            }
        }
        Handler::Tcp { host, port } => {
            let addr = dial_addr(host.as_deref(), pod_ip, *port)?;
            std::net::TcpStream::connect_timeout(&addr, timeout)
                .map(|_| ())
                .map_err(|e| format!("dial tcp {addr}: {e}"))
        }
        Handler::Http {
            host,
            port,
            path,
            https,
            headers,
        } => {
            let addr = dial_addr(host.as_deref(), pod_ip, *port)?;
            let client = http.ok_or("no HTTP client")?;
            let scheme = if *https { "https" } else { "http" };
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            };
            let url = format!("{scheme}://{addr}{path}");
            let mut req = client
                .get(&url)
                .timeout(timeout)
                .header("User-Agent", "kommit-probe/1.0");
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let resp = req.send().map_err(|e| format!("Get {url:?}: {e}"))?;
            let code = resp.status().as_u16();
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
    }
}

fn dial_addr(
    host: Option<&str>,
    pod_ip: Option<Ipv4Addr>,
    port: u16,
) -> Result<std::net::SocketAddr, String> {
    let ip = match host {
        Some(h) => h
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("probe host {h:?} is not an IPv4 address"))?,
        None => pod_ip.ok_or("the pod has no IP yet")?,
    };
    Ok(std::net::SocketAddr::from((ip, port)))
}

fn run_probe(
    rt: &dyn ContainerRuntime,
    http: Option<&reqwest::blocking::Client>,
    t: &Target,
    spec: &ProbeSpec,
) -> Result<(), String> {
    run_handler(
        rt,
        http,
        &t.sandbox,
        &t.runtime_name,
        t.pod_ip,
        &spec.handler,
        Duration::from_secs(u64::from(spec.timeout_s)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            handler: Handler::Tcp {
                host: None,
                port: 80,
            },
            initial_delay_s: 0,
            period_s: 1,
            timeout_s: 1,
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn thresholds_decide_verdicts() {
        // (success threshold, failure threshold, results, verdict after each)
        let rows: &[(u32, u32, &str, &[Option<bool>])] = &[
            (1, 3, "+", &[Some(true)]),
            (1, 3, "---", &[None, None, Some(false)]),
            (2, 1, "+-++", &[None, Some(false), Some(false), Some(true)]),
            (
                1,
                3,
                "+--+",
                &[Some(true), Some(true), Some(true), Some(true)],
            ),
            (1, 2, "+--", &[Some(true), Some(true), Some(false)]),
        ];
        for (s, f, results, want) in rows {
            let mut c = Counter::default();
            let got: Vec<Option<bool>> = results
                .chars()
                .map(|r| {
                    let res = if r == '+' { Ok(()) } else { Err("x".into()) };
                    c.record(&spec(*s, *f), res);
                    c.verdict
                })
                .collect();
            assert_eq!(&got[..], *want, "s={s} f={f} results={results}");
        }
    }
}
