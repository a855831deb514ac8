//! docker-compose 1.29.2 (in the venv scripts/setup.sh makes under /opt/berth-ci/compose)
//! against berthd: a two-service project with a named volume goes up, is listed, logs,
//! runs an exec, and comes down with its volume.
//!
//! A second project uses compose's default network: the services find each other by
//! name through it, and `down` removes it.

use berth_testkit::{stderr, stdout, Berth};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COMPOSE: &str = "/opt/berth-ci/compose/bin/docker-compose";

const PROJECT: &str = r#"version: "3.8"
services:
  web:
    image: app:1
    command: ["sh", "-c", "echo web-up; exec sleep 300"]
    network_mode: none
    labels:
      role: web
  worker:
    image: app:1
    command: ["sh", "-c", "echo worker-up > /data/mark; echo worker-up; exec sleep 300"]
    network_mode: none
    volumes:
      - data:/data
volumes:
  data: {}
"#;

const NETWORKED: &str = r#"version: "3.8"
services:
  web:
    image: app:1
    command: ["sh", "-c", "echo web-up; exec sleep 300"]
  client:
    image: app:1
    command: ["sh", "-c", "exec sleep 300"]
"#;

struct Project<'a> {
    b: &'a Berth,
    dir: PathBuf,
}

impl Project<'_> {
    fn compose(&self, args: &[&str]) -> Output {
        Command::new(COMPOSE)
            .arg("-f")
            .arg(self.dir.join("docker-compose.yml"))
            .args(["-p", "bt"])
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.b.socket().display()),
            )
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .output()
            .expect("run docker-compose")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.compose(args);
        assert!(
            o.status.success(),
            "docker-compose {args:?} failed ({:?}):\n{}{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o) + &stderr(&o)
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "1"]);
    }
}

#[test]
fn compose_up_ps_logs_exec_down() {
    assert!(
        Path::new(COMPOSE).exists(),
        "{COMPOSE} is missing: scripts/setup.sh makes the docker-compose venv"
    );
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    let b = Berth::with_busybox(berth, "berth-test-compose-", "app:1");
    let dir = b.root.path().join("project");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("docker-compose.yml"), PROJECT).expect("compose file");
    let p = Project { b: &b, dir };
    let up = p.ok(&["up", "-d"]);
    assert!(
        up.contains("Creating bt_web_1") && up.contains("Creating bt_worker_1"),
        "{up}"
    );
    // compose compares the containers' image id with the image's: nothing changed,
    // nothing is recreated
    let again = p.ok(&["up", "-d"]);
    assert!(
        again.contains("bt_web_1 is up-to-date") && !again.contains("Recreating"),
        "{again}"
    );
    let ps = p.ok(&["ps"]);
    let rows: Vec<&str> = ps.lines().filter(|l| l.starts_with("bt_")).collect();
    assert_eq!(rows.len(), 2, "one row per service:\n{ps}");
    assert!(rows.iter().all(|r| r.contains(" Up ")), "{ps}");
    assert_eq!(
        p.ok(&["ps", "-q"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        2
    );
    berth_testkit::eventually("both services to log", || {
        let logs = stdout(&p.compose(&["logs", "--no-color"]));
        logs.contains("web_1     | web-up") && logs.contains("worker_1  | worker-up")
    });
    let ex = p.compose(&["exec", "-T", "worker", "cat", "/data/mark"]);
    assert_eq!(stdout(&ex), "worker-up\n", "{}", stderr(&ex));
    let ex = p.compose(&["exec", "-T", "web", "sh", "-c", "exit 7"]);
    assert_eq!(ex.status.code(), Some(7), "{}", stderr(&ex));
    assert!(b.ok(&["volume", "ls", "-q"]).contains("bt_data"));
    let down = p.ok(&["down", "-v", "-t", "1"]);
    assert!(
        down.contains("Removing bt_web_1") && down.contains("Removing volume bt_data"),
        "{down}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "");
}

#[test]
fn compose_services_meet_on_the_default_network() {
    assert!(
        Path::new(COMPOSE).exists(),
        "{COMPOSE} is missing: scripts/setup.sh makes the docker-compose venv"
    );
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    let b = Berth::with_busybox(berth, "berth-test-compose-net-", "app:1");
    let dir = b.root.path().join("project");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("docker-compose.yml"), NETWORKED).expect("compose file");
    let p = Project { b: &b, dir };
    let up = p.ok(&["up", "-d"]);
    assert!(up.contains("Creating network \"bt_default\""), "{up}");
    let ex = p.compose(&["exec", "-T", "client", "ping", "-c", "1", "-W", "5", "web"]);
    assert_eq!(ex.status.code(), Some(0), "{}{}", stdout(&ex), stderr(&ex));
    assert!(
        stdout(&ex).contains("1 packets received"),
        "{}",
        stdout(&ex)
    );
    let down = p.ok(&["down", "-t", "1"]);
    assert!(down.contains("Removing network bt_default"), "{down}");
    assert_eq!(b.ok(&["ps", "-aq"]).trim(), "");
}
