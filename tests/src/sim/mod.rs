//! Consensus test support: an in-process cluster of real nodes (redb on disk, HTTPS with
//! mTLS on 127.0.0.x) and a seeded fault simulation of the Raft layer.

pub mod cluster;
pub mod raft_sim;
