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
