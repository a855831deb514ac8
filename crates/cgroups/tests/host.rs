//! End-to-end tests on the real (hybrid) host as root: real cgroups, real processes.

mod common;

use std::path::Path;
use std::process::{Child, Command};

use berth_cgroups::{detect_mode, CgroupManager, CgroupMode};
use common::{conformance, require_root_and_cgroups, unique_name, CgroupGuard, Gated, ROOT};
use oci_spec::runtime::LinuxResources;

/// Real processes (`sleep 30`) in a real cgroup; everything removed on drop.
struct HostHarness {
    guard: CgroupGuard,
    children: Vec<Child>,
}

impl conformance::Harness for HostHarness {
    fn manager(&self) -> &dyn CgroupManager {
        self.guard.m.as_ref()
    }
    fn spawn_member(&mut self) -> i32 {
        let c = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = c.id() as i32;
        self.children.push(c);
        pid
    }
    fn kill_members(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
    fn check_frozen(&self, pid: i32, frozen: bool) {
        eprintln!("pid {pid} frozen={frozen}: {}", common::proc_state(pid));
    }
}

impl Drop for HostHarness {
    fn drop(&mut self) {
        conformance::Harness::kill_members(self);
    }
}

fn host_mode() -> CgroupMode {
    require_root_and_cgroups();
    detect_mode(Path::new(ROOT)).expect("detect cgroup mode")
}

#[test]
fn detect_mode_sees_the_host_layout() {
    let mode = host_mode();
    let unified = Path::new(ROOT).join("unified/cgroup.procs").exists();
    let v2 = Path::new(ROOT).join("cgroup.controllers").exists();
    let expect = if v2 {
        CgroupMode::V2
    } else if unified {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    };
    assert_eq!(mode, expect);
}

fn run_conformance(mode: CgroupMode) {
    let mut h = HostHarness {
        guard: CgroupGuard::new(mode, Path::new(ROOT), &unique_name("conf")),
        children: Vec::new(),
    };
    conformance::run(&mut h);
}

#[test]
fn conformance_on_host_layout() {
    run_conformance(host_mode());
}

#[test]
fn conformance_v1_only_on_hybrid_host() {
    if host_mode() != CgroupMode::Hybrid {
        eprintln!("host is not hybrid: the v1-only run needs v1 controllers; covered by the host-layout run");
        return;
    }
    run_conformance(CgroupMode::V1);
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn path_of(m: &dyn CgroupManager, c: &str) -> std::path::PathBuf {
    m.paths()
        .into_iter()
        .find(|(n, _)| n == c)
        .unwrap_or_else(|| panic!("no {c} hierarchy"))
        .1
}

#[test]
fn lifecycle_with_a_real_process() {
    let mode = host_mode();
    assert_ne!(
        mode,
        CgroupMode::V2,
        "this test reads v1 files; see v2_on_unified for v2"
    );
    let name = unique_name("life");
    let g = CgroupGuard::new(mode, Path::new(ROOT), &name);
    let m = g.m.as_ref();
    m.create().expect("create");
    for (c, p) in m.paths() {
        assert!(p.is_dir(), "{c}: {}", p.display());
        assert!(p.to_string_lossy().contains(&name));
    }

    // burn a little cpu and memory inside the cgroup, then sleep
    let mut child = Gated::spawn(
        "read go; i=0; s=x; while [ $i -lt 20000 ]; do i=$((i+1)); s=$s$i; done; echo busy-done; exec sleep 30",
    );
    m.add_process(child.pid()).expect("add_process");
    m.apply_resources(&res(
        r#"{"memory": {"limit": 134217728}, "pids": {"limit": 16}}"#,
    ))
    .expect("apply");
    assert_eq!(
        read(&path_of(m, "memory"), "memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(read(&path_of(m, "pids"), "pids.max"), "16");
    let procs = read(&path_of(m, "memory"), "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == child.pid().to_string()),
        "{procs}"
    );
    if mode == CgroupMode::Hybrid {
        let u = read(&path_of(m, "unified"), "cgroup.procs");
        assert!(u.lines().any(|l| l == child.pid().to_string()), "{u}");
    }
    child.release();
    assert_eq!(child.line(), "busy-done");
    assert_eq!(m.pids().expect("pids"), vec![child.pid()]);

    m.freeze().expect("freeze");
    assert_eq!(read(&path_of(m, "freezer"), "freezer.state"), "FROZEN");
    assert!(m.is_frozen().expect("state"));
    // frozen tasks report uninterruptible sleep
    let state = common::proc_state(child.pid());
    assert!(state.contains("D (disk sleep)"), "{state}");
    m.thaw().expect("thaw");
    assert_eq!(read(&path_of(m, "freezer"), "freezer.state"), "THAWED");
    assert!(!m.is_frozen().expect("state"));

    let st = m.stats().expect("stats");
    eprintln!("stats: {}", serde_json::to_string(&st).expect("json"));
    assert!(st.cpu.usage.total > 0, "cpu usage");
    assert!(st.memory.usage.usage > 0, "memory usage");
    assert_eq!(st.memory.usage.limit, 134217728);
    assert_eq!(st.pids.current, 1);
    assert_eq!(st.pids.limit, 16);

    child.kill();
    m.destroy().expect("destroy");
    for (c, p) in m.paths() {
        assert!(!p.exists(), "{c} dir {} left", p.display());
    }
}

#[test]
fn freeze_a_cgroup_that_keeps_forking() {
    let mode = host_mode();
    let g = CgroupGuard::new(mode, Path::new(ROOT), &unique_name("forky"));
    g.m.create().expect("create");
    let mut child = Gated::spawn("read go; echo started; while :; do /bin/true; done");
    g.m.add_process(child.pid()).expect("add");
    child.release();
    assert_eq!(child.line(), "started");
    for _ in 0..3 {
        g.m.freeze().expect("freeze a forking cgroup");
        assert!(g.m.is_frozen().expect("state"));
        // frozen: the set of tasks cannot change
        let before = g.m.pids().expect("pids");
        let after = g.m.pids().expect("pids");
        assert_eq!(before, after);
        g.m.thaw().expect("thaw");
    }
}

#[test]
fn pids_limit_is_enforced_by_the_kernel() {
    let mode = host_mode();
    let g = CgroupGuard::new(mode, Path::new(ROOT), &unique_name("pids"));
    g.m.create().expect("create");
    g.m.apply_resources(&res(r#"{"pids": {"limit": 1}}"#))
        .expect("apply");
    // the shell itself is the one allowed task: its fork must fail
    let mut child = Gated::spawn("read go; echo started; /bin/true && echo forked");
    g.m.add_process(child.pid()).expect("add");
    child.release();
    assert_eq!(child.line(), "started");
    assert_eq!(child.line(), "", "the shell could fork past pids.max = 1");
    let err = child.wait_stderr();
    assert!(err.to_lowercase().contains("fork"), "stderr: {err}");
}

#[test]
fn memory_limit_below_usage_is_invalid_resource() {
    let mode = host_mode();
    let g = CgroupGuard::new(mode, Path::new(ROOT), &unique_name("oom"));
    g.m.create().expect("create");
    // swap smaller than limit is rejected before touching the kernel
    let e =
        g.m.apply_resources(&res(r#"{"memory": {"limit": 134217728, "swap": 4096}}"#))
            .expect_err("swap < limit");
    assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
    if mode == CgroupMode::V2 {
        return; // v2 reclaims or OOM-kills instead of refusing
    }
    // a limit under what the cgroup already uses: v1 refuses with EBUSY once reclaim
    // fails, which it must when there is no swap for the anonymous memory
    let mut child = Gated::spawn(
        "read go; i=0; s=x; while [ $i -lt 20000 ]; do i=$((i+1)); s=$s$i; done; echo grown; exec sleep 30",
    );
    g.m.add_process(child.pid()).expect("add");
    child.release();
    assert_eq!(child.line(), "grown");
    let no_swap = std::fs::read_to_string("/proc/swaps")
        .map(|s| s.lines().count() <= 1)
        .unwrap_or(false);
    match g.m.apply_resources(&res(r#"{"memory": {"limit": 4096}}"#)) {
        Err(berth_cgroups::Error::InvalidResource { field, reason }) => {
            assert_eq!(field, "linux.resources.memory.limit");
            assert!(reason.contains("current usage"), "{reason}");
        }
        Ok(()) => assert!(!no_swap, "a 4096-byte limit was accepted with no swap"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn kernel_refused_values_name_the_oci_field() {
    let mode = host_mode();
    let g = CgroupGuard::new(mode, Path::new(ROOT), &unique_name("inval"));
    g.m.create().expect("create");
    // the kernel wants a quota of at least 1ms
    let e =
        g.m.apply_resources(&res(r#"{"cpu": {"quota": 10, "period": 100000}}"#))
            .expect_err("quota below 1ms");
    match e {
        berth_cgroups::Error::InvalidResource { field, .. } => {
            assert_eq!(field, "linux.resources.cpu.quota")
        }
        other => panic!("unexpected error: {other}"),
    }
    let e =
        g.m.apply_resources(&res(r#"{"cpu": {"cpus": "0-4095"}}"#))
            .expect_err("cpus the host does not have");
    assert!(e.to_string().contains("linux.resources.cpu.cpus"), "{e}");
}

#[test]
fn dotdot_paths_are_rejected() {
    require_root_and_cgroups();
    let e = berth_cgroups::manager(
        CgroupMode::Hybrid,
        Path::new(ROOT),
        Path::new("berth-test/../../x"),
    )
    .expect_err("escape");
    assert!(e.to_string().contains("escape"), "{e}");
}

/// Not a check: prints how long one cgroup lifecycle takes on this host
/// (`cargo test -p berth-cgroups --test host -- --ignored --nocapture`).
#[test]
#[ignore]
fn measure_lifecycle() {
    let mode = host_mode();
    let n = 50;
    let r =
        res(r#"{"memory": {"limit": 134217728}, "pids": {"limit": 64}, "cpu": {"shares": 512}}"#);
    let start = std::time::Instant::now();
    let (mut create, mut apply, mut freeze, mut destroy) = (0u128, 0u128, 0u128, 0u128);
    for _ in 0..n {
        let g = CgroupGuard::new(mode, Path::new(ROOT), &unique_name("bench"));
        let mut child = Gated::spawn("read go; exec sleep 30");
        let t = std::time::Instant::now();
        g.m.create().expect("create");
        g.m.add_process(child.pid()).expect("add");
        create += t.elapsed().as_micros();
        let t = std::time::Instant::now();
        g.m.apply_resources(&r).expect("apply");
        apply += t.elapsed().as_micros();
        let t = std::time::Instant::now();
        g.m.freeze().expect("freeze");
        g.m.thaw().expect("thaw");
        freeze += t.elapsed().as_micros();
        child.kill();
        let t = std::time::Instant::now();
        g.m.destroy().expect("destroy");
        destroy += t.elapsed().as_micros();
    }
    eprintln!(
        "{mode:?}: {n} lifecycles in {:?}; per cgroup: create+join {} us, apply {} us, freeze+thaw {} us, destroy {} us",
        start.elapsed(),
        create / n,
        apply / n,
        freeze / n,
        destroy / n
    );
}
