//! The real docker CLI (28.2.2 on PATH, and Debian's 20.10 for a subset) against berthd
//! for images, registries, builds, volumes, events, disk usage and info; plus raw
//! malformed input to those routes. Each test has its own data root and daemon (the
//! berth CLI starts it), torn down by the testkit even when the test fails.

use berth_client::{Body, Client};
use berth_testkit::{rootfs_tar, stderr, stdout, Berth, Registry};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The docker 20.10 client that scripts/setup.sh extracts from Debian's docker.io.
const DOCKER_20: &str = "/opt/berth-ci/docker-20.10/docker";

struct Env {
    b: Berth,
    cfg: tempfile::TempDir,
}

impl Env {
    fn new(prefix: &str) -> Env {
        assert!(
            Command::new("docker").arg("--version").output().is_ok(),
            "the docker CLI is needed: scripts/setup.sh installs a client"
        );
        let berth = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
        assert!(
            berth.exists(),
            "build the berth binary first (cargo build -p berth): {}",
            berth.display()
        );
        let b = Berth::empty(berth, prefix);
        b.ok(&["version"]); // starts the daemon for this data root
        Env {
            b,
            cfg: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn client(&self) -> Client {
        Client::new(self.b.socket())
    }

    fn docker_with(&self, bin: &str, args: &[&str], stdin: &str) -> Output {
        let mut c = Command::new(bin)
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.b.socket().display()),
            )
            .env("DOCKER_CONFIG", self.cfg.path())
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        let mut i = c.stdin.take().expect("stdin");
        i.write_all(stdin.as_bytes()).expect("stdin");
        drop(i);
        c.wait_with_output().expect("docker")
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_with("docker", args, "")
    }

    /// Run docker, assert exit 0, return stdout.
    fn ok_with(&self, bin: &str, args: &[&str]) -> String {
        let o = self.docker_with(bin, args, "");
        assert!(
            o.status.success(),
            "{bin} {args:?} failed ({:?}): {}{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_with("docker", args)
    }

    /// `docker import` of the busybox rootfs as `name`; returns the id.
    fn import(&self, bin: &str, name: &str) -> String {
        let tar = rootfs_tar(self.b.root.path());
        let out = self.ok_with(
            bin,
            &[
                "import",
                "-c",
                "CMD [\"sh\"]",
                tar.to_str().expect("utf-8"),
                name,
            ],
        );
        let id = out.trim().to_string();
        assert!(id.starts_with("sha256:"), "{out}");
        id
    }
}

fn failed_with(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}{}", stdout(o), stderr(o));
    assert!(
        stderr(o).to_lowercase().contains(&needle.to_lowercase()),
        "expected {needle:?} in: {}",
        stderr(o)
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn image_commands_through_the_docker_cli() {
    let e = Env::new("berth-test-dimg-");
    let id = e.import("docker", "app:1");
    let ls = e.ok(&["images"]);
    let head: Vec<&str> = ls
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        head,
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"],
        "{ls}"
    );
    assert!(ls.lines().nth(1).expect("row").starts_with("app "), "{ls}");
    e.ok(&["tag", "app:1", "other/app:2"]);
    assert_eq!(
        e.ok(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=other/*"
        ])
        .trim(),
        "other/app:2"
    );
    let ids = e.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(
        ids.lines().collect::<Vec<_>>(),
        [id.as_str(), id.as_str()],
        "a row per name"
    );
    assert_eq!(
        e.ok(&["images", "-q", "--filter", "dangling=true"]).trim(),
        ""
    );
    assert_eq!(
        e.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Config.Cmd}}",
            "other/app:2"
        ])
        .trim(),
        format!("{id} [sh]")
    );
    let hist = e.ok(&["history", "app:1"]);
    assert!(
        hist.starts_with("IMAGE") && hist.contains(&id[7..19]),
        "{hist}"
    );
    // A container keeps its image: 409 until it is removed.
    let cid = e.ok(&["create", "--name", "user", "app:1", "true"]);
    assert!(!cid.trim().is_empty());
    e.ok(&["rmi", "other/app:2"]);
    failed_with(&e.docker(&["rmi", "app:1"]), 1, "being used by container");
    e.ok(&["rm", "user"]);
    let rmi = e.ok(&["rmi", "app:1"]);
    assert!(
        rmi.contains("Untagged: app:1") && rmi.contains(&format!("Deleted: {id}")),
        "{rmi}"
    );
    failed_with(&e.docker(&["rmi", "app:1"]), 1, "no such image");
    failed_with(
        &e.docker(&["image", "inspect", "nosuch:1"]),
        1,
        "no such image",
    );
    failed_with(&e.docker(&["tag", "nosuch", "x:1"]), 1, "no such image");
}

#[test]
fn save_load_and_prune_through_the_docker_cli() {
    let e = Env::new("berth-test-dsave-");
    let id = e.import("docker", "app:1");
    e.ok(&["tag", "app:1", "app:2"]);
    let tar = e.b.root.path().join("saved.tar");
    e.ok(&["save", "-o", tar.to_str().expect("utf-8"), "app:1", "app:2"]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .expect("tar");
    assert!(stdout(&list).contains("manifest.json"), "{}", stdout(&list));
    e.ok(&["rmi", "app:1", "app:2"]);
    let loaded = e.ok(&["load", "-i", tar.to_str().expect("utf-8")]);
    assert!(
        loaded.contains("Loaded image: app:1") && loaded.contains("Loaded image: app:2"),
        "{loaded}"
    );
    assert_eq!(
        e.ok(&["images", "-q", "--no-trunc"]).lines().next(),
        Some(id.as_str())
    );
    // Only dangling images go with `image prune`; named ones with `-a`.
    let pruned = e.ok(&["image", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(
        e.ok(&["images", "-q", "--no-trunc"]).lines().next(),
        Some(id.as_str())
    );
    // until=1h keeps what was made within the hour; a label nobody has keeps all
    e.ok(&["image", "prune", "-a", "-f", "--filter", "until=1h"]);
    e.ok(&["image", "prune", "-a", "-f", "--filter", "label=nobody=has"]);
    assert_eq!(
        e.ok(&["images", "-q", "--no-trunc"]).lines().next(),
        Some(id.as_str())
    );
    let pruned = e.ok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains(&format!("deleted: {id}")), "{pruned}");
    assert_eq!(e.ok(&["images", "-q"]).trim(), "");
    let junk = e.b.root.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive at all").expect("write");
    let o = e.docker(&["load", "-i", junk.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn login_push_and_pull_on_a_loopback_registry() {
    let e = Env::new("berth-test-dreg-");
    let reg = Registry::start(true);
    let name = format!("{}/team/app:1", reg.host);
    let id = e.import("docker", &name);
    failed_with(&e.docker(&["push", &name]), 1, "authentication required");
    let bad = e.docker_with(
        "docker",
        &["login", "-u", "berth", "--password-stdin", &reg.host],
        "wrong\n",
    );
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let good = e.docker_with(
        "docker",
        &["login", "-u", "berth", "--password-stdin", &reg.host],
        &format!("{}\n", Registry::PASSWORD),
    );
    assert!(
        good.status.success() && stdout(&good).contains("Login Succeeded"),
        "{}{}",
        stdout(&good),
        stderr(&good)
    );
    let pushed = e.ok(&["push", &name]);
    assert!(
        pushed.contains(&format!(
            "The push refers to repository [{}/team/app]",
            reg.host
        )) && pushed.contains("1: digest: sha256:"),
        "{pushed}"
    );
    e.ok(&["rmi", &name]);
    let pulled = e.ok(&["pull", &name]);
    assert!(
        pulled.contains("Pull complete") && pulled.contains("Status: Downloaded newer image"),
        "{pulled}"
    );
    assert_eq!(e.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    let again = e.ok(&["pull", &name]);
    assert!(again.contains("Image is up to date"), "{again}");
    e.ok(&["logout", &reg.host]);
    e.ok(&["rmi", &name]);
    failed_with(&e.docker(&["pull", &name]), 1, "authentication required");
    failed_with(
        &e.docker(&["pull", &format!("{}/team/nosuch:1", reg.host)]),
        1,
        "",
    );
}

fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let c = dir.join("ctx");
    std::fs::create_dir_all(&c).expect("mkdir");
    std::fs::write(c.join("Dockerfile"), dockerfile).expect("Dockerfile");
    std::fs::write(c.join("hello.txt"), "hello from the context\n").expect("file");
    c
}

#[test]
fn legacy_builder_build_through_the_docker_cli() {
    let e = Env::new("berth-test-dbuild-");
    e.import("docker", "base:1");
    let ctx = context(
        e.b.root.path(),
        "FROM base:1\nARG V=none\nCOPY hello.txt /hello.txt\nRUN echo \"v=$V\" > /v\nLABEL made=by-test\nCMD [\"cat\", \"/v\"]\n",
    );
    let out = e.ok(&[
        "build",
        "-t",
        "built:1",
        "-t",
        "built:2",
        "--build-arg",
        "V=7",
        ctx.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("Step 1/6 : FROM base:1"), "{out}");
    assert_eq!(out.matches("Successfully built").count(), 1, "{out}");
    assert!(
        out.contains("Successfully built") && out.contains("Successfully tagged built:2"),
        "{out}"
    );
    assert_eq!(e.ok(&["run", "--rm", "built:1"]).trim(), "v=7");
    assert_eq!(
        e.ok(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"made\"}}",
            "built:2"
        ])
        .trim(),
        "by-test"
    );
    let q = e.ok(&["build", "-q", "-t", "built:1", ctx.to_str().expect("utf-8")]);
    assert!(
        q.trim().starts_with("sha256:") && !q.contains("Step"),
        "{q}"
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM base:1\nRUN exit 3\n").expect("write");
    let o = e.docker(&["build", ctx.to_str().expect("utf-8")]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the RUN's status, as with dockerd: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("returned a non-zero code: 3"),
        "{}",
        stderr(&o)
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM base:1\nNOPE x\n").expect("write");
    let o = e.docker(&["build", ctx.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // -f outside the context: the CLI appends it to the tar, unpadded and unterminated
    let df = e.b.root.path().join("outside.Dockerfile");
    std::fs::write(
        &df,
        "FROM base:1\nCOPY hello.txt /h\nCMD [\"cat\", \"/h\"]\n",
    )
    .expect("write");
    let out = e.ok(&[
        "build",
        "-q",
        "-f",
        df.to_str().expect("utf-8"),
        "-t",
        "outside:1",
        ctx.to_str().expect("utf-8"),
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    assert_eq!(
        e.ok(&["run", "--rm", "outside:1"]).trim(),
        "hello from the context"
    );
}

#[test]
fn legacy_builder_container_flags_through_the_docker_cli() {
    let e = Env::new("berth-test-dbflags-");
    e.import("docker", "base:1");
    // (cgroup v1 files, falling back to v2's; the RUN's own cgroup from /proc/self/cgroup)
    let probe = "FROM base:1\nRUN cg() { p=$(grep -E \"^[0-9]+:([a-z_]+,)?$1(,[a-z_]+)?:\" /proc/self/cgroup | cut -d: -f3); \
                 cat /sys/fs/cgroup/$1$p/$2 2>/dev/null || cat /sys/fs/cgroup$(grep '^0::' /proc/self/cgroup | cut -d: -f3)/$3; }; \
                 (cat /etc/hosts; ls /sys/class/net; cg memory memory.limit_in_bytes memory.max; \
                 cg cpu cpu.cfs_quota_us cpu.max; cg cpuset cpuset.cpus cpuset.cpus.effective; \
                 grep ' /dev/shm ' /proc/mounts; ulimit -n; ulimit -Hn; grep NoNewPrivs /proc/self/status) > /probe\n";
    let ctx = context(e.b.root.path(), probe);
    #[rustfmt::skip]
    let out = e.ok(&[
        "build", "-t", "flags:1", "--add-host", "db:10.4.4.4", "--network", "none",
        "-m", "64m", "--shm-size", "16m", "--ulimit", "nofile=256:512", "--cpu-period", "100000",
        "--cpu-quota", "30000", "--cpuset-cpus", "0", "--memory-swap", "-1",
        "--security-opt", "no-new-privileges", "--cache-from", "base:1",
        ctx.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("Successfully tagged flags:1"), "{out}");
    let seen = e.ok(&["run", "--rm", "flags:1", "cat", "/probe"]);
    for want in [
        "10.4.4.4\tdb\n",
        "\nlo\n",
        &format!("\n{}\n", 64 << 20),
        "\n30000", // cpu.cfs_quota_us (v1) or "30000 100000" (v2)
        "\n0\n",   // cpuset.cpus
        "size=16384k",
        "\n256\n512\n",
    ] {
        assert!(seen.contains(want), "missing {want:?} in:\n{seen}");
    }
    assert!(seen.trim_end().ends_with('1'), "no_new_privs: {seen}");
    // refused by the daemon before the build starts
    let o = e.docker(&["build", "--network", "bridge", ctx.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("use default, none or host"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("Step 1"), "{}", stdout(&o));
}

#[test]
fn volume_commands_through_the_docker_cli() {
    let e = Env::new("berth-test-dvol-");
    assert_eq!(
        e.ok(&["volume", "create", "--label", "team=a", "v1"])
            .trim(),
        "v1"
    );
    assert_eq!(e.ok(&["volume", "create", "v2"]).trim(), "v2");
    let ls = e.ok(&["volume", "ls"]);
    assert!(
        ls.starts_with("DRIVER") && ls.contains("local     v1") && ls.contains("v2"),
        "{ls}"
    );
    assert_eq!(
        e.ok(&["volume", "ls", "-q", "--filter", "label=team=a"])
            .trim(),
        "v1"
    );
    let mp = e.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "v1"]);
    assert!(Path::new(mp.trim()).is_dir(), "{mp}");
    assert_eq!(e.ok(&["volume", "rm", "v1"]).trim(), "v1");
    failed_with(&e.docker(&["volume", "rm", "v1"]), 1, "no such");
    failed_with(&e.docker(&["volume", "inspect", "v1"]), 1, "no such");
    failed_with(&e.docker(&["volume", "create", "bad/name"]), 1, "");
    let pruned = e.ok(&["volume", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("v2") && pruned.contains("Total reclaimed space"),
        "{pruned}"
    );
    assert_eq!(e.ok(&["volume", "ls", "-q"]).trim(), "");
}

#[test]
fn events_system_df_and_info_through_the_docker_cli() {
    let e = Env::new("berth-test-devents-");
    let since = now().saturating_sub(1);
    let id = e.import("docker", "app:1");
    e.ok(&["tag", "app:1", "app:2"]);
    e.ok(&["volume", "create", "ev"]);
    let until = now() + 1;
    let ev = e.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
    ]);
    assert!(ev.contains(&format!("image tag {id} (name=app:2)")), "{ev}");
    assert!(ev.contains("volume create ev"), "{ev}");
    let only = e.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=volume",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    assert_eq!(only.trim(), "volume create ev");
    let df = e.ok(&["system", "df"]);
    let rows: Vec<Vec<&str>> = df.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{df}"
    );
    assert_eq!(&rows[1][..3], ["Images", "1", "0"], "{df}");
    assert_eq!(&rows[3][..4], ["Local", "Volumes", "1", "0"], "{df}");
    let info = e.ok(&["info", "--format", "{{.Images}} {{.ServerVersion}}"]);
    assert_eq!(info.trim(), format!("1 {}", env!("CARGO_PKG_VERSION")));
    let bad = e.docker(&["events", "--since", "not-a-time", "--until", "1"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
}

#[test]
fn the_docker_20_10_client_does_the_same() {
    assert!(
        Path::new(DOCKER_20).exists(),
        "{DOCKER_20} is missing: scripts/setup.sh extracts it from Debian's docker.io"
    );
    let e = Env::new("berth-test-d20-");
    let reg = Registry::start(false);
    let name = format!("{}/old/app:1", reg.host);
    let id = e.import(DOCKER_20, &name);
    let ls = e.ok_with(
        DOCKER_20,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    assert_eq!(ls.trim(), format!("{}/old/app:1 {}", reg.host, &id[7..19]));
    let pushed = e.ok_with(DOCKER_20, &["push", &name]);
    assert!(pushed.contains("1: digest: sha256:"), "{pushed}");
    e.ok_with(DOCKER_20, &["rmi", &name]);
    let pulled = e.ok_with(DOCKER_20, &["pull", &name]);
    assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    let ctx = context(
        e.b.root.path(),
        &format!("FROM {name}\nRUN echo built > /b\n"),
    );
    let built = e.ok_with(
        DOCKER_20,
        &["build", "-t", "b20:1", ctx.to_str().expect("utf-8")],
    );
    assert!(built.contains("Successfully tagged b20:1"), "{built}");
    assert_eq!(
        e.ok_with(DOCKER_20, &["volume", "create", "old"]).trim(),
        "old"
    );
    assert_eq!(e.ok_with(DOCKER_20, &["volume", "ls", "-q"]).trim(), "old");
    assert!(e.ok_with(DOCKER_20, &["system", "df"]).contains("Images"));
    let ev = e.ok_with(
        DOCKER_20,
        &[
            "events",
            "--since",
            "1",
            "--until",
            &(now() + 1).to_string(),
            "--filter",
            "type=volume",
        ],
    );
    assert!(ev.contains("volume create old"), "{ev}");
}

/// What the daemon answers to a raw request (status and message).
fn raw(c: &Client, method: &str, path: &str, body: Body) -> (u16, String) {
    let r = c.request(method, path, body).expect("request");
    let status = r.status;
    (
        status,
        String::from_utf8_lossy(&r.bytes().expect("body")).into_owned(),
    )
}

#[test]
fn malformed_input_to_image_volume_build_and_event_routes() {
    let e = Env::new("berth-test-dbad-");
    let c = e.client();
    let cases: Vec<(&str, &str, Body)> = vec![
        (
            "POST",
            "/volumes/create",
            Body::Bytes(b"{not json", "application/json"),
        ),
        (
            "POST",
            "/volumes/create",
            Body::Bytes(b"[1,2]", "application/json"),
        ),
        (
            "POST",
            "/volumes/create",
            Body::Bytes(br#"{"Name": 7}"#, "application/json"),
        ),
        (
            "POST",
            "/volumes/create",
            Body::Bytes(br#"{"Name": "a/../b"}"#, "application/json"),
        ),
        (
            "POST",
            "/volumes/create",
            Body::Bytes(br#"{"Labels": ["x"]}"#, "application/json"),
        ),
        (
            "POST",
            "/volumes/create",
            Body::Bytes(br#"{"Driver": "nfs"}"#, "application/json"),
        ),
        ("GET", "/volumes?filters=%7Bbad", Body::Empty),
        (
            "GET",
            "/images/json?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D",
            Body::Empty,
        ),
        (
            "GET",
            "/images/json?filters=%7B%22label%22%3A5%7D",
            Body::Empty,
        ),
        ("POST", "/images/create", Body::Empty),
        ("POST", "/images/create?fromImage=UPPER%2Fcase", Body::Empty),
        (
            "POST",
            "/images/create?fromSrc=-&repo=UPPER",
            Body::Bytes(b"not a tar", "application/x-tar"),
        ),
        ("POST", "/images/UPPER/push", Body::Empty),
        (
            "POST",
            "/images/create?fromSrc=http%3A%2F%2Fexample.invalid%2Fx.tar",
            Body::Empty,
        ),
        (
            "POST",
            "/images/load",
            Body::Bytes(b"garbage garbage garbage", "application/x-tar"),
        ),
        ("POST", "/images/nosuch/tag?repo=x", Body::Empty),
        ("POST", "/images/nosuch/tag", Body::Empty),
        ("GET", "/images/get", Body::Empty),
        ("GET", "/events?since=yesterday", Body::Empty),
        ("POST", "/build?buildargs=%5B1%5D", Body::Empty),
        ("POST", "/build?t=BAD%3Atag", Body::Empty),
        ("POST", "/auth", Body::Bytes(b"{", "application/json")),
        (
            "POST",
            "/auth",
            Body::Bytes(br#"{"username": 1}"#, "application/json"),
        ),
    ];
    for (m, p, body) in cases {
        let (status, msg) = raw(&c, m, p, body);
        assert!(
            (400..500).contains(&status) && msg.contains("\"message\""),
            "{m} {p}: {status} {msg}"
        );
    }
    // A body over the limit on a non-streamed route: 413 before any of it is read,
    // and the daemon keeps serving.
    let mut s = std::os::unix::net::UnixStream::connect(e.b.socket()).expect("connect");
    write!(
        s,
        "POST /volumes/create HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        9 << 20
    )
    .expect("write");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut s, &mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(c.ping(), "the daemon keeps serving");
}

/// A ustar archive of (name, type, data or link target) entries, written by hand so
/// that it can hold what a well-behaved tar library refuses to write.
fn tar_of(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, kind, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        let size = if *kind == b'0' { data.len() } else { 0 };
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *kind;
        if *kind == b'2' || *kind == b'1' {
            h[157..157 + data.len()].copy_from_slice(data);
        }
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|x| u32::from(*x)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b.extend_from_slice(&h);
        if size > 0 {
            b.extend_from_slice(data);
            b.resize(b.len().div_ceil(512) * 512, 0);
        }
    }
    b.resize(b.len() + 1024, 0);
    b
}

/// A tar whose entries climb out of the extraction directory.
fn hostile_tar(victim: &Path) -> Vec<u8> {
    let rel = format!("../../../../../../../../..{}", victim.display());
    tar_of(&[(&rel, b'0', b"pwned"), ("manifest.json", b'0', b"[]")])
}

fn sha256_hex(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = c.wait_with_output().expect("sha256sum");
    stdout(&out)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// A well-formed docker-archive whose one layer climbs out (`../`), escapes through a
/// symlink to an absolute path, and hard-links a host file.
fn hostile_archive(victim_dir: &Path) -> Vec<u8> {
    let up = format!("../../../../../../../..{}/dotdot", victim_dir.display());
    let abs = victim_dir.display().to_string();
    let layer = tar_of(&[
        (&up, b'0', b"pwned"),
        ("escape", b'2', abs.as_bytes()),
        ("escape/through-link", b'0', b"pwned"),
        ("hard", b'1', b"/etc/shadow"),
    ]);
    let diff = sha256_hex(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff}"]}}}}"#
    );
    let manifest =
        r#"[{"Config":"config.json","RepoTags":["evil:3"],"Layers":["layer/layer.tar"]}]"#;
    tar_of(&[
        ("config.json", b'0', config.as_bytes()),
        ("layer/layer.tar", b'0', &layer),
        ("manifest.json", b'0', manifest.as_bytes()),
    ])
}

#[test]
fn a_hostile_layer_in_a_loaded_archive_stays_in_its_snapshot() {
    let e = Env::new("berth-test-dlayer-");
    let c = e.client();
    let victim = e.b.root.path().join("victims");
    std::fs::create_dir_all(&victim).expect("mkdir");
    let (status, msg) = raw(
        &c,
        "POST",
        "/images/load?quiet=1",
        Body::Bytes(&hostile_archive(&victim), "application/x-tar"),
    );
    let left: Vec<_> = std::fs::read_dir(&victim)
        .expect("victims")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "the layer wrote outside its snapshot: {left:?} ({status} {msg})"
    );
    // The archive itself is well formed: the layer is applied, its escapes neutralized.
    assert_eq!(status, 200, "{msg}");
    assert!(msg.contains("Loaded image: evil:3"), "{msg}");
    assert!(c.ping(), "the daemon keeps serving");
}

#[test]
fn hostile_tars_do_not_write_outside_their_snapshot() {
    let e = Env::new("berth-test-dhostile-");
    let c = e.client();
    let victim = e.b.root.path().join("victim");
    let tar = hostile_tar(&victim);
    let (status, msg) = raw(
        &c,
        "POST",
        "/images/load",
        Body::Bytes(&tar, "application/x-tar"),
    );
    assert_eq!(status, 400, "{msg}");
    let (status, msg) = raw(
        &c,
        "POST",
        "/images/create?fromSrc=-&repo=evil&tag=1",
        Body::Bytes(&tar, "application/x-tar"),
    );
    // import may refuse the entry or neutralize it; either way nothing lands outside
    let _ = (status, msg);
    assert!(!victim.exists(), "a hostile tar wrote {}", victim.display());
    let mut ctx_tar = tar.clone();
    ctx_tar.truncate(ctx_tar.len() - 1024);
    let (status, msg) = raw(
        &c,
        "POST",
        "/build?t=evil%3A2",
        Body::Bytes(&ctx_tar, "application/x-tar"),
    );
    assert_eq!(status, 200, "{msg}");
    assert!(msg.contains("errorDetail"), "{msg}");
    assert!(
        !victim.exists(),
        "a hostile build context wrote {}",
        victim.display()
    );
    assert!(c.ping());
}

/// berth's descriptor upload (`X-Berth-Context: fd`) without a descriptor: a 400 that
/// says what is missing, and the daemon keeps serving. Sent by hand: once before the
/// daemon's `100 Continue` (a client that does not wait), once after it.
#[test]
fn a_descriptor_build_without_a_descriptor_is_refused() {
    use std::io::{BufRead, BufReader, Read, Write};
    let e = Env::new("berth-test-dfd-");
    let head = "POST /v1.45/build?t=nofd%3A1 HTTP/1.1\r\nHost: berth\r\nX-Berth-Context: fd\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
    for wait_for_continue in [false, true] {
        let mut s = std::os::unix::net::UnixStream::connect(e.b.socket()).expect("connect");
        s.write_all(head.as_bytes()).expect("head");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        if wait_for_continue {
            let mut line = String::new();
            r.read_line(&mut line).expect("read");
            assert!(line.starts_with("HTTP/1.1 100"), "{line}");
            r.read_line(&mut line).expect("blank line");
        }
        s.write_all(b"{}").expect("body");
        let mut reply = String::new();
        r.read_to_string(&mut reply).expect("reply");
        let first = reply
            .lines()
            .find(|l| !l.starts_with("HTTP/1.1 100") && !l.is_empty());
        assert!(
            first.is_some_and(|l| l.starts_with("HTTP/1.1 400")),
            "{reply}"
        );
        assert!(
            reply.contains("descriptor") || reply.contains("100 Continue"),
            "{reply}"
        );
    }
    assert!(e.client().ping(), "the daemon keeps serving");
}
