//! Faults end to end: the daemon killed with SIGKILL while a container runs and while
//! `berth logs -f` follows it; a container's supervisor killed, with the daemon up and
//! with it down. Containers run with the `berth` CLI; their state is read through the
//! daemon with the real docker CLI. Needs root and Debian's busybox-static.

use berth_testkit::{cgroups_of, eventually, process_gone, stdout, Berth};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

fn berth() -> Berth {
    let b = Berth::with_busybox(
        env!("CARGO_BIN_EXE_berth"),
        "berth-test-faults-",
        "someapp:1.0",
    );
    b.ok(&["version"]);
    b
}

fn inspect(b: &Berth, name: &str) -> Value {
    b.docker_inspect(name)
}

fn sigkill(pid: i32) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -KILL {pid}");
}

/// A child process killed and reaped on drop (a `logs -f` follower).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of container `id`'s supervisor, as its record has it (checked against the
/// process's command line).
fn supervisor_of(b: &Berth, id: &str) -> i32 {
    let rec = b
        .data_root()
        .join("containers")
        .join(id)
        .join("config.json");
    let rec: Value = serde_json::from_slice(&std::fs::read(rec).expect("record")).expect("JSON");
    let pid = rec["shim_pid"].as_i64().expect("a supervisor pid") as i32;
    // (its command line reads empty for a moment while it execs into its slim form)
    eventually("the supervisor's command line", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(id))
    });
    pid
}

#[test]
fn daemon_killed_while_a_container_runs_and_logs_follow() {
    let b = berth();
    let script =
        "i=0; while [ $i -lt 30 ]; do echo line$i; i=$((i+1)); sleep 0.05; done; sleep 1000";
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    let id = id.trim().to_string();
    let follower = Reaped(
        b.command()
            .args(["logs", "-f", "busy"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("logs -f"),
    );
    let before = inspect(&b, "busy");
    let pid = before["State"]["Pid"].as_i64().expect("pid");
    let daemon = b.daemon_pid().expect("a daemon serves the data root");
    sigkill(daemon);
    eventually("the daemon's end", || {
        !std::path::Path::new(&format!("/proc/{daemon}")).exists()
    });
    // the follower's stream ended with its daemon: it exits instead of hanging
    let mut follower = follower;
    eventually("the end of logs -f", || {
        follower.0.try_wait().is_ok_and(|s| s.is_some())
    });
    // the next command finds no daemon and starts one, which adopts the container
    assert!(b.ok(&["ps"]).contains(" busy\n"));
    let again = b.daemon_pid().expect("a new daemon");
    assert_ne!(again, daemon);
    let after = inspect(&b, "busy");
    assert_eq!(after["State"]["Status"], "running", "{after}");
    assert_eq!(
        after["State"]["Pid"].as_i64(),
        Some(pid),
        "the same process runs on"
    );
    // its output while the daemon was down went to the log: all of it is there
    eventually("all 30 lines logged", || {
        stdout(&b.run(&["logs", "busy"])).lines().count() == 30
    });
    let logs = b.ok(&["logs", "busy"]);
    let want: String = (0..30).map(|i| format!("line{i}\n")).collect();
    assert_eq!(logs, want);
    drop(follower);
    // the adopted container stops through the new daemon, which sees the exit
    b.docker_ok(&["stop", "-t", "1", "busy"]);
    let c = inspect(&b, "busy");
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    assert_eq!(
        c["State"]["ExitCode"], 137,
        "sh as pid 1 ignores SIGTERM: killed"
    );
    assert!(process_gone(pid));
    eventually("no mount left", || {
        b.mounts().iter().all(|m| !m.contains(&id))
    });
}

#[test]
fn killed_supervisor_is_recorded_as_exited() {
    let b = berth();
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "orphan",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    let id = id.trim().to_string();
    let pid = inspect(&b, "orphan")["State"]["Pid"].as_i64().expect("pid");
    // a docker wait that is pending when the supervisor dies must not hang
    let waiter = Reaped(
        Command::new("docker")
            .args(["wait", "orphan"])
            .env("DOCKER_HOST", format!("unix://{}", b.socket().display()))
            .env("DOCKER_CONFIG", b.root.path().join("docker-config"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker wait"),
    );
    sigkill(supervisor_of(&b, &id));
    eventually("the exit recorded by the daemon", || {
        inspect(&b, "orphan")["State"]["Status"] == "exited"
    });
    let c = inspect(&b, "orphan");
    assert_eq!(
        (
            c["State"]["ExitCode"].clone(),
            c["State"]["Running"].clone()
        ),
        (137.into(), false.into())
    );
    eventually("the end of the container's process", || process_gone(pid));
    let mut waiter = waiter;
    let out = std::mem::replace(&mut waiter.0, Command::new("true").spawn().expect("true"))
        .wait_with_output()
        .expect("docker wait");
    assert_eq!(
        stdout(&out).trim(),
        "137",
        "{}",
        berth_testkit::stderr(&out)
    );
    eventually("no cgroup left", || cgroups_of(&id).is_empty());
    eventually("no mount left", || {
        b.mounts().iter().all(|m| !m.contains(&id))
    });
    // and it can run again
    b.ok(&["start", "orphan"]);
    assert_eq!(inspect(&b, "orphan")["State"]["Status"], "running");
}

#[test]
fn supervisor_killed_while_the_daemon_is_down_is_recorded_at_its_start() {
    let b = berth();
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "lost",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    let id = id.trim().to_string();
    let pid = inspect(&b, "lost")["State"]["Pid"].as_i64().expect("pid");
    b.stop_daemon();
    sigkill(supervisor_of(&b, &id));
    b.ok(&["version"]);
    // reconciled before the daemon answered
    let c = inspect(&b, "lost");
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    assert_eq!(c["State"]["ExitCode"], 137);
    assert!(process_gone(pid));
    eventually("no cgroup left", || cgroups_of(&id).is_empty());
    eventually("no mount left", || {
        b.mounts().iter().all(|m| !m.contains(&id))
    });
}

#[test]
fn files_a_dead_supervisor_left_of_its_rm_container_go_at_the_daemon_start() {
    let b = berth();
    let (code, out) = {
        let o = b.run(&["run", "--rm", "someapp:1.0", "echo", "gone"]);
        (o.status.code(), stdout(&o))
    };
    assert_eq!((code, out.as_str()), (Some(0), "gone\n"));
    let containers = b.data_root().join("containers");
    let snap_trash = b.data_root().join("snapshots/overlayfs/trash");
    let empty = |d: &std::path::Path| std::fs::read_dir(d).map_or(true, |mut r| r.next().is_none());
    eventually("the --rm container's files deleted", || {
        std::fs::read_dir(&containers)
            .expect("containers dir")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".trash-"))
            && empty(&snap_trash)
    });
    // what a supervisor killed between its exit report and the deletion leaves
    b.stop_daemon();
    let left = containers.join(format!(".trash-{}", "ab".repeat(32)));
    std::fs::create_dir_all(left.join("logs")).expect("trash dir");
    std::fs::write(left.join("logs").join("x-json.log"), "{}\n").expect("trash file");
    let left_snap = snap_trash.join("999999");
    std::fs::create_dir_all(left_snap.join("fs/etc")).expect("snapshot trash dir");
    b.ok(&["version"]);
    assert!(
        !left.exists(),
        "{} left after the daemon start",
        left.display()
    );
    assert!(
        empty(&snap_trash),
        "snapshot files left after the daemon start"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}
