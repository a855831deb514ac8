//! The bridge driver as planners: each function returns the `ip` commands
//! that create or remove a bridge or a container's veth, and applies nothing.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::exec::Op;
use crate::ipam::Subnet;
use crate::netlink::NetOp;

/// The default bridge's interface name.
pub const DEFAULT_BRIDGE: &str = "berth0";

/// Linux interface names hold at most 15 bytes.
pub const IFNAMSIZ_MAX: usize = 15;

/// `br-<12 hex of the network id>`, as docker names user bridges.
pub fn user_bridge_name(network_id: &str) -> String {
    let hex: String = network_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    format!("br-{hex}")
}

/// The host end of a container's veth: `vb` + 12 hex of a hash of the
/// container id and network, stable so teardown after a crash finds it.
pub fn host_veth_name(container_id: &str, network: &str) -> String {
    // FNV-1a, 64 bit: small, stable across runs and versions
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0]).chain(network.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("vb{:012x}", h & 0xffff_ffff_ffff)
}

/// A bridge to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Interface name (≤ 15 bytes).
    pub name: String,
    /// The subnet whose gateway the bridge holds.
    pub subnet: Subnet,
    /// The gateway address.
    pub gateway: Ipv4Addr,
    /// MTU of the bridge and its veths.
    pub mtu: u32,
}

/// Creates the bridge, gives it the gateway address and brings it up.
/// A bridge left over by a crash is reused.
pub fn plan_create_bridge(b: &BridgeSpec) -> Vec<Op> {
    let cidr = format!("{}/{}", b.gateway, b.subnet.prefix());
    let mtu = b.mtu.to_string();
    vec![
        Op::ip([
            "link", "add", "name", &b.name, "mtu", &mtu, "type", "bridge",
        ])
        .tolerant(),
        Op::ip(["addr", "replace", &cidr, "dev", &b.name]),
        Op::ip(["link", "set", "dev", &b.name, "up"]),
    ]
}

/// Removes the bridge (its veths go with their namespaces or detach).
pub fn plan_remove_bridge(name: &str) -> Vec<Op> {
    vec![Op::ip(["link", "del", "dev", name]).tolerant()]
}

/// A container's attachment to a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachSpec {
    /// The bridge.
    pub bridge: String,
    /// Host end of the veth (see [`host_veth_name`]).
    pub host_veth: String,
    /// The container's network namespace, as a path.
    pub netns: PathBuf,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The container end's MAC address (`--mac-address`), else the kernel's.
    pub mac: Option<[u8; 6]>,
    /// The network's subnet.
    pub subnet: Subnet,
    /// The gateway; `None` for internal networks and secondary networks
    /// (no default route through them).
    pub default_gateway: Option<Ipv4Addr>,
    /// MTU of both veth ends.
    pub mtu: u32,
}

/// Creates the veth with its peer directly inside the namespace (no rename
/// race with an `eth0` on the host), enslaves the host end, and configures
/// address, MTU, `lo` and the default route inside.
pub fn plan_attach(a: &AttachSpec) -> Vec<Op> {
    // applied over netlink: spawning `ip` processes dominated the time
    vec![
        // the same container's previous veth may still be going away with its
        // namespace (the kernel removes those asynchronously)
        Op::Net(NetOp::DelLink {
            dev: a.host_veth.clone(),
        }),
        Op::Net(NetOp::AddVeth {
            host: a.host_veth.clone(),
            peer: a.ifname.clone(),
            mtu: a.mtu,
            netns: a.netns.clone(),
            mac: a.mac,
        }),
        Op::Net(NetOp::EnslaveUp {
            dev: a.host_veth.clone(),
            master: a.bridge.clone(),
        }),
        Op::Net(NetOp::Configure {
            netns: a.netns.clone(),
            ifname: a.ifname.clone(),
            ip: a.ip,
            prefix: a.subnet.prefix(),
            gateway: a.default_gateway,
        }),
    ]
}

/// Removes the container's veth (both ends go together). Tolerates a veth
/// already gone with its namespace.
pub fn plan_detach(host_veth: &str) -> Vec<Op> {
    vec![Op::Net(NetOp::DelLink {
        dev: host_veth.to_string(),
    })]
}

/// Lists the veths enslaved to `bridge` (see [`parse_link_names`]).
pub fn plan_list_ports(bridge: &str) -> Op {
    Op::ip(["-o", "link", "show", "master", bridge]).tolerant()
}

/// Interface names in the output of `ip -o link show` (`3: name@peer: ...`).
pub fn parse_link_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Brings `lo` up in a namespace (`--network none`).
pub fn plan_loopback_only(netns: &Path) -> Vec<Op> {
    vec![Op::Net(NetOp::LoopbackUp {
        netns: netns.to_path_buf(),
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Executor, Recorder};

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(user_bridge_name("0123456789abcdef0123"), "br-0123456789ab");
        let v = host_veth_name("c1", "net");
        assert_eq!(v.len(), 14);
        assert!(v.len() <= IFNAMSIZ_MAX);
        assert_eq!(v, host_veth_name("c1", "net"));
        assert_ne!(v, host_veth_name("c1", "net2"));
    }

    #[test]
    fn attach_plan() {
        let a = AttachSpec {
            bridge: "berth0".into(),
            host_veth: "vbx".into(),
            netns: "/proc/42/ns/net".into(),
            ifname: "eth0".into(),
            ip: Ipv4Addr::new(10, 88, 0, 2),
            mac: None,
            subnet: "10.88.0.0/16".parse().unwrap(),
            default_gateway: Some(Ipv4Addr::new(10, 88, 0, 1)),
            mtu: 1500,
        };
        let r = Recorder::default();
        r.apply(&plan_attach(&a)).unwrap();
        assert_eq!(
            r.lines(),
            vec![
                "ip link del dev vbx",
                "ip link add vbx mtu 1500 type veth peer name eth0 mtu 1500 netns /proc/42/ns/net",
                "ip link set dev vbx master berth0 up",
                "nsenter --net=/proc/42/ns/net -- ip addr add 10.88.0.2/16 dev eth0; \
                 ip link set dev eth0 up; ip link set dev lo up; \
                 ip route replace default via 10.88.0.1 dev eth0",
            ]
        );
        let internal = AttachSpec {
            default_gateway: None,
            ..a
        };
        assert!(!plan_attach(&internal)
            .iter()
            .any(|o| o.to_string().contains("default")));
        let with_mac = AttachSpec {
            mac: crate::netlink::parse_mac("92:d0:c6:0a:29:33"),
            ..internal
        };
        assert!(plan_attach(&with_mac).iter().any(|o| o
            .to_string()
            .contains("mtu 1500 address 92:d0:c6:0a:29:33 netns")));
        assert_eq!(crate::netlink::parse_mac("01:00:5e:00:00:01"), None);
        assert_eq!(crate::netlink::parse_mac("92:d0:c6:0a:29"), None);
    }

    #[test]
    fn link_names() {
        let out = "7: vbabc@if6: <BROADCAST> mtu 1500 master br-x\n8: vbdef@if2: <BROADCAST>\n";
        assert_eq!(parse_link_names(out), vec!["vbabc", "vbdef"]);
        assert_eq!(
            plan_list_ports("br-x").to_string(),
            "ip -o link show master br-x"
        );
    }

    #[test]
    fn bridge_plans() {
        let b = BridgeSpec {
            name: "berth0".into(),
            subnet: "10.88.0.0/16".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            mtu: 1500,
        };
        let lines: Vec<String> = plan_create_bridge(&b)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines[1], "ip addr replace 10.88.0.1/16 dev berth0");
        assert_eq!(
            plan_remove_bridge("berth0")[0].to_string(),
            "ip link del dev berth0"
        );
    }
}
