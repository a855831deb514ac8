//! Restart policies and healthchecks end to end: containers run with the `berth` CLI,
//! their state read through the daemon with the real docker CLI (`inspect`, `ps`).
//! Needs root and Debian's busybox-static.

use berth_testkit::{eventually, Berth};
use serde_json::Value;

fn berth() -> Berth {
    let b = Berth::with_busybox(
        env!("CARGO_BIN_EXE_berth"),
        "berth-test-lifecycle-",
        "someapp:1.0",
    );
    // the daemon applies restart policies: make sure one serves this data root
    b.ok(&["version"]);
    b
}

fn inspect(b: &Berth, name: &str) -> Value {
    b.docker_inspect(name)
}

/// The STATUS column `docker ps -a` shows for `name`.
fn ps_status(b: &Berth, name: &str) -> String {
    let out = b.docker_ok(&["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}\t")).map(String::from))
        .unwrap_or_default()
}

fn restarted(c: &Value) -> u64 {
    c["RestartCount"].as_u64().unwrap_or(0)
}

#[test]
fn on_failure_2_restarts_twice_then_stays_exited() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "someapp:1.0",
        "sh",
        "-c",
        "echo attempt; exit 3",
    ]);
    eventually("two restarts and a final exit", || {
        let c = inspect(&b, "flaky");
        restarted(&c) == 2 && c["State"]["Status"] == "exited" && c["State"]["Restarting"] == false
    });
    let c = inspect(&b, "flaky");
    assert_eq!(c["State"]["ExitCode"], 3);
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    // three runs in all: the first and two restarts, each logged
    assert_eq!(b.ok(&["logs", "flaky"]), "attempt\n".repeat(3));
    // the policy is spent: a further back-off (at most 400 ms by now) passes unused
    std::thread::sleep(std::time::Duration::from_secs(1));
    let c = inspect(&b, "flaky");
    assert_eq!(
        (restarted(&c), c["State"]["Status"].clone()),
        (2, "exited".into())
    );
    assert!(ps_status(&b, "flaky").starts_with("Exited (3)"));
}

#[test]
fn on_failure_does_not_restart_a_clean_exit() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "clean",
        "--restart",
        "on-failure",
        "someapp:1.0",
        "true",
    ]);
    eventually("the exit", || {
        inspect(&b, "clean")["State"]["Status"] == "exited"
    });
    // the daemon has seen the exit once it is watched; give a restart the time it
    // would take (100 ms back-off) and check none happened
    std::thread::sleep(std::time::Duration::from_secs(1));
    let c = inspect(&b, "clean");
    assert_eq!(
        (restarted(&c), c["State"]["ExitCode"].clone()),
        (0, 0.into())
    );
}

#[test]
fn always_restarts_after_exit_and_after_a_daemon_restart() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--restart",
        "always",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    let first = inspect(&b, "svc")["State"]["Pid"].as_i64().expect("pid");
    // the program dies on its own (not through stop): the policy brings it back
    kill(first);
    // (the record names the new process once it runs)
    eventually("a restart after the exit", || {
        let c = inspect(&b, "svc");
        restarted(&c) == 1
            && c["State"]["Running"] == true
            && c["State"]["Pid"]
                .as_i64()
                .is_some_and(|p| p != first && p > 0)
    });
    let second = inspect(&b, "svc")["State"]["Pid"].as_i64().expect("pid");
    // it exits while no daemon runs; the next daemon brings it back
    let id_before = inspect(&b, "svc")["Id"].as_str().expect("id").to_string();
    b.stop_daemon();
    kill(second);
    let exit = b
        .data_root()
        .join("containers")
        .join(&id_before)
        .join("exit.json");
    eventually("the exit recorded by the supervisor", || exit.exists());
    b.ok(&["version"]);
    eventually("a restart by the new daemon", || {
        let c = inspect(&b, "svc");
        restarted(&c) == 2 && c["State"]["Running"] == true
    });
    // a user's stop is final while the daemon runs
    b.ok(&["stop", "-t", "1", "svc"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let c = inspect(&b, "svc");
    let id = c["Id"].as_str().unwrap_or_default();
    let restart = std::fs::read_to_string(
        b.data_root()
            .join("containers")
            .join(id)
            .join("restart.json"),
    );
    let log = std::fs::read_to_string(b.data_root().join("berthd.log")).unwrap_or_default();
    assert_eq!(
        c["State"]["Status"], "exited",
        "{c}\nrestart.json: {restart:?}\nberthd.log:\n{log}"
    );
}

#[test]
fn unless_stopped_stays_stopped_across_a_daemon_restart() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "us",
        "--restart",
        "unless-stopped",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    b.ok(&["stop", "-t", "1", "us"]);
    b.stop_daemon();
    b.ok(&["version"]);
    // the new daemon decided before it answered: no restart pending, still exited
    let c = inspect(&b, "us");
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    assert_eq!(
        (c["State"]["Restarting"].clone(), restarted(&c)),
        (false.into(), 0)
    );
    // a user's start applies the policy again
    b.ok(&["start", "us"]);
    let pid = inspect(&b, "us")["State"]["Pid"].as_i64().expect("pid");
    kill(pid);
    eventually("a restart after the start", || {
        let c = inspect(&b, "us");
        restarted(&c) == 1 && c["State"]["Running"] == true
    });
}

#[test]
fn healthcheck_turns_unhealthy_then_healthy_in_inspect_and_ps() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    eventually("unhealthy", || {
        inspect(&b, "hc")["State"]["Health"]["Status"] == "unhealthy"
    });
    let h = inspect(&b, "hc")["State"]["Health"].clone();
    assert!(h["FailingStreak"].as_u64().unwrap_or(0) >= 2, "{h}");
    let log = h["Log"].as_array().expect("log");
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert_eq!(log[0]["ExitCode"], 1);
    assert!(log[0]["Start"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(
        ps_status(&b, "hc").ends_with("(unhealthy)"),
        "{}",
        ps_status(&b, "hc")
    );
    b.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    eventually("healthy", || {
        inspect(&b, "hc")["State"]["Health"]["Status"] == "healthy"
    });
    let h = inspect(&b, "hc")["State"]["Health"].clone();
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .expect("entry");
    assert_eq!(
        (last["ExitCode"].clone(), last["Output"].clone()),
        (0.into(), "fine\n".into())
    );
    assert!(ps_status(&b, "hc").ends_with("(healthy)"));
    let cfg = inspect(&b, "hc")["Config"]["Healthcheck"].clone();
    assert_eq!(
        cfg["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /tmp/ok && echo fine"])
    );
    assert_eq!(cfg["Interval"], 200_000_000);
}

#[test]
fn healthcheck_starts_as_starting_and_can_be_disabled() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    assert_eq!(inspect(&b, "slow")["State"]["Health"]["Status"], "starting");
    assert!(ps_status(&b, "slow").ends_with("(health: starting)"));
    b.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    let c = inspect(&b, "off");
    assert!(c["State"]["Health"].is_null(), "{c}");
    assert_eq!(
        c["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );
}

#[test]
fn docker_cli_restart_policy_and_healthcheck_reach_the_daemon() {
    let b = berth();
    b.docker_ok(&[
        "create",
        "--name",
        "dk",
        "--restart",
        "on-failure:5",
        "--health-cmd",
        "true",
        "--health-interval",
        "250ms",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    let c = inspect(&b, "dk");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 5);
    assert_eq!(c["Config"]["Healthcheck"]["Interval"], 250_000_000);
    b.docker_ok(&["start", "dk"]);
    eventually("healthy", || {
        inspect(&b, "dk")["State"]["Health"]["Status"] == "healthy"
    });
    let bad = b.docker(&["create", "--rm", "--restart", "always", "someapp:1.0"]);
    assert!(!bad.status.success());
}

fn kill(pid: i64) {
    let st = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {pid}");
}

#[test]
fn detached_containers_run_under_the_slim_supervisor() {
    let b = berth();
    let shim = std::path::Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("berth-shim");
    assert!(
        shim.exists(),
        "{} is missing: build it with `cargo build -p berth-shim` (cargo test --workspace does)",
        shim.display()
    );
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "slim",
        "someapp:1.0",
        "sh",
        "-c",
        "echo out; echo err >&2; exec sleep 1000",
    ]);
    let id = id.trim();
    let rec = b
        .data_root()
        .join("containers")
        .join(id)
        .join("config.json");
    let rec: Value = serde_json::from_slice(&std::fs::read(rec).expect("record")).expect("JSON");
    let pid = rec["shim_pid"].as_i64().expect("supervisor pid");
    // it hands over right after reporting the start
    let prefix = format!("{}\0", shim.display());
    eventually("the hand-over to berth-shim", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with(&prefix))
    });
    eventually("both streams logged", || {
        let o = b.run(&["logs", "slim"]);
        berth_testkit::stdout(&o) == "out\n" && berth_testkit::stderr(&o) == "err\n"
    });
    // the container is still its child: the exit is reaped and recorded on stop
    b.ok(&["stop", "-t", "1", "slim"]);
    let c = inspect(&b, "slim");
    assert_eq!(
        (c["State"]["Status"].clone(), c["State"]["ExitCode"].clone()),
        ("exited".into(), 137.into())
    );
    eventually("the supervisor's end", || berth_testkit::process_gone(pid));
    eventually("no mount left", || {
        b.mounts().iter().all(|m| !m.contains(id))
    });
    // and restarts (again under a slim supervisor) with its log kept
    b.ok(&["start", "slim"]);
    eventually("the second run logged", || {
        berth_testkit::stdout(&b.run(&["logs", "slim"])) == "out\nout\n"
    });
}

#[test]
fn image_healthcheck_applies_and_merges_with_the_flags() {
    let b = berth();
    let ctx = b.root.path().join("hc-context");
    std::fs::create_dir_all(&ctx).expect("context");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM someapp:1.0\nHEALTHCHECK --interval=200ms --retries=1 CMD test -f /etc/passwd\n",
    )
    .expect("Dockerfile");
    b.ok(&[
        "build",
        "-q",
        "-t",
        "checked:1",
        ctx.to_str().expect("utf-8"),
    ]);
    b.ok(&["run", "-d", "--name", "img", "checked:1", "sleep", "1000"]);
    let c = inspect(&b, "img");
    assert_eq!(
        c["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /etc/passwd"]),
        "the shell form, as docker stores it"
    );
    eventually("healthy from the image's check", || {
        inspect(&b, "img")["State"]["Health"]["Status"] == "healthy"
    });
    // a command of our own keeps the image's interval and retries
    b.ok(&[
        "run",
        "-d",
        "--name",
        "own",
        "--health-cmd",
        "false",
        "checked:1",
        "sleep",
        "1000",
    ]);
    let c = inspect(&b, "own");
    assert_eq!(c["Config"]["Healthcheck"]["Interval"], 200_000_000);
    assert_eq!(c["Config"]["Healthcheck"]["Retries"], 1);
    eventually("unhealthy from our check", || {
        inspect(&b, "own")["State"]["Health"]["Status"] == "unhealthy"
    });
    b.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "checked:1",
        "sleep",
        "1000",
    ]);
    assert!(inspect(&b, "none")["State"]["Health"].is_null());
}
