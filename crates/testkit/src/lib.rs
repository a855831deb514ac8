//! What berth's end-to-end tests share, so each test file does not grow its own copy:
//! a temporary berth ([`Berth`]: data root, runtime root, and the daemon the CLI starts
//! on demand, all torn down on drop), a busybox-static rootfs tar, [`eventually`], and
//! probes for leaks (processes, cgroups, mounts).
//!
//! Tests need root and Debian's busybox-static; both are checked with a message that
//! says what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Whether we run as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Panic with a clear message unless we run as root.
pub fn require_root() {
    assert!(
        is_root(),
        "berth's end-to-end tests mount, clone namespaces and create cgroups: run them as root"
    );
}

/// A busybox-static rootfs (every applet linked, passwd and group) as `dir/rootfs.tar`.
pub fn rootfs_tar(dir: &Path) -> PathBuf {
    rootfs_tar_with(
        dir,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "root:x:0:\nnogroup:x:65534:\n",
    )
}

/// [`rootfs_tar`] with the given /etc/passwd and /etc/group.
pub fn rootfs_tar_with(dir: &Path, passwd: &str, group: &str) -> PathBuf {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "the container tests need busybox-static: apt-get install -y busybox-static"
    );
    let fs = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(fs.join(d)).expect("mkdir");
    }
    std::fs::copy(bb, fs.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(bb)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", fs.join("bin").join(applet));
        }
    }
    std::fs::write(fs.join("etc/passwd"), passwd).expect("passwd");
    std::fs::write(fs.join("etc/group"), group).expect("group");
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&fs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar failed");
    tar
}

/// Poll `f` until it holds; panic with `what` after a generous deadline (a liveness
/// bound, not a timing assertion).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line contains `needle` (as "pid: cmdline").
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Whether process `pid` has ended: gone, or a zombie nobody reaped yet (a process
/// whose parent died is reparented to an init that may reap it late).
pub fn process_gone(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .is_some_and(|st| st == "Z" || st == "X")
        })
        .unwrap_or(true)
}

/// A resource file of container `id`'s cgroup under berth's parent: `v1` as
/// `controller/file` of the v1 hierarchy, else `v2` of the unified one (panics when
/// neither exists).
pub fn cgroup_value(id: &str, v1: &str, v2: &str) -> String {
    let (ctrl, file) = v1.split_once('/').expect("controller/file");
    let p1 = Path::new("/sys/fs/cgroup")
        .join(ctrl)
        .join("berth")
        .join(id)
        .join(file);
    let p2 = Path::new("/sys/fs/cgroup/berth").join(id).join(v2);
    std::fs::read_to_string(&p1)
        .or_else(|_| std::fs::read_to_string(&p2))
        .unwrap_or_else(|_| panic!("neither {} nor {}", p1.display(), p2.display()))
        .trim()
        .to_string()
}

/// Cgroup directories named after container `id` (v1 hierarchies and the unified one).
pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup/berth")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        bases.extend(rd.flatten().map(|e| e.path().join("berth")));
    }
    for b in bases {
        let p = b.join(id);
        if p.exists() {
            out.push(p);
        }
    }
    out
}

/// Mount points under `root`, in mount order.
pub fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&root))
        .collect()
}

/// Removes the bridges and the nft table a berth daemon of `data_root` made, as
/// recorded in `<data_root>/network/networks.json`: for a daemon that was killed
/// (a clean stop with nothing running removes them itself). Best effort.
pub fn remove_network_leftovers(data_root: &Path) {
    let Ok(text) = std::fs::read_to_string(data_root.join("network/networks.json")) else {
        return;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    for n in v["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        if let Some(br) = n["bridge"].as_str() {
            let _ = Command::new("ip")
                .args(["link", "del", "dev", br])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    if let Some(t) = v["table"].as_str().filter(|t| !t.is_empty()) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", t])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A command's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Builds berthd next to the berth binary at `berth` when it is not there (a
/// `cargo test -p berth` builds only berth's own binaries; the CLI starts berthd from
/// its own directory).
pub fn ensure_berthd(berth: &Path) {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let berthd = berth.with_file_name("berthd");
    if berthd.exists() {
        return;
    }
    BUILT.call_once(|| {
        // target/<profile>/berth
        let profile_dir = berth.parent().expect("the berth binary has a directory");
        let target = profile_dir.parent().expect("a cargo target directory");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        c.args(["build", "-p", "berthd", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", target);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        let st = c.status().expect("run cargo to build berthd");
        assert!(st.success(), "cargo build -p berthd failed");
    });
    assert!(
        berthd.exists(),
        "berthd is not next to {}: build it with cargo build -p berthd",
        berth.display()
    );
}

/// A temporary berth: data root and runtime root under one temporary directory, the
/// `berth` binary given by the test (`env!("CARGO_BIN_EXE_berth")` in the berth crate),
/// and the daemon that the CLI starts on demand for this data root. Dropping it
/// force-removes every container, stops the daemon, and unmounts whatever is left.
pub struct Berth {
    /// the temporary directory holding everything
    pub root: tempfile::TempDir,
    bin: PathBuf,
}

impl Berth {
    /// An empty berth using the CLI at `bin`.
    pub fn empty(bin: impl Into<PathBuf>, prefix: &str) -> Berth {
        require_root();
        let bin = bin.into();
        ensure_berthd(&bin);
        let root = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        Berth { root, bin }
    }

    /// A berth with the busybox rootfs imported as `image` (CMD ["sh"]).
    pub fn with_busybox(bin: impl Into<PathBuf>, prefix: &str, image: &str) -> Berth {
        let b = Berth::empty(bin, prefix);
        let tar = rootfs_tar(b.root.path());
        b.ok(&[
            "image",
            "import",
            "-c",
            "CMD [\"sh\"]",
            tar.to_str().expect("utf-8 path"),
            image,
        ]);
        b
    }

    /// The data root.
    pub fn data_root(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The runtime root.
    pub fn runtime_root(&self) -> PathBuf {
        self.root.path().join("runtime")
    }

    /// The daemon's socket (the CLI's default for this data root).
    pub fn socket(&self) -> PathBuf {
        self.data_root().join("berthd.sock")
    }

    /// The berth binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `berth --data-root …` with this berth's environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--data-root")
            .arg(self.data_root())
            .env("BERTH_RUNTIME_ROOT", self.runtime_root())
            .env_remove("BERTH_DATA_ROOT")
            .env_remove("BERTH_HOST");
        c
    }

    /// Run berth with `args` and collect its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run berth")
    }

    /// Run berth with `args`, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The real docker CLI against this berth's daemon (which must run: any berth
    /// command that talks to it, e.g. `version`, starts it).
    pub fn docker(&self, args: &[&str]) -> Output {
        assert!(
            Command::new("docker").arg("--version").output().is_ok(),
            "the docker CLI is needed: scripts/setup.sh installs the client from Debian's docker.io"
        );
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.root.path().join("docker-config"))
            .output()
            .expect("run docker")
    }

    /// [`Berth::docker`], asserting success; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker inspect NAME` through this berth's daemon, as JSON (the object itself).
    pub fn docker_inspect(&self, name: &str) -> serde_json::Value {
        let out = self.docker_ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        v[0].clone()
    }

    /// Mounts under our temporary root.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(self.root.path())
    }

    /// The pid of the daemon serving this data root, if one runs.
    pub fn daemon_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.data_root().join("berthd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Stop the daemon (SIGTERM, then SIGKILL after 5 s) and wait until it is gone.
    pub fn stop_daemon(&self) {
        let Some(pid) = self.daemon_pid() else { return };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Ok(out) = self.command().args(["ps", "-aq", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.command().args(["rm", "--force", id]).output();
            }
        }
        self.stop_daemon();
        remove_network_leftovers(&self.data_root());
        for m in self.mounts().into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// A Debian docker-registry on a free loopback port (plain HTTP), optionally with
/// htpasswd auth (user `berth`, password [`Registry::PASSWORD`]); killed on drop.
pub struct Registry {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub host: String,
}

impl Registry {
    /// The password of user `berth` when started with auth.
    pub const PASSWORD: &'static str = "berth-test-pass";

    /// Start one; `auth` turns on htpasswd.
    pub fn start(auth: bool) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "needs Debian's docker-registry package (scripts/setup.sh installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-test-registry-")
            .tempdir()
            .expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        // bcrypt of "berth-test-pass"
        std::fs::write(
            dir.path().join("htpasswd"),
            "berth:$2b$04$79Jzr/ml3LJvPqsKGvwiGeF2W8UMRlkWqaDQJ1sROGkpo2DRwzTHC\n",
        )
        .expect("htpasswd");
        let auth_cfg = if auth {
            format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}/htpasswd\n",
                dir.path().display()
            )
        } else {
            String::new()
        };
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {0}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_cfg}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), cfg).expect("config");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn registry");
        let host = format!("127.0.0.1:{port}");
        eventually("docker-registry to listen", || {
            std::net::TcpStream::connect(&host).is_ok()
        });
        Registry {
            child,
            _dir: dir,
            host,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
