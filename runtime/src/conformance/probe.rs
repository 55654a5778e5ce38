//! The probe vocabulary: busybox commands with a fixed, checkable meaning.

/// Docker's default effective capability mask (`CapEff` for root).
pub const DEFAULT_CAPEFF: &str = "00000000a80425fb";

/// Workloads with a fixed meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Print `key=value` facts about the container's view of itself.
    Report,
    /// Print `out-N` to stdout and `err-N` to stderr, exit N.
    Exit(i32),
    /// `sleep`: as pid 1 it has no SIGTERM handler, so only SIGKILL stops it.
    Sleeper,
    /// Trap SIGTERM, print `got-term` and exit 0.
    TermTrap,
    /// Print `tick-N` every 200 ms forever.
    Ticker,
    /// Allocate memory without bound (`tail /dev/zero`).
    MemHog,
    /// Fork background sleeps in a loop, printing `n=I` before each.
    ForkLoop,
    /// Serve `hello-from-pod` over HTTP on port 8080.
    HttpServe,
    /// exec: print `exec-out`/`exec-err`, exit 3.
    ExecTriple,
    /// exec: print the hostname.
    Hostname,
    /// exec: HTTP GET `/` from IP port 8080.
    Wget(String),
    /// exec: one ping to IP.
    Ping(String),
    /// exec: print the file at PATH.
    Cat(String),
    /// exec: write `written` to the file at PATH (fails on a read-only mount).
    Write(String),
    /// exec: enter DIR's `..data` once and print its files `a` and `b` (one version of a
    /// projected volume).
    Snapshot(String),
    /// exec: the `/proc/mounts` line of the mount at PATH.
    MountOf(String),
}

const REPORT: &str = "echo host=$(hostname); echo pid=$$; \
grep -E '^(NoNewPrivs|CapEff)' /proc/self/status | tr -d ' \\t' | sed 's/:/=/'; \
echo timer_list=$(wc -c < /proc/timer_list); echo keys_masked=$(grep -c ' /proc/keys ' /proc/self/mountinfo); \
echo uid=$(id -u); echo gid=$(id -g); echo cwd=$(pwd); echo env=$KOMMIT_PROBE; \
if touch /.probe 2>/dev/null; then echo rootfs=rw; else echo rootfs=ro; fi; \
if (echo x > /proc/sys/kernel/domainname) 2>/dev/null; then echo procsys=rw; else echo procsys=ro; fi; \
if touch /sys/.probe 2>/dev/null; then echo sys=rw; else echo sys=ro; fi; \
echo etchostname=$(cat /etc/hostname); \
for d in null zero full random urandom tty pts shm; do [ -e /dev/$d ] && echo dev_$d=yes; done; true";

impl Probe {
    /// The command line.
    pub fn argv(&self) -> Vec<String> {
        let sh = |s: String| vec!["sh".to_string(), "-c".to_string(), s];
        match self {
            Probe::Report => sh(REPORT.to_string()),
            Probe::Exit(n) => sh(format!("echo out-{n}; echo err-{n} >&2; exit {n}")),
            Probe::Sleeper => vec!["sleep".into(), "1000".into()],
            Probe::TermTrap => sh("trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done".into()),
            Probe::Ticker => sh("i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done".into()),
            Probe::MemHog => vec!["tail".into(), "/dev/zero".into()],
            Probe::ForkLoop => sh("for i in $(seq 1 200); do echo n=$i; sleep 60 & done; echo all-forked; wait".into()),
            Probe::HttpServe => sh("mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www".into()),
            Probe::ExecTriple => sh("echo exec-out; echo exec-err >&2; exit 3".into()),
            Probe::Hostname => vec!["hostname".into()],
            // busybox-static's wget segfaults in Debian 12; nc speaks the HTTP/1.0 request.
            Probe::Wget(ip) => sh(format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080")),
            Probe::Ping(ip) => vec!["ping".into(), "-c".into(), "1".into(), "-W".into(), "3".into(), ip.clone()],
            Probe::Cat(p) => vec!["cat".into(), p.clone()],
            Probe::Write(p) => sh(format!("echo written > {p}")),
            Probe::Snapshot(d) => sh(format!("cd {d}/..data && cat a b")),
            Probe::MountOf(p) => sh(format!("grep ' {p} ' /proc/mounts")),
        }
    }

    /// Recognise a probe from its command line.
    pub fn parse(argv: &[String]) -> Option<Probe> {
        let fixed = [
            Probe::Report,
            Probe::Sleeper,
            Probe::TermTrap,
            Probe::Ticker,
            Probe::MemHog,
            Probe::ForkLoop,
            Probe::HttpServe,
            Probe::ExecTriple,
            Probe::Hostname,
        ];
        if let Some(p) = fixed.into_iter().find(|p| p.argv() == argv) {
            return Some(p);
        }
        if let [sh, c, script] = argv {
            if sh == "sh" && c == "-c" {
                if let Some(n) = script
                    .strip_prefix("echo out-")
                    .and_then(|r| r.split(';').next())
                    .and_then(|n| n.parse().ok())
                {
                    if Probe::Exit(n).argv() == argv {
                        return Some(Probe::Exit(n));
                    }
                }
            }
        }
        if let [cat, p] = argv {
            if cat == "cat" {
                return Some(Probe::Cat(p.clone()));
            }
        }
        if let [_, _, script] = argv {
            let param = [
                script
                    .strip_prefix("echo written > ")
                    .map(|p| Probe::Write(p.into())),
                script
                    .strip_prefix("cd ")
                    .and_then(|r| r.strip_suffix("/..data && cat a b"))
                    .map(|d| Probe::Snapshot(d.into())),
                script
                    .strip_prefix("grep ' ")
                    .and_then(|r| r.strip_suffix(" ' /proc/mounts"))
                    .map(|p| Probe::MountOf(p.into())),
            ];
            if let Some(p) = param.into_iter().flatten().find(|p| p.argv() == argv) {
                return Some(p);
            }
        }
        if let Some(last) = argv.last() {
            if let Some(ip) = last
                .rsplit_once(" | nc -w 5 ")
                .and_then(|(_, r)| r.strip_suffix(" 8080"))
            {
                if Probe::Wget(ip.into()).argv() == argv {
                    return Some(Probe::Wget(ip.into()));
                }
            }
            if Probe::Ping(last.clone()).argv() == argv {
                return Some(Probe::Ping(last.clone()));
            }
        }
        None
    }
}
