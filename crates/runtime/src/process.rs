//! The last steps before exec: rlimits, user and groups, capabilities, no_new_privs,
//! io priority and scheduler, and finding the program.

use crate::error::{Error, Result};
use caps::{CapSet, Capability as Cap};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, Process};
use std::collections::HashSet;
use std::ffi::CString;
use std::str::FromStr;

/// Convert an OCI capability set into the kernel's.
pub fn to_caps(set: &Option<Capabilities>) -> Result<HashSet<Cap>> {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = Cap::from_str(&name).map_err(|_| {
            Error::Config(format!("process.capabilities: unknown capability {name}"))
        })?;
        out.insert(cap);
    }
    Ok(out)
}

/// Apply rlimits (validated earlier against the host's hard limits).
pub fn apply_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().as_deref().unwrap_or(&[]) {
        let Some(res) = crate::spec::rlimit_resource(r.typ()) else {
            continue;
        };
        nix::sys::resource::setrlimit(res, r.soft(), r.hard()).map_err(|e| {
            Error::Init(format!(
                "process.rlimits: set {} to {}/{}: {e}",
                r.typ(),
                r.soft(),
                r.hard()
            ))
        })?;
    }
    Ok(())
}

/// Drop the bounding set down to `keep` (needs CAP_SETPCAP, so before changing user).
pub fn drop_bounding(keep: &HashSet<Cap>) -> Result<()> {
    for c in caps::all() {
        if keep.contains(&c) {
            continue;
        }
        match caps::drop(None, CapSet::Bounding, c) {
            Ok(()) => {}
            // capabilities newer than the running kernel
            Err(_) if !caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) => {}
            Err(e) => return Err(Error::Init(format!("drop {c} from the bounding set: {e}"))),
        }
    }
    Ok(())
}

/// Switch to the process user (keeping capabilities across the uid change), then set
/// the effective, inheritable, permitted and ambient sets.
pub fn set_user_and_caps(
    p: &Process,
    capset: Option<&LinuxCapabilities>,
    userns_setgroups: bool,
) -> Result<()> {
    let user = p.user();
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    if userns_setgroups {
        let gids: Vec<Gid> = user
            .additional_gids()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids)
            .map_err(|e| Error::sys("setgroups (process.user.additionalGids)", e))?;
    }
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| Error::sys(format!("setgid {gid} (process.user.gid)"), e))?;
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| Error::sys(format!("setuid {uid} (process.user.uid)"), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    let Some(c) = capset else {
        // No capabilities section: the process gets none.
        for s in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
            caps::clear(None, s).map_err(|e| Error::Init(format!("clear capabilities: {e}")))?;
        }
        return Ok(());
    };
    let eff = to_caps(c.effective())?;
    let inh = to_caps(c.inheritable())?;
    let perm = to_caps(c.permitted())?;
    let amb = to_caps(c.ambient())?;
    let e = |what: &str, err: caps::errors::CapsError| {
        Error::Init(format!("set {what} capabilities: {err}"))
    };
    // effective must stay a subset of permitted at every step.
    let eff_now: HashSet<Cap> = eff.intersection(&perm).copied().collect();
    caps::set(None, CapSet::Effective, &eff_now).map_err(|x| e("effective", x))?;
    caps::set(None, CapSet::Inheritable, &inh).map_err(|x| e("inheritable", x))?;
    caps::set(None, CapSet::Permitted, &perm).map_err(|x| e("permitted", x))?;
    caps::set(None, CapSet::Effective, &eff).map_err(|x| e("effective", x))?;
    for c in &amb {
        caps::raise(None, CapSet::Ambient, *c).map_err(|x| e("ambient", x))?;
    }
    Ok(())
}

/// io priority and scheduler policy, where the spec asks.
pub fn apply_sched(p: &Process) -> Result<()> {
    if let Some(io) = p.io_priority() {
        use oci_spec::runtime::IOPriorityClass as C;
        let class = match io.class() {
            C::IoprioClassRt => 1,
            C::IoprioClassBe => 2,
            C::IoprioClassIdle => 3,
        };
        berth_sys::proc::set_io_priority(class, io.priority() as u32)
            .map_err(|e| Error::Init(format!("process.ioPriority: {e}")))?;
    }
    if let Some(s) = p.scheduler() {
        use oci_spec::runtime::LinuxSchedulerPolicy as P;
        let policy = match s.policy() {
            P::SchedOther => libc::SCHED_OTHER,
            P::SchedFifo => libc::SCHED_FIFO,
            P::SchedRr => libc::SCHED_RR,
            P::SchedBatch => libc::SCHED_BATCH,
            P::SchedIso => 4,
            P::SchedIdle => libc::SCHED_IDLE,
            P::SchedDeadline => return Err(Error::Config(
                "process.scheduler: SCHED_DEADLINE is not supported: use SCHED_FIFO or SCHED_RR"
                    .into(),
            )),
        };
        berth_sys::proc::set_scheduler(policy, s.priority().unwrap_or(0))
            .map_err(|e| Error::Init(format!("process.scheduler: {e}")))?;
        if let Some(n) = s.nice() {
            berth_sys::proc::set_nice(*n)
                .map_err(|e| Error::Init(format!("process.scheduler.nice: {e}")))?;
        }
    }
    Ok(())
}

/// The value of PATH in `env`, or the usual default.
fn path_of(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Find the program like execvp does, in the container's root and PATH.
pub fn find_program(arg0: &str, env: &[String]) -> Result<CString> {
    let exe_ok = |p: &str| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
            && !std::path::Path::new(p).is_dir()
    };
    if arg0.contains('/') {
        if exe_ok(arg0) {
            return CString::new(arg0)
                .map_err(|_| Error::Config("process.args[0]: contains a NUL byte".into()));
        }
        return Err(Error::Init(format!(
            "exec: {arg0:?}: no such file or directory, or not executable"
        )));
    }
    for dir in path_of(env).split(':').filter(|d| !d.is_empty()) {
        let cand = format!("{dir}/{arg0}");
        if exe_ok(&cand) {
            return CString::new(cand)
                .map_err(|_| Error::Config("process.args[0]: contains a NUL byte".into()));
        }
    }
    Err(Error::Init(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}

/// CStrings for execve.
pub fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_str())
                .map_err(|_| Error::Config(format!("{what}: {s:?} contains a NUL byte")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_in_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let p = find_program("sh", &env).expect("sh exists on the host");
        assert!(p.to_str().expect("utf8").ends_with("/sh"));
        let e = find_program("no-such-program-berth", &env)
            .expect_err("missing")
            .to_string();
        assert!(e.contains("not found in $PATH"), "{e}");
    }

    #[test]
    fn capability_names_map() {
        let set: Capabilities =
            serde_json::from_str(r#"["CAP_CHOWN","CAP_NET_RAW"]"#).expect("parse");
        let c = to_caps(&Some(set)).expect("known");
        assert!(c.contains(&Cap::CAP_CHOWN) && c.contains(&Cap::CAP_NET_RAW));
    }
}
