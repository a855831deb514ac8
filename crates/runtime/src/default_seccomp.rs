//! berth's default seccomp profile (the engine's containers and the builder's RUN
//! containers).
//!
//! A deny list (not docker's allow list, which is not reproduced here): everything
//! is allowed except system calls a container has no business making and that widen
//! the kernel's attack surface or reach state the host shares: kernel modules and
//! kexec, the (non-namespaced) keyrings, new namespaces and mounts (unprivileged user
//! namespaces in particular), file handles that bypass the mount namespace, bpf and
//! perf, userfaultfd, io_uring, clocks, swap, reboot, accounting and a few obsolete
//! calls. Denied calls fail with EPERM; `clone3` fails with ENOSYS so C libraries
//! fall back to `clone`, whose namespace flags can be checked.
//! `--security-opt seccomp=unconfined` turns it off.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

/// System calls refused with EPERM.
pub const DENIED: &[&str] = &[
    // kernel modules, replacing the kernel
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    // keyrings are not namespaced
    "add_key",
    "request_key",
    "keyctl",
    // new namespaces and mounts
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // file handles reach files outside the container's root
    "open_by_handle_at",
    "name_to_handle_at",
    // kernel tracing and programmability
    "bpf",
    "perf_event_open",
    "lookup_dcookie",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // host-wide state
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "vhangup",
    "iopl",
    "ioperm",
    // obsolete
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
];

/// `clone` flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET).
const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The default profile.
pub fn default_profile() -> Result<LinuxSeccomp, String> {
    let mut syscalls = vec![
        json!({"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
    ];
    // clone's first argument holds the flags on x86_64 and most architectures
    for flag in NAMESPACE_FLAGS {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    });
    serde_json::from_value(profile).map_err(|e| format!("built-in seccomp profile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompAction;

    #[test]
    fn profile_denies_the_dangerous_and_allows_the_rest() {
        let p = default_profile().expect("profile");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let calls = p.syscalls().as_ref().expect("syscalls");
        let denied: Vec<&String> = calls.iter().flat_map(|c| c.names()).collect();
        for name in ["unshare", "keyctl", "bpf", "mount", "clone3", "clone"] {
            assert!(denied.iter().any(|n| *n == name), "{name} not covered");
        }
        assert!(!denied.iter().any(|n| *n == "execve" || *n == "read"));
        let clone_rules = calls
            .iter()
            .filter(|c| c.names().iter().any(|n| n == "clone"))
            .count();
        assert_eq!(clone_rules, NAMESPACE_FLAGS.len());
    }
}
