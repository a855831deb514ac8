//! Helpers for the root end-to-end tests: network namespaces stand in for
//! containers; an [`Env`] guard removes everything a test made, also on panic.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use berth_network::ipam::{host_routes, Subnet};
use nix::sched::{setns, CloneFlags};

/// Whether the root tests can run here; prints why not otherwise.
pub fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let tools = ["ip", "nft", "busybox", "nsenter", "timeout"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    if !root || !tools {
        eprintln!(
            "skipped: needs root and iproute2, nftables, busybox-static, util-linux, coreutils"
        );
    }
    root && tools
}

/// Panics if `s` overlaps a route of this host (tests must not disturb it).
pub fn assert_free_subnet(s: &str) {
    let s: Subnet = s.parse().unwrap();
    for r in host_routes() {
        assert!(
            !r.overlaps(&s),
            "test subnet {s} collides with host route {r}"
        );
    }
}

fn sh(program: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Everything one test made.
pub struct Env {
    pub tag: String,
    pub table: String,
    pub bridges: Vec<String>,
    pub veths: Vec<String>,
    netns: Vec<String>,
    children: Vec<Child>,
    threads: Vec<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// `tag`: a short word unique to the test (bridge names are
    /// `berthtest<tag><n>`, at most 15 bytes).
    pub fn new(tag: &str) -> Self {
        assert!(format!("berthtest{tag}0").len() <= 15);
        let e = Env {
            tag: tag.to_string(),
            table: format!("berthtest_{tag}"),
            bridges: Vec::new(),
            veths: Vec::new(),
            netns: Vec::new(),
            children: Vec::new(),
            threads: Vec::new(),
            stop: Arc::default(),
            dir: tempfile::tempdir().unwrap(),
        };
        e.cleanup_system(); // leftovers of an earlier crashed run
        e
    }

    pub fn bridge(&mut self, n: u32) -> String {
        let b = format!("berthtest{}{n}", self.tag);
        self.bridges.push(b.clone());
        b
    }

    pub fn ns_name(&self, n: &str) -> String {
        format!("berthtest-{}-{n}", self.tag)
    }

    /// Creates a namespace; returns its path.
    pub fn netns(&mut self, n: &str) -> PathBuf {
        let name = self.ns_name(n);
        let _ = sh("ip", &["netns", "del", &name]);
        assert!(sh("ip", &["netns", "add", &name]).0, "ip netns add {name}");
        self.netns.push(name.clone());
        PathBuf::from(format!("/run/netns/{name}"))
    }

    /// Gives namespace `n` its own /etc/resolv.conf (`ip netns exec`
    /// bind-mounts /etc/netns/<name>/resolv.conf).
    pub fn resolv_conf(&mut self, n: &str, content: &str) {
        let d = PathBuf::from(format!("/etc/netns/{}", self.ns_name(n)));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resolv.conf"), content).unwrap();
    }

    /// busybox httpd serving `body` on `port` inside namespace `n`.
    pub fn httpd(&mut self, n: &str, port: u16, body: &str) {
        let www = self.dir.path().join(format!("www-{n}-{port}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), body).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name(n),
                "busybox",
                "httpd",
                "-f",
                "-p",
                &port.to_string(),
                "-h",
            ])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// A UDP server inside namespace `n` answering "echo:<datagram>".
    pub fn udp_echo(&mut self, ns: PathBuf, port: u16) {
        let stop = self.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.threads.push(thread::spawn(move || {
            // setns changes only this thread's namespace
            setns(File::open(&ns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            tx.send(()).unwrap();
            let mut b = [0u8; 512];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = s.recv_from(&mut b) {
                    let mut out = b"echo:".to_vec();
                    out.extend_from_slice(&b[..n]);
                    let _ = s.send_to(&out, from);
                }
            }
        }));
        rx.recv().unwrap();
    }

    /// `wget` from inside namespace `n` (3 s timeout); the body on success.
    pub fn wget(&self, n: &str, url: &str) -> Option<String> {
        let (ok, out) = sh(
            "timeout",
            &[
                "3",
                "ip",
                "netns",
                "exec",
                &self.ns_name(n),
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                url,
            ],
        );
        ok.then_some(out)
    }

    /// `wget` retried for up to 5 s (for servers still starting).
    pub fn wget_retry(&self, n: &str, url: &str) -> Option<String> {
        for _ in 0..25 {
            if let Some(b) = self.wget(n, url) {
                return Some(b);
            }
            thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// A command inside namespace `n`: success and stdout.
    pub fn exec(&self, n: &str, args: &[&str]) -> (bool, String) {
        let mut v = vec!["3", "ip", "netns", "exec"];
        let name = self.ns_name(n);
        v.push(&name);
        v.extend_from_slice(args);
        sh("timeout", &v)
    }

    fn cleanup_system(&self) {
        let _ = sh("nft", &["delete", "table", "ip", &self.table]);
        for n in 0..10 {
            let _ = sh("ip", &["link", "del", &format!("berthtest{}{n}", self.tag)]);
        }
        for v in &self.veths {
            let _ = sh("ip", &["link", "del", v]);
        }
        let (_, list) = sh("ip", &["netns", "list"]);
        let prefix = format!("berthtest-{}-", self.tag);
        for l in list.lines() {
            if let Some(name) = l
                .split_whitespace()
                .next()
                .filter(|n| n.starts_with(&prefix))
            {
                let _ = sh("ip", &["netns", "del", name]);
            }
        }
    }

    /// Stops servers and removes the namespaces (the test's "containers").
    pub fn stop_containers(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        for n in self.netns.drain(..) {
            let _ = sh("ip", &["netns", "del", &n]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{n}"));
        }
    }

    /// Asserts that no link, namespace or table of this test remains.
    pub fn assert_no_leaks(&mut self) {
        self.stop_containers();
        let mine = format!("berthtest{}", self.tag);
        let leaked = |links: &str| -> Option<String> {
            links
                .lines()
                .map(|l| {
                    l.split(':')
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                        .split('@')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .find(|name| name.starts_with(&mine) || self.veths.contains(name))
        };
        // the kernel removes a dead namespace's veths asynchronously
        let mut left = None;
        for _ in 0..20 {
            left = leaked(&sh("ip", &["-o", "link", "show"]).1);
            if left.is_none() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        assert!(left.is_none(), "link {left:?} leaked");
        let (_, ns) = sh("ip", &["netns", "list"]);
        let prefix = format!("berthtest-{}-", self.tag);
        assert!(!ns.contains(&prefix), "netns leaked: {ns}");
        let leftover = std::fs::read_dir("/etc/netns")
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix));
        assert!(leftover.is_none(), "/etc/netns entry leaked");
        let (_, tables) = sh("nft", &["list", "tables"]);
        assert!(
            !tables
                .lines()
                .any(|l| l.trim() == format!("table ip {}", self.table)),
            "nft table leaked"
        );
        let (_, addrs) = sh("ip", &["-o", "-4", "addr", "show"]);
        assert!(!addrs.contains(&mine), "address leaked: {addrs}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_containers();
        self.cleanup_system();
    }
}
