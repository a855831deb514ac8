//! A real `docker-registry` (distribution 2.8) on 127.0.0.1 for the duration of a
//! test, plus small image builders.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// bcrypt of `berth-test-pass` for user `berth`.
pub const HTPASSWD: &str = "berth:$2b$04$79Jzr/ml3LJvPqsKGvwiGeF2W8UMRlkWqaDQJ1sROGkpo2DRwzTHC\n";
pub const USER: &str = "berth";
pub const PASS: &str = "berth-test-pass";

/// A running registry; killed (and its storage removed) on drop.
pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub host: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Registry {
    pub fn start(htpasswd: bool) -> Self {
        Self::start_with(htpasswd, |_| String::new())
    }

    /// Starts a registry; `extra` returns `auth:` YAML (given the storage dir) that
    /// replaces the htpasswd setup when not empty.
    pub fn start_with(htpasswd: bool, extra: impl FnOnce(&Path) -> String) -> Self {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(bin.exists(), "registry tests need Debian's docker-registry package (apt-get install docker-registry)");
        let dir = tempfile::Builder::new()
            .prefix("berth-test-registry-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let extra = extra(dir.path());
        let auth = if !extra.is_empty() {
            extra
        } else if htpasswd {
            std::fs::write(dir.path().join("htpasswd"), HTPASSWD).expect("htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            )
        } else {
            String::new()
        };
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), cfg).expect("config");
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let r = Self {
            child,
            dir,
            host: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&r.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start listening on {}",
                r.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards connections to `target`, but stops forwarding responses on a
/// connection after `limit` bytes: a download that hangs mid-layer.
pub struct StallingProxy {
    pub host: String,
}

impl StallingProxy {
    pub fn start(target: String, limit: usize) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = l.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                let (mut c2, mut up2) = (
                    c.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                );
                let mut c = c;
                let mut up = up;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut up2);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut sent = 0;
                    while let Ok(n) = up.read(&mut buf) {
                        if n == 0 || sent + n > limit {
                            break;
                        }
                        if c.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        sent += n;
                    }
                    // Stall: keep the connection open, send nothing more.
                    std::thread::sleep(Duration::from_secs(3600));
                });
            }
        });
        Self { host }
    }
}

/// A rootfs tarball: busybox plus `size` bytes of incompressible data in `/blob`.
pub fn rootfs(size: usize, seed: u64) -> Vec<u8> {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "these tests need Debian's busybox-static package (apt-get install busybox-static)"
    );
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name(bb, "bin/busybox").expect("busybox");
    let mut x = seed | 1;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "blob", &data[..]).expect("blob");
    b.into_inner().expect("tar")
}

pub fn data_root() -> tempfile::TempDir {
    assert!(
        nix::unistd::geteuid().is_root(),
        "registry tests unpack images with ownership: run them as root"
    );
    tempfile::Builder::new()
        .prefix("berth-test-root-")
        .tempdir()
        .expect("tempdir")
}

pub fn skopeo() -> PathBuf {
    let p = PathBuf::from("/usr/bin/skopeo");
    assert!(
        p.exists(),
        "these tests need Debian's skopeo package (apt-get install skopeo)"
    );
    p
}
