//! [`Manager`]: networks, endpoints and published ports of one daemon,
//! over IPAM, the bridge planners, the nft table, the proxies and DNS.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::exec::Executor;
use crate::ports::PortMapping;
use crate::{bridge, dns, ipam, nft, ports, proxy, Error, Result};

/// A bridge network to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The network's id (64 hex digits; docker's `Id`).
    #[serde(default)]
    pub id: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// `--label key=value`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--ipam-opt key=value` (kept and shown; the default IPAM driver reads none).
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    /// `--attachable` (kept and shown; every berth network takes `connect`).
    #[serde(default)]
    pub attachable: bool,
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
            id: String::new(),
            created: String::new(),
            labels: BTreeMap::new(),
            ipam_options: BTreeMap::new(),
            attachable: false,
        }
    }
}

/// The interface a container gets on a network ([`Manager::connect_as`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iface<'a> {
    /// its name in the container (`eth0`, `eth1`, ...)
    pub name: &'a str,
    /// the address asked for (`--ip`), else one from the pool
    pub ip: Option<Ipv4Addr>,
    /// the MAC address asked for (`--mac-address`), else the kernel's
    pub mac: Option<[u8; 6]>,
    /// whether the default route goes through this network
    pub default_route: bool,
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

/// What survives a daemon restart besides IPAM (`networks.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// the nft table (so tools and test harnesses can find what to remove)
    #[serde(default)]
    table: String,
    networks: BTreeMap<String, NetworkSpec>,
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

/// Where daemons serialise choosing a subnet (see [`Manager::create_network`]).
pub const HOST_LOCK: &str = "/run/berth/network.lock";

fn host_lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = Path::new(HOST_LOCK);
    let err = |source| Error::State {
        path: path.to_path_buf(),
        source,
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(err)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| err(e.into()))
}

/// Networks, endpoints and published ports of one daemon.
#[derive(Debug)]
pub struct Manager<E: Executor> {
    ipam: ipam::Ipam,
    state_dir: PathBuf,
    exec: E,
    table: String,
    upstreams: Vec<SocketAddr>,
    state: Mutex<State>,
}

impl<E: Executor> Manager<E> {
    /// A manager keeping IPAM state under `state_dir` and rules in nft
    /// table `table`.
    pub fn new(state_dir: impl Into<PathBuf>, exec: E, table: &str) -> Result<Self> {
        let state_dir = state_dir.into();
        Ok(Self {
            ipam: ipam::Ipam::open(&state_dir)?,
            state_dir,
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

    /// Persists what `restore` needs (atomic rename), then applies the rules.
    fn sync_rules(&self, st: &State) -> Result<()> {
        let saved = Saved {
            table: self.table.clone(),
            networks: st
                .networks
                .iter()
                .map(|(k, v)| (k.clone(), v.spec.clone()))
                .collect(),
            ports: st.ports.clone(),
        };
        let path = self.state_dir.join("networks.json");
        let tmp = self.state_dir.join("networks.json.tmp");
        let data = serde_json::to_vec_pretty(&saved).map_err(|e| Error::State {
            path: tmp.clone(),
            source: e.into(),
        })?;
        std::fs::write(&tmp, data).map_err(|source| Error::State {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| Error::State {
            path: path.clone(),
            source,
        })?;
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
        // Daemons of other data roots pick subnets too: one host-wide lock, held
        // until our bridge (and so its route) exists, keeps two of them from taking
        // the same free subnet.
        let _host_lock = match pool.subnet {
            None => Some(host_lock()?),
            Some(_) => None,
        };
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
    /// Refuses while containers are connected, as docker does.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let mut st = self.lock();
        if !st.networks.contains_key(name) {
            return Err(Error::NoNetwork(name.to_string()));
        }
        let active = self.ipam.pool(name)?.map_or(0, |p| p.allocations.len());
        if active > 0 {
            return Err(Error::NetworkInUse {
                network: name.to_string(),
                active,
            });
        }
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
        let iface = Iface {
            name: "eth0",
            ip,
            mac: None,
            default_route: true,
        };
        self.connect_as(network, container, netns, &iface)
    }

    /// [`Manager::connect`] with the interface's name, MAC address and whether
    /// this network carries the default route (only the first network a
    /// container joins).
    pub fn connect_as(
        &self,
        network: &str,
        container: &str,
        netns: &Path,
        iface: &Iface<'_>,
    ) -> Result<Endpoint> {
        let (ip, ifname, default_route) = (iface.ip, iface.name, iface.default_route);
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
            mac: iface.mac,
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

    /// `--network none`: the namespace keeps only `lo`, brought up.
    pub fn loopback_only(&self, netns: &Path) -> Result<()> {
        Ok(self.exec.apply(&bridge::plan_loopback_only(netns))?)
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

    /// Withdraws the names of `container` from the DNS of `network` (the
    /// container stopped; its address stays leased).
    pub fn clear_names(&self, network: &str, container: &str) {
        if let Some(dns) = self
            .lock()
            .networks
            .get(network)
            .and_then(|n| n.dns.as_ref())
        {
            dns.records().remove(container);
        }
    }

    /// The embedded DNS address of `network`, for the container's
    /// resolv.conf.
    pub fn dns_address(&self, network: &str) -> Option<SocketAddr> {
        self.lock()
            .networks
            .get(network)
            .and_then(|n| n.dns.as_ref().map(dns::DnsServer::local_addr))
    }

    /// Removes the container's veth, its DNS names and its address
    /// (`network disconnect`). Deleting a veth takes the kernel ~30 ms;
    /// when the container's namespace is going away anyway, use
    /// [`Manager::release`].
    pub fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        self.exec
            .apply(&bridge::plan_detach(&bridge::host_veth_name(
                container, network,
            )))?;
        self.release(network, container)
    }

    /// Releases the container's DNS names and address but leaves its veth,
    /// which the kernel removes with the container's network namespace
    /// (container exit): the fast path of `rm` / `run --rm`.
    pub fn release(&self, network: &str, container: &str) -> Result<()> {
        if let Some(dns) = self
            .lock()
            .networks
            .get(network)
            .and_then(|n| n.dns.as_ref())
        {
            dns.records().remove(container);
        }
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
        let entry = st.ports.entry(container.to_string()).or_default();
        for m in &maps {
            let rule = nft::PortRule {
                mapping: *m,
                container_ip,
            };
            // publishing again after a restart must not double the rules
            if !entry.contains(&rule) {
                entry.push(rule);
            }
        }
        self.sync_rules(&st)?;
        Ok(Published {
            mappings: maps,
            proxies,
        })
    }

    /// After a daemon restart: re-creates the saved networks (bridges,
    /// rules, DNS responders; existing pieces are reused) and the DNAT rules
    /// of published ports. Returns the network names. The engine then calls
    /// [`Manager::reconcile`] with the containers still alive, and
    /// [`Manager::publish`] / [`Manager::set_names`] again for them (the
    /// loopback proxies and DNS names live in the daemon's memory).
    pub fn restore(&self) -> Result<Vec<String>> {
        let path = self.state_dir.join("networks.json");
        let saved: Saved = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::State {
                path: path.clone(),
                source: e.into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(source) => return Err(Error::State { path, source }),
        };
        for spec in saved.networks.values() {
            // one network that cannot come back (its subnet taken meanwhile, say)
            // must not keep the daemon and the other networks down
            if let Err(e) = self.create_network(spec, &ipam::PoolSpec::default()) {
                tracing::warn!(network = %spec.name, error = %e, "network not restored");
                if let Some(src) = std::error::Error::source(&e) {
                    tracing::warn!(network = %spec.name, cause = %src, "network not restored");
                }
            }
        }
        let mut st = self.lock();
        st.ports = saved.ports;
        self.sync_rules(&st)?;
        Ok(saved.networks.into_keys().collect())
    }

    /// Removes what containers no longer alive left behind (after a crash):
    /// their addresses, DNS names, published-port rules and the veths on
    /// berth's bridges. `live` lists (network, container) attachments that
    /// still exist.
    pub fn reconcile(&self, live: &[(&str, &str)]) -> Result<()> {
        let is_live = |net: &str, c: &str| live.iter().any(|(n, o)| *n == net && *o == c);
        for (net, pool) in self.ipam.pools()? {
            for owner in pool.allocations.values().filter(|o| !is_live(&net, o)) {
                tracing::info!(network = %net, container = %owner, "releasing stale endpoint");
                self.disconnect(&net, owner)?;
            }
        }
        let bridges: Vec<(String, String)> = self
            .lock()
            .networks
            .iter()
            .map(|(k, n)| (k.clone(), n.spec.bridge.clone()))
            .collect();
        for (net, br) in bridges {
            let keep: Vec<String> = live
                .iter()
                .filter(|(n, _)| *n == net)
                .map(|(n, c)| bridge::host_veth_name(c, n))
                .collect();
            let out = self.exec.run(&bridge::plan_list_ports(&br))?;
            for veth in bridge::parse_link_names(&out)
                .into_iter()
                .filter(|v| !keep.contains(v))
            {
                self.exec.apply(&bridge::plan_detach(&veth))?;
            }
        }
        let mut st = self.lock();
        let before = st.ports.len();
        st.ports
            .retain(|owner, _| live.iter().any(|(_, c)| c == owner));
        if st.ports.len() != before {
            self.sync_rules(&st)?;
        }
        Ok(())
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

    /// The networks with their pools, by name.
    pub fn networks(&self) -> Result<Vec<(NetworkSpec, ipam::Pool)>> {
        let specs: Vec<NetworkSpec> = self
            .lock()
            .networks
            .values()
            .map(|n| n.spec.clone())
            .collect();
        let pools = self.ipam.pools()?;
        Ok(specs
            .into_iter()
            .filter_map(|s| pools.get(&s.name).cloned().map(|p| (s, p)))
            .collect())
    }

    /// The published-port rules recorded for `container` (kept across a
    /// daemon restart, so its ports can be published again as they were).
    pub fn saved_ports(&self, container: &str) -> Vec<PortMapping> {
        self.lock()
            .ports
            .get(container)
            .map(|v| v.iter().map(|r| r.mapping).collect())
            .unwrap_or_default()
    }

    /// A clean daemon stop with no container running: removes the bridges,
    /// the DNS responders and the nft table, and keeps the saved state, so
    /// [`Manager::restore`] brings everything back.
    pub fn shutdown(&self) -> Result<()> {
        let mut st = self.lock();
        for n in std::mem::take(&mut st.networks).into_values() {
            drop(n.dns);
            self.exec
                .apply(&bridge::plan_remove_bridge(&n.spec.bridge))?;
        }
        st.ports.clear();
        Ok(self.exec.apply(&nft::plan_remove(&self.table))?)
    }

    /// The rules the table should hold now (for `inspect` and tests).
    pub fn current_ruleset(&self) -> nft::Ruleset {
        self.ruleset(&self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Recorder;

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
        let before = m.exec.lines().len();
        m.connect("n", "c2", Path::new("/run/netns/y"), None)
            .unwrap();
        m.release("n", "c2").unwrap();
        assert_eq!(m.exec.lines().len(), before + 4, "release applies nothing");
        assert!(matches!(
            m.remove_network("n"),
            Err(Error::NetworkInUse { active: 1, .. })
        ));
        m.disconnect("n", "c1").unwrap();
        m.remove_network("n").unwrap();
        let lines = m.exec.lines();
        assert!(matches!(m.remove_network("n"), Err(Error::NoNetwork(_))));
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

    #[test]
    fn restore_and_reconcile_after_crash() {
        let d = tempfile::tempdir().unwrap();
        let pool = ipam::PoolSpec {
            subnet: Some("10.204.0.0/24".parse().unwrap()),
            ..Default::default()
        };
        {
            let m = Manager::new(d.path(), Recorder::default(), "berthunit").unwrap();
            m.create_network(&NetworkSpec::new("n", "br-unit"), &pool)
                .unwrap();
            for c in ["alive", "dead"] {
                let ip = m.connect("n", c, Path::new("/x"), None).unwrap().ip;
                let maps = ports::parse_publish("192.0.2.2:8080:80").unwrap();
                if c == "dead" {
                    m.publish(c, ip, &maps).unwrap();
                }
            }
        } // the daemon "crashes": nothing is torn down
        let m = Manager::new(d.path(), Recorder::default(), "berthunit").unwrap();
        assert_eq!(m.restore().unwrap(), vec!["n"]);
        assert_eq!(m.current_ruleset().ports.len(), 1);
        assert_eq!(m.current_ruleset().networks[0].bridge, "br-unit");
        m.reconcile(&[("n", "alive")]).unwrap();
        let pool = m.ipam().pool("n").unwrap().unwrap();
        assert_eq!(pool.allocations.values().collect::<Vec<_>>(), vec!["alive"]);
        assert!(m.current_ruleset().ports.is_empty());
        let dead_veth = bridge::host_veth_name("dead", "n");
        assert!(m
            .exec
            .lines()
            .iter()
            .any(|l| l == &format!("ip link del dev {dead_veth}")));
    }
}
