//! Loading and validating an OCI bundle's config.json, and the small builders the
//! engine and the builder share when they write one.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A validated bundle: its spec and absolute paths.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// absolute bundle directory
    pub dir: PathBuf,
    /// absolute rootfs directory (canonical)
    pub rootfs: PathBuf,
    /// the parsed config.json
    pub spec: Spec,
    /// non-fatal findings to show the user (e.g. unsupported LSM labels)
    pub warnings: Vec<String>,
}

/// A mount of the spec: `source` of type `typ` at `dest` with `options`.
pub fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> oci_spec::runtime::Mount {
    let mut m = oci_spec::runtime::Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// A process's capability sets as docker gives them: `caps` bounding, effective
/// and permitted; nothing inheritable or ambient.
pub fn capabilities(
    caps: HashSet<oci_spec::runtime::Capability>,
) -> oci_spec::runtime::LinuxCapabilities {
    let mut c = oci_spec::runtime::LinuxCapabilities::default();
    c.set_bounding(Some(caps.clone()));
    c.set_effective(Some(caps.clone()));
    c.set_permitted(Some(caps));
    c.set_inheritable(None);
    c.set_ambient(None);
    c
}

/// Parse config.json text, naming the offending field on error.
pub fn parse_config(text: &str) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Error::Config(format!("{inner}"))
        } else {
            Error::Config(format!("{path}: {inner}"))
        }
    })?;
    Ok(spec)
}

/// Load and validate `<bundle>/config.json`.
pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(dir).map_err(|e| Error::io("resolve bundle", dir, e))?;
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg).map_err(|e| {
        Error::Config(format!(
            "cannot read {}: {e} (is --bundle pointing at an OCI bundle?)",
            cfg.display()
        ))
    })?;
    let spec = parse_config(&text)?;
    let warnings = validate(&spec)?;
    let root = spec.root().as_ref().ok_or_else(|| {
        Error::Config("root: missing (set root.path to the rootfs directory)".into())
    })?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| {
        Error::Config(format!(
            "root.path: rootfs {} does not exist: {e}",
            rootfs.display()
        ))
    })?;
    if !rootfs.is_dir() {
        return Err(Error::Config(format!(
            "root.path: {} is not a directory",
            rootfs.display()
        )));
    }
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        warnings,
    })
}

/// Check what serde cannot: version, process, namespaces, rlimits. Returns warnings.
pub fn validate(spec: &Spec) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    check_version(spec.version())?;
    let process = spec.process().as_ref().ok_or_else(|| {
        Error::Config("process: missing (the container needs a process to run)".into())
    })?;
    match process.args() {
        Some(a) if !a.is_empty() => {}
        _ => {
            return Err(Error::Config(
                "process.args: must name at least the program to run".into(),
            ))
        }
    }
    if !process.cwd().is_absolute() {
        return Err(Error::Config(format!(
            "process.cwd: {:?} must be an absolute path",
            process.cwd()
        )));
    }
    check_rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
        && !apparmor_enabled()
    {
        warnings.push(
            "process.apparmorProfile: AppArmor is not enabled on this host; the profile is ignored"
                .into(),
        );
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
        && !selinux_enabled()
    {
        warnings.push(
            "process.selinuxLabel: SELinux is not enabled on this host; the label is ignored"
                .into(),
        );
    }
    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        let mut has_user = false;
        for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
            if !seen.insert(ns.typ()) {
                return Err(Error::Config(format!(
                    "linux.namespaces: {} is listed twice",
                    ns.typ()
                )));
            }
            if let Some(p) = ns.path() {
                if !p.exists() {
                    return Err(Error::Config(format!(
                        "linux.namespaces: {} namespace path {} does not exist",
                        ns.typ(),
                        p.display()
                    )));
                }
            }
            if ns.typ() == LinuxNamespaceType::User && ns.path().is_none() {
                has_user = true;
            }
        }
        let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if has_user && !maps {
            return Err(Error::Config(
                "linux.uidMappings: a new user namespace needs uidMappings and gidMappings".into(),
            ));
        }
        if !has_user && maps && !seen.contains(&LinuxNamespaceType::User) {
            return Err(Error::Config(
                "linux.uidMappings: mappings given but no user namespace is requested".into(),
            ));
        }
        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
            && !seen.contains(&LinuxNamespaceType::Uts)
        {
            return Err(Error::Config(
                "hostname: setting a hostname needs a uts namespace in linux.namespaces".into(),
            ));
        }
        if let Some(p) = linux.rootfs_propagation() {
            if crate::mount::propagation_flag(p).is_none() && !p.is_empty() {
                return Err(Error::Config(format!(
                    "linux.rootfsPropagation: unknown value {p:?} (use private, rprivate, slave, rslave, shared, rshared, unbindable or runbindable)"
                )));
            }
        }
        if let Some(s) = linux.seccomp() {
            crate::seccomp::check(s)?;
        }
        let unsupported = [
            ("linux.intelRdt", linux.intel_rdt().is_some()),
            ("linux.memoryPolicy", linux.memory_policy().is_some()),
            (
                "linux.netDevices",
                linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
            ),
            (
                "process.execCPUAffinity",
                process.exec_cpu_affinity().is_some(),
            ),
        ];
        for (field, set) in unsupported {
            if set {
                return Err(Error::Config(format!(
                    "{field}: not supported by this runtime: remove it"
                )));
            }
        }
        if let Some(p) = linux.personality() {
            if let Some(f) = p.flags().as_ref().filter(|f| !f.is_empty()) {
                return Err(Error::Config(format!(
                    "linux.personality.flags: {f:?} are not supported: remove them"
                )));
            }
        }
    }
    Ok(warnings)
}

fn check_version(v: &str) -> Result<()> {
    let mut parts = v.split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(1) => Ok(()),
        _ => Err(Error::Config(format!(
            "ociVersion: {v:?} is not supported (this runtime implements runtime spec 1.0.0 to 1.2.x)"
        ))),
    }
}

/// Check a seccomp profile the way [`validate`] does (actions, argument indexes),
/// for callers that build a spec and want to refuse a bad profile early.
pub fn check_seccomp(s: &oci_spec::runtime::LinuxSeccomp) -> Result<()> {
    crate::seccomp::check(s)
}

/// Map an OCI rlimit type to nix's resource.
pub(crate) fn rlimit_resource(t: PosixRlimitType) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    use PosixRlimitType as T;
    Some(match t {
        T::RlimitCpu => R::RLIMIT_CPU,
        T::RlimitFsize => R::RLIMIT_FSIZE,
        T::RlimitData => R::RLIMIT_DATA,
        T::RlimitStack => R::RLIMIT_STACK,
        T::RlimitCore => R::RLIMIT_CORE,
        T::RlimitRss => R::RLIMIT_RSS,
        T::RlimitNproc => R::RLIMIT_NPROC,
        T::RlimitNofile => R::RLIMIT_NOFILE,
        T::RlimitMemlock => R::RLIMIT_MEMLOCK,
        T::RlimitAs => R::RLIMIT_AS,
        T::RlimitLocks => R::RLIMIT_LOCKS,
        T::RlimitSigpending => R::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        T::RlimitNice => R::RLIMIT_NICE,
        T::RlimitRtprio => R::RLIMIT_RTPRIO,
        T::RlimitRttime => R::RLIMIT_RTTIME,
    })
}

/// Refuse rlimits this process could not apply: soft above hard, or a hard limit above
/// the current hard limit when we may not raise it (no CAP_SYS_RESOURCE).
pub fn check_rlimits(rlimits: &[oci_spec::runtime::PosixRlimit]) -> Result<()> {
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    let mut seen = HashSet::new();
    for r in rlimits {
        let name = r.typ().to_string();
        if !seen.insert(name.clone()) {
            return Err(Error::Config(format!(
                "process.rlimits: {name} is listed twice"
            )));
        }
        if r.soft() > r.hard() {
            return Err(Error::Config(format!(
                "process.rlimits: {name} soft limit {} is above its hard limit {}",
                r.soft(),
                r.hard()
            )));
        }
        let Some(res) = rlimit_resource(r.typ()) else {
            continue;
        };
        let (_, cur_hard) = nix::sys::resource::getrlimit(res)
            .map_err(|e| Error::sys(format!("getrlimit {name}"), e))?;
        if r.hard() > cur_hard && !can_raise {
            return Err(Error::Config(format!(
                "process.rlimits: {name} hard limit {} is above this host's hard limit {cur_hard}, and raising it needs CAP_SYS_RESOURCE, which this runtime lacks: lower it to at most {cur_hard}",
                r.hard()
            )));
        }
    }
    Ok(())
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::to_value(Spec::default()).expect("default spec serializes")
    }

    #[test]
    fn default_spec_validates() {
        let s: Spec = serde_json::from_value(base()).expect("parse");
        validate(&s).expect("default spec is valid");
    }

    #[test]
    fn unknown_capability_names_the_field() {
        let mut v = base();
        v["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_NOPE"]);
        let err = parse_config(&v.to_string())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("process.capabilities.bounding"), "{err}");
    }

    #[test]
    fn unknown_namespace_names_the_field() {
        let mut v = base();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "bogus"}]);
        let err = parse_config(&v.to_string())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("linux.namespaces"), "{err}");
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut v = base();
        v["ociVersion"] = serde_json::json!("2.0.0");
        let s = parse_config(&v.to_string()).expect("parses");
        let err = validate(&s).expect_err("must fail").to_string();
        assert!(err.contains("ociVersion"), "{err}");
    }

    #[test]
    fn rlimit_above_hard_limit_is_refused_without_cap_sys_resource() {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let can_raise = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .expect("caps");
        let mut v = base();
        v["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": hard + 1, "soft": 1024}]);
        let s = parse_config(&v.to_string()).expect("parses");
        let r = validate(&s);
        if can_raise {
            r.expect("allowed with CAP_SYS_RESOURCE");
        } else {
            let err = r.expect_err("must fail").to_string();
            assert!(
                err.contains("RLIMIT_NOFILE") && err.contains("CAP_SYS_RESOURCE"),
                "{err}"
            );
        }
    }

    #[test]
    fn malformed_json_is_an_error() {
        let err = parse_config("{ not json")
            .expect_err("must fail")
            .to_string();
        assert!(err.starts_with("config.json"), "{err}");
    }
}
