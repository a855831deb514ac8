//! The real docker CLI against berthd on a private socket, data root and runtime root.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    berth: PathBuf,
}

impl Daemon {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn runtime(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }
    fn docker(&self, args: &[&str]) -> Output {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .output()
            .expect("run docker");
        out
    }
    fn berth(&self, args: &[&str]) -> Output {
        Command::new(&self.berth)
            .arg("--data-root")
            .arg(self.data())
            .args(args)
            .env("BERTH_RUNTIME_ROOT", self.runtime())
            .env("BERTH_HOST", format!("unix://{}", self.socket().display()))
            .output()
            .expect("run berth")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let ps = self.berth(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ps.stdout).split_whitespace() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        berth_testkit::remove_network_leftovers(&self.data());
    }
}

fn start() -> Daemon {
    assert!(
        Command::new("docker").arg("--version").output().is_ok(),
        "the docker CLI is needed: scripts/setup.sh installs the client from Debian's docker.io"
    );
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
    let berth = bin.with_file_name("berth");
    assert!(
        berth.exists(),
        "build the berth binary first (cargo build -p berth): {}",
        berth.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("berth-test-daemon-")
        .tempdir()
        .expect("tempdir");
    let sock = dir.path().join("berth.sock");
    let child = Command::new(&bin)
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .env("BERTH_RUNTIME_ROOT", dir.path().join("runtime"))
        .spawn()
        .expect("start berthd");
    let d = Daemon { child, dir, berth };
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(d.socket()).is_err() {
        assert!(Instant::now() < deadline, "berthd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn import_busybox(d: &Daemon, name: &str) {
    let root = d.dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is needed");
    for a in ["sh", "echo", "sleep", "cat", "stty", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("symlink");
    }
    let tar = d.dir.path().join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(ok.success());
    let o = d.berth(&[
        "image",
        "import",
        "--change",
        "ENV PATH=/bin",
        tar.to_str().expect("utf8"),
        name,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn docker_cli_version_info_images_run_ps_logs_rm() {
    let d = start();
    let v = d.docker(&["version"]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("Server: berth"), "{}", text(&v));
    let i = d.docker(&["info"]);
    assert!(
        i.status.success() && text(&i).contains("Server Version: 0.1.0"),
        "{}",
        text(&i)
    );
    import_busybox(&d, "someapp:1.0");
    let im = d.docker(&["images"]);
    assert!(
        text(&im).contains("someapp") && text(&im).contains("1.0"),
        "{}",
        text(&im)
    );
    let run = d.docker(&[
        "run",
        "-d",
        "--name",
        "X",
        "someapp:1.0",
        "sh",
        "-c",
        "echo hello-from-X; sleep 100",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let id = String::from_utf8_lossy(&run.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.docker(&["ps"]);
    assert!(
        text(&ps)
            .lines()
            .any(|l| l.starts_with(&id[..12]) && l.trim_end().ends_with(" X")),
        "{}",
        text(&ps)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = d.docker(&["logs", "X"]);
        if String::from_utf8_lossy(&logs.stdout).contains("hello-from-X") {
            break;
        }
        assert!(Instant::now() < deadline, "no log: {}", text(&logs));
        std::thread::sleep(Duration::from_millis(50));
    }
    let insp = d.docker(&["inspect", "-f", "{{.State.Running}} {{.Name}}", "X"]);
    assert_eq!(
        String::from_utf8_lossy(&insp.stdout).trim(),
        "true /X",
        "{}",
        text(&insp)
    );
    let rm = d.docker(&["rm", "-f", "X"]);
    assert!(rm.status.success(), "{}", text(&rm));
    let ps = d.docker(&["ps", "-a"]);
    assert!(!text(&ps).contains(&id[..12]), "{}", text(&ps));
    let missing = d.docker(&["rm", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).to_lowercase().contains("no such container"),
        "{}",
        text(&missing)
    );
    // foreground run: attach before start, output demultiplexed, exit code passed on
    let fg = d.docker(&[
        "run",
        "--rm",
        "someapp:1.0",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(fg.status.code(), Some(7), "{}", text(&fg));
    assert_eq!(String::from_utf8_lossy(&fg.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&fg.stderr).contains("err"),
        "{}",
        text(&fg)
    );
    // HostConfig fields as docker's CLI sends them
    let flags = d.docker(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--shm-size",
        "8m",
        "--group-add",
        "1234",
        "--oom-score-adj",
        "100",
        "--domainname",
        "example.org",
        "--pid",
        "host",
        "--mac-address",
        "92:d0:c6:0a:29:34",
        "someapp:1.0",
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj /proc/sys/kernel/domainname; id -G; grep ' /dev/shm ' /proc/mounts; readlink /proc/self/ns/pid; cat /sys/class/net/eth0/address",
    ]);
    let out = String::from_utf8_lossy(&flags.stdout).into_owned();
    assert!(out.starts_with("1\n100\nexample.org\n"), "{}", text(&flags));
    assert!(out.contains(" 1234") && out.contains("size=8192k"), "{out}");
    let host_pid = std::fs::read_link("/proc/self/ns/pid").expect("pid ns");
    assert!(out.contains(&host_pid.display().to_string()), "{out}");
    assert!(out.ends_with("92:d0:c6:0a:29:34\n"), "{out}");
    let refused = d.docker(&["run", "--rm", "--runtime", "kata", "someapp:1.0", "true"]);
    assert_eq!(refused.status.code(), Some(125), "{}", text(&refused));
    assert!(
        text(&refused).contains("--runtime kata"),
        "{}",
        text(&refused)
    );
    let ps = d.docker(&["ps", "-aq"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "--rm left {}",
        text(&ps)
    );
    let noimg = d.docker(&["create", "no-such-image:1"]);
    assert_ne!(noimg.status.code(), Some(0));
}

fn raw(sock: &Path, req: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn malformed_requests_get_4xx_and_the_daemon_keeps_serving() {
    let d = start();
    let sock = d.socket();
    let bad_json = "POST /v1.45/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"Image\":";
    let r = raw(&sock, bad_json);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("\"message\""), "{r}");
    let wrong_type =
        "POST /containers/create HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"Image\": 42}";
    assert!(raw(&sock, wrong_type).starts_with("HTTP/1.1 400"));
    let too_new = raw(&sock, "GET /v9.99/version HTTP/1.1\r\n\r\n");
    assert!(
        too_new.starts_with("HTTP/1.1 400") && too_new.contains("too new"),
        "{too_new}"
    );
    let bad_name = "POST /containers/create?name=-bad HTTP/1.1\r\nContent-Length: 16\r\n\r\n{\"Image\": \"x:1\"}";
    let r = raw(&sock, bad_name);
    assert!(r.starts_with("HTTP/1.1 4"), "{r}");
    let huge = format!(
        "POST /containers/create HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    assert!(raw(&sock, &huge).starts_with("HTTP/1.1 413"));
    assert!(raw(&sock, "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    let unknown = raw(&sock, "GET /nope HTTP/1.1\r\n\r\n");
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    // still serving, with and without a version prefix
    assert!(raw(&sock, "GET /_ping HTTP/1.1\r\n\r\n").ends_with("OK"));
    assert!(raw(&sock, "GET /v1.24/version HTTP/1.1\r\n\r\n").contains("\"ApiVersion\":\"1.45\""));
}

/// `sh -c` of `cmd` under script(1) (a terminal for the docker CLI), fed `input`.
fn docker_pty(d: &Daemon, input: &str, cmd: &str) -> Output {
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "the pty tests need script(1): apt-get install -y bsdutils"
    );
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "({input}) | script -qec \"docker {cmd}\" /dev/null"
        ))
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .expect("script")
}

#[test]
fn docker_cli_terminals_attach_exec_cp_logs_top_stats_pause_rename_stop_wait() {
    let d = start();
    import_busybox(&d, "bb:1");
    let ok = |args: &[&str]| {
        let o = d.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 1;
    // run -ti: a terminal, and the exit status
    let o = docker_pty(
        &d,
        "sleep 3",
        "run -ti --rm bb:1 sh -c 'test -t 0 && echo is-tty; exit 4'",
    );
    assert!(text(&o).contains("is-tty"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "bb:1",
        "sh",
        "-c",
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
    ]);
    // logs -f streams while the container runs
    let mut f = Command::new("docker")
        .args(["logs", "-f", "web"])
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut out = f.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("tick-5") {
        let n = out.read(&mut buf).expect("read logs");
        assert!(n > 0, "logs -f ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = f.kill();
    let _ = f.wait();

    assert!(ok(&["top", "web"]).contains("while true"));
    let st = ok(&["stats", "--no-stream", "web"]);
    assert!(st.contains("MEM USAGE") && st.contains("web"), "{st}");

    // exec -ti through a terminal
    let o = docker_pty(
        &d,
        "sleep 3",
        "exec -ti web sh -c 'test -t 1 && echo exec-tty; exit 6'",
    );
    assert!(text(&o).contains("exec-tty"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    let o = d.docker(&["exec", "web", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    // cp both ways
    let host = d.dir.path().join("from-host");
    std::fs::write(&host, "hello cp\n").expect("write");
    ok(&["cp", host.to_str().expect("utf8"), "web:/x"]);
    assert_eq!(ok(&["exec", "web", "cat", "/x"]), "hello cp\n");
    let back = d.dir.path().join("back");
    ok(&["cp", "web:/x", back.to_str().expect("utf8")]);
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "hello cp\n");

    // pause, rename, stop, wait
    ok(&["pause", "web"]);
    assert!(ok(&["ps"]).contains("(Paused)"));
    ok(&["unpause", "web"]);
    ok(&["rename", "web", "web2"]);
    assert!(ok(&["ps", "--format", "{{.Names}}"]).contains("web2"));
    ok(&["stop", "-t", "1", "web2"]);
    assert_eq!(ok(&["wait", "web2"]).trim(), "137");

    // attach: stdin in, output out, the container's status
    ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "att",
        "bb:1",
        "sh",
        "-c",
        "read l; echo got-$l; exit 5",
    ]);
    let mut a = Command::new("docker")
        .args(["attach", "att"])
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("attach");
    // the line waits in the pipe until the CLI has attached and reads it
    a.stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("write");
    let o = a.wait_with_output().expect("attach");
    assert!(text(&o).contains("got-hello"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));

    // what happened, as events
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let ev = ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    for want in [
        "create web\n",
        "start web\n",
        "pause web\n",
        "rename web2\n",
        "die web2\n",
        "attach att\n",
        "die att\n",
    ] {
        assert!(ev.contains(want), "no {want:?} in {ev}");
    }
    assert!(ev.contains("exec_start: sh -c exit 3 web"), "{ev}");
    // the --rm container of run -ti: created, started, died, destroyed
    assert!(ev.matches("destroy ").count() >= 1, "{ev}");
}
