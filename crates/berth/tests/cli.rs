//! The `berth` binary end to end: import, ls, tag, inspect -f, history, save, load,
//! rm, prune and system df against a temporary data root (needs root for mounts).

use std::path::Path;
use std::process::Command;

struct Berth {
    root: tempfile::TempDir,
}

impl Berth {
    fn new() -> Self {
        assert!(
            nix_is_root(),
            "the CLI tests unpack layers with ownership: run them as root"
        );
        Self {
            root: tempfile::Builder::new()
                .prefix("berth-test-cli-")
                .tempdir()
                .expect("tempdir"),
        }
    }
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--data-root")
            .arg(self.root.path())
            .args(args)
            .output()
            .expect("run berth");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "berth {args:?} failed: {err}");
        out
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn rootfs_tar(dir: &Path) -> std::path::PathBuf {
    assert!(
        Path::new("/bin/busybox").exists(),
        "the CLI tests need Debian's busybox-static package"
    );
    let fs = dir.join("rootfs");
    std::fs::create_dir_all(fs.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", fs.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", fs.join("bin/sh")).expect("symlink");
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&fs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    tar
}

#[test]
fn image_commands_end_to_end() {
    let b = Berth::new();
    let tar = rootfs_tar(b.root.path());
    let id = b.ok(&[
        "image",
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        tar.to_str().expect("utf8"),
        "berth-test/bb:1.0",
    ]);
    assert!(id.trim().starts_with("sha256:"));
    let ls = b.ok(&["image", "ls"]);
    let mut lines = ls.lines();
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"])
    );
    assert!(
        lines
            .next()
            .expect("row")
            .starts_with("berth-test/bb   1.0       "),
        "{ls}"
    );
    b.ok(&["image", "tag", "berth-test/bb:1.0", "berth-test/bb:2"]);
    assert_eq!(
        b.ok(&["image", "ls", "-q"]).lines().count(),
        1,
        "one image, two names"
    );
    assert_eq!(
        b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .lines()
            .collect::<Vec<_>>(),
        vec!["berth-test/bb:1.0", "berth-test/bb:2"]
    );
    assert_eq!(
        b.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Config.Cmd}}",
            "berth-test/bb:2"
        ])
        .trim(),
        format!("{} [/bin/sh]", id.trim())
    );
    let js: serde_json::Value =
        serde_json::from_str(&b.ok(&["image", "inspect", "berth-test/bb:1.0"])).expect("json");
    assert_eq!(
        js[0]["RootFS"]["Layers"].as_array().expect("layers").len(),
        1
    );
    assert!(b
        .ok(&["image", "history", "berth-test/bb:1.0"])
        .contains("Imported from -"));
    let saved = b.root.path().join("saved.tar");
    b.ok(&[
        "image",
        "save",
        "-q",
        "-o",
        saved.to_str().expect("utf8"),
        "berth-test/bb:1.0",
    ]);
    let rm = b.ok(&["image", "rm", "berth-test/bb:1.0", "berth-test/bb:2"]);
    assert!(
        rm.contains("Untagged: berth-test/bb:1.0")
            && rm.contains(&format!("Deleted: {}", id.trim())),
        "{rm}"
    );
    let (ok, _, err) = b.run(&["image", "inspect", "berth-test/bb:1.0"]);
    assert!(!ok && err.contains("no such image"), "{err}");
    assert_eq!(
        b.ok(&["image", "load", "-i", saved.to_str().expect("utf8")])
            .trim(),
        "Loaded image: berth-test/bb:1.0"
    );
    let df = b.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\nImages          1         0"), "{df}");
    let pruned = b.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("deleted: sha256:") && pruned.contains("Total reclaimed space:"),
        "{pruned}"
    );
    assert_eq!(b.ok(&["image", "ls", "-q"]), "");
}

/// A docker-registry with htpasswd auth on a free loopback port; killed on drop.
struct Registry {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    host: String,
}

impl Registry {
    fn start() -> Self {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "needs Debian's docker-registry package"
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
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {0}/data\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {0}/htpasswd\n",
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
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

#[test]
fn login_push_pull_logout() {
    let b = Berth::new();
    let reg = Registry::start();
    let cfg = b.root.path().join("config");
    let berth = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--data-root")
            .arg(b.root.path())
            .args(args)
            .env("BERTH_CONFIG", &cfg)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let out = c.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tar = rootfs_tar(b.root.path());
    let name = format!("{}/berth-test/cli:1", reg.host);
    assert!(berth(&["import", tar.to_str().expect("utf8"), &name], "").0);
    let (ok, _, err) = berth(&["push", "-q", &name], "");
    assert!(
        !ok && err.contains(&format!("berth login {}", reg.host)),
        "{err}"
    );
    let (ok, _, err) = berth(
        &["login", "-u", "berth", "--password-stdin", &reg.host],
        "wrong\n",
    );
    assert!(!ok && err.contains("login to"), "{err}");
    let (ok, out, err) = berth(
        &["login", "-u", "berth", "--password-stdin", &reg.host],
        "berth-test-pass\n",
    );
    assert!(ok && out.contains("Login Succeeded"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(cfg.join("auth.json"))
            .expect("auth.json")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (ok, out, err) = berth(&["push", &name], "");
    assert!(ok && out.contains("1: digest: sha256:"), "{err}");
    assert!(berth(&["rmi", &name], "").0);
    let (ok, out, err) = berth(&["pull", &name], "");
    assert!(
        ok && out.contains("Status: Downloaded newer image"),
        "{err}"
    );
    assert!(
        err.contains("Pull complete"),
        "plain progress lines when not a terminal: {err}"
    );
    assert!(berth(&["logout", &reg.host], "")
        .1
        .contains("Removing login credentials"));
    assert!(berth(&["rmi", &name], "").0);
    let (ok, _, err) = berth(&["pull", "-q", &name], "");
    assert!(!ok && err.contains("berth login"), "{err}");
}
