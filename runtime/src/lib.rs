//! kommit's node runtime: the OS contract of the node agent.
//!
//! The agent asks five things of a node, each a trait in [`traits`]: run pod sandboxes and
//! their containers ([`ContainerRuntime`]), hold images ([`Images`]), wire pods to the
//! network ([`PodNetwork`]), keep their volumes on the host ([`Volumes`]) and route Service
//! addresses to endpoints ([`ServiceProxy`]). Each has a Linux implementation ([`linux`],
//! [`images`], [`network`], [`volumes`], [`proxy`]) and a fake
//! ([`fake`]); [`conformance`] is one suite both must pass, so the fake the agent's tests
//! use cannot drift from the kernel's behaviour.
//!
//! The shape follows from two constraints. A node daemon restart must not stop containers,
//! so every container hangs off a per-pod shim process and all state is in files the shim
//! writes; the driver is stateless and `recover()` is just reading. And namespace and mount
//! setup must never happen on a thread of a multi-threaded process, so all of it runs in a
//! re-executed single-threaded helper ([`helper`]): the binary embedding this crate routes
//! `shim ...` to [`helper::helper_main`].
//!
//! This crate knows nothing of Git, Raft or manifests; its specs ([`spec`]) are its own.

pub mod alloc;
pub mod conformance;
pub mod fake;
pub mod helper;
pub mod images;
pub mod linux;
pub mod network;
pub mod proxy;
pub mod spec;
pub mod testutil;
pub mod tls;
pub mod traits;
pub mod volumes;

pub use traits::{ContainerRuntime, Images, PodNetwork, RuntimeError, ServiceProxy, Volumes};
