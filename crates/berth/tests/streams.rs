//! Streams end to end through the `berth` binary and the docker CLI: `logs -f` of
//! short-lived containers, attached runs, `run -a`, `start -a -i`, `exec --privileged`,
//! `wait` across daemon restarts, docker's flag conflicts and the terminal after
//! `run -ti`. Needs root and Debian's busybox-static; the terminal test needs
//! `script` (bsdutils), the docker CLI tests the docker client.

use berth_testkit::{stderr, stdout};
use std::process::Stdio;

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
