//! The embedded DNS responder of a user network.
//!
//! One small UDP server per network, bound on the bridge's gateway address
//! port 53 in the host's namespace (as podman's aardvark-dns does; docker
//! instead injects 127.0.0.11 into every container, which needs a socket
//! inside each namespace). It answers A queries for the names registered on
//! its network (container names, network aliases; several containers with
//! one alias are returned all, rotated per query for round robin), answers
//! AAAA for those names with no record, and forwards every other query
//! unchanged to the upstream resolvers (the host's, so a host resolver on
//! loopback such as systemd-resolved works too). Only clients from the
//! network's own subnet are answered, so other networks cannot read its
//! names; internal networks do not forward.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use crate::ipam::Subnet;

const TTL: u32 = 600;
const POLL: Duration = Duration::from_millis(200);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// Names registered on a network, by owner (container id).
#[derive(Debug, Default)]
pub struct Records {
    by_owner: RwLock<BTreeMap<String, (Ipv4Addr, Vec<String>)>>,
    turn: AtomicUsize,
}

impl Records {
    /// Registers `names` (lowercased) for `owner` at `ip`, replacing what
    /// `owner` had.
    pub fn set(&self, owner: &str, ip: Ipv4Addr, names: &[String]) {
        let names = names
            .iter()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        if let Ok(mut m) = self.by_owner.write() {
            m.insert(owner.to_string(), (ip, names));
        }
    }

    /// Forgets `owner`.
    pub fn remove(&self, owner: &str) {
        if let Ok(mut m) = self.by_owner.write() {
            m.remove(owner);
        }
    }

    /// Addresses of `name`, rotated one step per call (round robin).
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut v: Vec<Ipv4Addr> = match self.by_owner.read() {
            Ok(m) => m
                .values()
                .filter(|(_, n)| n.contains(&name))
                .map(|(ip, _)| *ip)
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v.dedup();
        if v.len() > 1 {
            let k = self.turn.fetch_add(1, Ordering::Relaxed) % v.len();
            v.rotate_left(k);
        }
        v
    }
}

/// A parsed question.
#[derive(Debug, PartialEq, Eq)]
pub struct Question {
    /// The name, dot-separated, without the trailing dot.
    pub name: String,
    /// QTYPE (1 = A, 28 = AAAA).
    pub qtype: u16,
    /// Byte offset just after the question section.
    pub end: usize,
}

/// Parses the first question of a query (no compression in questions).
pub fn parse_question(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).into_owned());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    msg.get(i + 3)?;
    Some(Question {
        name: labels.join("."),
        qtype,
        end: i + 4,
    })
}

/// The answer to `query` with `ips` as A records (empty: NOERROR, no data).
pub fn answer(query: &[u8], q: &Question, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut r = Vec::with_capacity(q.end + ips.len() * 16);
    r.extend_from_slice(&query[..2]); // id
    r.push(0x84 | (query[2] & 0x79)); // QR, AA, opcode and RD copied
    r.push(0x80); // RA, rcode 0
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&query[12..q.end]);
    for ip in ips {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    r
}

fn refuse(query: &[u8], q: &Question, rcode: u8) -> Vec<u8> {
    let mut r = answer(query, q, &[]);
    r[2] &= !0x04; // not authoritative
    r[3] = 0x80 | rcode;
    r
}

/// The responder of one network; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    records: Arc<Records>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Binds `bind` (gateway:53) and serves clients from `clients`;
    /// unknown names go to `upstreams` (none: SERVFAIL, for internal
    /// networks).
    pub fn start(
        bind: SocketAddr,
        clients: Subnet,
        upstreams: Vec<SocketAddr>,
    ) -> io::Result<Self> {
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(POLL))?;
        let addr = sock.local_addr()?;
        let records = Arc::new(Records::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (records.clone(), stop.clone());
        let thread = thread::Builder::new()
            .name("berth-dns".into())
            .spawn(move || serve(sock, clients, upstreams, r, st))?;
        Ok(Self {
            records,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The names this server answers.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    sock: UdpSocket,
    clients: Subnet,
    upstreams: Vec<SocketAddr>,
    records: Arc<Records>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let allowed = match from.ip() {
            std::net::IpAddr::V4(ip) => clients.contains(ip) || ip.is_loopback(),
            std::net::IpAddr::V6(_) => false,
        };
        let query = &buf[..n];
        let Some(q) = parse_question(query).filter(|_| allowed) else {
            continue;
        };
        let ips = if q.qtype == 1 || q.qtype == 28 || q.qtype == 255 {
            records.lookup(&q.name)
        } else {
            Vec::new()
        };
        let reply = if !ips.is_empty() {
            Some(answer(query, &q, if q.qtype == 28 { &[] } else { &ips }))
        } else if upstreams.is_empty() {
            Some(refuse(query, &q, 2))
        } else {
            forward(&sock, query.to_vec(), from, upstreams.clone());
            None
        };
        if let Some(r) = reply {
            let _ = sock.send_to(&r, from);
        }
    }
}

/// Relays one query to the upstreams in turn, on its own thread.
fn forward(sock: &UdpSocket, query: Vec<u8>, client: SocketAddr, upstreams: Vec<SocketAddr>) {
    let Ok(back) = sock.try_clone() else { return };
    let _ = thread::Builder::new()
        .name("berth-dns-fwd".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            for up in upstreams {
                let bind: SocketAddr = if up.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let Ok(s) = UdpSocket::bind(bind) else {
                    continue;
                };
                if s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err()
                    || s.connect(up).is_err()
                    || s.send(&query).is_err()
                {
                    continue;
                }
                if let Ok(n) = s.recv(&mut buf) {
                    if n >= 2 && buf[..2] == query[..2] {
                        let _ = back.send_to(&buf[..n], client);
                        return;
                    }
                }
            }
        });
}

/// The host's resolvers as upstream addresses (port 53).
pub fn host_upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    crate::files::parse_resolv(resolv_conf)
        .0
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A query for `name` of type `qtype` (for tests and health checks).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.trim_end_matches('.').split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// The A records of a response (answers assumed to use name compression
/// or plain names).
pub fn parse_a_answers(msg: &[u8]) -> Vec<Ipv4Addr> {
    let Some(q) = parse_question(&{
        let mut m = msg.to_vec();
        if m.len() > 2 {
            m[2] &= 0x7f;
        }
        m
    }) else {
        return Vec::new();
    };
    let count = u16::from_be_bytes([msg[6], msg[7]]);
    let mut i = q.end;
    let mut out = Vec::new();
    for _ in 0..count {
        // skip the name: a pointer or labels
        while let Some(&b) = msg.get(i) {
            if b & 0xc0 == 0xc0 {
                i += 2;
                break;
            }
            i += 1 + usize::from(b);
            if b == 0 {
                break;
            }
        }
        let (Some(t), Some(len)) = (msg.get(i..i + 2), msg.get(i + 8..i + 10)) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if t == [0, 1] && len == 4 {
            if let Some(a) = msg.get(i + 10..i + 14) {
                out.push(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            }
        }
        i += 10 + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_robin() {
        let r = Records::default();
        r.set(
            "c1",
            Ipv4Addr::new(10, 0, 0, 2),
            &["web".into(), "Svc".into()],
        );
        r.set(
            "c2",
            Ipv4Addr::new(10, 0, 0, 3),
            &["db".into(), "svc".into()],
        );
        assert_eq!(r.lookup("WEB."), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        let a = r.lookup("svc");
        let b = r.lookup("svc");
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0]);
        r.remove("c1");
        assert_eq!(r.lookup("svc"), vec![Ipv4Addr::new(10, 0, 0, 3)]);
        assert!(r.lookup("nope").is_empty());
    }

    #[test]
    fn wire_format_roundtrip() {
        let q = build_query(0x1234, "web.example", 1);
        let pq = parse_question(&q).unwrap();
        assert_eq!(
            (pq.name.as_str(), pq.qtype, pq.end),
            ("web.example", 1, q.len())
        );
        let ips = [Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 1, 2, 4)];
        let r = answer(&q, &pq, &ips);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80);
        assert_eq!(parse_a_answers(&r), ips.to_vec());
        assert!(parse_question(&r).is_none(), "responses are not questions");
        assert!(parse_question(&q[..14]).is_none());
    }

    #[test]
    fn serves_and_forwards_on_loopback() {
        // a fake upstream on loopback: answers everything with 192.0.2.77
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap();
        thread::spawn(move || {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = up.recv_from(&mut b) {
                let q = parse_question(&b[..n]).unwrap();
                let _ = up.send_to(&answer(&b[..n], &q, &[Ipv4Addr::new(192, 0, 2, 77)]), from);
            }
        });
        let any: Subnet = "10.0.0.0/8".parse().unwrap();
        let srv = DnsServer::start("127.0.0.1:0".parse().unwrap(), any, vec![up_addr]).unwrap();
        srv.records()
            .set("c1", Ipv4Addr::new(10, 0, 0, 2), &["web".into()]);
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ask = |name: &str, t: u16| {
            c.send_to(&build_query(7, name, t), srv.local_addr())
                .unwrap();
            let mut b = [0u8; 512];
            let (n, _) = c.recv_from(&mut b).unwrap();
            b[..n].to_vec()
        };
        assert_eq!(
            parse_a_answers(&ask("web", 1)),
            vec![Ipv4Addr::new(10, 0, 0, 2)]
        );
        assert!(parse_a_answers(&ask("web", 28)).is_empty());
        assert_eq!(
            parse_a_answers(&ask("elsewhere.test", 1)),
            vec![Ipv4Addr::new(192, 0, 2, 77)]
        );
        let internal = DnsServer::start("127.0.0.1:0".parse().unwrap(), any, vec![]).unwrap();
        c.send_to(&build_query(8, "elsewhere.test", 1), internal.local_addr())
            .unwrap();
        let mut b = [0u8; 512];
        let (n, _) = c.recv_from(&mut b).unwrap();
        assert_eq!(
            b[3] & 0x0f,
            2,
            "internal networks answer SERVFAIL for outside names"
        );
        assert!(n >= 12);
    }
}
