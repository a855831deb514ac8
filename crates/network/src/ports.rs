//! Published ports: parsing `-p [IP:][HOST:]CONTAINER[/tcp|udp]` (with
//! ranges) and picking free host ports for `-P` and `-p CONTAINER`.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

/// Errors of port parsing and picking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `-p` value is malformed.
    #[error("invalid port mapping {spec:?}: {why} (expected [IP:][HOST:]CONTAINER[/tcp|udp])")]
    Invalid {
        /// The value given.
        spec: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No free port could be found.
    #[error("no free {0} port on the host")]
    NoFreePort(Proto),
}

/// Result of port handling.
pub type Result<T> = std::result::Result<T, Error>;

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One published port. `host_port == 0` means "pick a free one".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to publish on; `None` for all addresses.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port (0 until picked).
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

fn parse_range(s: &str, spec: &str) -> Result<(u16, u16)> {
    let bad = |why| Error::Invalid {
        spec: spec.to_string(),
        why,
    };
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a
        .parse()
        .map_err(|_| bad("port is not a number in 1-65535"))?;
    let b: u16 = b
        .parse()
        .map_err(|_| bad("port is not a number in 1-65535"))?;
    if a == 0 || b < a {
        return Err(bad("empty or reversed port range"));
    }
    Ok((a, b))
}

/// Parses one `-p` value into mappings, one per port of a range.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>> {
    let bad = |why| Error::Invalid {
        spec: spec.to_string(),
        why,
    };
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some(_) => return Err(bad("protocol must be tcp or udp")),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, cont) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => {
            return Err(bad(
                "too many colons (IPv6 host addresses are not supported)",
            ))
        }
    };
    let host_ip = match ip {
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| bad("host address is not IPv4"))?,
        ),
        None => None,
    };
    let (c0, c1) = parse_range(cont, spec)?;
    let hosts = match host {
        Some(h) => {
            let (h0, h1) = parse_range(h, spec)?;
            if h1 - h0 != c1 - c0 {
                return Err(bad("host and container ranges differ in length"));
            }
            Some(h0)
        }
        None => None,
    };
    Ok((c0..=c1)
        .map(|c| PortMapping {
            host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
            host_port: hosts.map_or(0, |h0| h0 + (c - c0)),
            container_port: c,
            proto,
        })
        .collect())
}

/// A host port free for `proto` on all addresses, chosen by the kernel.
/// For TCP the port is also checked free for UDP and vice versa is not
/// needed. Racy by nature: the caller binds it promptly.
pub fn pick_free_port(proto: Proto) -> Result<u16> {
    for _ in 0..16 {
        let port = match proto {
            Proto::Tcp => {
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|l| l.local_addr())
            }
            Proto::Udp => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|l| l.local_addr()),
        }
        .map(|a| a.port());
        if let Ok(p) = port {
            if p != 0 {
                return Ok(p);
            }
        }
    }
    Err(Error::NoFreePort(proto))
}

/// Fills every `host_port == 0` with a free port.
pub fn assign_free_ports(maps: &mut [PortMapping]) -> Result<()> {
    let mut used: Vec<(Proto, u16)> = maps
        .iter()
        .filter(|m| m.host_port != 0)
        .map(|m| (m.proto, m.host_port))
        .collect();
    for m in maps.iter_mut().filter(|m| m.host_port == 0) {
        let p = loop {
            let p = pick_free_port(m.proto)?;
            if !used.contains(&(m.proto, p)) {
                break p;
            }
        };
        used.push((m.proto, p));
        m.host_port = p;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let m = parse_publish("8080:80").unwrap();
        assert_eq!(
            m,
            vec![PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp
            }]
        );
        let m = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(m[0].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(m[0].proto, Proto::Udp);
        let m = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!(m[0].host_port, 0);
        let m = parse_publish("0.0.0.0:9000-9002:7000-7002/tcp").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[2].host_ip, m[2].host_port, m[2].container_port),
            (None, 9002, 7002)
        );
        assert_eq!(parse_publish("80").unwrap()[0].host_port, 0);
        for bad in [
            "80/sctp", "a:80", "1-3:1-2", "0", "1:2:3:4", "x.y:1:2", "5-3",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn free_ports() {
        let mut m = parse_publish("1-3").unwrap();
        assign_free_ports(&mut m).unwrap();
        assert!(m.iter().all(|m| m.host_port != 0));
        assert_ne!(m[0].host_port, m[1].host_port);
        assert_ne!(pick_free_port(Proto::Udp).unwrap(), 0);
    }
}
