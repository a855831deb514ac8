use super::stats::parse_io_stat;
use super::*;
use crate::fake::FakeHarness;

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn created() -> FakeHarness {
    let h = FakeHarness::new(CgroupMode::V2);
    h.m.create().expect("create");
    h.fs.clear_log();
    h
}

fn read(h: &FakeHarness, rel: &str) -> String {
    std::fs::read_to_string(h.root().join(rel))
        .expect("read fake file")
        .trim()
        .to_string()
}

#[test]
fn conformance_v2() {
    crate::conformance::run(&mut FakeHarness::new(CgroupMode::V2));
}

#[test]
fn conversions_match_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(512), 20);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1), 1); // clamped, no underflow
    assert_eq!(blkio_to_io_weight(10), 1);
    assert_eq!(blkio_to_io_weight(500), 4950);
    assert_eq!(blkio_to_io_weight(1000), 10_000);
    assert_eq!(swap_to_v2(Some(100), Some(300)).expect("ok"), Some(200));
    assert_eq!(swap_to_v2(Some(100), Some(100)).expect("ok"), Some(0));
    assert_eq!(swap_to_v2(Some(100), Some(-1)).expect("ok"), Some(-1));
    assert_eq!(swap_to_v2(Some(100), None).expect("ok"), None);
    assert!(swap_to_v2(Some(100), Some(50)).is_err());
    assert!(swap_to_v2(None, Some(50)).is_err());
    assert!(swap_to_v2(Some(-1), Some(50)).is_err());
}

#[test]
fn create_enables_offered_controllers_top_down() {
    let h = FakeHarness::new(CgroupMode::V2);
    h.m.create().expect("create");
    assert_eq!(
        h.fs.writes(),
        vec![
            ("cgroup.subtree_control".to_string(), "+cpuset".to_string()),
            ("cgroup.subtree_control".into(), "+cpu".into()),
            ("cgroup.subtree_control".into(), "+io".into()),
            ("cgroup.subtree_control".into(), "+memory".into()),
            ("cgroup.subtree_control".into(), "+hugetlb".into()),
            ("cgroup.subtree_control".into(), "+pids".into()),
            ("berth/cgroup.subtree_control".into(), "+cpuset".into()),
            ("berth/cgroup.subtree_control".into(), "+cpu".into()),
            ("berth/cgroup.subtree_control".into(), "+io".into()),
            ("berth/cgroup.subtree_control".into(), "+memory".into()),
            ("berth/cgroup.subtree_control".into(), "+hugetlb".into()),
            ("berth/cgroup.subtree_control".into(), "+pids".into()),
        ]
    );
    assert_eq!(
        read(&h, "berth/test-1/cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids"
    );
    // only what is offered is enabled, and nothing twice
    h.fs.clear_log();
    h.m.create().expect("create again");
    assert!(h.fs.writes().is_empty(), "{:?}", h.fs.writes());
}

#[test]
fn memory_files() {
    let h = created();
    h.m.apply_resources(&res(
        r#"{"memory": {"limit": 1073741824, "swap": 2147483648, "reservation": 536870912}}"#,
    ))
    .expect("apply");
    let p = |f: &str| format!("berth/test-1/{f}");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("memory.swap.max"), "1073741824".into()),
            (p("memory.max"), "1073741824".into()),
            (p("memory.low"), "536870912".into()),
        ]
    );
    h.fs.clear_log();
    h.m.apply_resources(&res(r#"{"memory": {"limit": -1, "swap": -1}}"#))
        .expect("apply");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("memory.swap.max"), "max".into()),
            (p("memory.max"), "max".into())
        ]
    );
    let e =
        h.m.apply_resources(&res(r#"{"memory": {"limit": 2000, "swap": 1000}}"#))
            .expect_err("swap < limit");
    assert!(
        matches!(e, Error::InvalidResource { ref field, .. } if field == "linux.resources.memory.swap")
    );
    std::fs::remove_file(h.root().join("berth/test-1/memory.swap.max")).expect("rm");
    let e =
        h.m.apply_resources(&res(r#"{"memory": {"limit": 2000, "swap": 4000}}"#))
            .expect_err("no swap accounting");
    assert!(e.to_string().contains("memory.swap.max"), "{e}");
}

#[test]
fn cpu_files() {
    let h = created();
    h.m.apply_resources(&res(
        r#"{"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
            "cpus": "0-1", "mems": "0"}}"#,
    ))
    .expect("apply");
    let p = |f: &str| format!("berth/test-1/{f}");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("cpu.weight"), "39".into()),
            (p("cpu.max"), "50000 100000".into()),
            (p("cpu.max.burst"), "1000".into()),
            (p("cpu.idle"), "0".into()),
            (p("cpuset.cpus"), "0-1".into()),
            (p("cpuset.mems"), "0".into()),
        ]
    );
    h.fs.clear_log();
    h.m.apply_resources(&res(r#"{"cpu": {"quota": -1}}"#))
        .expect("apply");
    h.m.apply_resources(&res(r#"{"cpu": {"period": 20000}}"#))
        .expect("apply");
    assert_eq!(h.fs.written("cpu.max"), vec!["max", "max 20000"]);
    let e =
        h.m.apply_resources(&res(r#"{"cpu": {"realtimeRuntime": 100}}"#))
            .expect_err("rt on v2");
    assert!(e.to_string().contains("realtime"), "{e}");
}

#[test]
fn io_files() {
    let h = created();
    h.m.apply_resources(&res(r#"{"blockIO": {"weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]}}"#))
        .expect("apply");
    assert_eq!(h.fs.written("io.weight"), vec!["default 4950", "8:0 10000"]);
    assert_eq!(
        h.fs.written("io.max"),
        vec![
            "8:0 rbps=1048576",
            "8:0 wbps=max",
            "8:0 riops=100",
            "8:0 wiops=200"
        ]
    );
    // with BFQ the v1 weight goes to io.bfq.weight unconverted
    std::fs::write(h.root().join("berth/test-1/io.bfq.weight"), "default 100\n").expect("w");
    h.fs.clear_log();
    h.m.apply_resources(&res(r#"{"blockIO": {"weight": 300}}"#))
        .expect("apply");
    assert_eq!(h.fs.written("io.bfq.weight"), vec!["300"]);
}

#[test]
fn pids_hugetlb_unified() {
    let h = created();
    h.m.apply_resources(&res(
        r#"{"pids": {"limit": -1}, "hugepageLimits": [{"pageSize": "1GB", "limit": 1073741824}],
            "unified": {"memory.high": "50000000"}}"#,
    ))
    .expect("apply");
    assert_eq!(read(&h, "berth/test-1/pids.max"), "max");
    assert_eq!(read(&h, "berth/test-1/hugetlb.1GB.max"), "1073741824");
    assert_eq!(read(&h, "berth/test-1/memory.high"), "50000000");
    let e =
        h.m.apply_resources(&res(r#"{"unified": {"nope.file": "1"}}"#))
            .expect_err("unknown key");
    assert!(e.to_string().contains("unified.nope.file"), "{e}");
    let e =
        h.m.apply_resources(&res(r#"{"network": {"classID": 1}}"#))
            .expect_err("net_cls on v2");
    assert!(e.to_string().contains("linux.resources.network"), "{e}");
}

#[test]
fn missing_controller_file_is_missing_controller() {
    let h = created();
    std::fs::remove_file(h.root().join("berth/test-1/pids.max")).expect("rm");
    let e =
        h.m.apply_resources(&res(r#"{"pids": {"limit": 5}}"#))
            .expect_err("pids off");
    assert!(
        matches!(e, Error::MissingController(ref c) if c == "pids"),
        "{e}"
    );
}

#[test]
fn devices_attach_a_bpf_program() {
    let h = created();
    h.m.apply_resources(&res(r#"{"devices": [{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]}"#))
        .expect("apply");
    let bpf = h.fs.bpf.lock().expect("lock");
    assert_eq!(bpf.len(), 1);
    assert_eq!(bpf[0].0, h.root().join("berth/test-1"));
    use crate::devices::{interpret, Kind};
    assert!(interpret(&bpf[0].1, Kind::Char, 2, 1, 5));
    assert!(!interpret(&bpf[0].1, Kind::Char, 2, 1, 3));
}

#[test]
fn freeze_uses_cgroup_freeze_and_events() {
    let h = created();
    h.m.freeze().expect("freeze");
    assert_eq!(read(&h, "berth/test-1/cgroup.freeze"), "1");
    assert!(h.m.is_frozen().expect("state"));
    h.m.thaw().expect("thaw");
    assert_eq!(read(&h, "berth/test-1/cgroup.freeze"), "0");
    assert!(!h.m.is_frozen().expect("state"));
}

#[test]
fn freeze_times_out_when_the_kernel_never_reports_frozen() {
    // a cgroup.events that stays "frozen 0" (e.g. a task stuck in D state)
    let h = created();
    let dir = h.root().join("berth/test-1");
    let m = V2Manager::new(Arc::new(crate::RealFs), h.root(), Path::new("berth/test-1"));
    let e = m
        .set_frozen_with_timeout(true, Duration::from_millis(50))
        .expect_err("timeout");
    assert!(matches!(e, Error::Timeout { what: "frozen", .. }), "{e}");
    // it thawed again rather than leaving the cgroup half frozen
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.freeze")).expect("read"),
        "0"
    );
}

#[test]
fn stats_from_v2_files() {
    let h = created();
    let st = h.m.stats().expect("stats");
    assert_eq!(st.cpu.usage.total, 1_000_000);
    assert_eq!(st.cpu.usage.user, 600_000);
    assert_eq!(st.cpu.usage.kernel, 400_000);
    assert_eq!(st.cpu.throttling.periods, 4);
    assert_eq!(st.cpu.throttling.throttled_time, 7000);
    assert_eq!(st.memory.usage.usage, 8192);
    assert_eq!(st.memory.usage.max, 16384);
    assert_eq!(st.memory.usage.limit, u64::MAX);
    assert_eq!(st.memory.usage.failcnt, 2);
    assert_eq!(st.memory.cache, 300);
    assert_eq!(st.pids.current, 1);
    let b = &st.blkio.io_service_bytes_recursive;
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].op.as_str(), b[0].value, b[1].op.as_str(), b[1].value),
        ("Read", 10, "Write", 20)
    );
    assert!(parse_io_stat(Path::new("io.stat"), "8:0 rbytes=x").is_err());
}

#[test]
fn rdma_limits_need_the_controller() {
    let h = created();
    let r = res(r#"{"rdma": {"mlx5_0": {"hcaHandles": 3}}}"#);
    let e = h.m.apply_resources(&r).expect_err("no rdma.max");
    assert!(
        matches!(e, Error::MissingController(ref c) if c == "rdma"),
        "{e}"
    );
    std::fs::write(h.root().join("berth/test-1/rdma.max"), "").expect("w");
    h.m.apply_resources(&r).expect("apply");
    assert_eq!(
        h.fs.written("rdma.max"),
        vec!["mlx5_0 hca_handle=3 hca_object=max"]
    );
}
