//! The run flags docker keeps in `HostConfig` beyond the basics: namespaces shared
//! with the host or another container (`--pid`, `--ipc`, `--uts`, `--cgroupns`),
//! host devices, namespaced sysctls, `/dev/shm`, annotations, the cgroup parent and
//! the finer cgroup limits.
//!
//! Three steps, as in docker's daemon: [`check`] refuses bad values before anything
//! is created and returns docker's warnings (dropping what this kernel cannot do,
//! where docker drops it too); [`resolve`] reads what the host has (device numbers)
//! at create; [`apply`] writes the OCI spec. [`Engine::join_namespaces`] points the
//! spec at a running container's namespaces at each start.

use crate::error::{Error, Result};
use crate::record::{ContainerDir, CreateOptions, DeviceMapping, DeviceRate, NetworkMode};
use crate::Engine;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceType,
    LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder, Spec,
};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// docker's `/dev/shm` size when `--shm-size` is not given.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The sysctls docker lets a container set (its `ValidateSysctl`): those of the
/// IPC namespace, and every `net.*` and `fs.mqueue.*` one.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// `container:NAME` of a `--pid`/`--ipc` mode.
pub fn container_of(mode: Option<&str>) -> Option<&str> {
    mode.and_then(|m| m.strip_prefix("container:"))
}

/// docker's daemon checks of the flags, before anything is created; returns its
/// warnings. Limits this kernel has no file for are dropped with docker's warning
/// where docker drops them (block I/O weights and throttles).
pub fn check(o: &mut CreateOptions) -> Result<Vec<String>> {
    check_modes(o)?;
    check_sysctls(o)?;
    check_devices(o)?;
    let mut warnings = check_memory(o)?;
    check_cpu(o)?;
    warnings.extend(check_blkio(o)?);
    match o.log_driver.as_deref() {
        None | Some("" | "json-file" | "local" | "none") => {}
        Some(d) => {
            return Err(invalid(format!(
                "--log-driver {d}: not supported: berth keeps logs with json-file (local is the same files) or none"
            )))
        }
    }
    Ok(warnings)
}

fn check_modes(o: &CreateOptions) -> Result<()> {
    let bad_container = |flag: &str, m: &str| {
        invalid(format!(
            "{flag} {m:?}: name the container after container: (container:NAME)"
        ))
    };
    match o.pid_mode.as_deref() {
        None | Some("" | "host" | "private") => {}
        Some(m) if container_of(Some(m)).is_some_and(|c| !c.is_empty()) => {}
        Some(m) if m.starts_with("container:") => return Err(bad_container("--pid", m)),
        Some(m) => {
            return Err(invalid(format!(
                "--pid {m:?}: invalid PID mode: use host or container:NAME"
            )))
        }
    }
    match o.ipc_mode.as_deref() {
        None | Some("" | "host" | "private" | "shareable" | "none") => {}
        Some(m) if container_of(Some(m)).is_some_and(|c| !c.is_empty()) => {}
        Some(m) if m.starts_with("container:") => return Err(bad_container("--ipc", m)),
        Some(m) => {
            return Err(invalid(format!(
            "--ipc {m:?}: invalid IPC mode: use private, shareable, none, host or container:NAME"
        )))
        }
    }
    match o.uts_mode.as_deref() {
        None | Some("") => {}
        Some("host") if o.hostname.is_some() || o.domainname.is_some() => {
            return Err(invalid(
                "conflicting options: --hostname/--domainname and --uts host: the host's names cannot be changed from a container; drop one",
            ))
        }
        Some("host") => {}
        Some(m) => return Err(invalid(format!("--uts {m:?}: invalid UTS mode: use host"))),
    }
    match o.cgroupns_mode.as_deref() {
        None | Some("" | "host" | "private") => {}
        Some(m) => {
            return Err(invalid(format!(
                "--cgroupns {m:?}: invalid cgroup namespace mode: use host or private"
            )))
        }
    }
    for l in &o.links {
        let (name, alias) = l.split_once(':').unwrap_or((l, l));
        if name.is_empty() || alias.is_empty() || alias.contains(':') {
            return Err(invalid(format!(
                "--link {l:?}: invalid link: use NAME or NAME:ALIAS"
            )));
        }
        if o.network != NetworkMode::Bridge {
            return Err(invalid(format!(
                "--link {l}: conflicting options: links need a bridge network (the default, or --network NAME), not --network {}",
                crate::network::mode_name(&o.network, &o.endpoints)
            )));
        }
    }
    if let Some(p) = &o.cgroup_parent {
        if p.split('/').any(|c| c == "..") {
            return Err(invalid(format!(
                "--cgroup-parent {p:?}: \"..\" is not allowed: name a cgroup path below the hierarchy's root"
            )));
        }
    }
    if let Some(s) = o.shm_size {
        if s < 0 {
            return Err(invalid(format!(
                "--shm-size {s}: the size of /dev/shm cannot be negative"
            )));
        }
    }
    if let Some(a) = o.oom_score_adj {
        if !(-1000..=1000).contains(&a) {
            return Err(invalid(format!(
                "--oom-score-adj {a}: invalid value, the range is [-1000, 1000]"
            )));
        }
        let ours = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(0);
        if a < ours && !has_sys_resource() {
            return Err(invalid(format!(
                "--oom-score-adj {a}: lowering the OOM score below the daemon's ({ours}) needs CAP_SYS_RESOURCE, which berthd lacks here: use {ours} or more"
            )));
        }
    }
    Ok(())
}

/// Whether we hold CAP_SYS_RESOURCE (bit 24 of `CapEff`).
fn has_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

fn check_sysctls(o: &CreateOptions) -> Result<()> {
    for k in o.sysctls.keys() {
        let ipc = IPC_SYSCTLS.contains(&k.as_str()) || k.starts_with("fs.mqueue.");
        if k.starts_with("net.") {
            if o.network == NetworkMode::Host {
                return Err(invalid(format!(
                    "--sysctl {k}: not allowed in the host's network namespace (--network host): drop one"
                )));
            }
        } else if ipc {
            if o.ipc_mode.as_deref() == Some("host") {
                return Err(invalid(format!(
                    "--sysctl {k}: not allowed in the host's IPC namespace (--ipc host): drop one"
                )));
            }
        } else {
            return Err(invalid(format!(
                "--sysctl {k}: not allowed: only namespaced sysctls can be set (net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*)"
            )));
        }
    }
    Ok(())
}

fn check_devices(o: &CreateOptions) -> Result<()> {
    for d in &o.devices {
        if d.permissions.is_empty() || d.permissions.chars().any(|c| !"rwm".contains(c)) {
            return Err(invalid(format!(
                "--device {}: invalid device mode {:?}: use a combination of r, w and m",
                d.path_on_host, d.permissions
            )));
        }
        if !d.path_in_container.starts_with('/') {
            return Err(invalid(format!(
                "--device {}: the path in the container {:?} must be absolute",
                d.path_on_host, d.path_in_container
            )));
        }
        if let Err(e) = std::fs::metadata(&d.path_on_host) {
            return Err(invalid(format!(
                "--device {}: error gathering device information: {e}",
                d.path_on_host
            )));
        }
    }
    for r in &o.device_cgroup_rules {
        device_rule(r)?;
    }
    Ok(())
}

fn check_memory(o: &mut CreateOptions) -> Result<Vec<String>> {
    let mut w = Vec::new();
    if let Some(r) = o.memory_reservation {
        if r < 6 << 20 {
            return Err(invalid(format!(
                "--memory-reservation {r}: the minimum memory reservation allowed is 6MB"
            )));
        }
        if o.memory.is_some_and(|m| m < r) {
            return Err(invalid(
                "--memory-reservation: the memory limit (-m) cannot be less than the reservation: raise -m or lower the reservation",
            ));
        }
    }
    if let Some(s) = o.memory_swappiness {
        if s > 100 {
            return Err(invalid(format!(
                "--memory-swappiness {s}: invalid value, the range is 0-100"
            )));
        }
    }
    // cgroup v2 has neither: docker drops them with these warnings
    let v1_memory = Path::new(CGROUP_ROOT).join("memory");
    if o.memory_swappiness.is_some() && !v1_memory.join("memory.swappiness").exists() {
        w.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".into());
        o.memory_swappiness = None;
    }
    if o.oom_kill_disable && !v1_memory.join("memory.oom_control").exists() {
        w.push("Your kernel does not support OomKillDisable. OomKillDisable discarded.".into());
        o.oom_kill_disable = false;
    }
    if o.oom_kill_disable && o.memory.is_none() {
        w.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".into());
    }
    Ok(w)
}

fn check_cpu(o: &CreateOptions) -> Result<()> {
    if o.cpus.is_some() && o.cpu_period.is_some() {
        return Err(invalid(
            "conflicting options: --cpus and --cpu-period cannot both be set: use one",
        ));
    }
    if o.cpus.is_some() && o.cpu_quota.is_some() {
        return Err(invalid(
            "conflicting options: --cpus and --cpu-quota cannot both be set: use one",
        ));
    }
    if let Some(p) = o.cpu_period {
        if !(1000..=1_000_000).contains(&p) {
            return Err(invalid(format!(
                "--cpu-period {p}: the CFS period cannot be less than 1ms (1000) or more than 1s (1000000)"
            )));
        }
    }
    if let Some(q) = o.cpu_quota {
        if q > 0 && q < 1000 {
            return Err(invalid(format!(
                "--cpu-quota {q}: the CFS quota cannot be less than 1ms (1000)"
            )));
        }
    }
    let rt = o.cpu_rt_period.is_some() || o.cpu_rt_runtime.is_some();
    if rt
        && !Path::new(CGROUP_ROOT)
            .join("cpu/cpu.rt_runtime_us")
            .exists()
    {
        return Err(invalid(
            "--cpu-rt-period/--cpu-rt-runtime: this kernel has no cgroup real-time scheduling (cpu.rt_runtime_us; CONFIG_RT_GROUP_SCHED, cgroup v1): drop the flags",
        ));
    }
    if let (Some(p), Some(r)) = (o.cpu_rt_period, o.cpu_rt_runtime) {
        if r > p as i64 {
            return Err(invalid(
                "--cpu-rt-runtime: the real-time runtime cannot be higher than the real-time period",
            ));
        }
    }
    if let Some(m) = o.cpuset_mems.as_deref() {
        let online = std::fs::read_to_string("/sys/devices/system/node/online")
            .unwrap_or_else(|_| "0".into());
        let have = parse_set(online.trim()).unwrap_or_default();
        let want = parse_set(m)
            .ok_or_else(|| invalid(format!("--cpuset-mems {m:?}: use a list like 0-3 or 0,1")))?;
        if want.iter().any(|n| !have.contains(n)) {
            return Err(invalid(format!(
                "--cpuset-mems {m}: requested memory nodes are not available, available: {}",
                online.trim()
            )));
        }
    }
    Ok(())
}

/// A cpuset list (`0-3,5`) as numbers.
fn parse_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse().ok()?),
            None => out.push(part.trim().parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether the blkio (v1) or io (v2) controller has one of `files`.
pub(crate) fn blkio_has(v1: &[&str], v2: &str) -> bool {
    let root = Path::new(CGROUP_ROOT);
    if root.join("blkio").is_dir() {
        return v1.iter().any(|f| root.join("blkio").join(f).exists());
    }
    std::fs::read_to_string(root.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == v2))
}

fn check_blkio(o: &mut CreateOptions) -> Result<Vec<String>> {
    let mut w = Vec::new();
    // bad paths fail even where the kernel would drop the limit
    let all = [
        ("--blkio-weight-device", &o.blkio_weight_device),
        ("--device-read-bps", &o.device_read_bps),
        ("--device-write-bps", &o.device_write_bps),
        ("--device-read-iops", &o.device_read_iops),
        ("--device-write-iops", &o.device_write_iops),
    ];
    for (flag, list) in all {
        for d in list {
            block_device(flag, &d.path)?;
        }
    }
    if let Some(b) = o.blkio_weight.filter(|b| *b != 0) {
        if !(10..=1000).contains(&b) {
            return Err(invalid(format!(
                "--blkio-weight {b}: the range of block I/O weight is from 10 to 1000"
            )));
        }
        if !blkio_has(&["blkio.weight", "blkio.bfq.weight"], "io") {
            w.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".into());
            o.blkio_weight = None;
        }
    }
    for d in &o.blkio_weight_device {
        if !(10..=1000).contains(&d.rate) {
            return Err(invalid(format!(
                "--blkio-weight-device {}:{}: the range of block I/O weight is from 10 to 1000",
                d.path, d.rate
            )));
        }
    }
    if !o.blkio_weight_device.is_empty()
        && !blkio_has(&["blkio.weight_device", "blkio.bfq.weight_device"], "io")
    {
        w.push("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.".into());
        o.blkio_weight_device.clear();
    }
    let throttles: [(&mut Vec<DeviceRate>, &str, &str); 4] = [
        (
            &mut o.device_read_bps,
            "blkio.throttle.read_bps_device",
            "BPS Block I/O read limit",
        ),
        (
            &mut o.device_write_bps,
            "blkio.throttle.write_bps_device",
            "BPS Block I/O write limit",
        ),
        (
            &mut o.device_read_iops,
            "blkio.throttle.read_iops_device",
            "IOPS Block I/O read limit",
        ),
        (
            &mut o.device_write_iops,
            "blkio.throttle.write_iops_device",
            "IOPS Block I/O write limit",
        ),
    ];
    for (list, file, what) in throttles {
        if !list.is_empty() && !blkio_has(&[file], "io") {
            w.push(format!("Your kernel does not support {what} or the cgroup is not mounted. {what} discarded."));
            list.clear();
        }
    }
    Ok(w)
}

/// The (major, minor) of a block device, for the blkio flags.
fn block_device(flag: &str, path: &str) -> Result<(i64, i64)> {
    let m = std::fs::metadata(path)
        .map_err(|e| invalid(format!("{flag} {path}: cannot stat the device: {e}")))?;
    if !m.file_type().is_block_device() {
        return Err(invalid(format!(
            "{flag} {path}: not a block device: name one like /dev/sda"
        )));
    }
    Ok(dev_numbers(m.rdev()))
}

fn dev_numbers(rdev: u64) -> (i64, i64) {
    (
        nix::sys::stat::major(rdev) as i64,
        nix::sys::stat::minor(rdev) as i64,
    )
}

/// A `--device-cgroup-rule` (`c 1:3 mr`, `a *:* rwm`) as an allow rule.
pub fn device_rule(r: &str) -> Result<LinuxDeviceCgroup> {
    let bad = || {
        invalid(format!(
            "--device-cgroup-rule {r:?}: invalid rule: use 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 1:3 mr' (TYPE a, b or c; * for any number)"
        ))
    };
    let f: Vec<&str> = r.split_whitespace().collect();
    let [t, nums, access] = f.as_slice() else {
        return Err(bad());
    };
    let typ = match *t {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (ma, mi) = nums.split_once(':').ok_or_else(bad)?;
    let num = |x: &str| -> Result<Option<i64>> {
        if x == "*" {
            Ok(None)
        } else {
            x.parse().map(Some).map_err(|_| bad())
        }
    };
    if access.is_empty() || access.len() > 3 || access.chars().any(|c| !"rwm".contains(c)) {
        return Err(bad());
    }
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(true);
    d.set_typ(Some(typ));
    d.set_major(num(ma)?);
    d.set_minor(num(mi)?);
    d.set_access(Some(access.to_string()));
    Ok(d)
}

/// What [`resolve`] read from the host for the spec.
#[derive(Debug, Default)]
pub struct Resolved {
    /// device nodes to create in the container
    pub devices: Vec<LinuxDevice>,
    /// their allow rules
    pub rules: Vec<LinuxDeviceCgroup>,
    /// block I/O limits with device numbers
    pub block_io: Option<LinuxBlockIo>,
}

/// Reads the host's devices named by the flags (`--device`, the blkio ones).
pub fn resolve(o: &CreateOptions) -> Result<Resolved> {
    let mut r = Resolved::default();
    for d in &o.devices {
        for (host, ctr) in device_nodes(d)? {
            let m = std::fs::metadata(&host)
                .map_err(|e| invalid(format!("--device {}: {e}", host.display())))?;
            let ft = m.file_type();
            let typ = if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            };
            let (major, minor) = dev_numbers(m.rdev());
            let mut dev = LinuxDevice::default();
            dev.set_path(ctr);
            dev.set_typ(typ);
            dev.set_major(major);
            dev.set_minor(minor);
            dev.set_file_mode(Some(m.mode() & 0o777));
            dev.set_uid(Some(m.uid()));
            dev.set_gid(Some(m.gid()));
            r.devices.push(dev);
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(typ));
            rule.set_major(Some(major));
            rule.set_minor(Some(minor));
            rule.set_access(Some(d.permissions.clone()));
            r.rules.push(rule);
        }
    }
    for rule in &o.device_cgroup_rules {
        r.rules.push(device_rule(rule)?);
    }
    r.block_io = block_io(o)?;
    Ok(r)
}

/// The device nodes of one `--device`: the node itself, or every node below a
/// directory (docker's rule), with their paths in the container.
fn device_nodes(d: &DeviceMapping) -> Result<Vec<(PathBuf, PathBuf)>> {
    let host = PathBuf::from(&d.path_on_host);
    let m = std::fs::metadata(&host).map_err(|e| {
        invalid(format!(
            "--device {}: error gathering device information: {e}",
            d.path_on_host
        ))
    })?;
    let ft = m.file_type();
    if ft.is_block_device() || ft.is_char_device() {
        return Ok(vec![(host, PathBuf::from(&d.path_in_container))]);
    }
    if !ft.is_dir() {
        return Err(invalid(format!(
            "--device {}: not a device node or a directory of them",
            d.path_on_host
        )));
    }
    let mut out = Vec::new();
    let mut stack = vec![host.clone()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?;
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_block_device() || ft.is_char_device() {
                let rel = p.strip_prefix(&host).unwrap_or(&p).to_path_buf();
                out.push((p, Path::new(&d.path_in_container).join(rel)));
            }
        }
    }
    if out.is_empty() {
        return Err(invalid(format!(
            "--device {}: the directory holds no device nodes",
            d.path_on_host
        )));
    }
    Ok(out)
}

fn block_io(o: &CreateOptions) -> Result<Option<LinuxBlockIo>> {
    let throttle = |flag: &str, list: &[DeviceRate]| -> Result<Option<Vec<LinuxThrottleDevice>>> {
        let mut v = Vec::new();
        for d in list {
            let (major, minor) = block_device(flag, &d.path)?;
            v.push(
                LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(d.rate)
                    .build()
                    .map_err(|e| invalid(format!("{flag}: {e}")))?,
            );
        }
        Ok((!v.is_empty()).then_some(v))
    };
    let mut weights = Vec::new();
    for d in &o.blkio_weight_device {
        let (major, minor) = block_device("--blkio-weight-device", &d.path)?;
        weights.push(
            LinuxWeightDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .weight(d.rate as u16)
                .build()
                .map_err(|e| invalid(format!("--blkio-weight-device: {e}")))?,
        );
    }
    let mut b = LinuxBlockIo::default();
    b.set_weight(o.blkio_weight.filter(|w| *w != 0));
    b.set_weight_device((!weights.is_empty()).then_some(weights));
    b.set_throttle_read_bps_device(throttle("--device-read-bps", &o.device_read_bps)?);
    b.set_throttle_write_bps_device(throttle("--device-write-bps", &o.device_write_bps)?);
    b.set_throttle_read_iops_device(throttle("--device-read-iops", &o.device_read_iops)?);
    b.set_throttle_write_iops_device(throttle("--device-write-iops", &o.device_write_iops)?);
    Ok((b != LinuxBlockIo::default()).then_some(b))
}

/// Writes the flags into the spec (namespaces, mounts, sysctls, devices, limits).
pub fn apply(spec: &mut Spec, o: &CreateOptions, id: &str, dir: &Path, host: Resolved) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    namespaces(&mut linux, o);
    if o.uts_mode.as_deref() == Some("host") {
        spec.set_hostname(None);
    }
    spec.set_domainname(o.domainname.clone());
    if let Some(p) = o.cgroup_parent.as_deref().filter(|p| !p.is_empty()) {
        let parent = p.trim_matches('/');
        linux.set_cgroups_path(Some(PathBuf::from(format!("/{parent}/{id}"))));
    }
    if !o.sysctls.is_empty() {
        linux.set_sysctl(Some(o.sysctls.clone().into_iter().collect()));
    }
    if !host.devices.is_empty() {
        let mut d = linux.devices().clone().unwrap_or_default();
        d.extend(host.devices);
        linux.set_devices(Some(d));
    }
    let mut res = linux.resources().clone().unwrap_or_default();
    if !host.rules.is_empty() {
        let mut rules = res.devices().clone().unwrap_or_default();
        rules.extend(host.rules);
        res.set_devices(Some(rules));
    }
    limits(&mut res, o);
    if host.block_io.is_some() {
        res.set_block_io(host.block_io);
    }
    linux.set_resources(Some(res));
    spec.set_linux(Some(linux));
    if let Some(adj) = o.oom_score_adj {
        if let Some(mut p) = spec.process().clone() {
            p.set_oom_score_adj(Some(adj));
            spec.set_process(Some(p));
        }
    }
    if !o.annotations.is_empty() {
        let mut a = spec.annotations().clone().unwrap_or_default();
        a.extend(o.annotations.clone());
        spec.set_annotations(Some(a));
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    shm_mount(&mut mounts, o, dir);
    spec.set_mounts(Some(mounts));
}

/// The namespaces shared with the host (`host` modes) are not made; those of
/// another container are joined at start ([`Engine::join_namespaces`]).
fn namespaces(linux: &mut oci_spec::runtime::Linux, o: &CreateOptions) {
    let host = |m: &Option<String>| m.as_deref() == Some("host");
    let shared = [
        (LinuxNamespaceType::Pid, host(&o.pid_mode)),
        (LinuxNamespaceType::Ipc, host(&o.ipc_mode)),
        (LinuxNamespaceType::Uts, host(&o.uts_mode)),
        (LinuxNamespaceType::Cgroup, host(&o.cgroupns_mode)),
    ];
    let mut ns = linux.namespaces().clone().unwrap_or_default();
    ns.retain(|n| !shared.iter().any(|(t, on)| *on && n.typ() == *t));
    linux.set_namespaces(Some(ns));
}

/// The memory and CPU limits beyond `-m`, `--cpus` and `--cpu-shares`.
fn limits(res: &mut oci_spec::runtime::LinuxResources, o: &CreateOptions) {
    if o.memory_reservation.is_some() || o.memory_swappiness.is_some() || o.oom_kill_disable {
        let mut m = res.memory().unwrap_or_default();
        m.set_reservation(o.memory_reservation);
        m.set_swappiness(o.memory_swappiness);
        if o.oom_kill_disable {
            m.set_disable_oom_killer(Some(true));
        }
        res.set_memory(Some(m));
    }
    let cpu_set = o.cpu_period.is_some()
        || o.cpu_quota.is_some()
        || o.cpu_rt_period.is_some()
        || o.cpu_rt_runtime.is_some()
        || o.cpuset_mems.is_some();
    if cpu_set {
        let mut c = res.cpu().clone().unwrap_or_default();
        if o.cpu_period.is_some() {
            c.set_period(o.cpu_period);
        }
        if o.cpu_quota.is_some() {
            c.set_quota(o.cpu_quota);
        }
        c.set_realtime_period(o.cpu_rt_period);
        c.set_realtime_runtime(o.cpu_rt_runtime);
        c.set_mems(o.cpuset_mems.clone());
        res.set_cpu(Some(c));
    }
}

/// `/dev/shm`: a tmpfs of `--shm-size` (docker's 64m by default); the host's with
/// `--ipc host`; none with `--ipc none`; with `--ipc shareable` the tmpfs the engine
/// mounts in the container directory ([`mount_shareable_shm`]), which a
/// `container:NAME` one binds at start.
fn shm_mount(mounts: &mut Vec<oci_spec::runtime::Mount>, o: &CreateOptions, dir: &Path) {
    let shm = Path::new("/dev/shm");
    match o.ipc_mode.as_deref() {
        Some("shareable") => {
            mounts.retain(|m| m.destination() != shm);
            mounts.push(berth_runtime::spec::mount(
                "/dev/shm",
                "bind",
                &dir.join(SHM_DIR),
                &["rbind", "rprivate"],
            ));
        }
        Some("none") => mounts.retain(|m| m.destination() != shm),
        Some("host") => {
            mounts.retain(|m| m.destination() != shm);
            mounts.push(berth_runtime::spec::mount(
                "/dev/shm",
                "bind",
                shm,
                &["rbind", "rprivate"],
            ));
        }
        _ => {
            let size = format!(
                "size={}",
                o.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE)
            );
            for m in mounts.iter_mut().filter(|m| m.destination() == shm) {
                let mut opts: Vec<String> = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| !x.starts_with("size="))
                    .collect();
                opts.push(size.clone());
                m.set_options(Some(opts));
            }
        }
    }
}

/// The shareable `/dev/shm` of `--ipc shareable`, in the container directory.
pub const SHM_DIR: &str = "shm";

/// Mounts the tmpfs of a `--ipc shareable` container (on the host, so that others
/// can bind it; docker does the same); taken down with the container.
pub(crate) fn mount_shareable_shm(dir: &ContainerDir, o: &CreateOptions) -> Result<()> {
    if o.ipc_mode.as_deref() != Some("shareable") {
        return Ok(());
    }
    let p = dir.dir.join(SHM_DIR);
    if crate::rootfs::is_mounted(&p) {
        return Ok(());
    }
    std::fs::create_dir_all(&p).map_err(|e| Error::io("create directory", &p, e))?;
    use nix::mount::MsFlags;
    let size = o.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE);
    nix::mount::mount(
        Some("shm"),
        &p,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={size}").as_str()),
    )
    .map_err(|e| {
        Error::sys(
            format!("mount the shareable /dev/shm on {}", p.display()),
            e,
        )
    })
}

/// The parent cgroup (relative to the v1 cpu hierarchy) of a container.
fn parent_cgroup(o: &CreateOptions) -> PathBuf {
    match o.cgroup_parent.as_deref().map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("berth"),
    }
}

/// `--cpu-rt-runtime`: a cgroup gets real-time time only from its parent's budget,
/// which is 0 for a new cgroup; docker hands it out with its daemon's
/// `--cpu-rt-runtime`. Here each ancestor's budget grows, at start, to what its
/// children hold plus this container's share (capped by the host's own budget,
/// whose refusal is the error).
fn grant_rt_budget(o: &CreateOptions, runtime: i64) -> Result<()> {
    let cpu = Path::new(CGROUP_ROOT).join("cpu");
    let read = |p: &Path, f: &str| -> i64 {
        std::fs::read_to_string(p.join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let period = o.cpu_rt_period.unwrap_or(1_000_000).max(1) as f64;
    let share = runtime as f64 / period;
    // from the top down: each level needs its children's shares plus ours
    let parent = parent_cgroup(o);
    let mut dir = cpu.clone();
    for comp in parent.components() {
        dir.push(comp);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create cgroup", &dir, e))?;
        let mut used = share;
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let p = e.path();
                let per = read(&p, "cpu.rt_period_us").max(1) as f64;
                used += read(&p, "cpu.rt_runtime_us").max(0) as f64 / per;
            }
        }
        let per = read(&dir, "cpu.rt_period_us").max(1) as f64;
        let need = (used * per).ceil() as i64;
        if read(&dir, "cpu.rt_runtime_us") < need {
            let f = dir.join("cpu.rt_runtime_us");
            std::fs::write(&f, need.to_string()).map_err(|e| {
                invalid(format!(
                    "--cpu-rt-runtime {runtime}: the real-time budget of cgroup {} cannot grow to {need}us: {e}; ask for less, or free real-time time on the host",
                    dir.display()
                ))
            })?;
        }
    }
    Ok(())
}

/// docker's legacy link variables for the link named `name` (`/me/alias`) to a
/// container at `ip` with `exposed` ports (`80/tcp`) and environment `env`:
/// `ALIAS_NAME`, `ALIAS_PORT` (the lowest port), `ALIAS_PORT_<P>_<PROTO>[_ADDR|_PORT|_PROTO]`
/// and `ALIAS_ENV_<K>` (its variables but HOME and PATH, and those berth adds).
pub fn link_env(name: &str, ip: IpAddr, exposed: &[String], env: &[String]) -> Vec<String> {
    let alias = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .to_uppercase()
        .replace('-', "_");
    let mut ports: Vec<(u16, String)> = exposed
        .iter()
        .filter_map(|e| {
            let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            Some((p.parse().ok()?, proto.to_string()))
        })
        .collect();
    ports.sort();
    let mut out = Vec::new();
    if let Some((p, proto)) = ports.first() {
        out.push(format!("{alias}_PORT={proto}://{ip}:{p}"));
    }
    for (p, proto) in &ports {
        let k = format!("{alias}_PORT_{p}_{}", proto.to_uppercase());
        out.push(format!("{k}={proto}://{ip}:{p}"));
        out.push(format!("{k}_ADDR={ip}"));
        out.push(format!("{k}_PORT={p}"));
        out.push(format!("{k}_PROTO={proto}"));
    }
    out.push(format!("{alias}_NAME={name}"));
    for e in env {
        let Some((k, v)) = e.split_once('=') else {
            continue;
        };
        if !matches!(k, "HOME" | "PATH" | "HOSTNAME" | "TERM") {
            out.push(format!("{alias}_ENV_{k}={v}"));
        }
    }
    out
}

/// The link variables into the bundle's environment, replacing those of the
/// previous start (their names are kept in `link-env`); the container's own
/// variables win over a link's, as in docker.
fn set_link_env(dir: &ContainerDir, vars: &[String]) -> Result<()> {
    let keys_file = dir.dir.join("link-env");
    let before: Vec<String> = crate::record::read_json(&keys_file).unwrap_or_default();
    if before.is_empty() && vars.is_empty() {
        return Ok(());
    }
    let p = dir.bundle().join("config.json");
    let mut spec: serde_json::Value = crate::record::read_json(&p)?;
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let Some(env) = spec
        .pointer_mut("/process/env")
        .and_then(|v| v.as_array_mut())
    else {
        return Ok(());
    };
    env.retain(|e| !before.contains(&key(e.as_str().unwrap_or(""))));
    let own: Vec<String> = env.iter().filter_map(|e| e.as_str().map(key)).collect();
    let mut written = Vec::new();
    for v in vars {
        let k = key(v);
        if !own.contains(&k) && !written.contains(&k) {
            env.push(serde_json::Value::from(v.clone()));
            written.push(k);
        }
    }
    crate::record::write_json(&p, &spec)?;
    crate::record::write_json(&keys_file, &written)
}

/// The supplementary groups of `--group-add`: numbers as they are, names looked up
/// in the image's `/etc/group`.
pub fn group_ids(rootfs: &Path, groups: &[String]) -> Result<Vec<u32>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let file = crate::user::read_rootfs_file(rootfs, "etc/group");
    groups
        .iter()
        .map(|g| {
            if let Ok(n) = g.parse::<u32>() {
                return Ok(n);
            }
            file.lines()
                .filter(|l| !l.starts_with('#'))
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())?
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "--group-add {g}: unable to find group {g}: no matching entries in the image's /etc/group; give a number or a group the image has"
                    ))
                })
        })
        .collect()
}

impl Engine {
    /// `--link NAME:ALIAS` at start: `/etc/hosts` entries (alias and name) for the
    /// linked container's address on a network this container joins (it must
    /// run), and docker's link variables in the environment ([`link_env`]).
    pub(crate) fn link_hosts(&self, rec: &crate::Record) -> Result<Vec<(String, IpAddr)>> {
        let mut out = Vec::new();
        let mut env = Vec::new();
        for l in &rec.options.links {
            let (name, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let s = self.inspect(name)?;
            if s.state != crate::State::Running {
                return Err(Error::Conflict(format!(
                    "cannot link to a non running container: /{} AS /{}/{alias}: start it first",
                    s.record.name, rec.name
                )));
            }
            let theirs = self.container_network(&s.record);
            let ip = theirs
                .attachments
                .iter()
                .filter(|a| rec.options.endpoints.iter().any(|e| e.network == a.network))
                .find_map(|a| a.ip)
                .ok_or_else(|| {
                    invalid(format!(
                        "--link {name}: that container is on no network of this one: connect both to one network"
                    ))
                })?;
            out.push((alias.to_string(), IpAddr::V4(ip)));
            if alias != s.record.name {
                out.push((s.record.name.clone(), IpAddr::V4(ip)));
            }
            let theirs = self.runtime_spec(&s.record.id).unwrap_or_default();
            let their_env: Vec<String> = theirs["process"]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            env.extend(link_env(
                &format!("/{}/{alias}", rec.name),
                IpAddr::V4(ip),
                &s.record.options.expose,
                &their_env,
            ));
        }
        set_link_env(&self.dir(&rec.id), &env)?;
        Ok(out)
    }

    /// `--pid`/`--ipc container:NAME` at create: the container must exist; the
    /// mode then names it by id, as docker records it.
    pub(crate) fn resolve_shared_modes(&self, o: &mut CreateOptions) -> Result<()> {
        for l in &mut o.links {
            let (name, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let (name, alias) = (name.to_string(), alias.to_string());
            self.inspect(&name).map_err(|e| match e {
                Error::NotFound(_) => invalid(format!(
                    "--link {name}: could not get container for {name}: no such container"
                )),
                e => e,
            })?;
            *l = format!("{name}:{alias}");
        }
        for (flag, mode) in [("--pid", &mut o.pid_mode), ("--ipc", &mut o.ipc_mode)] {
            let Some(name) = container_of(mode.as_deref()).map(String::from) else {
                continue;
            };
            let s = self.inspect(&name).map_err(|e| match e {
                Error::NotFound(_) => Error::Invalid(format!(
                    "{flag} container:{name}: no such container: {name}"
                )),
                e => e,
            })?;
            if flag == "--ipc"
                && s.record.options.ipc_mode.as_deref() != Some("shareable")
                && s.record.options.ipc_mode.as_deref() != Some("host")
            {
                return Err(invalid(format!(
                    "--ipc container:{name}: its IPC namespace is not shareable: create that container with --ipc shareable"
                )));
            }
            *mode = Some(format!("container:{}", s.record.id));
        }
        Ok(())
    }

    /// Before each start: the namespaces of `--pid`/`--ipc container:ID` are those of
    /// that container's running process (and its `/dev/shm`).
    pub(crate) fn join_namespaces(&self, dir: &ContainerDir, o: &CreateOptions) -> Result<()> {
        mount_shareable_shm(dir, o)?;
        if let Some(rt) = o.cpu_rt_runtime.filter(|r| *r > 0) {
            grant_rt_budget(o, rt)?;
        }
        let pid = container_of(o.pid_mode.as_deref());
        let ipc = container_of(o.ipc_mode.as_deref());
        if pid.is_none() && ipc.is_none() {
            return Ok(());
        }
        let p = dir.bundle().join("config.json");
        let mut spec: serde_json::Value = crate::record::read_json(&p)?;
        for (what, other) in [("pid", pid), ("ipc", ipc)] {
            let Some(other) = other else { continue };
            let s = self.inspect(other)?;
            let pid = match (s.state, s.record.pid) {
                (crate::State::Running, Some(pid)) => pid,
                _ => {
                    return Err(Error::Conflict(format!(
                        "cannot join the {} namespace of container {}: it is not running: start it first",
                        what.to_uppercase(),
                        &other[..other.len().min(12)]
                    )))
                }
            };
            let path = format!("/proc/{pid}/ns/{what}");
            if let Some(list) = spec
                .pointer_mut("/linux/namespaces")
                .and_then(|v| v.as_array_mut())
            {
                for n in list.iter_mut().filter(|n| n["type"] == what) {
                    n["path"] = serde_json::Value::from(path.clone());
                }
            }
            if what == "ipc" {
                // the donor's shareable /dev/shm, as mounted on the host
                let theirs = self.dir(&s.record.id);
                mount_shareable_shm(&theirs, &s.record.options)?;
                if let Some(list) = spec.pointer_mut("/mounts").and_then(|v| v.as_array_mut()) {
                    list.retain(|m| m["destination"] != "/dev/shm");
                    if s.record.options.ipc_mode.as_deref() != Some("host") {
                        list.push(serde_json::json!({
                            "destination": "/dev/shm", "type": "bind",
                            "source": theirs.dir.join(SHM_DIR),
                            "options": ["rbind", "rprivate"],
                        }));
                    } else {
                        list.push(serde_json::json!({
                            "destination": "/dev/shm", "type": "bind",
                            "source": "/dev/shm", "options": ["rbind", "rprivate"],
                        }));
                    }
                }
            }
        }
        crate::record::write_json(&p, &spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CreateOptions {
        CreateOptions {
            image: "i".into(),
            ..Default::default()
        }
    }

    #[test]
    fn modes_follow_docker() {
        for (pid, ok) in [
            ("host", true),
            ("container:x", true),
            ("container:", false),
            ("vm", false),
        ] {
            let mut o = CreateOptions {
                pid_mode: Some(pid.into()),
                ..opts()
            };
            assert_eq!(check(&mut o).is_ok(), ok, "{pid}");
        }
        let mut o = CreateOptions {
            ipc_mode: Some("weird".into()),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        let mut o = CreateOptions {
            uts_mode: Some("host".into()),
            hostname: Some("h".into()),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        let mut o = CreateOptions {
            oom_score_adj: Some(1001),
            ..opts()
        };
        assert!(check(&mut o).is_err());
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        let with = |k: &str, net: NetworkMode, ipc: Option<&str>| {
            let mut o = CreateOptions {
                sysctls: [(k.to_string(), "1".to_string())].into(),
                network: net,
                ipc_mode: ipc.map(String::from),
                ..opts()
            };
            check(&mut o).is_ok()
        };
        assert!(with("net.ipv4.ip_forward", NetworkMode::Bridge, None));
        assert!(!with("net.ipv4.ip_forward", NetworkMode::Host, None));
        assert!(with("kernel.shmmax", NetworkMode::None, None));
        assert!(!with("kernel.shmmax", NetworkMode::None, Some("host")));
        assert!(with("fs.mqueue.msg_max", NetworkMode::None, None));
        assert!(!with("kernel.hostname", NetworkMode::None, None));
        assert!(!with("vm.swappiness", NetworkMode::None, None));
    }

    #[test]
    fn device_rules_parse() {
        let r = device_rule("c 1:3 mr").expect("rule");
        assert_eq!((r.major(), r.minor()), (Some(1), Some(3)));
        let r = device_rule("a *:* rwm").expect("any");
        assert_eq!(r.major(), None);
        for bad in ["c 1:3", "x 1:3 r", "c a:3 r", "c 1:3 rwx"] {
            assert!(device_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_checks() {
        let mut o = CreateOptions {
            cpus: Some(1.0),
            cpu_period: Some(100_000),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        let mut o = CreateOptions {
            cpu_period: Some(10),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        let mut o = CreateOptions {
            memory_reservation: Some(1 << 20),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        let mut o = CreateOptions {
            memory: Some(8 << 20),
            memory_reservation: Some(16 << 20),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        let mut o = CreateOptions {
            memory_swappiness: Some(101),
            ..opts()
        };
        assert!(check(&mut o).is_err());
        assert_eq!(parse_set("0-2,5"), Some(vec![0, 1, 2, 5]));
    }

    #[test]
    fn spec_gets_namespaces_shm_and_annotations() {
        let o = CreateOptions {
            pid_mode: Some("host".into()),
            ipc_mode: Some("none".into()),
            uts_mode: Some("host".into()),
            cgroup_parent: Some("/mine".into()),
            annotations: [("a".to_string(), "b".to_string())].into(),
            oom_score_adj: Some(200),
            ..opts()
        };
        let mut s = Spec::default();
        apply(&mut s, &o, "abc", Path::new("/c"), Resolved::default());
        let l = s.linux().as_ref().expect("linux");
        let ns = l.namespaces().as_ref().expect("ns");
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Ipc));
        assert_eq!(l.cgroups_path().as_deref(), Some(Path::new("/mine/abc")));
        assert!(!s
            .mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .any(|m| m.destination() == Path::new("/dev/shm")));
        assert_eq!(
            s.annotations()
                .as_ref()
                .and_then(|a| a.get("a"))
                .map(String::as_str),
            Some("b")
        );
        assert_eq!(
            s.process().as_ref().and_then(|p| p.oom_score_adj()),
            Some(200)
        );
        let o = CreateOptions {
            shm_size: Some(1 << 20),
            ..opts()
        };
        let mut s = Spec::default();
        apply(&mut s, &o, "abc", Path::new("/c"), Resolved::default());
        let shm = s
            .mounts()
            .as_ref()
            .and_then(|m| {
                m.iter()
                    .find(|m| m.destination() == Path::new("/dev/shm"))
                    .cloned()
            })
            .expect("shm");
        assert!(shm
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "size=1048576")));
    }

    #[test]
    fn link_variables_follow_docker() {
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        let env = link_env(
            "/web/my-db",
            ip,
            &["5432/tcp".into(), "80/tcp".into()],
            &["PATH=/bin".into(), "PGDATA=/data".into()],
        );
        assert_eq!(
            env,
            [
                "MY_DB_PORT=tcp://10.0.0.5:80",
                "MY_DB_PORT_80_TCP=tcp://10.0.0.5:80",
                "MY_DB_PORT_80_TCP_ADDR=10.0.0.5",
                "MY_DB_PORT_80_TCP_PORT=80",
                "MY_DB_PORT_80_TCP_PROTO=tcp",
                "MY_DB_PORT_5432_TCP=tcp://10.0.0.5:5432",
                "MY_DB_PORT_5432_TCP_ADDR=10.0.0.5",
                "MY_DB_PORT_5432_TCP_PORT=5432",
                "MY_DB_PORT_5432_TCP_PROTO=tcp",
                "MY_DB_NAME=/web/my-db",
                "MY_DB_ENV_PGDATA=/data",
            ]
        );
    }

    #[test]
    fn groups_resolve_in_the_image() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(d.path().join("etc")).expect("etc");
        std::fs::write(d.path().join("etc/group"), "root:x:0:\naudio:x:29:\n").expect("group");
        let g = group_ids(d.path(), &["audio".into(), "1234".into()]).expect("groups");
        assert_eq!(g, [29, 1234]);
        assert!(group_ids(d.path(), &["nosuch".into()]).is_err());
    }
}
