//! IP address management: one IPv4 pool per network, persisted in
//! `<state>/pools.json` (subnets, durable) and `<state>/leases.json`
//! (allocations).
//!
//! Every read-modify-write holds an exclusive `flock` on `<state>/ipam.lock`
//! and replaces the JSON files by an atomic rename, so allocators in several
//! threads or processes never hand out one address twice, and a crash never
//! leaves a half-written file. An owner (container id) that asks again for an
//! address on the same network gets the one it already holds, so restarts
//! keep addresses.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Errors of address management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A subnet, address or range string could not be parsed.
    #[error("invalid subnet {0:?}: expected a.b.c.d/len")]
    BadSubnet(String),
    /// The gateway or ip-range lies outside the subnet.
    #[error("{what} {value} is not inside subnet {subnet}")]
    OutsideSubnet {
        /// "gateway", "ip-range" or "address".
        what: &'static str,
        /// The offending value.
        value: String,
        /// The pool's subnet.
        subnet: Subnet,
    },
    /// A pool with this network name already exists.
    #[error("network {0} already has an address pool")]
    PoolExists(String),
    /// The new subnet overlaps another network's subnet.
    #[error(
        "subnet {subnet} overlaps subnet {other} of network {network}: choose another --subnet"
    )]
    Overlap {
        /// The requested subnet.
        subnet: Subnet,
        /// The existing subnet.
        other: Subnet,
        /// The network owning `other`.
        network: String,
    },
    /// No pool for this network.
    #[error("network {0} has no address pool")]
    NoPool(String),
    /// Every address of the pool is taken.
    #[error("no free address left in {0} of network {1}")]
    Exhausted(Subnet, String),
    /// A requested address is already allocated to another owner.
    #[error("address {0} is already in use on network {1}")]
    InUse(Ipv4Addr, String),
    /// No candidate subnet is free of host routes.
    #[error("no free subnet for the default bridge: every candidate overlaps a host route; set one in the daemon settings")]
    NoFreeSubnet,
    /// Reading or writing the state files failed.
    #[error("ipam state {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file holds invalid JSON.
    #[error("ipam state {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Result of address management.
pub type Result<T> = std::result::Result<T, Error>;

/// An IPv4 network in CIDR form, normalised to its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// Builds a subnet; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let net = u32::from(addr) & mask(prefix);
        Some(Self {
            addr: Ipv4Addr::from(net),
            prefix,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Whether `ip` lies inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// The first usable host address (the conventional gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        if self.prefix >= 31 {
            return self.addr;
        }
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::BadSubnet(s.to_string());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        let addr = a.parse::<Ipv4Addr>().map_err(|_| bad())?;
        Subnet::new(addr, p).ok_or_else(bad)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// What a network asks of IPAM when it is created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolSpec {
    /// The subnet (`--subnet`).
    pub subnet: Option<Subnet>,
    /// The gateway (`--gateway`); defaults to the subnet's first host.
    pub gateway: Option<Ipv4Addr>,
    /// Allocate container addresses only from this range (`--ip-range`).
    pub ip_range: Option<Subnet>,
    /// Addresses never handed to containers (`--aux-address name=ip`).
    pub aux: BTreeMap<String, Ipv4Addr>,
}

/// A network's address pool as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The subnet.
    pub subnet: Subnet,
    /// The gateway address, held by the bridge.
    pub gateway: Ipv4Addr,
    /// The range container addresses come from.
    pub ip_range: Subnet,
    /// Allocated address to owner (container id).
    #[serde(default)]
    pub allocations: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out, so released ones are not reused at once.
    #[serde(default)]
    pub last: Option<Ipv4Addr>,
    /// Reserved auxiliary addresses by name (`--aux-address`).
    #[serde(default)]
    pub aux: BTreeMap<String, Ipv4Addr>,
}

impl Pool {
    /// Whether `ip` is one of the reserved auxiliary addresses.
    pub fn is_aux(&self, ip: Ipv4Addr) -> bool {
        self.aux.values().any(|a| *a == ip)
    }

    fn is_usable(&self, ip: Ipv4Addr) -> bool {
        self.ip_range.contains(ip)
            && self.subnet.contains(ip)
            && ip != self.gateway
            && !self.is_aux(ip)
            && (self.subnet.prefix >= 31
                || (ip != self.subnet.addr && ip != self.subnet.broadcast()))
    }

    fn next_free(&self) -> Option<Ipv4Addr> {
        let lo = u32::from(self.ip_range.addr);
        let hi = u32::from(self.ip_range.broadcast());
        let start = match self.last {
            Some(l) if self.ip_range.contains(l) => u32::from(l).wrapping_add(1),
            _ => lo,
        };
        let size = u64::from(hi - lo) + 1;
        (0..size)
            .map(|i| lo + ((u64::from(start.max(lo) - lo) + i) % size) as u32)
            .map(Ipv4Addr::from)
            .find(|ip| self.is_usable(*ip) && !self.allocations.contains_key(ip))
    }
}

/// The durable part of a pool (`pools.json`, fsynced: rare changes).
#[derive(Serialize, Deserialize)]
struct PoolDef {
    subnet: Subnet,
    gateway: Ipv4Addr,
    ip_range: Subnet,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    aux: BTreeMap<String, Ipv4Addr>,
}

/// The leases of a pool (`leases.json`, replaced atomically but not
/// fsynced: that fsync cost ~8 ms per container start here, and it only
/// guards against a machine crash, after which no container runs anyway;
/// a daemon crash keeps the page cache, so restarts keep addresses).
#[derive(Default, Serialize, Deserialize)]
struct Leases {
    #[serde(default)]
    allocations: BTreeMap<Ipv4Addr, String>,
    #[serde(default)]
    last: Option<Ipv4Addr>,
}

const POOLS: &str = "pools.json";
const LEASES: &str = "leases.json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Save {
    Nothing,
    Leases,
    All,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// Reads a JSON file; a missing or empty one (a machine crash before the
/// data reached the disk) reads as the default.
fn read_json<T: Default + serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    match fs::read(path) {
        Ok(b) if b.is_empty() => Ok(T::default()),
        Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Replaces `path` by an atomic rename, fsyncing the data first if `durable`.
fn write_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(value).map_err(|source| Error::Corrupt {
        path: tmp.clone(),
        source,
    })?;
    let mut fh = File::create(&tmp).map_err(io_err(&tmp))?;
    fh.write_all(&data).map_err(io_err(&tmp))?;
    if durable {
        fh.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[derive(Debug, Default)]
struct State {
    pools: BTreeMap<String, Pool>,
}

/// The persistent allocator. Cheap to clone paths around; every call locks.
#[derive(Clone, Debug)]
pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    /// Opens (creating) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Runs `f` on the state under the exclusive lock and saves what
    /// `save` says when `f` succeeds.
    fn with_state<T>(&self, save: Save, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let lock_path = self.dir.join("ipam.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let _lock =
            Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
                path: lock_path.clone(),
                source: e.into(),
            })?;
        let defs: BTreeMap<String, PoolDef> = read_json(&self.dir.join(POOLS))?;
        let mut leases: BTreeMap<String, Leases> = read_json(&self.dir.join(LEASES))?;
        let mut state = State {
            pools: defs
                .into_iter()
                .map(|(name, d)| {
                    let l = leases.remove(&name).unwrap_or_default();
                    let pool = Pool {
                        subnet: d.subnet,
                        gateway: d.gateway,
                        ip_range: d.ip_range,
                        allocations: l.allocations,
                        last: l.last,
                        aux: d.aux,
                    };
                    (name, pool)
                })
                .collect(),
        };
        let out = f(&mut state)?;
        if save == Save::All {
            let defs: BTreeMap<&String, PoolDef> = state
                .pools
                .iter()
                .map(|(k, p)| {
                    (
                        k,
                        PoolDef {
                            subnet: p.subnet,
                            gateway: p.gateway,
                            ip_range: p.ip_range,
                            aux: p.aux.clone(),
                        },
                    )
                })
                .collect();
            write_json(&self.dir.join(POOLS), &defs, true)?;
        }
        if save != Save::Nothing {
            let leases: BTreeMap<&String, Leases> = state
                .pools
                .iter()
                .map(|(k, p)| {
                    (
                        k,
                        Leases {
                            allocations: p.allocations.clone(),
                            last: p.last,
                        },
                    )
                })
                .collect();
            write_json(&self.dir.join(LEASES), &leases, false)?;
        }
        Ok(out)
    }

    /// Creates the pool of `network`. Without a subnet in `spec`, the first
    /// candidate free of host routes and other pools is taken.
    pub fn add_pool(&self, network: &str, spec: &PoolSpec, host_routes: &[Subnet]) -> Result<Pool> {
        self.with_state(Save::All, |st| {
            if st.pools.contains_key(network) {
                return Err(Error::PoolExists(network.to_string()));
            }
            let subnet = match spec.subnet {
                Some(s) => s,
                None => {
                    let mut taken: Vec<Subnet> = host_routes.to_vec();
                    taken.extend(st.pools.values().map(|p| p.subnet));
                    pick_free_subnet(&default_candidates(), &taken).ok_or(Error::NoFreeSubnet)?
                }
            };
            if let Some((name, p)) = st.pools.iter().find(|(_, p)| p.subnet.overlaps(&subnet)) {
                return Err(Error::Overlap {
                    subnet,
                    other: p.subnet,
                    network: name.clone(),
                });
            }
            let pool = build_pool(subnet, spec)?;
            st.pools.insert(network.to_string(), pool.clone());
            Ok(pool)
        })
    }

    /// Removes the pool of `network` with all its allocations.
    pub fn remove_pool(&self, network: &str) -> Result<()> {
        self.with_state(Save::All, |st| {
            st.pools.remove(network);
            Ok(())
        })
    }

    /// The pool of `network`, if any.
    pub fn pool(&self, network: &str) -> Result<Option<Pool>> {
        self.with_state(Save::Nothing, |st| Ok(st.pools.get(network).cloned()))
    }

    /// All pools by network name.
    pub fn pools(&self) -> Result<BTreeMap<String, Pool>> {
        self.with_state(Save::Nothing, |st| Ok(st.pools.clone()))
    }

    /// Allocates an address for `owner` on `network` (`requested` for
    /// `--ip`). An owner already holding an address gets it back.
    pub fn allocate(
        &self,
        network: &str,
        owner: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        self.with_state(Save::Leases, |st| {
            let pool = st
                .pools
                .get_mut(network)
                .ok_or_else(|| Error::NoPool(network.to_string()))?;
            if let Some((ip, _)) = pool.allocations.iter().find(|(_, o)| o.as_str() == owner) {
                if requested.is_none() || requested == Some(*ip) {
                    return Ok(*ip);
                }
            }
            let ip = match requested {
                Some(ip) => {
                    if !pool.subnet.contains(ip) || ip == pool.gateway || pool.is_aux(ip) {
                        return Err(Error::OutsideSubnet {
                            what: "address",
                            value: ip.to_string(),
                            subnet: pool.subnet,
                        });
                    }
                    if pool.allocations.get(&ip).is_some_and(|o| o != owner) {
                        return Err(Error::InUse(ip, network.to_string()));
                    }
                    ip
                }
                None => pool
                    .next_free()
                    .ok_or_else(|| Error::Exhausted(pool.ip_range, network.to_string()))?,
            };
            pool.allocations.retain(|_, o| o != owner);
            pool.allocations.insert(ip, owner.to_string());
            pool.last = Some(ip);
            Ok(ip)
        })
    }

    /// Releases whatever `owner` holds on `network`.
    pub fn release(&self, network: &str, owner: &str) -> Result<()> {
        self.with_state(Save::Leases, |st| {
            if let Some(pool) = st.pools.get_mut(network) {
                pool.allocations.retain(|_, o| o != owner);
            }
            Ok(())
        })
    }
}

fn build_pool(subnet: Subnet, spec: &PoolSpec) -> Result<Pool> {
    let gateway = spec.gateway.unwrap_or_else(|| subnet.first_host());
    if !subnet.contains(gateway) {
        return Err(Error::OutsideSubnet {
            what: "gateway",
            value: gateway.to_string(),
            subnet,
        });
    }
    let ip_range = spec.ip_range.unwrap_or(subnet);
    if !subnet.overlaps(&ip_range) || ip_range.prefix < subnet.prefix {
        return Err(Error::OutsideSubnet {
            what: "ip-range",
            value: ip_range.to_string(),
            subnet,
        });
    }
    for (name, ip) in &spec.aux {
        if !subnet.contains(*ip) || *ip == gateway {
            return Err(Error::OutsideSubnet {
                what: "aux-address",
                value: format!("{name}={ip}"),
                subnet,
            });
        }
    }
    Ok(Pool {
        subnet,
        gateway,
        ip_range,
        allocations: BTreeMap::new(),
        last: None,
        aux: spec.aux.clone(),
    })
}

/// Candidate subnets for the default bridge and for networks created
/// without `--subnet`, in order of preference. Docker's 172.17.0.0/16 is
/// left out on purpose, so berth and docker can run side by side.
pub fn default_candidates() -> Vec<Subnet> {
    let mut v = Vec::new();
    for b in 88..=99u8 {
        v.extend(Subnet::new(Ipv4Addr::new(10, b, 0, 0), 16));
    }
    for b in 30..=31u8 {
        for c in 0..=255u8 {
            v.extend(Subnet::new(Ipv4Addr::new(172, b, c, 0), 24));
        }
    }
    v
}

/// The first candidate that overlaps none of `taken` (nor docker's
/// 172.17.0.0/16).
pub fn pick_free_subnet(candidates: &[Subnet], taken: &[Subnet]) -> Option<Subnet> {
    let docker = Subnet::new(Ipv4Addr::new(172, 17, 0, 0), 16)?;
    candidates
        .iter()
        .copied()
        .find(|c| !c.overlaps(&docker) && !taken.iter().any(|t| t.prefix > 0 && t.overlaps(c)))
}

/// The destinations of the host's routes (default routes left out), read
/// from `/proc/net/route` and, when present, `ip -j route show table all`.
pub fn host_routes() -> Vec<Subnet> {
    let mut out = fs::read_to_string("/proc/net/route")
        .map(|s| parse_proc_route(&s))
        .unwrap_or_default();
    if let Ok(o) = std::process::Command::new("ip")
        .args(["-j", "-4", "route", "show", "table", "all"])
        .output()
    {
        if o.status.success() {
            out.extend(parse_ip_json_routes(&String::from_utf8_lossy(&o.stdout)));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Parses `/proc/net/route` (hex, little-endian destination and mask).
pub fn parse_proc_route(text: &str) -> Vec<Subnet> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let prefix = m.swap_bytes().leading_ones() as u8;
            Subnet::new(Ipv4Addr::from(dst.swap_bytes()), prefix).filter(|s| s.prefix > 0)
        })
        .collect()
}

/// Parses the JSON of `ip -j route`.
pub fn parse_ip_json_routes(text: &str) -> Vec<Subnet> {
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("dst")?.as_str()?.parse::<Subnet>().ok())
        .filter(|s| {
            s.prefix > 0
                && !s.addr.is_loopback()
                && !s.addr.is_multicast()
                && !s.addr.is_broadcast()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    #[test]
    fn aux_addresses_are_never_handed_out() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(d.path()).unwrap();
        let spec = PoolSpec {
            subnet: Some(s("10.206.0.0/29")),
            aux: [("router".to_string(), Ipv4Addr::new(10, 206, 0, 2))].into(),
            ..Default::default()
        };
        let p = ipam.add_pool("n", &spec, &[]).unwrap();
        assert!(p.is_aux(Ipv4Addr::new(10, 206, 0, 2)));
        let got: Vec<Ipv4Addr> = (0..4)
            .map(|i| ipam.allocate("n", &format!("c{i}"), None).unwrap())
            .collect();
        assert!(!got.contains(&Ipv4Addr::new(10, 206, 0, 2)), "{got:?}");
        assert!(ipam
            .allocate("n", "x", Some(Ipv4Addr::new(10, 206, 0, 2)))
            .is_err());
        // persisted
        let again = Ipam::open(d.path()).unwrap().pool("n").unwrap().unwrap();
        assert_eq!(again.aux, p.aux);
        let outside = PoolSpec {
            subnet: Some(s("10.207.0.0/24")),
            aux: [("a".to_string(), Ipv4Addr::new(10, 9, 9, 9))].into(),
            ..Default::default()
        };
        assert!(ipam.add_pool("m", &outside, &[]).is_err());
    }

    #[test]
    fn subnet_parse_and_math() {
        let n = s("10.88.3.7/16");
        assert_eq!(n.to_string(), "10.88.0.0/16");
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert!(n.contains(Ipv4Addr::new(10, 88, 1, 1)));
        assert!(!n.contains(Ipv4Addr::new(10, 89, 0, 1)));
        assert!(n.overlaps(&s("10.0.0.0/8")));
        assert!(!n.overlaps(&s("10.89.0.0/16")));
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("foo".parse::<Subnet>().is_err());
    }

    #[test]
    fn proc_route_parsing() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_proc_route(t),
            vec![s("192.0.2.0/24"), s("172.17.0.0/16")]
        );
    }

    #[test]
    fn ip_json_parsing() {
        let t = r#"[{"dst":"default","gateway":"192.0.2.1"},{"dst":"10.88.0.0/16"},{"dst":"127.0.0.1","table":"local"},{"dst":"192.0.2.9"}]"#;
        assert_eq!(
            parse_ip_json_routes(t),
            vec![s("10.88.0.0/16"), s("192.0.2.9/32")]
        );
    }

    #[test]
    fn picks_first_free_candidate() {
        let c = default_candidates();
        assert_eq!(pick_free_subnet(&c, &[]), Some(s("10.88.0.0/16")));
        assert_eq!(
            pick_free_subnet(&c, &[s("10.88.5.0/24")]),
            Some(s("10.89.0.0/16"))
        );
        // a /8 route covering every 10.x candidate pushes us to 172.30.x
        assert_eq!(
            pick_free_subnet(&c, &[s("10.0.0.0/8")]),
            Some(s("172.30.0.0/24"))
        );
        // docker's subnet is never picked even when it is a candidate
        assert_eq!(
            pick_free_subnet(&[s("172.17.0.0/16"), s("172.30.1.0/24")], &[]),
            Some(s("172.30.1.0/24"))
        );
    }

    #[test]
    fn allocate_release_persist() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(d.path()).unwrap();
        let spec = PoolSpec {
            subnet: Some(s("10.200.0.0/29")),
            ..Default::default()
        };
        let p = ipam.add_pool("n1", &spec, &[]).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(10, 200, 0, 1));
        let a = ipam.allocate("n1", "c1", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 200, 0, 2));
        // idempotent for the same owner, and survives reopening
        let ipam2 = Ipam::open(d.path()).unwrap();
        assert_eq!(ipam2.allocate("n1", "c1", None).unwrap(), a);
        let b = ipam.allocate("n1", "c2", None).unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 200, 0, 3));
        assert!(matches!(
            ipam.allocate("n1", "c3", Some(b)),
            Err(Error::InUse(..))
        ));
        ipam.release("n1", "c1").unwrap();
        // .4 .5 .6 then wraps to .2; .7 is broadcast
        let got: Vec<_> = (3..7)
            .map(|i| ipam.allocate("n1", &format!("x{i}"), None).unwrap())
            .collect();
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 200, 0, 2)));
        assert!(matches!(
            ipam.allocate("n1", "full", None),
            Err(Error::Exhausted(..))
        ));
        assert!(matches!(
            ipam.add_pool("n2", &spec, &[]),
            Err(Error::Overlap { .. })
        ));
        ipam.remove_pool("n1").unwrap();
        assert!(ipam.pool("n1").unwrap().is_none());
    }

    #[test]
    fn empty_leases_after_machine_crash_keep_pools() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(d.path()).unwrap();
        let spec = PoolSpec {
            subnet: Some(s("10.205.0.0/24")),
            ..Default::default()
        };
        ipam.add_pool("n", &spec, &[]).unwrap();
        ipam.allocate("n", "c", None).unwrap();
        std::fs::write(d.path().join(LEASES), b"").unwrap();
        let p = ipam.pool("n").unwrap().unwrap();
        assert_eq!(p.subnet, s("10.205.0.0/24"));
        assert!(p.allocations.is_empty());
        std::fs::write(d.path().join(POOLS), b"{").unwrap();
        assert!(matches!(ipam.pool("n"), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn ip_range_and_gateway_checks() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(d.path()).unwrap();
        let bad = PoolSpec {
            subnet: Some(s("10.201.0.0/24")),
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            ..Default::default()
        };
        assert!(matches!(
            ipam.add_pool("n", &bad, &[]),
            Err(Error::OutsideSubnet {
                what: "gateway",
                ..
            })
        ));
        let spec = PoolSpec {
            subnet: Some(s("10.201.0.0/24")),
            ip_range: Some(s("10.201.0.128/25")),
            ..Default::default()
        };
        ipam.add_pool("n", &spec, &[]).unwrap();
        assert_eq!(
            ipam.allocate("n", "c", None).unwrap(),
            Ipv4Addr::new(10, 201, 0, 128)
        );
        let auto = ipam
            .add_pool("auto", &PoolSpec::default(), &[s("10.88.0.0/16")])
            .unwrap();
        assert_eq!(auto.subnet, s("10.89.0.0/16"));
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(d.path()).unwrap();
        ipam.add_pool(
            "n",
            &PoolSpec {
                subnet: Some(s("10.202.0.0/24")),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let ipam = Ipam::open(d.path()).unwrap();
                std::thread::spawn(move || ipam.allocate("n", &format!("c{i}"), None).unwrap())
            })
            .collect();
        let mut ips: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 30);
    }
}
