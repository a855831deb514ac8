//! Bad input: a one-line error naming the field, exit status 1, nothing left behind.

mod common;
use common::*;
use serde_json::json;

fn assert_refused(ct: &Ct, needle: &str) {
    let o = ct.create();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    assert!(!ct.root().join(&ct.id).exists(), "state dir left behind");
    assert!(cgroup_dirs(&ct.id).is_empty(), "cgroup left behind");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(ct.dir.path().to_str().expect("utf8")),
        "mount left behind"
    );
}

#[test]
fn malformed_config() {
    let ct = Ct::new(&["true"]);
    ct.write();
    std::fs::write(
        ct.bundle().join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .expect("write");
    // create() rewrites config.json: call the binary directly
    let b = ct.bundle();
    let o = ct.rt(&["create", "--bundle", b.to_str().expect("utf8"), &ct.id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("config.json"), "{err}");
    assert!(!ct.root().join(&ct.id).exists());
}

#[test]
fn unknown_version() {
    let mut ct = Ct::new(&["true"]);
    ct.config["ociVersion"] = json!("9.0.0");
    assert_refused(&ct, "ociVersion");
}

#[test]
fn missing_rootfs() {
    let mut ct = Ct::new(&["true"]);
    ct.config["root"]["path"] = json!("no-such-rootfs");
    assert_refused(&ct, "root.path");
}

#[test]
fn unknown_namespace() {
    let mut ct = Ct::new(&["true"]);
    ct.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "bogus"}]);
    assert_refused(&ct, "linux.namespaces");
}

#[test]
fn unknown_capability() {
    let mut ct = Ct::new(&["true"]);
    ct.config["process"]["capabilities"]["bounding"] = json!(["CAP_NOT_A_CAP"]);
    assert_refused(&ct, "process.capabilities.bounding");
}

#[test]
fn program_not_found() {
    let ct = Ct::new(&["/no/such/program"]);
    assert_refused(&ct, "/no/such/program");
}

#[test]
fn id_already_in_use() {
    let ct = Ct::new(&["sleep", "30"]);
    assert!(ct.create().status.success());
    let o = ct.create();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("already exists"), "{err}");
    // the first container is untouched
    assert_eq!(ct.state()["status"], "created");
}

#[test]
fn unknown_signal() {
    let ct = Ct::new(&["sleep", "30"]);
    assert!(ct.create().status.success());
    let o = ct.rt(&["kill", &ct.id, "SIGNOPE"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("unknown signal"), "{err}");
    assert_eq!(ct.state()["status"], "created");
}

#[test]
fn terminal_without_console_socket() {
    let mut ct = Ct::new(&["true"]);
    ct.config["process"]["terminal"] = json!(true);
    assert_refused(&ct, "console-socket");
}
