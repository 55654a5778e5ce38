//! Routes to the other nodes' pod CIDRs, via each node's address (flannel's `host-gw`): pod
//! traffic between nodes is routed, not tunnelled, and keeps the pod's source address. The
//! routes are marked with their own routing protocol number, so a sync touches only kommit's
//! routes, however many other routes the host has.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};

use super::{nerr, with_netlink, NetError};

/// The routing protocol number kommit's pod routes carry (`ip route show proto 75`).
pub const ROUTE_PROTOCOL: u8 = 75;

/// Most routes one sync installs (one per other node).
pub const MAX_ROUTES: usize = 10_000;

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Routes added or moved to another gateway.
    pub added: Vec<Ipv4Net>,
    /// Routes removed.
    pub removed: Vec<Ipv4Net>,
}

fn route_of(msg: &rtnetlink::packet_route::route::RouteMessage) -> Option<(Ipv4Net, Ipv4Addr)> {
    let mut dst = None;
    let mut gw = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(*g),
            _ => {}
        }
    }
    let net = Ipv4Net::new(dst?, msg.header.destination_prefix_length).ok()?;
    Some((net, gw?))
}

/// Makes kommit's routes in the calling thread's network namespace exactly `want` (pod CIDR
/// -> the node address it is reached through): missing ones added, moved ones replaced,
/// others of kommit's removed. Routes of anything else are never touched.
pub fn sync_pod_routes(want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<RouteChanges, NetError> {
    if want.len() > MAX_ROUTES {
        return Err(NetError::Config(format!(
            "{} pod routes exceed the limit of {MAX_ROUTES}",
            want.len()
        )));
    }
    let want = want.clone();
    with_netlink(|h| async move {
        let mut have: BTreeMap<Ipv4Net, (Ipv4Addr, rtnetlink::packet_route::route::RouteMessage)> =
            BTreeMap::new();
        let mut stale = Vec::new();
        let mut routes = h
            .route()
            .get(rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(msg) = routes.try_next().await.map_err(nerr)? {
            if msg.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            match route_of(&msg) {
                Some((net, gw)) if want.get(&net) == Some(&gw) => {
                    have.insert(net, (gw, msg));
                }
                Some((net, _)) => stale.push((Some(net), msg)),
                None => stale.push((None, msg)),
            }
        }
        let mut changes = RouteChanges::default();
        for (net, msg) in stale {
            h.route().del(msg).execute().await.map_err(nerr)?;
            if let Some(net) = net {
                if !want.contains_key(&net) {
                    changes.removed.push(net);
                }
            }
        }
        for (net, gw) in &want {
            if have.contains_key(net) {
                continue;
            }
            let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.network(), net.prefix_len())
                .gateway(*gw)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .build();
            h.route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(|e| nerr(format!("route {net} via {gw}: {e}")))?;
            changes.added.push(*net);
        }
        Ok(changes)
    })
}
