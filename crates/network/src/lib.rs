//! Bridge networking for berth.
//!
//! The pieces, each usable on its own:
//! - [`ipam`]: persistent, lock-protected IPv4 address pools;
//! - [`bridge`]: planners for the bridge and per-container veth (`ip`);
//! - [`nft`]: the one nftables table berth owns (NAT, isolation, internal
//!   networks, published ports);
//! - [`ports`]: `-p` parsing and free-port picking; [`proxy`]: the userland
//!   proxy for ports published on 127.0.0.1;
//! - [`files`]: `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`;
//! - [`dns`]: the embedded resolver of user networks;
//! - [`exec`]: planners return [`exec::Op`]s, an [`exec::Executor`] applies
//!   them (describe-then-apply), so everything but the executor is
//!   unit-testable without root.
//!
//! [`Manager`] ties them together for the engine.
//!
//! ```no_run
//! use berth_network::{exec::System, ipam::PoolSpec, Manager, NetworkSpec};
//! # fn main() -> berth_network::Result<()> {
//! let m = Manager::new("/var/lib/berth/network", System, berth_network::nft::TABLE)?;
//! let net = NetworkSpec::new("web", "br-0123456789ab");
//! m.create_network(&net, &PoolSpec::default())?;
//! let ep = m.connect("web", "container-id", "/proc/1234/ns/net".as_ref(), None)?;
//! println!("container got {}", ep.ip);
//! m.disconnect("web", "container-id")?;
//! m.remove_network("web")?;
//! # Ok(()) }
//! ```
//!
//! Logging: `debug` for every op applied, nothing above `warn` unless a
//! cleanup failed.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bridge;
pub mod dns;
pub mod exec;
pub mod files;
pub mod ipam;
pub mod nft;
pub mod ports;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use exec::Executor;
use ports::{PortMapping, Proto};

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Address management failed.
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    /// Applying a change to the host failed.
    #[error(transparent)]
    Exec(#[from] exec::Error),
    /// A port mapping is invalid or no port is free.
    #[error(transparent)]
    Ports(#[from] ports::Error),
    /// The network is not known.
    #[error("network {0} not found")]
    NoNetwork(String),
    /// The container is not attached to the network.
    #[error("container {container} is not connected to network {network}")]
    NotConnected {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// The bridge name is longer than Linux allows.
    #[error("bridge name {0:?} is longer than 15 bytes")]
    BadBridgeName(String),
    /// Binding the embedded DNS responder failed.
    #[error("cannot start the DNS responder of network {network} on {addr}")]
    Dns {
        /// The network.
        network: String,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Starting the userland proxy failed.
    #[error("cannot publish {addr}/{proto}")]
    Proxy {
        /// The host address and port.
        addr: SocketAddr,
        /// The protocol.
        proto: Proto,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of the network layer.
pub type Result<T> = std::result::Result<T, Error>;

/// A bridge network to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The network's name (key of its IPAM pool).
    pub name: String,
    /// The bridge interface.
    pub bridge: String,
    /// `--internal`.
    pub internal: bool,
    /// MTU of bridge and veths.
    pub mtu: u32,
    /// Run the embedded DNS responder on the gateway (user networks; the
    /// default bridge, as docker's, has none).
    pub dns: bool,
}

impl NetworkSpec {
    /// A non-internal network with MTU 1500 and no embedded DNS.
    pub fn new(name: &str, bridge: &str) -> Self {
        Self {
            name: name.into(),
            bridge: bridge.into(),
            internal: false,
            mtu: 1500,
            dns: false,
        }
    }
}

/// A container's attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// Host end of the veth.
    pub host_veth: String,
}

#[derive(Debug)]
struct NetState {
    spec: NetworkSpec,
    pool: ipam::Pool,
    dns: Option<dns::DnsServer>,
}

#[derive(Debug, Default)]
struct State {
    networks: BTreeMap<String, NetState>,
    /// Published ports by owner (container id).
    ports: BTreeMap<String, Vec<nft::PortRule>>,
}

/// Published ports of one container; dropping it stops the loopback
/// proxies (call [`Manager::unpublish`] to drop the DNAT rules too).
#[derive(Debug)]
pub struct Published {
    /// The mappings with host ports picked.
    pub mappings: Vec<PortMapping>,
    proxies: Vec<proxy::Proxy>,
}

impl Published {
    /// Number of userland proxies running.
    pub fn proxies(&self) -> usize {
        self.proxies.len()
    }
}

/// Networks, endpoints and published ports of one daemon.
#[derive(Debug)]
pub struct Manager<E: Executor> {
    ipam: ipam::Ipam,
    exec: E,
    table: String,
    upstreams: Vec<SocketAddr>,
    state: Mutex<State>,
}

impl<E: Executor> Manager<E> {
    /// A manager keeping IPAM state under `state_dir` and rules in nft
    /// table `table`.
    pub fn new(state_dir: impl Into<PathBuf>, exec: E, table: &str) -> Result<Self> {
        Ok(Self {
            ipam: ipam::Ipam::open(state_dir)?,
            exec,
            table: table.to_string(),
            upstreams: dns::host_upstreams(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
            state: Mutex::new(State::default()),
        })
    }

    /// Replaces the upstream resolvers of the embedded DNS (default: the
    /// host's /etc/resolv.conf).
    pub fn with_upstreams(mut self, upstreams: Vec<SocketAddr>) -> Self {
        self.upstreams = upstreams;
        self
    }

    /// The IPAM store.
    pub fn ipam(&self) -> &ipam::Ipam {
        &self.ipam
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ruleset(&self, st: &State) -> nft::Ruleset {
        let mut rs = nft::Ruleset::new(&self.table);
        rs.networks = st
            .networks
            .values()
            .map(|n| nft::NetRules {
                bridge: n.spec.bridge.clone(),
                subnet: n.pool.subnet,
                internal: n.spec.internal,
            })
            .collect();
        rs.ports = st.ports.values().flatten().copied().collect();
        rs
    }

    fn sync_rules(&self, st: &State) -> Result<()> {
        Ok(self
            .exec
            .apply(&nft::plan_apply(&self.ruleset(st), &nft::ip_forward_now()))?)
    }

    /// Creates the pool, the bridge and the rules of a network. Re-creating
    /// a network whose pool survived a restart reuses the pool.
    pub fn create_network(&self, spec: &NetworkSpec, pool: &ipam::PoolSpec) -> Result<ipam::Pool> {
        if spec.bridge.len() > bridge::IFNAMSIZ_MAX {
            return Err(Error::BadBridgeName(spec.bridge.clone()));
        }
        let pool = match self.ipam.pool(&spec.name)? {
            Some(p) => p,
            None => self.ipam.add_pool(&spec.name, pool, &ipam::host_routes())?,
        };
        let b = bridge::BridgeSpec {
            name: spec.bridge.clone(),
            subnet: pool.subnet,
            gateway: pool.gateway,
            mtu: spec.mtu,
        };
        self.exec.apply(&bridge::plan_create_bridge(&b))?;
        let dns = match spec.dns {
            true => {
                let addr = SocketAddr::from((pool.gateway, 53));
                let ups = if spec.internal {
                    Vec::new()
                } else {
                    self.upstreams.clone()
                };
                let srv =
                    dns::DnsServer::start(addr, pool.subnet, ups).map_err(|source| Error::Dns {
                        network: spec.name.clone(),
                        addr,
                        source,
                    })?;
                Some(srv)
            }
            false => None,
        };
        let mut st = self.lock();
        st.networks.insert(
            spec.name.clone(),
            NetState {
                spec: spec.clone(),
                pool: pool.clone(),
                dns,
            },
        );
        self.sync_rules(&st)?;
        Ok(pool)
    }

    /// Removes the bridge, the pool and the network's rules.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let mut st = self.lock();
        let n = st
            .networks
            .remove(name)
            .ok_or_else(|| Error::NoNetwork(name.to_string()))?;
        self.exec
            .apply(&bridge::plan_remove_bridge(&n.spec.bridge))?;
        self.ipam.remove_pool(name)?;
        self.sync_rules(&st)
    }

    /// Attaches the namespace at `netns` to `network` as `eth0` with the
    /// default route (through the gateway unless the network is internal).
    pub fn connect(
        &self,
        network: &str,
        container: &str,
        netns: &Path,
        ip: Option<Ipv4Addr>,
    ) -> Result<Endpoint> {
        self.connect_as(network, container, netns, ip, "eth0", true)
    }

    /// [`Manager::connect`] with the interface name and whether this network
    /// carries the default route (only the first network a container joins).
    pub fn connect_as(
        &self,
        network: &str,
        container: &str,
        netns: &Path,
        ip: Option<Ipv4Addr>,
        ifname: &str,
        default_route: bool,
    ) -> Result<Endpoint> {
        let (spec, pool) = {
            let st = self.lock();
            let n = st
                .networks
                .get(network)
                .ok_or_else(|| Error::NoNetwork(network.to_string()))?;
            (n.spec.clone(), n.pool.clone())
        };
        let addr = self.ipam.allocate(network, container, ip)?;
        let host_veth = bridge::host_veth_name(container, network);
        let a = bridge::AttachSpec {
            bridge: spec.bridge.clone(),
            host_veth: host_veth.clone(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            ip: addr,
            subnet: pool.subnet,
            default_gateway: (default_route && !spec.internal).then_some(pool.gateway),
            mtu: spec.mtu,
        };
        if let Err(e) = self.exec.apply(&bridge::plan_attach(&a)) {
            let _ = self.exec.apply(&bridge::plan_detach(&host_veth));
            let _ = self.ipam.release(network, container);
            return Err(e.into());
        }
        Ok(Endpoint {
            ip: addr,
            gateway: pool.gateway,
            prefix: pool.subnet.prefix(),
            host_veth,
        })
    }

    /// Makes `names` (container name, `--network-alias`es) resolve to the
    /// container's address on `network` through the embedded DNS. No-op on
    /// networks without DNS.
    pub fn set_names(&self, network: &str, container: &str, names: &[String]) -> Result<()> {
        let st = self.lock();
        let n = st
            .networks
            .get(network)
            .ok_or_else(|| Error::NoNetwork(network.to_string()))?;
        let Some(dns) = &n.dns else { return Ok(()) };
        let ip = self
            .ipam
            .pool(network)?
            .and_then(|p| {
                p.allocations
                    .into_iter()
                    .find(|(_, o)| o == container)
                    .map(|(ip, _)| ip)
            })
            .ok_or_else(|| Error::NotConnected {
                network: network.to_string(),
                container: container.to_string(),
            })?;
        dns.records().set(container, ip, names);
        Ok(())
    }

    /// The embedded DNS address of `network`, for the container's
    /// resolv.conf.
    pub fn dns_address(&self, network: &str) -> Option<SocketAddr> {
        self.lock()
            .networks
            .get(network)
            .and_then(|n| n.dns.as_ref().map(dns::DnsServer::local_addr))
    }

    /// Removes the container's veth and releases its address.
    pub fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        if let Some(dns) = self
            .lock()
            .networks
            .get(network)
            .and_then(|n| n.dns.as_ref())
        {
            dns.records().remove(container);
        }
        self.exec
            .apply(&bridge::plan_detach(&bridge::host_veth_name(
                container, network,
            )))?;
        self.ipam.release(network, container)?;
        Ok(())
    }

    /// Publishes `maps` (host ports 0 are picked free) of the container at
    /// `container_ip`: DNAT rules for external addresses, userland proxies
    /// for 127.0.0.1 (see [`proxy`] for why).
    pub fn publish(
        &self,
        container: &str,
        container_ip: Ipv4Addr,
        maps: &[PortMapping],
    ) -> Result<Published> {
        let mut maps = maps.to_vec();
        ports::assign_free_ports(&mut maps)?;
        let mut proxies = Vec::new();
        for m in &maps {
            let loopback = match m.host_ip {
                None => Some(Ipv4Addr::LOCALHOST),
                Some(ip) if ip.is_loopback() => Some(ip),
                Some(_) => None,
            };
            if let Some(lo) = loopback {
                let addr = SocketAddr::from((lo, m.host_port));
                let target = SocketAddr::from((container_ip, m.container_port));
                let p =
                    proxy::Proxy::start(m.proto, addr, target).map_err(|source| Error::Proxy {
                        addr,
                        proto: m.proto,
                        source,
                    })?;
                proxies.push(p);
            }
        }
        let mut st = self.lock();
        let rules = maps.iter().map(|m| nft::PortRule {
            mapping: *m,
            container_ip,
        });
        st.ports
            .entry(container.to_string())
            .or_default()
            .extend(rules);
        self.sync_rules(&st)?;
        Ok(Published {
            mappings: maps,
            proxies,
        })
    }

    /// Drops the DNAT rules of `container` (drop its [`Published`] to stop
    /// the proxies).
    pub fn unpublish(&self, container: &str) -> Result<()> {
        let mut st = self.lock();
        if st.ports.remove(container).is_some() {
            self.sync_rules(&st)?;
        }
        Ok(())
    }

    /// The rules the table should hold now (for `inspect` and tests).
    pub fn current_ruleset(&self) -> nft::Ruleset {
        self.ruleset(&self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exec::Recorder;

    #[test]
    fn manager_plans_with_recorder() {
        let d = tempfile::tempdir().unwrap();
        let m = Manager::new(d.path(), Recorder::default(), "berthunit").unwrap();
        let pool = ipam::PoolSpec {
            subnet: Some("10.203.0.0/24".parse().unwrap()),
            ..Default::default()
        };
        m.create_network(&NetworkSpec::new("n", "br-unit"), &pool)
            .unwrap();
        let ep = m
            .connect("n", "c1", Path::new("/run/netns/x"), None)
            .unwrap();
        assert_eq!(ep.ip, Ipv4Addr::new(10, 203, 0, 2));
        let maps = ports::parse_publish("127.0.0.1::80").unwrap();
        let p = m.publish("c1", ep.ip, &maps).unwrap();
        assert_eq!(p.proxies(), 1);
        assert_eq!(m.current_ruleset().ports.len(), 1);
        m.unpublish("c1").unwrap();
        m.disconnect("n", "c1").unwrap();
        m.remove_network("n").unwrap();
        let lines = m.exec.lines();
        assert!(lines.iter().any(|l| l.contains("master br-unit")));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("nft delete table ip berthunit")
        );
        assert!(matches!(
            m.connect("n", "c", Path::new("/x"), None),
            Err(Error::NoNetwork(_))
        ));
        assert!(matches!(
            m.create_network(&NetworkSpec::new("n", "a-very-long-bridge-name"), &pool),
            Err(Error::BadBridgeName(_))
        ));
    }
}
