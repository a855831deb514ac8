//! The v2 device filter for real: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated
//! from OCI rules, attached to a cgroup2 directory (on a hybrid host: under
//! `/sys/fs/cgroup/unified`), enforced on a process moved into it.

mod common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_cgroups::{CgroupManager, CgroupMode};
use berth_sys::bpf;
use common::{require_root_and_cgroups, unique_name, CgroupGuard, Gated, ROOT};
use oci_spec::runtime::LinuxResources;

/// The cgroup2 mount of this host: the root itself (v2) or `<root>/unified` (hybrid).
fn cgroup2_root() -> PathBuf {
    require_root_and_cgroups();
    match berth_cgroups::detect_mode(Path::new(ROOT)).expect("detect mode") {
        CgroupMode::V2 => PathBuf::from(ROOT),
        CgroupMode::Hybrid => Path::new(ROOT).join("unified"),
        CgroupMode::V1 => panic!("this host has no cgroup2 mount: the eBPF device test needs one"),
    }
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// deny everything but /dev/zero (char 1:5)
const ONLY_ZERO: &str = r#"{"devices": [{"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]}"#;

fn attached(m: &dyn CgroupManager) -> Vec<u32> {
    let dir = std::fs::File::open(&m.paths()[0].1).expect("open cgroup dir");
    bpf::prog_query(dir.as_fd(), bpf::BPF_CGROUP_DEVICE).expect("query")
}

/// Open /dev/null and /dev/zero from inside the cgroup; print what happened.
const PROBE: &str = "read go; \
    if cat /dev/null; then echo null-ok; else echo null-denied; fi; \
    if [ \"$(head -c 1 /dev/zero | wc -c)\" = 1 ]; then echo zero-ok; else echo zero-denied; fi";

fn probe(m: &dyn CgroupManager) -> (String, String, String) {
    let mut child = Gated::spawn(PROBE);
    m.add_process(child.pid()).expect("move child into cgroup");
    child.release();
    let (a, b) = (child.line(), child.line());
    (a, b, child.wait_stderr())
}

#[test]
fn device_filter_denies_all_but_dev_zero() {
    let root = cgroup2_root();
    let g = CgroupGuard::new(CgroupMode::V2, &root, &unique_name("bpf"));
    let m = g.m.as_ref();
    m.create().expect("create cgroup2 dir");

    // before: no program, both open
    let (null, zero, _) = probe(m);
    assert_eq!((null.as_str(), zero.as_str()), ("null-ok", "zero-ok"));

    m.apply_resources(&res(ONLY_ZERO))
        .expect("load and attach device filter");
    assert_eq!(attached(m).len(), 1);
    let (null, zero, err) = probe(m);
    assert_eq!(null, "null-denied", "stderr: {err}");
    assert_eq!(zero, "zero-ok", "stderr: {err}");
    assert!(
        err.contains("Operation not permitted"),
        "expected EPERM, stderr: {err}"
    );

    // re-applying replaces the program rather than stacking a second one
    m.apply_resources(&res(ONLY_ZERO)).expect("re-apply");
    assert_eq!(attached(m).len(), 1);

    // an allow-all rule list lifts the filter
    m.apply_resources(&res(r#"{"devices": [{"allow": true, "access": "rwm"}]}"#))
        .expect("allow all");
    assert_eq!(attached(m).len(), 1);
    let (null, zero, err) = probe(m);
    assert_eq!(
        (null.as_str(), zero.as_str()),
        ("null-ok", "zero-ok"),
        "stderr: {err}"
    );

    m.destroy().expect("destroy");
    assert!(!m.paths()[0].1.exists());
}

#[test]
fn raw_bpf_wrappers_attach_query_detach() {
    let root = cgroup2_root();
    let g = CgroupGuard::new(CgroupMode::V2, &root, &unique_name("raw"));
    g.m.create().expect("create");
    let dir = std::fs::File::open(&g.m.paths()[0].1).expect("open dir");
    let prog = berth_cgroups::devices::bpf_program(&[]).expect("allow-all program");
    let fd = bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, &prog, "Apache-2.0").expect("load");
    bpf::prog_attach(
        dir.as_fd(),
        fd.as_fd(),
        bpf::BPF_CGROUP_DEVICE,
        bpf::BPF_F_ALLOW_MULTI,
    )
    .expect("attach");
    let ids = bpf::prog_query(dir.as_fd(), bpf::BPF_CGROUP_DEVICE).expect("query");
    assert_eq!(ids.len(), 1);
    let again = bpf::prog_get_fd_by_id(ids[0]).expect("fd by id");
    bpf::prog_detach(dir.as_fd(), again.as_fd(), bpf::BPF_CGROUP_DEVICE).expect("detach");
    assert!(bpf::prog_query(dir.as_fd(), bpf::BPF_CGROUP_DEVICE)
        .expect("query")
        .is_empty());
    // a program the verifier rejects reports its log
    let bad = [berth_sys::bpf::BpfInsn::new(0x95, 0, 0, 0, 0)]; // exit without setting r0
    let e = bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, &bad, "Apache-2.0")
        .expect_err("verifier must reject");
    assert!(e.to_string().contains("verifier log"), "{e}");
}

#[test]
fn v2_manager_freezes_on_the_real_cgroup2_hierarchy() {
    let root = cgroup2_root();
    let g = CgroupGuard::new(CgroupMode::V2, &root, &unique_name("frz"));
    let m = g.m.as_ref();
    m.create().expect("create");
    let mut child = Gated::spawn("read go; echo awake; exec sleep 30");
    m.add_process(child.pid()).expect("add");
    assert_eq!(m.pids().expect("pids"), vec![child.pid()]);
    m.freeze().expect("freeze");
    assert!(m.is_frozen().expect("state"));
    let events = std::fs::read_to_string(m.paths()[0].1.join("cgroup.events")).expect("events");
    assert!(events.contains("frozen 1"), "{events}");
    m.thaw().expect("thaw");
    assert!(!m.is_frozen().expect("state"));
    child.release();
    assert_eq!(child.line(), "awake");
    let st = m.stats().expect("stats");
    assert!(st.cpu.usage.total > 0, "cpu.stat usage_usec");
    child.kill();
    m.destroy().expect("destroy");
    assert!(!m.paths()[0].1.exists());
}
