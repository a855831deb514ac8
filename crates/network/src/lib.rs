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
//! - [`netlink`]: the few rtnetlink requests of the per-container path;
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
mod manager;
pub mod netlink;
pub mod nft;
pub mod ports;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use manager::{Endpoint, Iface, Manager, NetworkSpec, Published};
use ports::Proto;

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
    /// Containers are still connected to the network.
    #[error("network {network} has {active} active endpoints: disconnect or remove its containers first")]
    NetworkInUse {
        /// The network.
        network: String,
        /// How many containers are connected.
        active: usize,
    },
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
    /// Reading or writing the manager's state file failed.
    #[error("network state {path}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
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
