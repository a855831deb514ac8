//! A minimal rtnetlink client for the per-container hot path (veth, address,
//! link state, default route), so attaching a container spawns no process.
//!
//! Only the few requests berth needs are encoded; each waits for the
//! kernel's acknowledgement. Requests inside a container's namespace run on
//! a short-lived thread that first joins the namespace (`setns` changes only
//! the calling thread), so the daemon's own namespace is never touched.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

// Values from <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 1;
const AF_INET: u8 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// Builds netlink attributes.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn raw(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.raw(ty, &v)
    }
    fn u32(&mut self, ty: u16, x: u32) -> &mut Self {
        self.raw(ty, &x.to_ne_bytes())
    }
    fn nested(&mut self, ty: u16, inner: &[u8]) -> &mut Self {
        self.raw(ty | NLA_F_NESTED, inner)
    }
}

/// `struct ifinfomsg`.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut v = vec![0u8, 0, 0, 0];
    v.extend_from_slice(&index.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&change.to_ne_bytes());
    v
}

/// A NETLINK_ROUTE socket in the namespace it was opened in.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Self { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement; returns the
    /// payload of the first data message of the answer (for GET requests).
    fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<Vec<u8>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut data = None;
        let mut buf = vec![0u8; 32768];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                let mty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let seq =
                    u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if len < 16 || off + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    ));
                }
                let payload = &buf[off + 16..off + len];
                if seq == self.seq {
                    match mty {
                        NLMSG_ERROR => {
                            let code = payload
                                .get(..4)
                                .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                            if code < 0 {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                            return Ok(data.unwrap_or_default());
                        }
                        NLMSG_DONE => return Ok(data.unwrap_or_default()),
                        _ => {
                            data.get_or_insert_with(|| payload.to_vec());
                        }
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// The index of interface `name`.
    pub fn ifindex(&mut self, name: &str) -> io::Result<u32> {
        let mut body = ifinfomsg(0, 0, 0);
        body.extend_from_slice(&Attrs::default().str(IFLA_IFNAME, name).0);
        let reply = self.request(RTM_GETLINK, 0, &body)?;
        reply
            .get(4..8)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}")))
    }

    /// `ip link add HOST mtu M type veth peer name PEER mtu M [address MAC] netns NS`.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: u32,
        netns: &File,
        mac: Option<[u8; 6]>,
    ) -> io::Result<()> {
        let mut peer_msg = ifinfomsg(0, 0, 0);
        let fd = netns.as_fd().as_raw_fd() as u32;
        let mut attrs = Attrs::default();
        attrs.str(IFLA_IFNAME, peer).u32(IFLA_MTU, mtu);
        if let Some(m) = mac {
            attrs.raw(IFLA_ADDRESS, &m);
        }
        peer_msg.extend_from_slice(&attrs.u32(IFLA_NET_NS_FD, fd).0);
        let data = Attrs::default().raw(VETH_INFO_PEER, &peer_msg).0.clone();
        let info = Attrs::default()
            .str(IFLA_INFO_KIND, "veth")
            .nested(IFLA_INFO_DATA, &data)
            .0
            .clone();
        let mut body = ifinfomsg(0, 0, 0);
        body.extend_from_slice(
            &Attrs::default()
                .str(IFLA_IFNAME, host)
                .u32(IFLA_MTU, mtu)
                .nested(IFLA_LINKINFO, &info)
                .0,
        );
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &body)
            .map(drop)
    }

    /// `ip link set dev NAME [master M] up`.
    pub fn set_up(&mut self, name: &str, master: Option<u32>) -> io::Result<()> {
        let mut body = ifinfomsg(0, IFF_UP, IFF_UP);
        let mut a = Attrs::default();
        a.str(IFLA_IFNAME, name);
        if let Some(m) = master {
            a.u32(IFLA_MASTER, m);
        }
        body.extend_from_slice(&a.0);
        self.request(RTM_NEWLINK, 0, &body).map(drop)
    }

    /// `ip addr add IP/PREFIX dev INDEX`.
    pub fn add_addr(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut body = vec![AF_INET, prefix, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(
            &Attrs::default()
                .raw(IFA_LOCAL, &ip.octets())
                .raw(IFA_ADDRESS, &ip.octets())
                .0,
        );
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body)
            .map(drop)
    }

    /// `ip route replace default via GW dev INDEX`.
    pub fn replace_default_route(&mut self, gw: Ipv4Addr, index: u32) -> io::Result<()> {
        // family, dst_len, src_len, tos, table, protocol, scope, type, flags
        let mut body = vec![
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            0,
            RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        body.extend_from_slice(
            &Attrs::default()
                .raw(RTA_GATEWAY, &gw.octets())
                .u32(RTA_OIF, index)
                .0,
        );
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &body)
            .map(drop)
    }

    /// `ip link del dev NAME`.
    pub fn del_link(&mut self, name: &str) -> io::Result<()> {
        let mut body = ifinfomsg(0, 0, 0);
        body.extend_from_slice(&Attrs::default().str(IFLA_IFNAME, name).0);
        self.request(RTM_DELLINK, 0, &body).map(drop)
    }
}

/// A per-container change applied over netlink. Displayed as the
/// equivalent `ip` commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetOp {
    /// A veth whose peer is created directly inside `netns`.
    AddVeth {
        /// Host end.
        host: String,
        /// Peer name inside the namespace.
        peer: String,
        /// MTU of both ends.
        mtu: u32,
        /// The namespace path.
        netns: PathBuf,
        /// The peer's MAC address (`--mac-address`); the kernel's random one
        /// without.
        mac: Option<[u8; 6]>,
    },
    /// Enslave `dev` to the bridge `master` and bring it up.
    EnslaveUp {
        /// The host end.
        dev: String,
        /// The bridge.
        master: String,
    },
    /// Delete a link; one already gone (with its namespace) is no error.
    DelLink {
        /// The link.
        dev: String,
    },
    /// Inside `netns`: only `lo`, brought up (`--network none`).
    LoopbackUp {
        /// The namespace path.
        netns: PathBuf,
    },
    /// Inside `netns`: address on `ifname`, `ifname` and `lo` up, default
    /// route through `gateway` when given.
    Configure {
        /// The namespace path.
        netns: PathBuf,
        /// The interface inside.
        ifname: String,
        /// Its address.
        ip: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
        /// Default gateway.
        gateway: Option<Ipv4Addr>,
    },
}

impl fmt::Display for NetOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetOp::AddVeth {
                host,
                peer,
                mtu,
                netns,
                mac,
            } => {
                write!(
                    f,
                    "ip link add {host} mtu {mtu} type veth peer name {peer} mtu {mtu}"
                )?;
                if let Some(m) = mac {
                    write!(f, " address {}", format_mac(m))?;
                }
                write!(f, " netns {}", netns.display())
            }
            NetOp::EnslaveUp { dev, master } => {
                write!(f, "ip link set dev {dev} master {master} up")
            }
            NetOp::DelLink { dev } => write!(f, "ip link del dev {dev}"),
            NetOp::LoopbackUp { netns } => {
                write!(
                    f,
                    "nsenter --net={} -- ip link set dev lo up",
                    netns.display()
                )
            }
            NetOp::Configure {
                netns,
                ifname,
                ip,
                prefix,
                gateway,
            } => {
                let ns = netns.display();
                write!(
                    f,
                    "nsenter --net={ns} -- ip addr add {ip}/{prefix} dev {ifname}; "
                )?;
                write!(f, "ip link set dev {ifname} up; ip link set dev lo up")?;
                if let Some(gw) = gateway {
                    write!(f, "; ip route replace default via {gw} dev {ifname}")?;
                }
                Ok(())
            }
        }
    }
}

/// A MAC address as `92:d0:c6:0a:29:33`.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `92:d0:c6:0a:29:33` (or with `-`); `None` when it is not a MAC address
/// or not a unicast one (a multicast bit set cannot be an interface's).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    (m[0] & 1 == 0).then_some(m)
}

/// Applies one [`NetOp`].
pub fn apply(op: &NetOp) -> io::Result<()> {
    match op {
        NetOp::AddVeth {
            host,
            peer,
            mtu,
            netns,
            mac,
        } => Netlink::open()?.add_veth(host, peer, *mtu, &File::open(netns)?, *mac),
        NetOp::EnslaveUp { dev, master } => {
            let mut nl = Netlink::open()?;
            let m = nl.ifindex(master)?;
            nl.set_up(dev, Some(m))
        }
        NetOp::DelLink { dev } => match Netlink::open()?.del_link(dev) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r,
        },
        NetOp::LoopbackUp { netns } => in_netns(netns, |nl| nl.set_up("lo", None)),
        NetOp::Configure {
            netns,
            ifname,
            ip,
            prefix,
            gateway,
        } => in_netns(netns, |nl| {
            let index = nl.ifindex(ifname)?;
            nl.add_addr(index, *ip, *prefix)?;
            nl.set_up(ifname, None)?;
            nl.set_up("lo", None)?;
            if let Some(gw) = gateway {
                nl.replace_default_route(*gw, index)?;
            }
            Ok(())
        }),
    }
}

/// Runs `f` with a netlink socket inside the namespace at `netns`, on a
/// thread of its own.
pub fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce(&mut Netlink) -> io::Result<T> + Send,
) -> io::Result<T> {
    let ns = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
            f(&mut Netlink::open()?)
        })
        .join()
        .map_err(|_| io::Error::other("netlink thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_encoding() {
        let mut a = Attrs::default();
        a.str(IFLA_IFNAME, "eth0").u32(IFLA_MTU, 1500);
        // len 9 padded to 12, then len 8
        assert_eq!(a.0.len(), 12 + 8);
        assert_eq!(&a.0[..4], &[9, 0, 3, 0]);
        assert_eq!(&a.0[4..9], b"eth0\0");
        assert_eq!(&a.0[12..16], &[8, 0, 4, 0]);
        assert_eq!(ifinfomsg(3, IFF_UP, IFF_UP).len(), 16);
    }

    #[test]
    fn lookup_loopback_when_permitted() {
        // opening NETLINK_ROUTE and reading links needs no privilege
        let mut nl = Netlink::open().unwrap();
        assert_eq!(nl.ifindex("lo").unwrap(), 1);
        assert!(nl.ifindex("berth-no-such-if").is_err());
    }
}
