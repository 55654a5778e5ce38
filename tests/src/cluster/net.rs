//! The cluster's network: a bridge in the root namespace (`kc<N>br`, `10.216.<N>.1/24`) and
//! one network namespace per node (`kc<N>-n<i>`, `10.216.<N>.<10+i>`) joined to it by a veth
//! pair (`kc<N>n<i>h` on the bridge, `kc<N>n<i>c` inside). `N` is the first index whose
//! bridge does not exist yet, so clusters of concurrent tests never share a link or a range.
//! Only addresses of 10.216.0.0/16 on these links are used.
//!
//! Faults are made inside a node's namespace: `isolate` sets its link down (the node is cut
//! from everyone, as a pulled cable), `cut` adds an nftables drop rule for one peer (table
//! `kc_partition`, in the node's namespace only), and `heal`/`uncut` undo them.

use kommit_runtime::proxy::testnet::{ip, Netns};
use std::net::Ipv4Addr;
use std::process::Command;

/// The cluster's bridge and address range; deleted when dropped.
pub struct Lan {
    /// The index `N` in the names and the range.
    pub index: u8,
    /// The bridge's name.
    pub bridge: String,
}

impl Lan {
    /// Makes the bridge of the first free index and gives it `10.216.<N>.1/24`.
    pub fn create() -> Lan {
        // Index reservation is racy only between processes creating clusters at the same
        // instant; `ip link add` then fails for the loser, which tries the next index.
        for index in 0..=250u8 {
            let bridge = format!("kc{index}br");
            if ip(&["link", "add", &bridge, "type", "bridge"]).is_err() {
                continue;
            }
            let lan = Lan { index, bridge };
            let cidr = format!("{}/24", lan.host_address());
            ip(&["addr", "add", &cidr, "dev", &lan.bridge]).expect("address the bridge");
            ip(&["link", "set", &lan.bridge, "up"]).expect("bridge up");
            return lan;
        }
        panic!("no free kc<N>br bridge name");
    }

    /// The bridge's address in the root namespace (where the git daemon listens).
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 216, self.index, 1)
    }

    /// Node `i`'s address (1-based).
    pub fn node_address(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            10,
            216,
            self.index,
            10 + u8::try_from(i).expect("few nodes"),
        )
    }

    /// Makes node `i`'s namespace, its veth pair on the bridge and its address.
    pub fn attach(&self, i: usize) -> NodeNet {
        let ns = Netns::create(&format!("kc{}-n{i}", self.index)).expect("node netns");
        let host = format!("kc{}n{i}h", self.index);
        let inner = format!("kc{}n{i}c", self.index);
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner]).expect("veth");
        ip(&["link", "set", &inner, "netns", ns.name()]).expect("veth into netns");
        ip(&["link", "set", &host, "master", &self.bridge, "up"]).expect("veth on bridge");
        let addr = self.node_address(i);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", &inner])
            .expect("node address");
        ns.ip(&["link", "set", &inner, "up"]).expect("node link up");
        // A killed daemon's TCP connections to a node that is gone (powered off, cut) live
        // on as orphans retransmitting their FIN, and an orphan holds its namespace alive,
        // with the veth pair in it, long after `ip netns del`. Give up on them quickly.
        ns.sysctl("ipv4/tcp_orphan_retries", "1")
            .expect("tcp_orphan_retries");
        NodeNet {
            ns,
            host_link: host,
            link: inner,
            addr,
        }
    }
}

impl NodeNet {
    /// Deletes the veth pair (both ends go with one), so nothing of this node stays on the
    /// bridge even while its namespace lingers for the kernel's sake (orphan sockets).
    pub fn unplug(&self) {
        let _ = ip(&["link", "del", &self.host_link]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A node's namespace and link. Dropping it deletes the namespace, which takes the veth pair,
/// the node's pod bridge and every nftables table inside with it.
pub struct NodeNet {
    /// The namespace (`/run/netns/<name>`).
    pub ns: Netns,
    /// The veth end on the bridge (root namespace).
    pub host_link: String,
    /// The veth end inside the namespace.
    pub link: String,
    /// The node's address.
    pub addr: Ipv4Addr,
}

/// The nftables table of the partition rules, inside a node's namespace.
const PARTITION_TABLE: &str = "kc_partition";

impl NodeNet {
    /// Runs `cmd args...` inside the namespace (`ip netns exec`); (success, stdout + stderr).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), cmd])
            .args(args)
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Like [`NodeNet::exec`], with `stdin` as the command's standard input.
    pub fn exec_stdin(&self, stdin: &str, cmd: &str, args: &[&str]) -> (bool, String) {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), cmd])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("command runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The namespace's IPv4 routes (`ip -4 route`), one per line.
    pub fn routes(&self) -> String {
        self.exec("ip", &["-4", "route"]).1
    }

    /// Cuts the node from every other (its link down).
    pub fn isolate(&self) {
        self.ns
            .ip(&["link", "set", &self.link, "down"])
            .expect("link down");
    }

    /// Undoes [`NodeNet::isolate`] (the address and the kernel's routes on the link return
    /// with it; kommit's host-gw routes are re-synced by the daemon).
    pub fn heal(&self) {
        self.ns
            .ip(&["link", "set", &self.link, "up"])
            .expect("link up");
    }

    /// Drops every packet to and from `peer` inside this namespace.
    pub fn cut(&self, peer: Ipv4Addr) {
        let script = format!(
            "table ip {PARTITION_TABLE} {{\n\
             chain in {{ type filter hook input priority -300; ip saddr {peer} drop; }}\n\
             chain out {{ type filter hook output priority -300; ip daddr {peer} drop; }}\n\
             }}\n"
        );
        let (ok, out) = self.exec_stdin(&script, "nft", &["-f", "-"]);
        assert!(ok, "nft cut {peer}: {out}");
    }

    /// Removes every cut of this node.
    pub fn uncut(&self) {
        let _ = self.exec("nft", &["delete", "table", "ip", PARTITION_TABLE]);
    }
}
