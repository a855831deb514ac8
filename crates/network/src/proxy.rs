//! A small userland proxy for ports published on 127.0.0.1.
//!
//! Why a proxy rather than `route_localnet` + DNAT: DNAT of a 127.0.0.1
//! destination sends a packet with a loopback source out of the bridge,
//! which the kernel drops as martian unless `net.ipv4.conf.<if>.route_localnet`
//! is set; that sysctl turns off martian filtering for the interface and so
//! lets anything on the bridge reach services the host binds to 127.0.0.1
//! (the CVE-2020-8558 class of bugs), and it also needs an extra masquerade
//! rule. A proxy keeps the host's loopback private, binds the port (so a
//! second publisher fails with "address in use" as with docker), and works
//! without nftables at all. External addresses keep the fast kernel DNAT path.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::ports::Proto;

/// How long a UDP client's flow lives without traffic.
const UDP_IDLE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// A running proxy; stops (and frees the port) when dropped.
#[derive(Debug)]
pub struct Proxy {
    listen: SocketAddr,
    proto: Proto,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Binds `listen` and forwards every connection (TCP) or datagram flow
    /// (UDP) to `target`.
    pub fn start(proto: Proto, listen: SocketAddr, target: SocketAddr) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let (thread, listen) = match proto {
            Proto::Tcp => {
                let l = TcpListener::bind(listen)?;
                let addr = l.local_addr()?;
                (
                    thread::Builder::new()
                        .name("berth-proxy-tcp".into())
                        .spawn(move || tcp_loop(l, target, st))?,
                    addr,
                )
            }
            Proto::Udp => {
                let s = UdpSocket::bind(listen)?;
                s.set_read_timeout(Some(POLL))?;
                let addr = s.local_addr()?;
                (
                    thread::Builder::new()
                        .name("berth-proxy-udp".into())
                        .spawn(move || udp_loop(s, target, st))?,
                    addr,
                )
            }
        };
        Ok(Self {
            listen,
            proto,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.proto == Proto::Tcp {
            // wake the blocking accept
            let _ = TcpStream::connect_timeout(&self.listen, POLL);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tcp_loop(l: TcpListener, target: SocketAddr, stop: Arc<AtomicBool>) {
    for conn in l.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let _ = thread::Builder::new()
            .name("berth-proxy-conn".into())
            .spawn(move || {
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
                    let back = thread::spawn(move || pipe(u2, c2));
                    pipe(client, upstream);
                    let _ = back.join();
                }
            });
    }
}

/// Copies `from` into `to` until EOF, then half-closes `to`.
fn pipe(from: TcpStream, to: TcpStream) {
    if let Err(SpliceError::Unsupported) = splice_all(&from, &to) {
        copy_all(&from, &to);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Largest chunk moved per splice (the pipe is grown to this size when allowed).
const SPLICE_CHUNK: usize = 1 << 20;

enum SpliceError {
    /// splice cannot be used here: copy instead (nothing was moved yet)
    Unsupported,
    /// the connection failed
    Failed,
}

/// Moves bytes socket → pipe → socket inside the kernel (splice(2)), as Go's
/// io.Copy between TCP connections does in docker-proxy: no copy through user
/// memory, which more than doubled the loopback throughput here.
fn splice_all(from: &TcpStream, to: &TcpStream) -> Result<(), SpliceError> {
    use nix::fcntl::{splice, FcntlArg, OFlag, SpliceFFlags};
    let (pr, pw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|_| SpliceError::Unsupported)?;
    let _ = nix::fcntl::fcntl(&pw, FcntlArg::F_SETPIPE_SZ(SPLICE_CHUNK as i32));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    let mut moved_any = false;
    loop {
        let n = match splice(from, None, &pw, None, SPLICE_CHUNK, flags) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => continue,
            Err(nix::Error::EINVAL | nix::Error::ENOSYS) if !moved_any => {
                return Err(SpliceError::Unsupported)
            }
            Err(_) => return Err(SpliceError::Failed),
        };
        moved_any = true;
        let mut left = n;
        while left > 0 {
            match splice(&pr, None, to, None, left, flags) {
                Ok(0) => return Err(SpliceError::Failed),
                Ok(m) => left -= m,
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => return Err(SpliceError::Failed),
            }
        }
    }
}

/// The portable fallback: read and write through a large buffer.
fn copy_all(mut from: &TcpStream, mut to: &TcpStream) {
    // a large buffer: io::copy's 8 KiB one costs ~30% of the throughput
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

struct Flow {
    upstream: UdpSocket,
    last: Instant,
}

fn udp_loop(s: UdpSocket, target: SocketAddr, stop: Arc<AtomicBool>) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Flow>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let (n, client) = match s.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => {
                if let Ok(mut f) = flows.lock() {
                    f.retain(|_, fl| fl.last.elapsed() < UDP_IDLE);
                }
                continue;
            }
        };
        let Ok(mut map) = flows.lock() else { return };
        let fl = match map.entry(client) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let Some(up) = new_flow(&s, client, target, stop.clone()) else {
                    continue;
                };
                v.insert(Flow {
                    upstream: up,
                    last: Instant::now(),
                })
            }
        };
        fl.last = Instant::now();
        let _ = fl.upstream.send(&buf[..n]);
    }
}

/// A socket connected to the container for one client, with a thread that
/// relays replies back through the listening socket.
fn new_flow(
    s: &UdpSocket,
    client: SocketAddr,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Option<UdpSocket> {
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let up = UdpSocket::bind(bind).ok()?;
    up.connect(target).ok()?;
    up.set_read_timeout(Some(POLL)).ok()?;
    let reader = up.try_clone().ok()?;
    let back = s.try_clone().ok()?;
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        while !stop.load(Ordering::SeqCst) && last.elapsed() < UDP_IDLE {
            if let Ok(n) = reader.recv(&mut buf) {
                last = Instant::now();
                let _ = back.send_to(&buf[..n], client);
            }
        }
    });
    Some(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_udp_on_loopback() {
        // echo servers on loopback stand in for a container
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let ea = echo.local_addr().unwrap();
        thread::spawn(move || {
            for c in echo.incoming().flatten() {
                let mut r = c.try_clone().unwrap();
                let mut w = c;
                let _ = io::copy(&mut r, &mut w);
            }
        });
        let p = Proxy::start(Proto::Tcp, "127.0.0.1:0".parse().unwrap(), ea).unwrap();
        let mut c = TcpStream::connect(p.local_addr()).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");

        let uecho = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ua = uecho.local_addr().unwrap();
        thread::spawn(move || {
            let mut b = [0u8; 100];
            while let Ok((n, from)) = uecho.recv_from(&mut b) {
                let _ = uecho.send_to(&b[..n], from);
            }
        });
        let up = Proxy::start(Proto::Udp, "127.0.0.1:0".parse().unwrap(), ua).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.send_to(b"ping", up.local_addr()).unwrap();
        let mut b = [0u8; 10];
        let (n, _) = c.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], b"ping");
        let addr = p.local_addr();
        drop(p);
        drop(up);
        // the port is free again
        TcpListener::bind(addr).unwrap();
    }
}
