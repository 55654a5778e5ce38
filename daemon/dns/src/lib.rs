//! kommit's cluster DNS: what CoreDNS does for a Kubernetes cluster, inside each node's
//! daemon, from the replicated state.
//!
//! Why this shape:
//! - **Answers come only from the replicated state.** [`zone::from_state`] is a pure function
//!   of a `ClusterState`; the daemon calls it after each applied entry and swaps the result
//!   into the running server ([`ZoneHandle::store`]). A Service pruned from Git is gone from
//!   DNS with the entry that pruned it, on every node alike. There is no watch, no cache of
//!   cluster names and no TTL longer than 5 s.
//! - **The zone is encoded when it is built, not when it is asked.** Every (name, type) has
//!   its answer bytes ready, owned by a compression pointer to the question, so a query is a
//!   header read, a hash lookup and two copies ([`respond`]). That is what makes one node's
//!   DNS cheap next to its pods; the bench (`kommit-bench dns`) holds it to 50,000 queries a
//!   second.
//! - **Everything else is forwarded** to the node's own resolvers ([`resolv::upstreams`])
//!   through a bounded cache ([`cache`]) with at most a fixed number of forwards in flight
//!   ([`forward`]).
//! - **Pods' resolv.conf** is a pure function too ([`resolv::pod_resolv_conf`]), merged the
//!   kubelet's way.
//!
//! The wire format: hickory-proto reads and writes the forwarder's messages; the hot path
//! ([`wire`]) reads queries and writes the zone's records itself, bounds-checked, because
//! hickory-server's `Server` spawns a task and encodes a `Message` per query, several times
//! the cost of a lookup. hickory-server is the tests' fake upstream.
//!
//! The crate depends on schemas and reconcilers only; the daemon binds the server (on the pod
//! bridge's gateway) and the agent writes each pod's resolv.conf.

#![deny(missing_docs)]

pub mod cache;
pub mod forward;
pub mod resolv;
pub mod respond;
pub mod server;
pub mod synthetic;
pub mod wire;
pub mod zone;

pub use forward::{ForwardConfig, ForwardStats};
pub use resolv::{
    pod_resolv_conf, upstreams, DnsConfig, DnsOption, DnsPolicy, PodDns, PodResolvConf,
};
pub use server::{DnsServer, ServerConfig, ServerError};
pub use zone::{affects_zone, from_state, Zone, ZoneBuilder, ZoneError, ZoneHandle};
