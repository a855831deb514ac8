//! Container networking: the bridge networks of one daemon and each container's place
//! on them, over the `berth-network` library.
//!
//! Placement. Everything runs in the daemon process, which holds the pieces that must
//! outlive a request: the embedded DNS responders (one UDP socket per user network, on
//! its gateway address, in the host's namespace) and the userland proxies of ports
//! published on 127.0.0.1. The runtime's `create` forks and so never runs in the
//! daemon; networking therefore happens *before* the supervisor runs the container:
//!
//! 1. [`Engine::start`] asks [`Networking`] to prepare: a new network namespace (a
//!    short-lived thread unshares `CLONE_NEWNET` and hands back a descriptor to it),
//!    connected to each network (veth, address, default route over rtnetlink), the
//!    container's `/etc/hosts` and `/etc/resolv.conf` written, its names registered
//!    with the networks' DNS responders, its ports published (DNAT rules in berth's
//!    nft table, a proxy for 127.0.0.1). The bundle's network namespace is pointed at
//!    `/proc/<daemon>/fd/<n>`, and the runtime joins it.
//! 2. Once the container runs, the daemon closes its descriptor: the container alone
//!    holds the namespace, so the kernel removes it and its veth when the container
//!    exits, and a crash of the daemon leaves nothing mounted to clean up.
//! 3. A thread per running container waits on a pidfd of its init and, when it exits,
//!    withdraws its DNS names and published ports. Addresses stay leased to the
//!    container until it is removed (so a restart keeps them) or disconnected.
//! 4. After a daemon crash, [`Engine::reconcile_network`] at the next start restores
//!    bridges, rules and DNS responders, drops the leases, veths and rules of
//!    containers that are gone or stopped, and registers the names and ports of the
//!    containers still running again.
//!
//! Settings come from `<data-root>/daemon.json` ([`Settings`]).

use crate::error::{Error, Result};
use crate::record::{ContainerDir, NetworkMode, Record};
use crate::Engine;
use berth_network::exec::System;
use berth_network::files::{self, NameConfig};
use berth_network::ipam::{self, PoolSpec, Subnet};
use berth_network::{Manager, NetworkSpec, Published};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use berth_network::ports::{parse_publish, PortMapping, Proto};

/// The default network's name, as docker's.
pub const DEFAULT_NETWORK: &str = "bridge";

/// A container's membership of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndpointConfig {
    /// the network's name
    pub network: String,
    /// `--network-alias` (and `network connect --alias`)
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// `--mac-address` (`92:d0:c6:0a:29:33`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl EndpointConfig {
    /// The `--mac-address` as bytes; a bad one is refused.
    pub fn mac_bytes(&self) -> Result<Option<[u8; 6]>> {
        self.mac
            .as_deref()
            .map(|m| {
                berth_network::netlink::parse_mac(m).ok_or_else(|| {
                    Error::Invalid(format!(
                        "--mac-address {m}: invalid MAC address: use six hex bytes like 92:d0:c6:0a:29:33 (the first byte even: unicast)"
                    ))
                })
            })
            .transpose()
    }
}

/// Splits a `--network` value: the mode and, for bridge mode, the network's name.
pub fn parse_mode(s: &str) -> Result<(NetworkMode, Option<String>)> {
    Ok(match s {
        "none" => (NetworkMode::None, None),
        "host" => (NetworkMode::Host, None),
        "" | "bridge" | "default" => (NetworkMode::Bridge, Some(DEFAULT_NETWORK.into())),
        s => match s.strip_prefix("container:") {
            Some("") => {
                return Err(Error::Invalid(
                    "--network container:NAME needs the name or id of a running container".into(),
                ))
            }
            Some(c) => (NetworkMode::Container(c.to_string()), None),
            None => (NetworkMode::Bridge, Some(s.to_string())),
        },
    })
}

/// The `HostConfig.NetworkMode` docker would show.
pub fn mode_name(mode: &NetworkMode, endpoints: &[EndpointConfig]) -> String {
    match mode {
        NetworkMode::None => "none".into(),
        NetworkMode::Host => "host".into(),
        NetworkMode::Container(c) => format!("container:{c}"),
        NetworkMode::Bridge => endpoints
            .first()
            .map_or_else(|| DEFAULT_NETWORK.into(), |e| e.network.clone()),
    }
}

/// The daemon's network settings: `<data-root>/daemon.json`, with docker's key names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// the default bridge's gateway address and prefix (`"10.88.0.1/16"`); without
    /// it, the first candidate subnet free of host routes (never docker's
    /// 172.17.0.0/16)
    pub bip: Option<String>,
    /// the default bridge's interface name (`berth0` for /var/lib/berth)
    pub bridge: Option<String>,
    /// MTU of the default bridge and its veths
    pub mtu: Option<u32>,
    /// resolvers for containers (written into resolv.conf on the default bridge)
    /// and upstreams of the embedded DNS; `IP` or `IP:PORT`; default: the host's
    #[serde(default)]
    pub dns: Vec<String>,
}

impl Settings {
    /// Reads `<data_root>/daemon.json`; a missing file gives the defaults.
    pub fn load(data_root: &Path) -> Result<Settings> {
        let p = data_root.join("daemon.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Invalid(format!(
                    "{}: {e}: fix the file (keys: bip, bridge, mtu, dns)",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    fn upstreams(&self) -> Result<Vec<SocketAddr>> {
        self.dns
            .iter()
            .map(|d| {
                d.parse::<SocketAddr>()
                    .or_else(|_| d.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        Error::Invalid(format!(
                            "daemon.json: dns {d:?} is not an address: use IP or IP:PORT"
                        ))
                    })
            })
            .collect()
    }
}

/// FNV-1a of `s`, for names derived from the data root.
fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The nft table and default bridge of the daemon of `data_root`: `berth` and
/// `berth0` for the default data root, names derived from the path for others, so
/// several daemons (tests) never share rules.
pub fn host_names(data_root: &Path) -> (String, String) {
    if data_root == Path::new("/var/lib/berth") {
        return ("berth".into(), "berth0".into());
    }
    let h = short_hash(&data_root.to_string_lossy());
    (format!("berth_{h}"), format!("berth{h}"))
}

/// A network as listed: its definition and its address pool.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// name, id, bridge, flags, labels
    pub spec: NetworkSpec,
    /// subnet, gateway, range and leases (address to container id)
    pub pool: ipam::Pool,
}

impl NetworkInfo {
    /// Whether this is the default network.
    pub fn is_default(&self) -> bool {
        self.spec.name == DEFAULT_NETWORK
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    /// the name
    pub name: String,
    /// `--subnet`
    pub subnet: Option<String>,
    /// `--gateway`
    pub gateway: Option<String>,
    /// `--ip-range`
    pub ip_range: Option<String>,
    /// `--internal`
    pub internal: bool,
    /// `--label`
    pub labels: BTreeMap<String, String>,
    /// MTU (`-o com.docker.network.driver.mtu=N`)
    pub mtu: Option<u32>,
    /// `--aux-address name=ip`: addresses never given to containers
    pub aux_addresses: BTreeMap<String, String>,
    /// `--ipam-opt key=value`
    pub ipam_options: BTreeMap<String, String>,
    /// `--attachable`
    pub attachable: bool,
}

/// One of a container's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// the network
    pub network: String,
    /// the network's id
    pub network_id: String,
    /// the container's address (None while it has none)
    pub ip: Option<Ipv4Addr>,
    /// the gateway
    pub gateway: Ipv4Addr,
    /// prefix length
    pub prefix: u8,
    /// its aliases there
    pub aliases: Vec<String>,
}

/// What a running container has on its networks, for inspect.
#[derive(Debug, Clone, Default)]
pub struct ContainerNet {
    /// one per network, in the container's order
    pub attachments: Vec<Attachment>,
    /// its published ports with the host ports picked (running containers)
    pub ports: Vec<PortMapping>,
}

/// A running container's share of the daemon's memory.
#[derive(Debug)]
struct Live {
    gen: u64,
    networks: Vec<String>,
    published: Option<Published>,
}

/// The networking service of one daemon.
#[derive(Debug)]
pub struct Networking {
    mgr: Manager<System>,
    settings: Settings,
    bridge: String,
    live: Mutex<HashMap<String, Live>>,
    gen: AtomicU64,
}

/// A namespace prepared for a start; dropping it closes the daemon's hold on it.
#[derive(Debug)]
pub(crate) struct Prepared {
    _netns: Option<OwnedFd>,
    gen: u64,
}

fn net_err(e: berth_network::Error) -> Error {
    use berth_network::ipam::Error as I;
    use berth_network::Error as N;
    match e {
        N::NoNetwork(n) => Error::Missing(format!("network {n} not found")),
        N::NetworkInUse { .. } | N::NotConnected { .. } => Error::Conflict(e.to_string()),
        N::Ipam(
            I::BadSubnet(_)
            | I::OutsideSubnet { .. }
            | I::PoolExists(_)
            | I::Overlap { .. }
            | I::InUse(..)
            | I::Exhausted(..),
        )
        | N::Ports(_)
        | N::BadBridgeName(_) => Error::Invalid(e.to_string()),
        N::Proxy { .. } => Error::Conflict(format!(
            "{e}: {}: the port is taken; pick another with -p",
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        )),
        e => Error::Network(e),
    }
}

fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A new network namespace, held by the returned descriptor. `unshare` changes only
/// the calling thread, so a thread of its own does it and ends.
fn new_netns() -> Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<OwnedFd> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys("create a network namespace", e))?;
            std::fs::File::open("/proc/thread-self/ns/net")
                .map(OwnedFd::from)
                .map_err(|e| Error::io("open", "/proc/thread-self/ns/net", e))
        })
        .join()
        .map_err(|_| Error::Invalid("network namespace thread panicked".into()))?
    })
}

impl Networking {
    /// Opens the service of the daemon of `data_root`: restores the saved networks
    /// (bridges, rules, DNS responders) and makes sure the default network exists.
    pub fn open(data_root: &Path) -> Result<Arc<Networking>> {
        let settings = Settings::load(data_root)?;
        let (table, default_bridge) = host_names(data_root);
        let bridge = settings.bridge.clone().unwrap_or(default_bridge);
        let mut mgr = Manager::new(data_root.join("network"), System, &table).map_err(net_err)?;
        let ups = settings.upstreams()?;
        if !ups.is_empty() {
            mgr = mgr.with_upstreams(ups);
        }
        mgr.restore().map_err(net_err)?;
        let n = Networking {
            mgr,
            settings,
            bridge,
            live: Mutex::default(),
            gen: AtomicU64::new(1),
        };
        n.ensure_default()?;
        Ok(Arc::new(n))
    }

    fn ensure_default(&self) -> Result<()> {
        if self.find(DEFAULT_NETWORK).is_ok() {
            return Ok(());
        }
        let pool = match &self.settings.bip {
            Some(bip) => {
                let (gw, _) = bip.split_once('/').unwrap_or((bip, ""));
                PoolSpec {
                    subnet: Some(bip.parse::<Subnet>().map_err(|_| {
                        Error::Invalid(format!("daemon.json: bip {bip:?}: use a.b.c.d/len"))
                    })?),
                    gateway: gw.parse().ok(),
                    ..PoolSpec::default()
                }
            }
            None => PoolSpec::default(),
        };
        let mut spec = NetworkSpec::new(DEFAULT_NETWORK, &self.bridge);
        spec.mtu = self.settings.mtu.unwrap_or(1500);
        spec.id = new_id()?;
        spec.created = crate::record::now();
        if let Err(e) = self.mgr.create_network(&spec, &pool) {
            // a saved default network that could not come back (its subnet is taken
            // now): with no container holding an address there, choose afresh
            let idle = self
                .mgr
                .ipam()
                .pool(DEFAULT_NETWORK)
                .ok()
                .flatten()
                .is_some_and(|p| p.allocations.is_empty());
            if !idle || self.settings.bip.is_some() {
                return Err(net_err(e));
            }
            tracing::warn!(error = %e, "default network re-created on another subnet");
            self.mgr
                .ipam()
                .remove_pool(DEFAULT_NETWORK)
                .map_err(|e| net_err(e.into()))?;
            self.mgr.create_network(&spec, &pool).map_err(net_err)?;
        }
        Ok(())
    }

    /// Every network.
    pub fn networks(&self) -> Result<Vec<NetworkInfo>> {
        Ok(self
            .mgr
            .networks()
            .map_err(net_err)?
            .into_iter()
            .map(|(spec, pool)| NetworkInfo { spec, pool })
            .collect())
    }

    /// The network named `what` (a name, a full id or a unique id prefix).
    pub fn find(&self, what: &str) -> Result<NetworkInfo> {
        let all = self.networks()?;
        if let Some(n) = all
            .iter()
            .find(|n| n.spec.name == what || n.spec.id == what)
        {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&NetworkInfo> = all
            .iter()
            .filter(|n| !what.is_empty() && n.spec.id.starts_with(what))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::Missing(format!("network {what} not found"))),
            _ => Err(Error::Ambiguous(what.to_string())),
        }
    }

    /// `network create`: a user network with its own bridge and embedded DNS.
    pub fn create_network(&self, req: &NetworkCreate) -> Result<NetworkInfo> {
        crate::names::validate(&req.name)?;
        if ["none", "host", "default", DEFAULT_NETWORK].contains(&req.name.as_str()) {
            return Err(Error::Conflict(format!(
                "network name {:?} is reserved: choose another name",
                req.name
            )));
        }
        if self.find(&req.name).is_ok_and(|n| n.spec.name == req.name) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let parse = |what: &str, v: &Option<String>| -> Result<Option<Subnet>> {
            v.as_deref()
                .map(|s| {
                    s.parse::<Subnet>()
                        .map_err(|_| Error::Invalid(format!("--{what} {s:?}: use a.b.c.d/len")))
                })
                .transpose()
        };
        let pool = PoolSpec {
            subnet: parse("subnet", &req.subnet)?,
            gateway: req
                .gateway
                .as_deref()
                .map(|g| {
                    g.parse::<Ipv4Addr>().map_err(|_| {
                        Error::Invalid(format!("--gateway {g:?}: not an IPv4 address"))
                    })
                })
                .transpose()?,
            ip_range: parse("ip-range", &req.ip_range)?,
            aux: req
                .aux_addresses
                .iter()
                .map(|(k, v)| {
                    v.parse::<Ipv4Addr>()
                        .map(|ip| (k.clone(), ip))
                        .map_err(|_| {
                            Error::Invalid(format!("--aux-address {k}={v}: not an IPv4 address"))
                        })
                })
                .collect::<Result<_>>()?,
        };
        if pool.subnet.is_none()
            && (pool.gateway.is_some() || pool.ip_range.is_some() || !pool.aux.is_empty())
        {
            return Err(Error::Invalid(
                "--gateway, --ip-range and --aux-address need --subnet".into(),
            ));
        }
        let id = new_id()?;
        let mut spec = NetworkSpec::new(&req.name, &berth_network::bridge::user_bridge_name(&id));
        spec.internal = req.internal;
        spec.dns = true;
        spec.mtu = req.mtu.unwrap_or(1500);
        spec.id = id;
        spec.created = crate::record::now();
        spec.labels = req.labels.clone();
        spec.ipam_options = req.ipam_options.clone();
        spec.attachable = req.attachable;
        let pool = self.mgr.create_network(&spec, &pool).map_err(net_err)?;
        tracing::info!(network = %spec.name, subnet = %pool.subnet, "network created");
        Ok(NetworkInfo { spec, pool })
    }

    /// `network rm`: refused for the default network and while containers (running
    /// or stopped) are connected.
    pub fn remove_network(&self, what: &str) -> Result<NetworkInfo> {
        let n = self.find(what)?;
        if n.is_default() {
            return Err(Error::Conflict(
                "bridge is a pre-defined network and cannot be removed".into(),
            ));
        }
        if !n.pool.allocations.is_empty() {
            let ids: Vec<String> = n
                .pool
                .allocations
                .values()
                .map(|c| c.chars().take(12).collect())
                .collect();
            return Err(Error::Conflict(format!(
                "network {} has active endpoints ({}): remove or disconnect those containers first",
                n.spec.name,
                ids.join(", ")
            )));
        }
        self.mgr.remove_network(&n.spec.name).map_err(net_err)?;
        tracing::info!(network = %n.spec.name, "network removed");
        Ok(n)
    }

    /// A clean daemon stop: when no container runs, removes bridges, responders and
    /// the nft table (the definitions stay and come back with the next start).
    pub fn shutdown(&self, any_running: bool) {
        if any_running {
            return;
        }
        if let Err(e) = self.mgr.shutdown() {
            tracing::warn!(error = %e, "network shutdown incomplete");
        }
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Withdraws the names and ports of container `id` (of start `gen`, or any).
    fn withdraw(&self, id: &str, gen: Option<u64>) {
        let live = {
            let mut m = self.lock_live();
            match m.get(id) {
                Some(l) if gen.is_none_or(|g| g == l.gen) => m.remove(id),
                _ => None,
            }
        };
        let Some(live) = live else { return };
        for net in &live.networks {
            self.mgr.clear_names(net, id);
        }
        if live.published.is_some() {
            drop(live.published);
            if let Err(e) = self.mgr.unpublish(id) {
                tracing::warn!(container = %id, error = %e, "unpublish failed");
            }
        }
    }

    /// The leases of container `id` by network.
    fn leases(&self, id: &str) -> Result<BTreeMap<String, Ipv4Addr>> {
        Ok(self
            .mgr
            .ipam()
            .pools()
            .map_err(|e| net_err(e.into()))?
            .into_iter()
            .filter_map(|(net, p)| {
                p.allocations
                    .into_iter()
                    .find(|(_, o)| o == id)
                    .map(|(ip, _)| (net, ip))
            })
            .collect())
    }
}

/// Runs `f` when process `pid` exits (at once if it is gone), on a thread of its own.
fn on_exit(pid: i32, f: impl FnOnce() + Send + 'static) {
    let fd = berth_sys::proc::pidfd_open(pid).ok();
    let _ = std::thread::Builder::new()
        .name("berth-net-watch".into())
        .stack_size(64 << 10)
        .spawn(move || {
            if let Some(fd) = fd {
                let mut p = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                while let Err(nix::Error::EINTR) =
                    nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE)
                {}
            }
            f();
        });
}

/// Points the bundle's network namespace at `path` (or back to a new one).
fn set_netns_path(dir: &ContainerDir, path: Option<&Path>) -> Result<()> {
    let p = dir.bundle().join("config.json");
    let mut spec: serde_json::Value = crate::record::read_json(&p)?;
    let Some(list) = spec
        .pointer_mut("/linux/namespaces")
        .and_then(|v| v.as_array_mut())
    else {
        return Ok(());
    };
    let Some(ns) = list.iter_mut().find(|n| n["type"] == "network") else {
        return Ok(());
    };
    let want = path.map(|p| serde_json::Value::from(p.to_string_lossy().into_owned()));
    if ns.get("path") == want.as_ref() {
        return Ok(());
    }
    match (ns.as_object_mut(), want) {
        (Some(o), Some(w)) => {
            o.insert("path".into(), w);
        }
        (Some(o), None) => {
            o.remove("path");
        }
        _ => return Ok(()),
    }
    crate::record::write_json(&p, &spec)
}

fn write_file(dir: &ContainerDir, name: &str, data: &str) -> Result<()> {
    let p = dir.dir.join(name);
    std::fs::write(&p, data).map_err(|e| Error::io("write", &p, e))
}

/// The name files' inputs from the container's options.
fn name_config(rec: &Record, hostname: &str) -> Result<NameConfig> {
    let o = &rec.options;
    let bad = |what: &str, v: &str, how: &str| Error::Invalid(format!("{what} {v:?}: {how}"));
    let extra_hosts = o
        .extra_hosts
        .iter()
        .map(|h| {
            let (name, ip) = h
                .split_once(':')
                .or_else(|| h.split_once('='))
                .ok_or_else(|| bad("--add-host", h, "use NAME:IP"))?;
            let ip = ip.parse::<IpAddr>().map_err(|_| {
                bad(
                    "--add-host",
                    h,
                    "the address is not an IP (host-gateway is not supported)",
                )
            })?;
            Ok((name.to_string(), ip))
        })
        .collect::<Result<Vec<_>>>()?;
    let dns = o
        .dns
        .iter()
        .map(|d| {
            d.parse::<IpAddr>()
                .map_err(|_| bad("--dns", d, "not an IP address"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NameConfig {
        hostname: hostname.to_string(),
        domainname: o.domainname.clone(),
        addresses: Vec::new(),
        aliases: Vec::new(),
        extra_hosts,
        dns,
        dns_search: o.dns_search.clone(),
        dns_options: o.dns_options.clone(),
    })
}

impl Engine {
    /// Turns on bridge networking (the daemon does; see the module doc).
    pub fn with_networking(mut self) -> Result<Self> {
        self.network = Some(Networking::open(self.data_root())?);
        Ok(self)
    }

    /// Lets the shared parent cgroups go where no container is left in them (the
    /// engine keeps them while it runs: see `Runtime::keeping_shared_cgroup`).
    pub fn release_shared_cgroups(&self) {
        self.runtime.release_shared_cgroups();
    }

    /// The networking service, when on.
    pub fn networking(&self) -> Option<&Arc<Networking>> {
        self.network.as_ref()
    }

    fn networking_or_err(&self) -> Result<&Arc<Networking>> {
        self.network.as_ref().ok_or_else(|| {
            Error::Invalid(
                "networks are managed by the berth daemon: use berth through berthd".into(),
            )
        })
    }

    /// At create: the default network for bridge mode, networks checked, `-P`
    /// resolved against `--expose` and the image's EXPOSE, flags validated.
    pub(crate) fn net_resolve(
        &self,
        opts: &crate::CreateOptions,
        image_exposed: &[String],
    ) -> Result<crate::CreateOptions> {
        let mut o = opts.clone();
        if o.network == NetworkMode::Bridge && o.endpoints.is_empty() {
            o.endpoints.push(EndpointConfig {
                network: DEFAULT_NETWORK.into(),
                ..Default::default()
            });
        }
        if o.network != NetworkMode::Bridge {
            if !o.publish.is_empty() || o.publish_all {
                // docker ignores them for host mode; refusing says why nothing answers
                if o.network != NetworkMode::Host {
                    return Err(Error::Invalid(format!(
                        "-p/-P need a bridge network, not --network {}",
                        mode_name(&o.network, &o.endpoints)
                    )));
                }
            }
            o.endpoints.clear();
        }
        if let Some(n) = &self.network {
            for ep in &o.endpoints {
                let info = n.find(&ep.network).map_err(|e| match e {
                    // a 404 would make docker's CLI try to pull the image
                    Error::Missing(what) => Error::Invalid(format!(
                        "{what}: create it with `berth network create {}`",
                        ep.network
                    )),
                    e => e,
                })?;
                if let Some(ip) = ep.ip {
                    if info.is_default() {
                        return Err(Error::Invalid(
                            "--ip: user specified IP address is supported on user defined networks only".into(),
                        ));
                    }
                    if !info.pool.subnet.contains(ip) {
                        return Err(Error::Invalid(format!(
                            "--ip {ip} is not in subnet {} of network {}",
                            info.pool.subnet, info.spec.name
                        )));
                    }
                }
                if !ep.aliases.is_empty() && info.is_default() {
                    return Err(Error::Invalid(
                        "--network-alias: network-scoped aliases are supported for user-defined networks only".into(),
                    ));
                }
            }
        }
        let mut exposed: Vec<String> = image_exposed.to_vec();
        exposed.extend(o.expose.iter().cloned());
        exposed.extend(
            o.publish
                .iter()
                .map(|m| format!("{}/{}", m.container_port, m.proto)),
        );
        exposed.sort();
        exposed.dedup();
        if o.publish_all {
            for e in &exposed {
                let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
                let maps = berth_network::ports::parse_publish(&format!("{port}/{proto}"))
                    .map_err(|e| Error::Invalid(format!("EXPOSE {e}")))?;
                for m in maps {
                    if !o
                        .publish
                        .iter()
                        .any(|p| p.container_port == m.container_port && p.proto == m.proto)
                    {
                        o.publish.push(m);
                    }
                }
            }
        }
        o.expose = exposed;
        name_config(
            &crate::Record {
                id: String::new(),
                name: String::new(),
                created: String::new(),
                path: String::new(),
                args: Vec::new(),
                options: o.clone(),
                stop_signal: String::new(),
                shim_pid: None,
                pid: None,
                started_at: None,
                volumes: Vec::new(),
                image_id: None,
            },
            "",
        )?;
        Ok(o)
    }

    /// Before the supervisor runs the container: its network namespace and what
    /// goes with it (see the module doc). `None` when there is nothing to hold.
    pub(crate) fn net_prepare(&self, rec: &Record) -> Result<Option<Prepared>> {
        let dir = self.dir(&rec.id);
        match &rec.options.network {
            NetworkMode::Container(other) => {
                self.net_join_container(&dir, other)?;
                Ok(None)
            }
            NetworkMode::Bridge => match &self.network {
                Some(n) => self.net_prepare_bridge(n, &dir, rec).map(Some),
                None => {
                    let user_net = rec
                        .options
                        .endpoints
                        .iter()
                        .any(|e| e.network != DEFAULT_NETWORK);
                    if user_net || !rec.options.publish.is_empty() {
                        return Err(Error::Invalid(
                            "user networks and -p need the berth daemon (berthd), which runs the networking: start the container through it".into(),
                        ));
                    }
                    // loopback only, as --network none
                    set_netns_path(&dir, None)?;
                    Ok(None)
                }
            },
            NetworkMode::None | NetworkMode::Host => Ok(None),
        }
    }

    fn net_join_container(&self, dir: &ContainerDir, other: &str) -> Result<()> {
        let s = self.inspect(other)?;
        let pid = match (s.state, s.record.pid) {
            (crate::State::Running, Some(pid)) => pid,
            _ => {
                return Err(Error::Conflict(format!(
                "cannot join the network of container {other}: it is not running: start it first"
            )))
            }
        };
        if s.record.options.network == NetworkMode::Host {
            return Err(Error::Invalid(format!(
                "--network container:{other}: that container uses the host's network: use --network host"
            )));
        }
        let theirs = self.dir(&s.record.id);
        for f in ["hosts", "resolv.conf", "hostname"] {
            let data = std::fs::read_to_string(theirs.dir.join(f)).unwrap_or_default();
            write_file(dir, f, &data)?;
        }
        set_netns_path(dir, Some(Path::new(&format!("/proc/{pid}/ns/net"))))
    }

    fn net_prepare_bridge(
        &self,
        n: &Arc<Networking>,
        dir: &ContainerDir,
        rec: &Record,
    ) -> Result<Prepared> {
        let id = &rec.id;
        // what a previous run left (its watcher may not have fired yet)
        n.withdraw(id, None);
        let gen = n.gen.fetch_add(1, Ordering::Relaxed);
        let ns = new_netns()?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
        let hostname = crate::spec::hostname(&rec.options, id);
        let mut names = name_config(rec, &hostname)?;
        names.extra_hosts.extend(self.link_hosts(rec)?);
        let mut embedded = None;
        let mut first_ip = None;
        let mut networks = Vec::new();
        let mut live = Live {
            gen,
            networks: Vec::new(),
            published: None,
        };
        let result = (|| -> Result<()> {
            for (i, ep) in rec.options.endpoints.iter().enumerate() {
                let info = n.find(&ep.network)?;
                let net = info.spec.name.clone();
                let ifname = format!("eth{i}");
                let iface = berth_network::Iface {
                    name: &ifname,
                    ip: ep.ip,
                    mac: ep.mac_bytes()?,
                    default_route: i == 0,
                };
                let e = n.mgr.connect_as(&net, id, &path, &iface).map_err(net_err)?;
                first_ip.get_or_insert((e.ip, info.spec.internal));
                names.addresses.push(IpAddr::V4(e.ip));
                let mut dns_names = vec![rec.name.clone(), id.chars().take(12).collect()];
                dns_names.extend(ep.aliases.iter().cloned());
                n.mgr.set_names(&net, id, &dns_names).map_err(net_err)?;
                live.networks.push(net.clone());
                if embedded.is_none() {
                    embedded = n.mgr.dns_address(&net).map(|a| a.ip());
                }
                names.aliases.extend(ep.aliases.iter().cloned());
                networks.push(net);
            }
            if !rec.options.publish.is_empty() {
                let (ip, internal) = first_ip.ok_or_else(|| {
                    Error::Invalid("-p: the container is on no network to publish from".into())
                })?;
                if internal {
                    return Err(Error::Invalid(
                        "-p: ports cannot be published from an --internal network".into(),
                    ));
                }
                live.published = Some(
                    n.mgr
                        .publish(id, ip, &rec.options.publish)
                        .map_err(net_err)?,
                );
            }
            Ok(())
        })();
        if let Err(e) = result {
            n.lock_live().insert(id.clone(), live);
            n.withdraw(id, Some(gen));
            return Err(e);
        }
        let host_resolv = if n.settings.dns.is_empty() {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        } else {
            n.settings
                .dns
                .iter()
                .filter_map(|d| d.parse::<IpAddr>().ok())
                .map(|ip| format!("nameserver {ip}\n"))
                .collect()
        };
        write_file(dir, "hosts", &files::hosts_file(&names))?;
        write_file(
            dir,
            "resolv.conf",
            &files::resolv_conf(&names, &host_resolv, embedded),
        )?;
        n.lock_live().insert(id.clone(), live);
        let for_runtime = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
        if let Err(e) = set_netns_path(dir, Some(Path::new(&for_runtime))) {
            n.withdraw(id, Some(gen));
            return Err(e);
        }
        Ok(Prepared {
            _netns: Some(ns),
            gen,
        })
    }

    /// After the supervisor reported: watch the container's exit, or withdraw at once
    /// when the start failed. Drops the daemon's hold on the namespace.
    pub(crate) fn net_started(&self, id: &str, prepared: Option<Prepared>, ok: bool) {
        let (Some(p), Some(n)) = (prepared, &self.network) else {
            return;
        };
        let dir = self.dir(id);
        let pid = dir.load().ok().and_then(|r| r.pid);
        // the daemon's descriptor goes with `p`: the bundle names the namespace by
        // the container's own process from now on (exec and inspection join it there)
        let path = pid
            .filter(|_| ok)
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/net")));
        if let Err(e) = set_netns_path(&dir, path.as_deref()) {
            tracing::warn!(container = %id, error = %e, "cannot update the bundle's network namespace");
        }
        match (ok, pid) {
            (true, Some(pid)) => {
                let (n, id, gen) = (n.clone(), id.to_string(), p.gen);
                on_exit(pid, move || n.withdraw(&id, Some(gen)));
            }
            _ => n.withdraw(id, Some(p.gen)),
        }
    }

    /// At removal: names, ports and addresses of the container go. A supervisor
    /// removing its `--rm` container has no networking service: it releases the
    /// leases in the (locked, shared) IPAM files; the daemon withdrew the names and
    /// ports when the container exited.
    pub(crate) fn net_release(&self, rec: &Record) {
        let Some(n) = &self.network else {
            if rec.options.endpoints.is_empty() {
                return;
            }
            if let Ok(ipam) = ipam::Ipam::open(self.data_root().join("network")) {
                for ep in &rec.options.endpoints {
                    if let Err(e) = ipam.release(&ep.network, &rec.id) {
                        tracing::warn!(container = %rec.id, network = %ep.network, error = %e, "releasing the address failed");
                    }
                }
            }
            return;
        };
        n.withdraw(&rec.id, None);
        for net in rec.options.endpoints.iter().map(|e| &e.network) {
            if let Err(e) = n.mgr.release(net, &rec.id) {
                tracing::warn!(container = %rec.id, network = %net, error = %e, "releasing the address failed");
            }
        }
    }

    /// What the container has on its networks (addresses while leased, ports while
    /// running).
    pub fn container_network(&self, rec: &Record) -> ContainerNet {
        let Some(n) = &self.network else {
            return ContainerNet::default();
        };
        let pools = n.mgr.ipam().pools().unwrap_or_default();
        let specs: HashMap<String, NetworkSpec> = n
            .mgr
            .networks()
            .unwrap_or_default()
            .into_iter()
            .map(|(s, _)| (s.name.clone(), s))
            .collect();
        let attachments = rec
            .options
            .endpoints
            .iter()
            .filter_map(|ep| {
                let pool = pools.get(&ep.network)?;
                Some(Attachment {
                    network: ep.network.clone(),
                    network_id: specs
                        .get(&ep.network)
                        .map(|s| s.id.clone())
                        .unwrap_or_default(),
                    ip: pool
                        .allocations
                        .iter()
                        .find(|(_, o)| **o == rec.id)
                        .map(|(ip, _)| *ip),
                    gateway: pool.gateway,
                    prefix: pool.subnet.prefix(),
                    aliases: ep.aliases.clone(),
                })
            })
            .collect();
        let ports = n
            .lock_live()
            .get(&rec.id)
            .and_then(|l| l.published.as_ref().map(|p| p.mappings.clone()))
            .unwrap_or_default();
        ContainerNet { attachments, ports }
    }

    /// `network connect`: recorded for the next start and, when the container runs,
    /// applied now (a new `ethN`, its names registered).
    pub fn connect_network(&self, container: &str, ep: EndpointConfig) -> Result<()> {
        let n = self.networking_or_err()?.clone();
        let info = n.find(&ep.network)?;
        let s = self.inspect(container)?;
        let id = s.record.id.clone();
        let dir = self.dir(&id);
        let _lock = dir.lock()?;
        let mut rec = dir.load()?;
        if rec.options.network != NetworkMode::Bridge {
            return Err(Error::Conflict(format!(
                "container {} uses --network {}: only containers on bridge networks can be connected",
                rec.name,
                mode_name(&rec.options.network, &rec.options.endpoints)
            )));
        }
        if rec
            .options
            .endpoints
            .iter()
            .any(|e| e.network == info.spec.name)
        {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, info.spec.name
            )));
        }
        let ep = EndpointConfig {
            network: info.spec.name.clone(),
            ..ep
        };
        let mut probe = rec.clone();
        probe.options.endpoints = vec![ep.clone()];
        self.net_resolve(&probe.options, &[])?;
        if s.state == crate::State::Running {
            let pid = rec
                .pid
                .ok_or_else(|| Error::Conflict("container has no pid".into()))?;
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let ifname = format!("eth{}", rec.options.endpoints.len());
            let first = rec.options.endpoints.is_empty();
            let iface = berth_network::Iface {
                name: &ifname,
                ip: ep.ip,
                mac: ep.mac_bytes()?,
                default_route: first,
            };
            n.mgr
                .connect_as(&info.spec.name, &id, &path, &iface)
                .map_err(net_err)?;
            let mut names = vec![rec.name.clone(), id.chars().take(12).collect()];
            names.extend(ep.aliases.iter().cloned());
            n.mgr
                .set_names(&info.spec.name, &id, &names)
                .map_err(net_err)?;
            if let Some(l) = n.lock_live().get_mut(&id) {
                l.networks.push(info.spec.name.clone());
            }
        }
        rec.options.endpoints.push(ep);
        dir.save(&rec)
    }

    /// `network disconnect`: the endpoint goes from the record and, when the
    /// container runs, from its namespace; its address is released.
    pub fn disconnect_network(&self, container: &str, network: &str) -> Result<()> {
        let n = self.networking_or_err()?.clone();
        let info = n.find(network)?;
        let s = self.inspect(container)?;
        let id = s.record.id.clone();
        let dir = self.dir(&id);
        let _lock = dir.lock()?;
        let mut rec = dir.load()?;
        let before = rec.options.endpoints.len();
        rec.options
            .endpoints
            .retain(|e| e.network != info.spec.name);
        if rec.options.endpoints.len() == before {
            return Err(Error::Conflict(format!(
                "container {} is not connected to network {}",
                rec.name, info.spec.name
            )));
        }
        if s.state == crate::State::Running {
            n.mgr.disconnect(&info.spec.name, &id).map_err(net_err)?;
            if let Some(l) = n.lock_live().get_mut(&id) {
                l.networks.retain(|x| x != &info.spec.name);
            }
        } else {
            n.mgr.release(&info.spec.name, &id).map_err(net_err)?;
        }
        dir.save(&rec)
    }

    /// Ids of the containers connected to `network` (leases).
    pub fn network_containers(&self, info: &NetworkInfo) -> Vec<(String, Ipv4Addr)> {
        info.pool
            .allocations
            .iter()
            .map(|(ip, c)| (c.clone(), *ip))
            .collect()
    }

    /// At daemon start (after a crash or a clean stop): leases, veths and rules of
    /// containers that are gone or stopped are dropped; running containers get their
    /// names and ports back and are watched again.
    pub fn reconcile_network(&self) -> Result<()> {
        let Some(n) = &self.network else {
            return Ok(());
        };
        let list = self.list(true)?;
        let mut keep: Vec<(String, String)> = Vec::new();
        for s in &list {
            for ep in &s.record.options.endpoints {
                keep.push((ep.network.clone(), s.record.id.clone()));
            }
        }
        let pairs: Vec<(&str, &str)> = keep.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        n.mgr.reconcile(&pairs).map_err(net_err)?;
        for s in list {
            let rec = &s.record;
            let running = s.state == crate::State::Running;
            if !running || rec.options.network != NetworkMode::Bridge {
                let _ = n.mgr.unpublish(&rec.id);
                continue;
            }
            let Some(pid) = rec.pid else { continue };
            let gen = n.gen.fetch_add(1, Ordering::Relaxed);
            let mut live = Live {
                gen,
                networks: Vec::new(),
                published: None,
            };
            let leases = n.leases(&rec.id)?;
            for ep in &rec.options.endpoints {
                if !leases.contains_key(&ep.network) {
                    continue;
                }
                let mut names = vec![rec.name.clone(), rec.id.chars().take(12).collect()];
                names.extend(ep.aliases.iter().cloned());
                if n.mgr.set_names(&ep.network, &rec.id, &names).is_ok() {
                    live.networks.push(ep.network.clone());
                }
            }
            let saved = n.mgr.saved_ports(&rec.id);
            let ip = rec
                .options
                .endpoints
                .first()
                .and_then(|e| leases.get(&e.network));
            if let (false, Some(ip)) = (saved.is_empty(), ip) {
                match n.mgr.publish(&rec.id, *ip, &saved) {
                    Ok(p) => live.published = Some(p),
                    Err(e) => {
                        tracing::warn!(container = %rec.id, error = %e, "re-publishing failed")
                    }
                }
            }
            n.lock_live().insert(rec.id.clone(), live);
            let (n2, id) = (n.clone(), rec.id.clone());
            on_exit(pid, move || n2.withdraw(&id, Some(gen)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(
            parse_mode("mynet").expect("ok"),
            (NetworkMode::Bridge, Some("mynet".into()))
        );
        assert_eq!(
            parse_mode("default").expect("ok"),
            (NetworkMode::Bridge, Some("bridge".into()))
        );
        assert_eq!(
            parse_mode("container:web").expect("ok").0,
            NetworkMode::Container("web".into())
        );
        assert!(parse_mode("container:").is_err());
        let eps = [EndpointConfig {
            network: "mynet".into(),
            ..Default::default()
        }];
        assert_eq!(mode_name(&NetworkMode::Bridge, &eps), "mynet");
        assert_eq!(mode_name(&NetworkMode::Bridge, &[]), "bridge");
        assert_eq!(
            mode_name(&NetworkMode::Container("x".into()), &[]),
            "container:x"
        );
    }

    #[test]
    fn names_per_data_root() {
        assert_eq!(
            host_names(Path::new("/var/lib/berth")),
            ("berth".to_string(), "berth0".to_string())
        );
        let (t, b) = host_names(Path::new("/tmp/x"));
        assert!(t.starts_with("berth_") && b.starts_with("berth"));
        assert!(b.len() <= 15);
        assert_ne!(host_names(Path::new("/tmp/y")).1, b);
    }

    #[test]
    fn settings_parse() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(Settings::load(d.path()).expect("defaults").bip.is_none());
        std::fs::write(
            d.path().join("daemon.json"),
            r#"{"bip":"10.233.9.1/24","dns":["127.0.0.1:5353","10.0.0.2"]}"#,
        )
        .expect("write");
        let s = Settings::load(d.path()).expect("load");
        assert_eq!(s.bip.as_deref(), Some("10.233.9.1/24"));
        let ups = s.upstreams().expect("upstreams");
        assert_eq!(ups[0].port(), 5353);
        assert_eq!(ups[1].port(), 53);
        std::fs::write(d.path().join("daemon.json"), r#"{"dns":["nope"]}"#).expect("write");
        assert!(Settings::load(d.path()).expect("load").upstreams().is_err());
        std::fs::write(d.path().join("daemon.json"), "{").expect("write");
        assert!(Settings::load(d.path()).is_err());
    }
}
