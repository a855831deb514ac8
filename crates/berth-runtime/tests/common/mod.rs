//! Shared harness for the end-to-end tests: busybox bundles, the binary, cleanup.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The static busybox every test rootfs is made of.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let out = Command::new("file").arg("-L").arg(p).output();
        if let Ok(o) = out {
            if String::from_utf8_lossy(&o.stdout).contains("statically linked") {
                return PathBuf::from(p);
            }
        }
    }
    panic!("a static busybox is needed: apt-get install -y busybox-static");
}

/// One test container: its own runtime root, bundle and id; cleaned up on drop.
pub struct Ct {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub config: Value,
}

impl Ct {
    /// A bundle running `args` with a busybox rootfs and runc's default config.
    pub fn new(args: &[&str]) -> Ct {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("bundle/rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        let bb = busybox();
        std::fs::copy(&bb, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(&bb)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
        let out = Command::new(BIN)
            .args(["spec", "--bundle"])
            .arg(dir.path().join("bundle"))
            .output()
            .expect("spec");
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("bundle/config.json")).expect("config");
        let mut config: Value = serde_json::from_str(&text).expect("json");
        config["process"]["terminal"] = Value::Bool(false);
        config["process"]["args"] = serde_json::json!(args);
        config["hostname"] = Value::String("berth-test".into());
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("berth-test-{}-{n}", std::process::id());
        Ct { dir, id, config }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }

    /// Write the (possibly modified) config.json.
    pub fn write(&self) {
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("encode"),
        )
        .expect("write config");
    }

    /// `berth-runtime --root <root> <args...>`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run with a 60 s limit; returns the output.
    pub fn rt(&self, args: &[&str]) -> Output {
        run_limited_ct(self.cmd(args), Some((self.root(), self.id.clone())))
    }

    /// `run` the bundle in the foreground and return (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        self.write();
        let b = self.bundle();
        let out = self.rt(&["run", "--bundle", b.to_str().expect("utf8"), &self.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `create` with stdout/stderr going to files in the test dir.
    pub fn create(&self) -> Output {
        self.write();
        let b = self.bundle();
        let mut c = self.cmd(&["create", "--bundle", b.to_str().expect("utf8"), &self.id]);
        // The container inherits these: files, so that nothing waits for it to exit.
        let out = std::fs::File::create(self.dir.path().join("out")).expect("out file");
        let err = std::fs::File::create(self.dir.path().join("err")).expect("err file");
        c.stdout(out).stderr(err);
        let st = spawn_limited(c, Some((self.root(), self.id.clone())));
        let stderr = std::fs::read(self.dir.path().join("err")).unwrap_or_default();
        Output {
            status: st,
            stdout: Vec::new(),
            stderr,
        }
    }

    pub fn output_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("out")).unwrap_or_default()
    }

    pub fn state(&self) -> Value {
        let o = self.rt(&["state", &self.id]);
        assert!(
            o.status.success(),
            "state: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).expect("state json")
    }

    /// Wait until the container's status is `want` (up to 10 s).
    pub fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.state();
            if s["status"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container never became {want}: {s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        let _ = self.rt(&["delete", "--force", &self.id]);
    }
}

pub fn run_limited(c: Command) -> Output {
    run_limited_ct(c, None)
}

/// As [`run_limited`]; on timeout also force-delete container `ct` (root, id), whose
/// processes would otherwise hold our pipes open forever.
pub fn run_limited_ct(mut c: Command, ct: Option<(PathBuf, String)>) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn berth-runtime");
    let pid = child.id();
    let done = kill_after_60s(pid, ct);
    let out = child.wait_with_output().expect("wait");
    done.store(true, Ordering::SeqCst);
    out
}

/// Spawn with the caller's stdio and wait (60 s limit).
pub fn spawn_limited(mut c: Command, ct: Option<(PathBuf, String)>) -> std::process::ExitStatus {
    let mut child = c.spawn().expect("spawn berth-runtime");
    let done = kill_after_60s(child.id(), ct);
    let st = child.wait().expect("wait");
    done.store(true, Ordering::SeqCst);
    st
}

fn kill_after_60s(
    pid: u32,
    ct: Option<(PathBuf, String)>,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if d2.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        if let Some((root, id)) = ct {
            let _ = Command::new(BIN)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", &id])
                .output();
        }
    });
    done
}

/// Cgroup directories whose name is exactly `id` anywhere under /sys/fs/cgroup (depth 4).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(p: &Path, depth: u32, id: &str, out: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let ft = match e.file_type() {
                Ok(f) => f,
                Err(_) => continue,
            };
            if ft.is_dir() {
                if e.file_name() == id {
                    out.push(e.path());
                }
                walk(&e.path(), depth + 1, id, out);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), 0, id, &mut out);
    out
}
