//! The `berth` binary end to end, through the daemon it starts: import, ls, tag,
//! inspect -f, history, save, load, rm, prune, system df, volumes, events, info, and
//! login/push/pull on a loopback registry (needs root for mounts).

use berth_testkit::{rootfs_tar, Berth, Registry};

fn berth(prefix: &str) -> Berth {
    Berth::empty(env!("CARGO_BIN_EXE_berth"), prefix)
}

/// (success, stdout, stderr)
fn run(b: &Berth, args: &[&str]) -> (bool, String, String) {
    let out = b.run(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn image_commands_end_to_end() {
    let b = berth("berth-test-cli-");
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
    let (ok, _, err) = run(&b, &["image", "inspect", "berth-test/bb:1.0"]);
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

#[test]
fn login_push_pull_logout() {
    let b = berth("berth-test-cli-reg-");
    let reg = Registry::start(true);
    let cfg = b.root.path().join("config");
    let berth = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut c = b
            .command()
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
        &format!("{}\n", Registry::PASSWORD),
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
        out.contains("Pull complete") && !out.contains("Downloading"),
        "status lines without byte counts when not a terminal: {out}"
    );
    assert!(berth(&["logout", &reg.host], "")
        .1
        .contains("Removing login credentials"));
    assert!(berth(&["rmi", &name], "").0);
    let (ok, _, err) = berth(&["pull", "-q", &name], "");
    assert!(!ok && err.contains("berth login"), "{err}");
}

#[test]
fn volumes_events_info_and_system_prune_go_through_the_daemon() {
    let b = berth("berth-test-cli-sys-");
    let since = chrono_free_now() - 1;
    assert_eq!(
        b.ok(&["volume", "create", "--label", "k=v", "v1"]).trim(),
        "v1"
    );
    assert_eq!(b.ok(&["volume", "create", "v2"]).trim(), "v2");
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "-f", "label=k=v"]).trim(),
        "v1"
    );
    assert!(b.daemon_pid().is_some(), "the CLI started berthd");
    let ls = b.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER") && ls.contains("v2"), "{ls}");
    let (ok, _, err) = run(&b, &["volume", "inspect", "nosuch"]);
    assert!(
        !ok && err.to_lowercase().contains("no such volume"),
        "{err}"
    );
    b.ok(&["volume", "rm", "v1"]);
    let until = chrono_free_now() + 1;
    let ev = b.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=volume",
    ]);
    let kinds: Vec<String> = ev
        .lines()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        kinds,
        ["volume create v1", "volume create v2", "volume destroy v1"],
        "{ev}"
    );
    // docker's rm loops: each failure said in the daemon's words, the others still go
    b.ok(&["volume", "create", "v3"]);
    let (ok, out, err) = run(&b, &["volume", "rm", "nosuch", "v3"]);
    assert!(!ok && out.trim() == "v3", "{out}");
    assert_eq!(
        err.trim(),
        "Error response from daemon: get nosuch: no such volume"
    );
    let (ok, _, err) = run(&b, &["network", "rm", "nosuch"]);
    assert!(!ok, "{err}");
    assert_eq!(
        err.trim(),
        "Error response from daemon: network nosuch not found"
    );
    let (ok, out, err) = run(&b, &["network", "rm", "-f", "nosuch"]);
    assert!(ok && out.is_empty() && err.is_empty(), "{out}{err}");
    assert_eq!(
        b.ok(&["info", "--format", "{{.Images}} {{.Containers}}"])
            .trim(),
        "0 0"
    );
    let pruned = b.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let pruned = b.ok(&["volume", "prune", "-a", "-f"]);
    assert!(pruned.contains("Deleted Volumes:\nv2\n"), "{pruned}");
}

fn chrono_free_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
