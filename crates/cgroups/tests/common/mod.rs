//! Shared helpers of the end-to-end tests (run as root on a real cgroup host).

#![allow(dead_code)]

pub mod conformance;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_cgroups::{CgroupManager, CgroupMode};

pub const ROOT: &str = "/sys/fs/cgroup";

/// Fail clearly when the host cannot run these tests.
pub fn require_root_and_cgroups() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the berth-cgroups end-to-end tests create real cgroups: run them as root"
    );
    assert!(
        Path::new(ROOT).is_dir(),
        "no {ROOT}: these tests need a mounted cgroup filesystem"
    );
}

/// A unique cgroup name for this test process: `berth-test-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "berth-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A child that waits for a line on stdin before doing anything, so it can be moved
/// into a cgroup first. Killed and reaped on drop.
pub struct Gated {
    pub child: Child,
    out: BufReader<ChildStdout>,
}

impl Gated {
    /// `sh -c script`; the script should start with `read go;`.
    pub fn spawn(script: &str) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh (is /bin/sh installed?)");
        let out = BufReader::new(child.stdout.take().expect("stdout piped"));
        Gated { child, out }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Let the script go on past its `read go`.
    pub fn release(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        stdin.write_all(b"go\n").expect("write go");
        stdin.flush().expect("flush");
    }

    /// Next line the script printed.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).expect("read child stdout");
        s.trim().to_string()
    }

    /// Everything the script printed on stderr after it exited.
    pub fn wait_stderr(mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).expect("read stderr");
        }
        let _ = self.child.wait();
        err
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Destroys the cgroup on drop (after its members are gone), even when a test panics.
pub struct CgroupGuard {
    pub m: Box<dyn CgroupManager>,
}

impl CgroupGuard {
    pub fn new(mode: CgroupMode, root: &Path, name: &str) -> Self {
        let m = berth_cgroups::manager(mode, root, Path::new(name)).expect("manager");
        CgroupGuard { m }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let _ = self.m.thaw();
        if let Ok(pids) = self.m.pids() {
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.m.destroy();
    }
}

/// `State:` line of /proc/<pid>/status.
pub fn proc_state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or_default()
        .to_string()
}
