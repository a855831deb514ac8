//! Packet rules, rendered as one nftables table owned by berth
//! (`table ip berth`). The whole table is rewritten atomically by one
//! `nft -f -` on every change, and removed with one `delete table`.
//!
//! The rules:
//! - masquerade for traffic leaving a non-internal bridge's subnet;
//! - no forwarding between two different berth bridges (isolation);
//! - internal bridges forward nothing in or out (checked first, so even a
//!   published port does not open them);
//! - DNATed (published-port) traffic is forwarded from any network;
//! - published ports: DNAT of traffic to any local address except
//!   127.0.0.0/8 (loopback is served by the userland proxy, see
//!   [`crate::proxy`]), in prerouting (from outside) and output (from the
//!   host itself, e.g. to the bridge gateway address).

use std::fmt::Write;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::exec::Op;
use crate::ipam::Subnet;
use crate::ports::PortMapping;

/// The table berth owns.
pub const TABLE: &str = "berth";

/// One bridge network's part of the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRules {
    /// Bridge interface.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// `--internal`: no traffic in or out of the bridge.
    pub internal: bool,
}

/// One published port, resolved to the container's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRule {
    /// The mapping (host port already picked).
    pub mapping: PortMapping,
    /// The container's address.
    pub container_ip: Ipv4Addr,
}

/// Everything the table holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name ([`TABLE`] in production; tests use their own).
    pub table: String,
    /// Bridge networks.
    pub networks: Vec<NetRules>,
    /// Published ports.
    pub ports: Vec<PortRule>,
}

impl Ruleset {
    /// An empty ruleset for `table`.
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_string(),
            networks: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Whether any network needs forwarding to the outside.
    pub fn needs_forwarding(&self) -> bool {
        self.networks.iter().any(|n| !n.internal)
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.map(|n| format!("\"{n}\"")).collect();
    format!("{{ {} }}", v.join(", "))
}

/// The nft script replacing the table with `rs` (atomic: nft applies a
/// script as one transaction).
pub fn render(rs: &Ruleset) -> String {
    let t = &rs.table;
    let mut s = format!("table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n");
    // forward: isolation and internal networks
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for n in rs.networks.iter().filter(|n| n.internal) {
        let b = &n.bridge;
        let _ = writeln!(s, "    iifname \"{b}\" oifname != \"{b}\" drop");
        let _ = writeln!(s, "    oifname \"{b}\" iifname != \"{b}\" drop");
    }
    // a published port is reachable from everywhere, other networks included
    s.push_str("    ct status dnat accept\n");
    for n in &rs.networks {
        let b = &n.bridge;
        let others: Vec<&str> = rs
            .networks
            .iter()
            .map(|o| o.bridge.as_str())
            .filter(|o| o != b)
            .collect();
        if !others.is_empty() {
            let _ = writeln!(
                s,
                "    iifname \"{b}\" oifname {} drop",
                quoted(others.into_iter())
            );
        }
    }
    s.push_str("  }\n");
    // published ports
    s.push_str("  chain ports {\n");
    for p in &rs.ports {
        let m = &p.mapping;
        if m.host_ip.is_some_and(|ip| ip.is_loopback()) {
            continue;
        }
        let daddr = m
            .host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "    {daddr}{} dport {} dnat to {}:{}",
            m.proto, m.host_port, p.container_ip, m.container_port
        );
    }
    s.push_str("  }\n");
    s.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    s.push_str("    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n");
    s.push_str("    ip daddr != 127.0.0.0/8 fib daddr type local jump ports\n  }\n");
    // outbound NAT
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for n in rs.networks.iter().filter(|n| !n.internal) {
        let _ = writeln!(
            s,
            "    ip saddr {} oifname != \"{}\" masquerade",
            n.subnet, n.bridge
        );
    }
    s.push_str("  }\n}\n");
    s
}

/// Ops that make the table match `rs` (and turn on IPv4 forwarding when a
/// non-internal network needs it; it is never turned off, as other
/// software may rely on it). An empty ruleset removes the table.
pub fn plan_apply(rs: &Ruleset, ip_forward_now: &str) -> Vec<Op> {
    if rs.networks.is_empty() && rs.ports.is_empty() {
        return plan_remove(&rs.table);
    }
    let mut ops = Vec::new();
    if rs.needs_forwarding() && ip_forward_now.trim() != "1" {
        ops.push(Op::Write {
            path: "/proc/sys/net/ipv4/ip_forward".into(),
            contents: "1\n".into(),
        });
    }
    ops.push(Op::nft_script(render(rs)));
    ops
}

/// Removes the table.
pub fn plan_remove(table: &str) -> Vec<Op> {
    vec![Op::run("nft", ["delete", "table", "ip", table]).tolerant()]
}

/// The current value of net.ipv4.ip_forward ("" when unreadable).
pub fn ip_forward_now() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Proto;

    fn rs() -> Ruleset {
        let mut r = Ruleset::new("berth");
        r.networks.push(NetRules {
            bridge: "berth0".into(),
            subnet: "10.88.0.0/16".parse().unwrap(),
            internal: false,
        });
        r.networks.push(NetRules {
            bridge: "br-a".into(),
            subnet: "10.89.0.0/16".parse().unwrap(),
            internal: true,
        });
        r.ports.push(PortRule {
            mapping: PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp,
            },
            container_ip: Ipv4Addr::new(10, 88, 0, 2),
        });
        r.ports.push(PortRule {
            mapping: PortMapping {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 53,
                container_port: 53,
                proto: Proto::Udp,
            },
            container_ip: Ipv4Addr::new(10, 88, 0, 2),
        });
        r
    }

    #[test]
    fn renders_rules() {
        let s = render(&rs());
        assert!(s.starts_with("table ip berth {}\ndelete table ip berth\n"));
        assert!(s.contains("ip saddr 10.88.0.0/16 oifname != \"berth0\" masquerade"));
        assert!(
            !s.contains("10.89.0.0/16 oifname"),
            "internal network must not be masqueraded"
        );
        assert!(s.contains("iifname \"br-a\" oifname != \"br-a\" drop"));
        assert!(s.contains("iifname \"berth0\" oifname { \"br-a\" } drop"));
        let internal = s.find("oifname \"br-a\" iifname != \"br-a\" drop").unwrap();
        let dnat = s.find("ct status dnat accept").unwrap();
        let isolation = s.find("iifname \"berth0\" oifname {").unwrap();
        assert!(internal < dnat && dnat < isolation);
        assert!(s.contains("tcp dport 8080 dnat to 10.88.0.2:80"));
        assert!(
            !s.contains("udp dport 53"),
            "loopback-only ports go to the proxy"
        );
    }

    #[test]
    fn plans() {
        let ops = plan_apply(&rs(), "0\n");
        assert!(matches!(&ops[0], Op::Write { contents, .. } if contents == "1\n"));
        assert_eq!(plan_apply(&rs(), "1\n").len(), 1);
        let empty = plan_apply(&Ruleset::new("berth"), "1");
        assert_eq!(empty[0].to_string(), "nft delete table ip berth");
    }
}
