//! The container's own network namespace gets its loopback brought up, as docker
//! does, until bridge networking exists. One rtnetlink RTM_NEWLINK request, sent from
//! inside the namespace (the calling thread joins it and returns).

use crate::error::{Error, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsFd, AsRawFd};

/// The loopback device's index in every network namespace (LOOPBACK_IFINDEX).
const LOOPBACK_IFINDEX: i32 = 1;
const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFF_UP: u32 = 1;

/// An RTM_NEWLINK request setting IFF_UP on interface `index`.
pub fn link_up_request(index: i32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel assigns
    m.extend_from_slice(&[0u8, 0u8]); // ifi_family AF_UNSPEC, pad
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    m
}

/// The errno of a netlink acknowledgement (0 for success).
pub fn ack_errno(reply: &[u8]) -> Option<i32> {
    let typ = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if typ != NLMSG_ERROR {
        return None;
    }
    Some(-i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?))
}

fn set_loopback_up() -> Result<()> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| Error::sys("open rtnetlink socket", e))?;
    let req = link_up_request(LOOPBACK_IFINDEX, 1);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| Error::sys("send RTM_NEWLINK", e))?;
    let mut buf = [0u8; 1024];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())
        .map_err(|e| Error::sys("receive rtnetlink ack", e))?;
    match ack_errno(&buf[..n]) {
        Some(0) => Ok(()),
        Some(errno) => Err(Error::sys(
            "bring the loopback up",
            nix::Error::from_raw(errno),
        )),
        None => Err(Error::Invalid(
            "rtnetlink: unexpected reply to RTM_NEWLINK".into(),
        )),
    }
}

/// Brings `lo` up in the network namespace of process `pid`. Switches the calling
/// thread into that namespace and back.
pub fn loopback_up(pid: i32) -> Result<()> {
    let own = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("open", "/proc/thread-self/ns/net", e))?;
    let p = format!("/proc/{pid}/ns/net");
    let target = std::fs::File::open(&p).map_err(|e| Error::io("open", &p, e))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("join the container's network namespace", e))?;
    let r = set_loopback_up();
    setns(own.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("return to our network namespace", e))?;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = link_up_request(1, 7);
        assert_eq!(m.len(), 32);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 1);
    }

    #[test]
    fn acks_are_parsed() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(1));
        assert_eq!(ack_errno(&[0u8; 3]), None);
    }
}
