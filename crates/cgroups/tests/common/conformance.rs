//! The one conformance suite every [`CgroupManager`] passes: v1, hybrid and v2 on fake
//! trees (unit tests in `src/`) and v1 and hybrid on the real host (`tests/host.rs`).
//!
//! Compiled into both the library's unit tests (`#[path]` module) and the integration
//! tests, so it only uses the public API.

#![allow(dead_code)]

use berth_cgroups::{CgroupManager, CgroupMode, Error};
use oci_spec::runtime::LinuxResources;

/// What the suite needs besides the manager: processes to put in the cgroup.
pub trait Harness {
    /// The manager under test (its cgroup does not exist yet).
    fn manager(&self) -> &dyn CgroupManager;
    /// Start a process (real or pretend) for the suite to add to the cgroup.
    fn spawn_member(&mut self) -> i32;
    /// Make every member exit, so the cgroup can be removed.
    fn kill_members(&mut self);
    /// Called after freeze/thaw with a member pid: a real harness may check the
    /// process state itself.
    fn check_frozen(&self, _pid: i32, _frozen: bool) {}
}

const MIB64: i64 = 64 * 1024 * 1024;

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// Read a control file of the cgroup's `controller` directory.
pub fn read_control(m: &dyn CgroupManager, controller: &str, file: &str) -> String {
    let (_, dir) = m
        .paths()
        .into_iter()
        .find(|(c, _)| c == controller || (m.mode() == CgroupMode::V2 && c == "unified"))
        .unwrap_or_else(|| panic!("no {controller} path"));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Run the whole suite; leaves nothing behind when it passes.
pub fn run(h: &mut dyn Harness) {
    let m = h.manager();
    let mode = m.mode();

    // create is idempotent and makes every directory
    m.create().expect("create");
    m.create().expect("create again");
    for (c, p) in m.paths() {
        assert!(p.is_dir(), "{c} dir {} missing after create", p.display());
    }
    if mode != CgroupMode::V2 {
        assert!(m.paths().iter().any(|(c, _)| c == "memory"));
    }
    assert_eq!(
        m.paths().iter().any(|(c, _)| c == "unified"),
        mode != CgroupMode::V1
    );

    // a process joins
    let pid = h.spawn_member();
    let m = h.manager();
    m.add_process(pid).expect("add_process");
    assert!(
        m.pids().expect("pids").contains(&pid),
        "pid {pid} not listed"
    );

    // limits land in the files
    let r = resources(&format!(
        r#"{{"memory": {{"limit": {MIB64}}}, "pids": {{"limit": 64}}, "cpu": {{"shares": 512}}}}"#
    ));
    m.apply_resources(&r).expect("apply resources");
    match mode {
        CgroupMode::V2 => {
            assert_eq!(read_control(m, "memory", "memory.max"), MIB64.to_string());
            assert_eq!(read_control(m, "cpu", "cpu.weight"), "20");
        }
        _ => {
            assert_eq!(
                read_control(m, "memory", "memory.limit_in_bytes"),
                MIB64.to_string()
            );
            assert_eq!(read_control(m, "cpu", "cpu.shares"), "512");
        }
    }
    assert_eq!(read_control(m, "pids", "pids.max"), "64");
    // pids limit <= 0 means unlimited
    m.apply_resources(&resources(r#"{"pids": {"limit": -1}}"#))
        .expect("pids max");
    assert_eq!(read_control(m, "pids", "pids.max"), "max");
    m.apply_resources(&resources(r#"{"pids": {"limit": 64}}"#))
        .expect("pids 64");

    // a value the host cannot take names its field
    let bad = resources(&format!(
        r#"{{"memory": {{"limit": {MIB64}, "swap": 1048576}}}}"#
    ));
    match m.apply_resources(&bad) {
        Err(Error::InvalidResource { field, reason }) => {
            assert_eq!(field, "linux.resources.memory.swap");
            assert!(reason.contains("limit"), "{reason}");
        }
        other => panic!("swap < limit accepted: {other:?}"),
    }

    // freeze and thaw
    assert!(!m.is_frozen().expect("is_frozen"));
    m.freeze().expect("freeze");
    assert!(m.is_frozen().expect("is_frozen"));
    h.check_frozen(pid, true);
    let m = h.manager();
    m.thaw().expect("thaw");
    assert!(!m.is_frozen().expect("is_frozen"));
    h.check_frozen(pid, false);

    // stats
    let m = h.manager();
    let st = m.stats().expect("stats");
    assert!(st.pids.current >= 1, "pids.current {}", st.pids.current);
    assert_eq!(st.pids.limit, 64);
    assert_eq!(st.memory.usage.limit, MIB64 as u64);
    serde_json::to_string(&st).expect("stats serialize");

    // destroy
    h.kill_members();
    let m = h.manager();
    m.destroy().expect("destroy");
    for (c, p) in m.paths() {
        assert!(!p.exists(), "{c} dir {} left after destroy", p.display());
    }
    m.destroy().expect("destroy is idempotent");
}
