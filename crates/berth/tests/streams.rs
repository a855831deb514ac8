//! Streams end to end through the `berth` binary and the docker CLI: `logs -f` of
//! short-lived containers, attached runs, `run -a`, `start -a -i`, `exec --privileged`,
//! `wait` across daemon restarts, docker's flag conflicts and the terminal after
//! `run -ti`. Needs root and Debian's busybox-static; the terminal test needs
//! `script` (bsdutils), the docker CLI tests the docker client.

use berth_testkit::{stderr, stdout};
use std::process::{Command, Stdio};

type Berth = berth_testkit::Berth;

/// A berth with someapp:1.0 (busybox) imported.
fn berth() -> Berth {
    Berth::with_busybox(
        env!("CARGO_BIN_EXE_berth"),
        "berth-test-streams-",
        "someapp:1.0",
    )
}

/// How many short containers the follow tests run: the bug they pin lost the last
/// lines about one run in ten under load.
const SHORT_RUNS: usize = 12;

#[test]
fn logs_follow_keeps_the_last_lines_of_a_container_removed_meanwhile() {
    let b = berth();
    for i in 0..SHORT_RUNS {
        let name = format!("f{i}");
        let script = format!("echo first; echo last-{i}");
        b.ok(&[
            "create",
            "--name",
            &name,
            "someapp:1.0",
            "sh",
            "-c",
            &script,
        ]);
        // docker-py's containers.run(): start, follow the logs, wait, remove, and only
        // then read the followed stream
        let follow = b
            .command()
            .args(["logs", "-f", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("logs -f");
        b.ok(&["start", &name]);
        assert_eq!(b.ok(&["wait", &name]).trim(), "0");
        b.ok(&["rm", &name]);
        let out = follow.wait_with_output().expect("logs -f ends");
        assert_eq!(
            stdout(&out),
            format!("first\nlast-{i}\n"),
            "run {i}: logs -f lost lines: {}",
            stderr(&out)
        );
    }
}

#[test]
fn attached_runs_always_show_the_last_line() {
    let b = berth();
    for i in 0..SHORT_RUNS {
        let script = format!("echo first; echo last-{i} >&2; echo out-{i}");
        let out = b.run(&["run", "--rm", "someapp:1.0", "sh", "-c", &script]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("first\nout-{i}\n"), "berth run {i}");
        assert_eq!(stderr(&out), format!("last-{i}\n"), "berth run {i}");
    }
    for i in 0..SHORT_RUNS {
        let script = format!("echo first; echo last-{i}");
        let out = b.docker(&["run", "--rm", "someapp:1.0", "sh", "-c", &script]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("first\nlast-{i}\n"), "docker run {i}");
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

/// `berth run ARGS… someapp:1.0 true` and the docker CLI's: both refuse with docker's
/// status and message, and create nothing.
fn refused_like_docker(b: &Berth, args: &[&str], code: i32, msg: &str) {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["someapp:1.0", "true"]);
    let ours = b
        .command()
        .args(&full)
        .stdin(Stdio::null())
        .output()
        .expect("berth");
    assert_eq!(
        ours.status.code(),
        Some(code),
        "berth {full:?}: {}",
        stderr(&ours)
    );
    assert!(
        stderr(&ours).contains(msg),
        "berth {full:?}: {}",
        stderr(&ours)
    );
    let theirs = b.docker(&full);
    assert_eq!(
        theirs.status.code(),
        Some(code),
        "docker {full:?}: {}",
        stderr(&theirs)
    );
    assert!(
        stderr(&theirs).contains(msg),
        "docker {full:?}: {}",
        stderr(&theirs)
    );
    full[0] = "create";
    if !args.contains(&"-d") && !args.contains(&"-t") {
        let created = b
            .command()
            .args(&full)
            .stdin(Stdio::null())
            .output()
            .expect("berth");
        assert_eq!(created.status.code(), Some(code), "berth {full:?}");
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "", "{args:?} created a container");
}

#[test]
fn run_and_create_refuse_conflicting_flags_like_docker() {
    let b = berth();
    let health = "--no-healthcheck conflicts with --health-* options";
    refused_like_docker(
        &b,
        &["--no-healthcheck", "--health-cmd", "true"],
        125,
        health,
    );
    refused_like_docker(
        &b,
        &["--no-healthcheck", "--health-interval", "1s"],
        125,
        health,
    );
    refused_like_docker(
        &b,
        &["--no-healthcheck", "--health-retries", "2"],
        125,
        health,
    );
    let restart = "cannot specify both --restart and --rm";
    refused_like_docker(&b, &["--rm", "--restart", "always"], 125, restart);
    refused_like_docker(&b, &["--rm", "--restart", "on-failure:2"], 125, restart);
    let attach = "cannot specify both --attach and --detach";
    refused_like_docker(&b, &["-d", "-a", "stdout"], 1, attach);
    let streams = "valid streams are STDIN, STDOUT and STDERR";
    refused_like_docker(&b, &["-a", "stdsomething"], 125, streams);
    refused_like_docker(
        &b,
        &["--health-interval", "-1s"],
        125,
        "--health-interval cannot be negative",
    );
    refused_like_docker(
        &b,
        &["--health-retries", "-1"],
        125,
        "--health-retries cannot be negative",
    );
    refused_like_docker(&b, &["-t", "-i"], 1, "the input device is not a TTY");
    // what docker accepts
    let id = b.ok(&[
        "run",
        "-d",
        "--rm",
        "--restart",
        "no",
        "someapp:1.0",
        "true",
    ]);
    assert_eq!(id.trim().len(), 64);
    // --health-* without --health-cmd: the image's check with these settings
    b.ok(&[
        "create",
        "--name",
        "hc",
        "--health-interval",
        "2s",
        "--health-retries",
        "4",
        "someapp:1.0",
    ]);
    let hc = &b.docker_inspect("hc")["Config"]["Healthcheck"];
    assert_eq!(hc["Interval"], 2_000_000_000u64, "{hc}");
    assert_eq!(hc["Retries"], 4, "{hc}");
    assert!(hc["Test"].as_array().is_none_or(|t| t.is_empty()), "{hc}");
    b.ok(&["rm", "hc"]);
    // a bad flag is docker's 125 too, a missing argument 1
    assert_eq!(
        b.run(&["run", "--no-such-flag", "someapp:1.0"])
            .status
            .code(),
        Some(125)
    );
    assert_eq!(b.run(&["logs"]).status.code(), Some(1));
}

#[test]
fn run_attach_names_the_streams() {
    let b = berth();
    let script = "echo to-out; echo to-err >&2";
    let o = b.run(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("to-out\n", ""));
    let o = b.run(&[
        "run",
        "--rm",
        "-a",
        "STDERR",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", "to-err\n"));
    let o = b.docker(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("to-out\n", ""));
    let o = b.docker(&[
        "run",
        "--rm",
        "-a",
        "stderr",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", "to-err\n"));
    // -a stdin without -i: the container's stdin is not open; nothing is shown, the
    // status is the container's
    let o = b.run(&[
        "run",
        "--rm",
        "-a",
        "stdin",
        "someapp:1.0",
        "sh",
        "-c",
        "echo x; exit 3",
    ]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(3), ""));
    // -i -a stdin -a stdout: stdin in, stdout out; what is not attached is still logged
    let mut c = b
        .command()
        .args([
            "run",
            "--name",
            "io",
            "-i",
            "-a",
            "stdin",
            "-a",
            "stdout",
            "someapp:1.0",
        ])
        .args([
            "sh",
            "-c",
            "while read l; do echo got-$l; echo err-$l >&2; done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run -i");
    use std::io::Write;
    c.stdin
        .take()
        .expect("stdin")
        .write_all(b"a\nb\n")
        .expect("write");
    let o = c.wait_with_output().expect("run -i ends at EOF");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("got-a\ngot-b\n", "")
    );
    assert_eq!(b.ok(&["logs", "io"]), "got-a\ngot-b\n");
    let logged = b.run(&["logs", "io"]);
    assert_eq!(stderr(&logged), "err-a\nerr-b\n");
    b.ok(&["rm", "io"]);
}

/// `berth ARGS…` with `input` on stdin.
fn with_stdin(b: &Berth, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut c = b
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    c.wait_with_output().expect("berth ends")
}

#[test]
fn start_attach_interactive_runs_again_after_an_exit() {
    let b = berth();
    let script = "while read l; do echo got-$l; done; echo bye >&2; exit 7";
    b.ok(&[
        "create",
        "--name",
        "si",
        "-i",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    let o = with_stdin(&b, &["start", "-a", "-i", "si"], b"a\nb\n");
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("got-a\ngot-b\n", "bye\n")
    );
    // exited: start -ai attaches again, as docker's does
    let o = with_stdin(&b, &["start", "-ai", "si"], b"c\n");
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "got-c\n");
    // the docker CLI's start -ai of the exited container
    let mut c = Command::new("docker")
        .args(["start", "-a", "-i", "si"])
        .env("DOCKER_HOST", format!("unix://{}", b.socket().display()))
        .env("DOCKER_CONFIG", b.root.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker start");
    use std::io::Write;
    c.stdin
        .take()
        .expect("stdin")
        .write_all(b"d\n")
        .expect("write");
    let o = c.wait_with_output().expect("docker start ends");
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "got-d\n");
    b.ok(&["rm", "si"]);
    // start -a of a container without stdin: its output and its status
    b.ok(&[
        "create",
        "--name",
        "so",
        "someapp:1.0",
        "sh",
        "-c",
        "echo o; echo e >&2; exit 4",
    ]);
    for _ in 0..2 {
        let o = b.run(&["start", "-a", "so"]);
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("o\n", "e\n"));
    }
    b.ok(&["rm", "so"]);
}

/// The `Cap…:` and `Seccomp:` lines of /proc/self/status.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn exec_privileged_has_every_capability_and_no_seccomp() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "pv",
        "someapp:1.0",
        "sleep",
        "100301",
    ]);
    let ours = std::fs::read_to_string("/proc/self/status").expect("status");
    let all = status_field(&ours, "CapBnd:");
    let plain = b.ok(&["exec", "pv", "cat", "/proc/self/status"]);
    assert_eq!(status_field(&plain, "Seccomp:"), "2", "filtered by default");
    assert_ne!(status_field(&plain, "CapEff:"), all);
    for out in [
        b.ok(&["exec", "--privileged", "pv", "cat", "/proc/self/status"]),
        b.docker_ok(&["exec", "--privileged", "pv", "cat", "/proc/self/status"]),
    ] {
        assert_eq!(status_field(&out, "Seccomp:"), "0", "{out}");
        assert_eq!(status_field(&out, "CapEff:"), all, "{out}");
        assert_eq!(status_field(&out, "CapBnd:"), all, "{out}");
    }
    // a capability the default set lacks (SYS_ADMIN, for the container's own host
    // name), at work
    let o = b.run(&["exec", "pv", "hostname", "renamed"]);
    assert_ne!(o.status.code(), Some(0), "hostname without --privileged");
    b.ok(&["exec", "--privileged", "pv", "hostname", "renamed"]);
    assert_eq!(b.ok(&["exec", "pv", "hostname"]), "renamed\n");
    // a privileged exec as another user
    let o = b.run(&["exec", "--privileged", "-u", "nobody", "pv", "id", "-u"]);
    assert_eq!(stdout(&o), "65534\n", "{}", stderr(&o));
    b.ok(&["rm", "-f", "pv"]);
}

#[test]
fn wait_on_a_container_a_previous_daemon_started() {
    let b = berth();
    let script = "while [ ! -e /tmp/go ]; do sleep 0.02; done; exit 9";
    b.ok(&[
        "run",
        "-d",
        "--name",
        "ad",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "ad2",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    b.stop_daemon();
    // the next command starts a daemon, which adopts the running containers
    let id = b
        .ok(&["container", "inspect", "--format", "{{.Id}}", "ad"])
        .trim()
        .to_string();
    let waits: Vec<std::process::Child> = ["ad", "ad2"]
        .iter()
        .map(|n| {
            b.command()
                .args(["wait", n])
                .stdout(Stdio::piped())
                .spawn()
                .expect("wait")
        })
        .collect();
    // docker run -d's wait (next-exit) on an adopted container
    let api = berth_client::Client::new(b.socket());
    let next_exit = std::thread::spawn(move || {
        api.request(
            "POST",
            &format!("/containers/{id}/wait?condition=next-exit"),
            berth_client::Body::Empty,
        )
        .and_then(|r| r.ok())
        .and_then(|r| r.json())
        .expect("wait?condition=next-exit")
    });
    let docker_wait = Command::new("docker")
        .args(["wait", "ad"])
        .env("DOCKER_HOST", format!("unix://{}", b.socket().display()))
        .env("DOCKER_CONFIG", b.root.path().join("docker-config"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker wait");
    b.ok(&["exec", "ad", "touch", "/tmp/go"]);
    // its supervisor killed: the exit is recorded by whoever sees it first
    let shim: i32 = b
        .ok(&["container", "inspect", "--format", "{{.State.Pid}}", "ad2"])
        .trim()
        .parse()
        .expect("pid");
    assert!(shim > 0);
    let sup = std::fs::read_to_string(format!("/proc/{shim}/stat")).expect("stat");
    let ppid: i32 = sup
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    let _ = Command::new("kill")
        .arg("-9")
        .arg(ppid.to_string())
        .status();
    let codes: Vec<String> = waits
        .into_iter()
        .map(|w| {
            stdout(&w.wait_with_output().expect("wait ends"))
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(codes[0], "9");
    assert_eq!(
        codes[1], "137",
        "a killed supervisor: its container was killed"
    );
    assert_eq!(next_exit.join().expect("next-exit")["StatusCode"], 9);
    let d = docker_wait.wait_with_output().expect("docker wait");
    assert_eq!(stdout(&d).trim(), "9");
    b.ok(&["rm", "ad", "ad2"]);
}

/// `script -qec COMMAND /dev/null` with stdin from /dev/null: script(1) sends its
/// terminal an end-of-file key at once; stdout's bytes.
fn under_script(b: &Berth, command: &str) -> Vec<u8> {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("this test needs script(1): apt-get install -y bsdutils");
    }
    let berth = format!(
        "{} --data-root {}",
        b.bin().display(),
        b.data_root().display()
    );
    let o = Command::new("script")
        .arg("-qec")
        .arg(command.replace("BERTH", &berth))
        .arg("/dev/null")
        .env("BERTH_RUNTIME_ROOT", b.runtime_root())
        .stdin(Stdio::null())
        .output()
        .expect("script");
    o.stdout
}

/// [`under_script`], but script(1)'s stdin ends (and it sends the end-of-file key)
/// only once `ready` came out; stdout's bytes after it.
fn under_script_eof_after(b: &Berth, command: &str, ready: &str) -> Vec<u8> {
    use std::io::Read;
    let berth = format!(
        "{} --data-root {}",
        b.bin().display(),
        b.data_root().display()
    );
    let mut child = Command::new("script")
        .arg("-qec")
        .arg(command.replace("BERTH", &berth))
        .arg("/dev/null")
        .env("BERTH_RUNTIME_ROOT", b.runtime_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    let stdin = child.stdin.take();
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(ready) {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "ended before {ready:?}: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stdin);
    out.read_to_end(&mut seen).expect("read");
    child.wait().expect("wait");
    let text = String::from_utf8_lossy(&seen).into_owned();
    let at = text.find(ready).expect("ready") + ready.len();
    text.as_bytes()[at..].to_vec()
}

#[test]
fn run_ti_under_script_passes_the_end_of_file_key_not_a_nul() {
    let b = berth();
    // the key typed before the terminal went raw reached the container as a NUL,
    // which its terminal echoed as ^@
    for _ in 0..3 {
        let out = under_script(
            &b,
            "BERTH run -ti --rm someapp:1.0 sh -c 'sleep 0.5; echo hi'",
        );
        assert_eq!(String::from_utf8_lossy(&out), "hi\r\n");
    }
    // the key reaches a raw container terminal as ^D; it is sent once the container
    // is raw (one arriving while its terminal is still canonical turns into a NUL
    // there, in docker too)
    let got = under_script_eof_after(
        &b,
        "BERTH run -ti --rm someapp:1.0 sh -c 'stty raw -echo; echo ready; dd bs=1 count=1 2>/dev/null | od -An -tx1'",
        "ready",
    );
    assert_eq!(
        String::from_utf8_lossy(&got).trim(),
        "04",
        "the EOF key (^D)"
    );
    // an interactive shell ends at it, as a shell in script(1) itself does
    let out = under_script(&b, "BERTH run -ti --rm someapp:1.0 sh; echo status=$?");
    assert!(!out.contains(&0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out).ends_with("status=0\r\n"),
        "{out:?}"
    );
    b.ok(&["run", "-d", "--name", "e", "someapp:1.0", "sleep", "100311"]);
    let out = under_script(&b, "BERTH exec -ti e sh -c 'sleep 0.5; echo in-exec'");
    assert_eq!(String::from_utf8_lossy(&out), "in-exec\r\n");
    b.ok(&["rm", "-f", "e"]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

/// `State.Health.Status` of container `name`, through the docker CLI.
fn health_status(b: &Berth, name: &str) -> String {
    b.docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", name])
        .trim()
        .to_string()
}

#[test]
fn healthchecks_run_in_the_daemon_and_go_on_after_its_restart() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "hm",
        "--health-cmd",
        "echo checked; test -e /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "someapp:1.0",
        "sleep",
        "100321",
    ]);
    berth_testkit::eventually("unhealthy", || health_status(&b, "hm") == "unhealthy");
    b.ok(&["exec", "hm", "touch", "/tmp/ok"]);
    berth_testkit::eventually("healthy", || health_status(&b, "hm") == "healthy");
    let log = b.docker_ok(&["inspect", "--format", "{{json .State.Health.Log}}", "hm"]);
    assert!(log.contains("checked\\n"), "{log}");
    // no process per container: the daemon's thread runs the checks
    let id = b.ok(&["container", "inspect", "--format", "{{.Id}}", "hm"]);
    let monitors: Vec<String> = berth_testkit::processes_with(id.trim())
        .into_iter()
        .filter(|p| p.contains("health"))
        .collect();
    assert!(monitors.is_empty(), "{monitors:?}");
    // a new daemon adopts the container and its check
    b.stop_daemon();
    b.ok(&["exec", "hm", "rm", "/tmp/ok"]);
    berth_testkit::eventually("unhealthy again", || health_status(&b, "hm") == "unhealthy");
    b.ok(&["rm", "-f", "hm"]);
    berth_testkit::eventually("no check left running", || {
        berth_testkit::processes_with(id.trim()).is_empty()
    });
}

#[test]
fn exec_failures_exit_like_docker() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "xf",
        "someapp:1.0",
        "sleep",
        "100331",
    ]);
    for (args, code, says) in [
        (
            &["xf", "no-such-command"][..],
            127,
            "executable file not found",
        ),
        (&["xf", "/etc"][..], 126, "permission denied"),
        (
            &["xf", "/no/such/file"][..],
            127,
            "no such file or directory",
        ),
        (
            &["-w", "/no/such/dir", "xf", "pwd"][..],
            126,
            "give -w a directory",
        ),
    ] {
        let mut full = vec!["exec"];
        full.extend_from_slice(args);
        let o = b.run(&full);
        assert_eq!(
            o.status.code(),
            Some(code),
            "berth {full:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(says), "berth {full:?}: {}", stderr(&o));
        let o = b.docker(&full);
        assert_eq!(
            o.status.code(),
            Some(code),
            "docker {full:?}: {}",
            stderr(&o)
        );
    }
    // the container runs on
    assert_eq!(b.ok(&["exec", "xf", "echo", "fine"]), "fine\n");
    b.ok(&["rm", "-f", "xf"]);
}
