use super::*;
use crate::fake::FakeHarness;

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn created(mode: CgroupMode) -> FakeHarness {
    let h = FakeHarness::new(mode);
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
fn conformance_v1() {
    crate::conformance::run(&mut FakeHarness::new(CgroupMode::V1));
}

#[test]
fn conformance_hybrid() {
    crate::conformance::run(&mut FakeHarness::new(CgroupMode::Hybrid));
}

#[test]
fn finds_combined_cpu_cpuacct_and_skips_unmounted() {
    let h = FakeHarness::new(CgroupMode::V1);
    let names: Vec<String> = h.m.paths().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "hugetlb"]
    );
    h.m.create().expect("create");
    assert!(h.root().join("cpu,cpuacct/berth/test-1").is_dir());
    // without symlinks, the combined directory itself is found
    let d = tempfile::tempdir().expect("tempdir");
    for dir in ["cpu,cpuacct", "memory"] {
        std::fs::create_dir_all(d.path().join(dir)).expect("mk");
        std::fs::write(d.path().join(dir).join("cgroup.procs"), "").expect("procs");
    }
    // an empty mountpoint is skipped
    std::fs::create_dir_all(d.path().join("pids")).expect("mk");
    let m = V1Manager::new(Arc::new(crate::RealFs), d.path(), Path::new("x"), false).expect("mgr");
    assert_eq!(
        m.dir("cpuacct"),
        Some(d.path().join("cpu,cpuacct/x").as_path())
    );
    assert_eq!(m.dir("pids"), None);
}

#[test]
fn no_hierarchies_is_no_cgroupfs() {
    let d = tempfile::tempdir().expect("tempdir");
    let e = V1Manager::new(Arc::new(crate::RealFs), d.path(), Path::new("x"), false)
        .expect_err("empty root");
    assert!(matches!(e, Error::NoCgroupFs(_)));
}

#[test]
fn create_copies_cpuset_from_parent() {
    let h = FakeHarness::new(CgroupMode::V1);
    h.m.create().expect("create");
    assert_eq!(read(&h, "cpuset/berth/cpuset.cpus"), "0-1");
    assert_eq!(read(&h, "cpuset/berth/test-1/cpuset.cpus"), "0-1");
    assert_eq!(read(&h, "cpuset/berth/test-1/cpuset.mems"), "0");
    // a cpuset the container set itself is kept on re-create
    std::fs::write(h.root().join("cpuset/berth/test-1/cpuset.cpus"), "1").expect("w");
    h.m.create().expect("create again");
    assert_eq!(read(&h, "cpuset/berth/test-1/cpuset.cpus"), "1");
}

#[test]
fn add_process_joins_each_hierarchy_once_and_unified_in_hybrid() {
    let h = created(CgroupMode::Hybrid);
    h.m.add_process(77).expect("add");
    let procs: Vec<_> =
        h.fs.writes()
            .into_iter()
            .filter(|(p, _)| p.ends_with("cgroup.procs"))
            .map(|(p, _)| p)
            .collect();
    // cpu and cpuacct share one hierarchy: one write
    assert_eq!(procs.len(), 9, "{procs:?}");
    assert!(procs.contains(&"unified/berth/test-1/cgroup.procs".to_string()));
    assert_eq!(read(&h, "unified/berth/test-1/cgroup.procs"), "77");
    assert_eq!(h.m.pids().expect("pids"), vec![77]);
}

#[test]
fn memory_limit_and_swap_keep_memsw_above_limit_at_every_step() {
    let h = created(CgroupMode::V1);
    let p = |f: &str| format!("memory/berth/test-1/{f}");
    // from unlimited down: limit first, so memsw never drops below it
    h.m.apply_resources(&res(
        r#"{"memory": {"limit": 268435456, "swap": 268435456, "reservation": 134217728,
            "kernelTCP": 1048576, "swappiness": 10, "disableOOMKiller": true}}"#,
    ))
    .expect("apply");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("memory.limit_in_bytes"), "268435456".into()),
            (p("memory.memsw.limit_in_bytes"), "268435456".into()),
            (p("memory.soft_limit_in_bytes"), "134217728".into()),
            (p("memory.kmem.tcp.limit_in_bytes"), "1048576".into()),
            (p("memory.swappiness"), "10".into()),
            (p("memory.oom_control"), "1".into()),
        ]
    );
    // growing: memsw first
    h.fs.clear_log();
    h.m.apply_resources(&res(
        r#"{"memory": {"limit": 1073741824, "swap": 2147483648}}"#,
    ))
    .expect("apply larger");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("memory.memsw.limit_in_bytes"), "2147483648".into()),
            (p("memory.limit_in_bytes"), "1073741824".into()),
        ]
    );
}

#[test]
fn memory_unlimited_makes_swap_unlimited() {
    let h = created(CgroupMode::V1);
    h.m.apply_resources(&res(r#"{"memory": {"limit": -1}}"#))
        .expect("apply");
    assert_eq!(h.fs.written("memory.memsw.limit_in_bytes"), vec!["-1"]);
    assert_eq!(h.fs.written("memory.limit_in_bytes"), vec!["-1"]);
}

#[test]
fn memory_errors_name_the_field() {
    let h = created(CgroupMode::V1);
    let e =
        h.m.apply_resources(&res(r#"{"memory": {"limit": 1000000, "swap": 10}}"#))
            .expect_err("swap < limit");
    assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
    let e =
        h.m.apply_resources(&res(r#"{"memory": {"swappiness": 101}}"#))
            .expect_err("swappiness");
    assert!(e.to_string().contains("swappiness"), "{e}");
    let e =
        h.m.apply_resources(&res(r#"{"memory": {"limit": -5}}"#))
            .expect_err("negative");
    assert!(e.to_string().contains("memory.limit"), "{e}");
    // nothing was written for a rejected update
    assert!(h.fs.writes().is_empty());
    // no swap accounting on the host
    std::fs::remove_file(
        h.root()
            .join("memory/berth/test-1/memory.memsw.limit_in_bytes"),
    )
    .expect("rm");
    let e =
        h.m.apply_resources(&res(r#"{"memory": {"limit": 4096, "swap": 8192}}"#))
            .expect_err("no memsw");
    assert!(e.to_string().contains("swapaccount=1"), "{e}");
}

#[test]
fn cpu_writes() {
    let h = created(CgroupMode::V1);
    h.m.apply_resources(&res(
        r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000, "realtimeRuntime": 950,
            "realtimePeriod": 1000, "cpus": "1", "mems": "0"}}"#,
    ))
    .expect("apply");
    let p = |f: &str| format!("cpu/berth/test-1/{f}");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("cpu.shares"), "512".into()),
            (p("cpu.cfs_period_us"), "100000".into()),
            (p("cpu.cfs_quota_us"), "50000".into()),
            (p("cpu.rt_period_us"), "1000".into()),
            (p("cpu.rt_runtime_us"), "950".into()),
            ("cpuset/berth/test-1/cpuset.cpus".into(), "1".into()),
            ("cpuset/berth/test-1/cpuset.mems".into(), "0".into()),
        ]
    );
    // negative quota is "no limit"
    h.fs.clear_log();
    h.m.apply_resources(&res(r#"{"cpu": {"quota": -100}}"#))
        .expect("apply");
    assert_eq!(h.fs.written("cpu.cfs_quota_us"), vec!["-1"]);
    // cpu.idle is missing on this fake kernel
    let e =
        h.m.apply_resources(&res(r#"{"cpu": {"idle": 1}}"#))
            .expect_err("idle");
    assert!(e.to_string().contains("linux.resources.cpu.idle"), "{e}");
}

#[test]
fn pids_limit_zero_or_negative_is_max() {
    let h = created(CgroupMode::V1);
    h.m.apply_resources(&res(r#"{"pids": {"limit": 0}}"#))
        .expect("apply");
    h.m.apply_resources(&res(r#"{"pids": {"limit": 100}}"#))
        .expect("apply");
    assert_eq!(h.fs.written("pids.max"), vec!["max", "100"]);
}

#[test]
fn blkio_writes() {
    let h = created(CgroupMode::V1);
    h.m.apply_resources(&res(r#"{"blockIO": {"weight": 300, "leafWeight": 200,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 700}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 2097152}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]}}"#))
        .expect("apply");
    let got: Vec<(String, String)> =
        h.fs.writes()
            .into_iter()
            .map(|(p, v)| (p.trim_start_matches("blkio/berth/test-1/").to_string(), v))
            .collect();
    let want: Vec<(String, String)> = [
        ("blkio.weight", "300"),
        ("blkio.leaf_weight", "200"),
        ("blkio.weight_device", "8:0 700"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_bps_device", "8:16 2097152"),
        ("blkio.throttle.read_iops_device", "8:0 100"),
        ("blkio.throttle.write_iops_device", "8:0 200"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    let e =
        h.m.apply_resources(&res(r#"{"blockIO": {"weight": 5}}"#))
            .expect_err("weight range");
    assert!(e.to_string().contains("blockIO.weight"), "{e}");
}

#[test]
fn hugetlb_writes_limit_and_reservation_and_rejects_unknown_size() {
    let h = created(CgroupMode::V1);
    h.m.apply_resources(&res(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 20971520}]}"#,
    ))
    .expect("apply");
    assert_eq!(h.fs.written("hugetlb.2MB.limit_in_bytes"), vec!["20971520"]);
    assert_eq!(
        h.fs.written("hugetlb.2MB.rsvd.limit_in_bytes"),
        vec!["20971520"]
    );
    let e =
        h.m.apply_resources(&res(
            r#"{"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]}"#,
        ))
        .expect_err("size");
    let s = e.to_string();
    assert!(
        s.contains("hugepageLimits[0].pageSize") && s.contains("1GB, 2MB"),
        "{s}"
    );
}

#[test]
fn devices_written_in_order_deny_all_first() {
    let h = created(CgroupMode::Hybrid);
    h.m.apply_resources(&res(r#"{"devices": [{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "m"}]}"#))
        .expect("apply");
    let p = |f: &str| format!("devices/berth/test-1/{f}");
    assert_eq!(
        h.fs.writes(),
        vec![
            (p("devices.deny"), "a".into()),
            (p("devices.allow"), "c 1:3 rwm".into()),
            (p("devices.deny"), "c 1:3 m".into()),
        ]
    );
    // hybrid uses the v1 devices controller, not a bpf program
    assert!(h.fs.bpf.lock().expect("lock").is_empty());
}

#[test]
fn missing_controllers_and_v2_only_fields() {
    let h = created(CgroupMode::V1);
    let e =
        h.m.apply_resources(&res(r#"{"network": {"classID": 42}}"#))
            .expect_err("net_cls absent");
    assert!(
        matches!(e, Error::MissingController(ref c) if c == "net_cls"),
        "{e}"
    );
    let e =
        h.m.apply_resources(&res(r#"{"unified": {"memory.high": "1000"}}"#))
            .expect_err("unified on v1");
    assert!(e.to_string().contains("linux.resources.unified"), "{e}");
}

#[test]
fn hybrid_unified_keys_go_to_the_unified_dir() {
    let h = created(CgroupMode::Hybrid);
    let e =
        h.m.apply_resources(&res(r#"{"unified": {"memory.high": "1000"}}"#))
            .expect_err("no memory in the controller-less unified hierarchy");
    assert!(e.to_string().contains("unified.memory.high"), "{e}");
    let e =
        h.m.apply_resources(&res(r#"{"unified": {"../../x": "1"}}"#))
            .expect_err("escape");
    assert!(e.to_string().contains("not a cgroup file name"), "{e}");
}

#[test]
fn stats_from_v1_files() {
    let h = created(CgroupMode::V1);
    let st = h.m.stats().expect("stats");
    assert_eq!(st.cpu.usage.total, 123456789);
    assert_eq!(st.cpu.usage.percpu, vec![100000000, 23456789]);
    assert_eq!(st.cpu.usage.user, 100000000);
    assert_eq!(st.cpu.usage.kernel, 23456789);
    assert_eq!(st.cpu.throttling.periods, 3);
    assert_eq!(st.cpu.throttling.throttled_periods, 1);
    assert_eq!(st.cpu.throttling.throttled_time, 500);
    assert_eq!(st.memory.usage.usage, 4096);
    assert_eq!(st.memory.usage.max, 8192);
    assert_eq!(st.memory.cache, 100);
    assert_eq!(st.memory.raw["rss"], 200);
    assert_eq!(st.pids.current, 1);
    assert_eq!(st.pids.limit, 0);
    let b = &st.blkio.io_service_bytes_recursive;
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[1].major, b[1].minor, b[1].op.as_str(), b[1].value),
        (8, 0, "Write", 20)
    );
    // without usage_user/usage_sys the tick counts of cpuacct.stat are used
    let d = h.root().join("cpu,cpuacct/berth/test-1");
    std::fs::remove_file(d.join("cpuacct.usage_user")).expect("rm");
    std::fs::write(d.join("cpuacct.stat"), "User 3\nsystem 1\n").expect("w");
    let st = h.m.stats().expect("stats");
    assert_eq!(
        (st.cpu.usage.user, st.cpu.usage.kernel),
        (30_000_000, 10_000_000)
    );
}

#[test]
fn freeze_thaw_v1_files() {
    let h = created(CgroupMode::V1);
    h.m.freeze().expect("freeze");
    assert_eq!(read(&h, "freezer/berth/test-1/freezer.state"), "FROZEN");
    assert!(h.m.is_frozen().expect("state"));
    h.m.thaw().expect("thaw");
    assert_eq!(read(&h, "freezer/berth/test-1/freezer.state"), "THAWED");
}

#[test]
fn destroy_removes_nested_cgroups_deepest_first_and_keeps_parent() {
    let h = created(CgroupMode::Hybrid);
    crate::fs::mkdir_p(
        h.fs.as_ref(),
        &h.root().join("memory/berth/test-1"),
        Path::new("sub/deeper"),
    )
    .expect("nested");
    h.m.destroy().expect("destroy");
    assert!(!h.root().join("memory/berth/test-1").exists());
    assert!(!h.root().join("unified/berth/test-1").exists());
    assert!(h.root().join("memory/berth").is_dir());
}

#[test]
fn destroy_of_a_busy_cgroup_fails_after_retrying() {
    let h = created(CgroupMode::V1);
    h.m.add_process(99).expect("add");
    let e = h.m.destroy().expect_err("busy");
    assert!(matches!(e, Error::Io { op: "rmdir", .. }), "{e}");
}
