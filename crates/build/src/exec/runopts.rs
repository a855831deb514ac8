//! What `docker build`'s container flags ask of every RUN container: extra
//! `/etc/hosts` lines, the build's network mode, cgroup limits (memory, swap,
//! CPU shares, CFS period and quota, cpuset), a cgroup parent, the `/dev/shm`
//! size, rlimits and security options (seccomp, no-new-privileges).
//!
//! [`RunOptions::check`] refuses values this machine cannot honour before the
//! build starts (a hard rlimit above ours without CAP_SYS_RESOURCE, CPUs or
//! memory nodes it does not have); [`RunOptions::apply`] writes them into a
//! RUN container's OCI spec.
//!
//! ```
//! use berth_build::exec::runopts::RunOptions;
//! let mut o = RunOptions::default();
//! o.memory = Some(64 << 20);
//! o.ulimits.push(RunOptions::ulimit("nofile", 512, 512).unwrap());
//! o.check().unwrap();
//! ```

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpu, LinuxMemory, LinuxSeccomp, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Spec,
};

use crate::ast::NetworkMode;

use super::{ExecError, Result};

/// The seccomp profile of the RUN containers.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// berth's default profile, as the engine's containers get
    /// (`berth_runtime::default_seccomp`).
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=<profile>`: a docker (or OCI) profile.
    Profile(Box<LinuxSeccomp>),
}

/// The container options of a build, applied to each RUN container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// `--add-host`: (name, address) lines added to the RUN containers'
    /// `/etc/hosts` (never to the image's).
    pub extra_hosts: Vec<(String, String)>,
    /// `--network`: the mode of every RUN without its own `--network=`
    /// (`None`: berth's default, an isolated network namespace).
    pub network: Option<NetworkMode>,
    /// `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--memory-swap`: memory plus swap, bytes; -1 unlimited.
    pub memory_swap: Option<i64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpu-period`, microseconds.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`, microseconds.
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--shm-size`, bytes.
    pub shm_size: Option<u64>,
    /// `--ulimit`s.
    pub ulimits: Vec<PosixRlimit>,
    /// `--cgroup-parent`: the RUN containers' cgroups go under it (instead
    /// of `berth/`); it is left in place afterwards, as docker does.
    pub cgroup_parent: Option<String>,
    /// `--security-opt seccomp=…`.
    pub seccomp: Seccomp,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
}

fn invalid(msg: String) -> ExecError {
    ExecError::Invalid(msg)
}

impl RunOptions {
    /// An rlimit from docker's `--ulimit` parts (`-1`: unlimited).
    pub fn ulimit(name: &str, soft: i64, hard: i64) -> Result<PosixRlimit> {
        let bad = |why: &str| invalid(format!("--ulimit {name}={soft}:{hard}: {why}"));
        let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(format!(
            "RLIMIT_{}",
            name.to_ascii_uppercase()
        )))
        .map_err(|_| {
            bad("unknown limit name (use core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending or stack)")
        })?;
        let val = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
        let (soft, hard) = (val(soft), val(hard));
        if soft > hard {
            return Err(bad("the soft limit is above the hard limit"));
        }
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(|e| bad(&e.to_string()))
    }

    /// `--add-host NAME:IP` (or `NAME=IP`; `[IPv6]` brackets allowed).
    pub fn add_host(&mut self, spec: &str) -> Result<()> {
        let (name, ip) = spec
            .split_once('=')
            .or_else(|| spec.split_once(':'))
            .filter(|(n, _)| !n.is_empty() && !n.contains(':'))
            .ok_or_else(|| invalid(format!("bad format for add-host: {spec:?}: use NAME:IP")))?;
        let ip = ip
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .unwrap_or(ip);
        if ip == "host-gateway" {
            return Err(invalid(format!(
                "--add-host {spec}: host-gateway is not supported for builds (RUN containers have no bridge): give an IP address"
            )));
        }
        let addr: std::net::IpAddr = ip.parse().map_err(|_| {
            invalid(format!(
                "invalid IP address in add-host: {ip:?} (in {spec:?})"
            ))
        })?;
        self.extra_hosts.push((name.to_string(), addr.to_string()));
        Ok(())
    }

    /// One `--security-opt`: `seccomp=unconfined`, `seccomp=<profile JSON>`,
    /// `no-new-privileges[=true|false]`. A profile given as a path is read
    /// by the caller (this takes its text).
    pub fn security_opt(&mut self, opt: &str) -> Result<()> {
        let (k, v) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (k, v) {
            ("seccomp", Some("unconfined")) => self.seccomp = Seccomp::Unconfined,
            ("seccomp", Some(text)) if text.trim_start().starts_with('{') => {
                self.seccomp = Seccomp::Profile(Box::new(seccomp_profile(text)?));
            }
            ("no-new-privileges", None | Some("true")) => self.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => self.no_new_privileges = false,
            _ => {
                let shown: String = opt.chars().take(60).collect();
                return Err(invalid(format!(
                    "--security-opt {shown:?} is not supported for builds: use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges"
                )));
            }
        }
        Ok(())
    }

    /// Refuse what this machine cannot honour, before the build starts.
    pub fn check(&self) -> Result<()> {
        if let Some(m) = self.memory {
            if m < 6 << 20 {
                return Err(invalid(format!(
                    "--memory {m}: the minimum memory limit allowed is 6MB"
                )));
            }
        }
        match (self.memory, self.memory_swap) {
            (None, Some(s)) if s != -1 => {
                return Err(invalid(
                    "--memory-swap needs --memory as well: set both (or --memory-swap -1)".into(),
                ))
            }
            (Some(m), Some(s)) if s != -1 && s < m => {
                return Err(invalid(format!(
                    "--memory-swap {s} is below --memory {m}: it is memory plus swap, so at least the memory limit (or -1 for unlimited swap)"
                )))
            }
            _ => {}
        }
        if self.memory_swap.is_some_and(|s| s != -1) {
            let v1 = Path::new("/sys/fs/cgroup/memory");
            if v1.is_dir() && !v1.join("memory.memsw.limit_in_bytes").exists() {
                return Err(invalid(
                    "--memory-swap: swap accounting is off on this machine (no memory.memsw.limit_in_bytes): boot with swapaccount=1, or leave --memory-swap unset".into(),
                ));
            }
        }
        if let Some(p) = self.cpu_period {
            if !(1000..=1_000_000).contains(&p) {
                return Err(invalid(format!(
                    "--cpu-period {p}: CPU CFS period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                )));
            }
        }
        if let Some(q) = self.cpu_quota {
            if q != -1 && q < 1000 {
                return Err(invalid(format!(
                    "--cpu-quota {q}: CPU CFS quota can not be less than 1ms (i.e. 1000)"
                )));
            }
        }
        for (flag, v, online) in [
            (
                "--cpuset-cpus",
                &self.cpuset_cpus,
                "/sys/devices/system/cpu/online",
            ),
            (
                "--cpuset-mems",
                &self.cpuset_mems,
                "/sys/devices/system/node/online",
            ),
        ] {
            if let Some(v) = v {
                check_cpuset(flag, v, Path::new(online))?;
            }
        }
        if self.shm_size == Some(0) {
            return Err(invalid("--shm-size: the size must be above 0".into()));
        }
        if let Some(p) = &self.cgroup_parent {
            cgroup_parent(p)?;
        }
        berth_runtime::spec::check_rlimits(&self.ulimits).map_err(|e| {
            invalid(format!(
                "--ulimit: {}",
                e.to_string().trim_start_matches("process.rlimits: ")
            ))
        })?;
        if let Seccomp::Profile(p) = &self.seccomp {
            berth_runtime::spec::check_seccomp(p)
                .map_err(|e| invalid(format!("--security-opt seccomp: {e}")))?;
        }
        Ok(())
    }

    /// The network a RUN gets: its own `--network=` (none, host) wins;
    /// `default` (or none given) is the build's `--network`.
    pub fn network_for(&self, run: NetworkMode) -> NetworkMode {
        match run {
            NetworkMode::Default => self.network.unwrap_or(NetworkMode::Default),
            other => other,
        }
    }

    /// The RUN container's cgroup path for container `id`.
    pub fn cgroups_path(&self, id: &str) -> PathBuf {
        match self.cgroup_parent.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => PathBuf::from(format!("{p}/{id}")),
            _ => PathBuf::from(format!("berth/{id}")),
        }
    }

    /// Write the limits and security options into a RUN container's spec.
    pub fn apply(&self, spec: &mut Spec) -> Result<()> {
        if let Some(p) = spec.process().clone() {
            let mut p = p;
            if !self.ulimits.is_empty() {
                p.set_rlimits(Some(self.ulimits.clone()));
            }
            if self.no_new_privileges {
                p.set_no_new_privileges(Some(true));
            }
            spec.set_process(Some(p));
        }
        if let Some(size) = self.shm_size {
            if let Some(mut mounts) = spec.mounts().clone() {
                for m in mounts
                    .iter_mut()
                    .filter(|m| m.destination() == Path::new("/dev/shm"))
                {
                    let mut o = m.options().clone().unwrap_or_default();
                    o.retain(|x| !x.starts_with("size="));
                    o.push(format!("size={size}"));
                    m.set_options(Some(o));
                }
                spec.set_mounts(Some(mounts));
            }
        }
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut res = linux.resources().clone().unwrap_or_default();
        if self.memory.is_some() || self.memory_swap.is_some() {
            let mut mem = LinuxMemory::default();
            mem.set_limit(self.memory);
            mem.set_swap(self.memory_swap);
            res.set_memory(Some(mem));
        }
        let cpu_set = self.cpu_shares.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if cpu_set {
            let mut cpu = LinuxCpu::default();
            // (the kernel's range, to which docker moves other values)
            cpu.set_shares(self.cpu_shares.map(|s| s.clamp(2, 262_144)));
            cpu.set_period(self.cpu_period);
            cpu.set_quota(self.cpu_quota);
            cpu.set_cpus(self.cpuset_cpus.clone());
            cpu.set_mems(self.cpuset_mems.clone());
            res.set_cpu(Some(cpu));
        }
        linux.set_resources(Some(res));
        match &self.seccomp {
            Seccomp::Profile(p) => linux.set_seccomp(Some((**p).clone())),
            // the engine's containers' default (docker's classic builder gives RUN
            // containers its default profile too)
            Seccomp::Default => linux.set_seccomp(Some(
                berth_runtime::default_seccomp::default_profile().map_err(invalid)?,
            )),
            Seccomp::Unconfined => linux.set_seccomp(None),
        };
        spec.set_linux(Some(linux));
        Ok(())
    }
}

/// A cgroup parent: a relative or absolute cgroupfs path without `..`.
fn cgroup_parent(p: &str) -> Result<()> {
    let bad = p.split('/').any(|c| c == ".." || c == ".")
        || p.contains(':')
        || p.trim_matches('/').is_empty()
        || p.chars().any(|c| c.is_control());
    if bad {
        return Err(invalid(format!(
            "--cgroup-parent {p:?}: use a cgroupfs path such as /mybuilds or builds/ci (no '..', no systemd slice:prefix:name)"
        )));
    }
    Ok(())
}

/// The numbers of a cpuset list (`0-2,4`), or None when it is malformed.
fn cpuset_numbers(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// A cpuset list that parses and names only what `online` lists.
fn check_cpuset(flag: &str, v: &str, online: &Path) -> Result<()> {
    let want = cpuset_numbers(v).ok_or_else(|| {
        invalid(format!(
            "invalid value {v:?} for {flag}: use a list such as 0-3 or 0,1"
        ))
    })?;
    let have = std::fs::read_to_string(online)
        .ok()
        .and_then(|s| cpuset_numbers(&s));
    if let Some(have) = have {
        if let Some(n) = want.iter().find(|n| !have.contains(n)) {
            let avail = std::fs::read_to_string(online).unwrap_or_default();
            return Err(invalid(format!(
                "{flag} {v}: requested {n} is not available - available: {}",
                avail.trim()
            )));
        }
    }
    Ok(())
}

/// docker's capability names this process's RUN containers have.
fn default_caps() -> Vec<String> {
    berth_runtime::features::DOCKER_DEFAULT_CAPS
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// The host's architecture as seccomp and docker's profiles name it.
fn host_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("SCMP_ARCH_X86_64", "amd64"),
        "aarch64" => ("SCMP_ARCH_AARCH64", "arm64"),
        "x86" => ("SCMP_ARCH_X86", "386"),
        "arm" => ("SCMP_ARCH_ARM", "arm"),
        "s390x" => ("SCMP_ARCH_S390X", "s390x"),
        "powerpc64" => ("SCMP_ARCH_PPC64LE", "ppc64le"),
        other => ("", other),
    }
}

/// Whether a docker profile's `includes`/`excludes` condition holds here
/// (`caps`, `arches`; `minKernel` is taken as met: berth needs a recent kernel).
fn condition(v: &serde_json::Value, caps: &[String], arch: &str) -> (bool, bool) {
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (c, a) = (list("caps"), list("arches"));
    let all = c.iter().all(|x| caps.contains(x)) && (a.is_empty() || a.iter().any(|x| x == arch));
    let any = c.iter().any(|x| caps.contains(x)) || a.iter().any(|x| x == arch);
    (all, any)
}

/// A seccomp profile: docker's format (`archMap`, `includes`/`excludes`
/// conditions on capabilities and architectures, `name`) or OCI's, as the
/// OCI `linux.seccomp` of the RUN containers.
pub fn seccomp_profile(text: &str) -> Result<LinuxSeccomp> {
    let bad = |why: String| invalid(format!("--security-opt seccomp: {why}"));
    let mut v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("the profile is not JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| bad("the profile must be a JSON object".into()))?;
    let (scmp_arch, arch) = host_arch();
    if let Some(map) = obj.remove("archMap") {
        if !obj.contains_key("architectures") {
            let mut arches = Vec::new();
            for e in map.as_array().into_iter().flatten() {
                if e["architecture"] == scmp_arch {
                    arches.push(e["architecture"].clone());
                    arches.extend(
                        e["subArchitectures"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
            }
            obj.insert("architectures".into(), arches.into());
        }
    }
    let caps = default_caps();
    if let Some(calls) = obj.get_mut("syscalls").and_then(|s| s.as_array_mut()) {
        calls.retain(|c| {
            let inc = c
                .get("includes")
                .is_none_or(|i| condition(i, &caps, arch).0);
            let exc = c
                .get("excludes")
                .is_some_and(|e| condition(e, &caps, arch).1);
            inc && !exc
        });
        for c in calls.iter_mut().filter_map(|c| c.as_object_mut()) {
            for k in ["includes", "excludes", "comment"] {
                c.remove(k);
            }
            if let Some(name) = c.remove("name") {
                c.entry("names").or_insert_with(|| vec![name].into());
            }
        }
    }
    obj.remove("defaultErrno");
    serde_json::from_value(v).map_err(|e| bad(format!("not a seccomp profile: {e}")))
}

/// The `/etc/hosts` of a RUN with extra hosts: `base` (the image's or the
/// host's file, else docker's localhost lines) and the `--add-host` lines.
pub fn hosts_file(base: Option<String>, extra: &[(String, String)]) -> String {
    let mut s = base.unwrap_or_else(|| {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()
    });
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_forms() {
        let mut o = RunOptions::default();
        o.add_host("db:10.0.0.2").unwrap();
        o.add_host("v6=[::1]").unwrap();
        o.add_host("v6b:fe80::1").unwrap();
        assert_eq!(
            o.extra_hosts,
            [
                ("db".to_string(), "10.0.0.2".to_string()),
                ("v6".into(), "::1".into()),
                ("v6b".into(), "fe80::1".into())
            ]
        );
        for bad in ["nohost", ":1.2.3.4", "x:notanip", "x:host-gateway"] {
            assert!(o.add_host(bad).is_err(), "{bad}");
        }
        let h = hosts_file(Some("127.0.0.1 localhost".into()), &o.extra_hosts[..1]);
        assert_eq!(h, "127.0.0.1 localhost\n10.0.0.2\tdb\n");
    }

    #[test]
    fn limits_are_checked() {
        let ok = RunOptions {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            cpu_period: Some(100_000),
            cpu_quota: Some(50_000),
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        ok.check().unwrap();
        for bad in [
            RunOptions {
                memory: Some(1 << 20),
                ..Default::default()
            },
            RunOptions {
                memory_swap: Some(1 << 30),
                ..Default::default()
            },
            RunOptions {
                memory: Some(64 << 20),
                memory_swap: Some(32 << 20),
                ..Default::default()
            },
            RunOptions {
                cpu_period: Some(10),
                ..Default::default()
            },
            RunOptions {
                cpuset_cpus: Some("0-".into()),
                ..Default::default()
            },
            RunOptions {
                cpuset_cpus: Some("4095".into()),
                ..Default::default()
            },
            RunOptions {
                cgroup_parent: Some("../escape".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(RunOptions::ulimit("nofile", 10, 5).is_err());
        assert!(RunOptions::ulimit("bogus", 1, 1).is_err());
    }

    #[test]
    fn security_opts_and_docker_profiles() {
        let mut o = RunOptions::default();
        o.security_opt("no-new-privileges").unwrap();
        o.security_opt("seccomp=unconfined").unwrap();
        assert!(o.no_new_privileges && o.seccomp == Seccomp::Unconfined);
        assert!(o.security_opt("apparmor=x").is_err());
        assert!(o.security_opt("label=disable").is_err());
        let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":[]}],
            "syscalls":[
              {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"comment":"x"},
              {"names":["ptrace"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_SYS_PTRACE"]}},
              {"name":"chroot","action":"SCMP_ACT_ERRNO","excludes":{"caps":["CAP_SYS_CHROOT"]}}]}"#;
        o.security_opt(&format!("seccomp={profile}")).unwrap();
        let Seccomp::Profile(p) = &o.seccomp else {
            panic!("no profile")
        };
        let calls = p.syscalls().clone().unwrap();
        // ptrace needs a capability RUN lacks; chroot is excluded for one it has
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].names(), &["mkdir", "mkdirat"]);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(p.architectures().as_ref().map(Vec::len), Some(2));
        }
        assert!(seccomp_profile("[]").is_err());
        assert!(seccomp_profile(r#"{"defaultAction":"NOPE"}"#).is_err());
    }

    #[test]
    fn spec_gets_limits_and_the_network_rule() {
        let o = RunOptions {
            memory: Some(64 << 20),
            cpu_shares: Some(512),
            shm_size: Some(1 << 20),
            no_new_privileges: true,
            cgroup_parent: Some("/ci/".into()),
            network: Some(NetworkMode::Host),
            ..Default::default()
        };
        let mut spec = Spec::default();
        o.apply(&mut spec).expect("apply");
        let res = spec.linux().clone().unwrap().resources().clone().unwrap();
        assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.cpu().clone().unwrap().shares(), Some(512));
        let mut tiny = Spec::default();
        RunOptions {
            cpu_shares: Some(1),
            ..Default::default()
        }
        .apply(&mut tiny)
        .expect("apply");
        let cpu = tiny.linux().clone().unwrap().resources().clone().unwrap();
        assert_eq!(cpu.cpu().clone().unwrap().shares(), Some(2));
        let shm = spec
            .mounts()
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert!(shm
            .options()
            .clone()
            .unwrap()
            .contains(&"size=1048576".into()));
        assert_eq!(
            spec.process().clone().unwrap().no_new_privileges(),
            Some(true)
        );
        assert_eq!(o.cgroups_path("x"), PathBuf::from("ci/x"));
        assert_eq!(o.network_for(NetworkMode::Default), NetworkMode::Host);
        assert_eq!(o.network_for(NetworkMode::None), NetworkMode::None);
        assert_eq!(
            RunOptions::default().network_for(NetworkMode::Default),
            NetworkMode::Default
        );
    }
}
