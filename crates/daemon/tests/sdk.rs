//! The Docker SDK for Python (PyPI `docker`, in the venv scripts/setup.sh makes under
//! /opt/berth-ci/sdk) against berthd: tests/python/sdk_check.py pulls from a loopback
//! registry, tags, builds, saves and loads, runs containers, reads logs, waits, execs,
//! manages volumes and reads events and disk usage.
//! It also puts containers on a user network where they reach each other by name.

use berth_testkit::{rootfs_tar, stderr, stdout, Berth, Registry};
use std::path::{Path, PathBuf};
use std::process::Command;

const PYTHON: &str = "/opt/berth-ci/sdk/bin/python";

#[test]
fn docker_sdk_for_python_drives_berthd() {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: scripts/setup.sh makes the Docker SDK venv"
    );
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth");
    let b = Berth::empty(berth, "berth-test-sdk-");
    let reg = Registry::start(false);
    let tar = rootfs_tar(b.root.path());
    let name = format!("{}/sdk/app:1", reg.host);
    b.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().expect("utf-8"),
        &name,
    ]);
    b.ok(&["push", "-q", &name]);
    b.ok(&["rmi", &name]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_check.py");
    let out = Command::new(PYTHON)
        .arg(&script)
        .env("DOCKER_HOST", format!("unix://{}", b.socket().display()))
        .env("REGISTRY", &reg.host)
        .output()
        .expect("run python");
    assert!(
        out.status.success() && stdout(&out).contains("SDK OK"),
        "sdk_check.py failed ({:?}):\n{}{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
}
