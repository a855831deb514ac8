//! Loopback throughput through a published port: berth's userland proxy
//! against docker's `docker-proxy` (Debian docker.io, when installed) and a
//! direct connection, side by side. Needs no root: the "container" is a
//! sink on 127.0.0.1. Run: `cargo bench -p berth-network --bench publish`.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_network::ports::{pick_free_port, Proto};
use berth_network::proxy::Proxy;

const TOTAL: usize = 512 << 20;
const DOCKER_PROXY: &str = "/usr/sbin/docker-proxy";

/// A sink that reads everything, then answers one byte.
fn sink() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = vec![0u8; 1 << 16];
                while c.read(&mut b).map(|n| n > 0).unwrap_or(false) {}
                let _ = c.write_all(b"k");
            });
        }
    });
    a
}

/// MB/s of sending TOTAL bytes to `addr` (median of 3).
fn throughput(addr: SocketAddr) -> f64 {
    let buf = vec![7u8; 1 << 16];
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            let t = Instant::now();
            let mut sent = 0;
            while sent < TOTAL {
                c.write_all(&buf).unwrap();
                sent += buf.len();
            }
            c.shutdown(Shutdown::Write).unwrap();
            let mut k = [0u8; 1];
            c.read_exact(&mut k).unwrap();
            TOTAL as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

fn main() {
    let target = sink();
    let direct = throughput(target);
    let port = pick_free_port(Proto::Tcp).unwrap();
    let p = Proxy::start(Proto::Tcp, SocketAddr::from(([127, 0, 0, 1], port)), target).unwrap();
    let berth = throughput(p.local_addr());
    drop(p);
    println!("direct (no proxy):   {direct:8.0} MB/s");
    println!("berth proxy:         {berth:8.0} MB/s");
    if std::path::Path::new(DOCKER_PROXY).exists() {
        let port = pick_free_port(Proto::Tcp).unwrap();
        // docker-proxy reports readiness on fd 3, which must be open
        let cmd = format!(
            "exec {DOCKER_PROXY} -proto tcp -host-ip 127.0.0.1 -host-port {port} \
             -container-ip 127.0.0.1 -container-port {} 3>/dev/null",
            target.port()
        );
        let mut child = Command::new("sh")
            .args(["-c", &cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect(addr).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let docker = throughput(addr);
        let _ = child.kill();
        let _ = child.wait();
        println!("docker-proxy:        {docker:8.0} MB/s");
        println!("berth / docker:      {:8.2}", berth / docker);
    } else {
        println!("docker-proxy not installed (Debian docker.io): no comparison");
    }
}
