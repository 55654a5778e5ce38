//! The fake pod network: the assigned addresses, checked like the Linux network's.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{enter, World};
use crate::spec::{validate_name, PortMapping};
use crate::traits::{PodAddress, PodNetwork, Result, RuntimeError};

/// The fake pod network: the addresses the caller assigns, checked as the Linux network
/// checks them ([`crate::network::check_assignment`]), in the node's one pod CIDR.
pub struct FakeNetwork {
    pub(super) world: Arc<Mutex<World>>,
}

impl PodNetwork for FakeNetwork {
    fn attach(
        &self,
        pod: &str,
        _netns: &Path,
        addr: PodAddress,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr> {
        let mut g = enter(&self.world, "attach", format!("{pod} {}", addr.ip))?;
        validate_name("pod", pod).map_err(RuntimeError::InvalidSpec)?;
        // Every attached pod is in the bridge's current CIDR.
        let allocs = g
            .ips
            .iter()
            .map(|(p, ip)| (p.clone(), (*ip, g.cidr)))
            .collect();
        if crate::network::check_assignment(pod, addr, &allocs)? {
            return Ok(addr.ip);
        }
        g.cidr = Some(addr.cidr);
        g.ips.insert(pod.to_string(), addr.ip);
        g.ports.insert(pod.to_string(), ports.to_vec());
        Ok(addr.ip)
    }

    fn detach(&self, pod: &str) -> Result<()> {
        let mut g = enter(&self.world, "detach", pod.into())?;
        g.ips.remove(pod);
        g.ports.remove(pod);
        Ok(())
    }

    fn ip_of(&self, pod: &str) -> Result<Option<Ipv4Addr>> {
        let g = enter(&self.world, "ip_of", pod.into())?;
        Ok(g.ips.get(pod).copied())
    }
}
