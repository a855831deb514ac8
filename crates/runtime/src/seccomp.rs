//! Seccomp filters from the spec's `linux.seccomp` profile, through libseccomp.

use crate::error::{Error, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

fn err(msg: impl std::fmt::Display) -> Error {
    Error::Config(format!("linux.seccomp: {msg}"))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.map(|e| e as i32).unwrap_or(libc::EPERM)),
        A::ScmpActTrace => ScmpAction::Trace(errno.map(|e| e as u16).unwrap_or(libc::EPERM as u16)),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => {
            return Err(err(format!(
                "{field}: SCMP_ACT_NOTIFY needs a seccomp listener, which this runtime does not support: use another action"
            )))
        }
    })
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn op(o: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> (ScmpCompareOp, u64) {
    use LinuxSeccompOperator as O;
    match o {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        O::ScmpCmpLt => (ScmpCompareOp::Less, value),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // OCI: value is the mask, valueTwo the value to compare with.
        O::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0)),
    }
}

/// Validate a profile without building it (actions, argument indexes).
pub fn check(s: &LinuxSeccomp) -> Result<()> {
    action(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    for (i, sc) in s.syscalls().as_deref().unwrap_or(&[]).iter().enumerate() {
        action(
            sc.action(),
            sc.errno_ret(),
            &format!("syscalls[{i}].action"),
        )?;
        for a in sc.args().as_deref().unwrap_or(&[]) {
            if a.index() > 5 {
                return Err(err(format!(
                    "syscalls[{i}].args: index {} is out of range 0..5",
                    a.index()
                )));
            }
        }
        if sc.names().is_empty() {
            return Err(err(format!("syscalls[{i}].names: empty")));
        }
    }
    Ok(())
}

/// Build (but do not load) the filter. `nnp` says whether no_new_privs will be set; if
/// not, the filter is loaded while the process still has CAP_SYS_ADMIN.
pub fn build(s: &LinuxSeccomp, nnp: bool) -> Result<ScmpFilterContext> {
    let def = action(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    let mut ctx = ScmpFilterContext::new(def).map_err(err)?;
    for a in s.architectures().as_deref().unwrap_or(&[]) {
        ctx.add_arch(arch(*a)).map_err(err)?;
    }
    ctx.set_ctl_nnp(nnp).map_err(err)?;
    for f in s.flags().as_deref().unwrap_or(&[]) {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true).map_err(err)?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true).map_err(err)?;
            }
            _ => {}
        }
    }
    for sc in s.syscalls().as_deref().unwrap_or(&[]) {
        let act = action(sc.action(), sc.errno_ret(), "syscalls.action")?;
        if act == def {
            continue; // libseccomp refuses rules equal to the default action
        }
        let conds: Vec<ScmpArgCompare> = sc
            .args()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|a| {
                let (o, v) = op(a.op(), a.value(), a.value_two());
                ScmpArgCompare::new(a.index() as u32, o, v)
            })
            .collect();
        // libseccomp ANDs the conditions of one rule and refuses two on one argument;
        // runc then adds one rule per condition (OR), and so do we.
        let mut idx: Vec<u32> = sc
            .args()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|a| a.index() as u32)
            .collect();
        idx.sort_unstable();
        let repeated = idx.windows(2).any(|w| w[0] == w[1]);
        for name in sc.names() {
            // Names unknown to this libseccomp/arch are skipped, as runc does.
            let Ok(call) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            if conds.is_empty() {
                ctx.add_rule(act, call)
                    .map_err(|e| err(format!("rule for {name}: {e}")))?;
            } else if repeated {
                for c in &conds {
                    ctx.add_rule_conditional(act, call, std::slice::from_ref(c))
                        .map_err(|e| err(format!("rule for {name}: {e}")))?;
                }
            } else {
                ctx.add_rule_conditional(act, call, &conds)
                    .map_err(|e| err(format!("rule for {name}: {e}")))?;
            }
        }
    }
    Ok(ctx)
}

/// Load a built filter into the calling process.
pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load()
        .map_err(|e| Error::Init(format!("load seccomp filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(j: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(j).expect("profile parses")
    }

    #[test]
    fn builds_profile_with_args() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "nosuchcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }));
        check(&p).expect("valid");
        build(&p, true).expect("builds");
    }

    #[test]
    fn notify_is_refused_with_a_reason() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        let e = check(&p).expect_err("refused").to_string();
        assert!(e.contains("defaultAction") && e.contains("NOTIFY"), "{e}");
    }

    #[test]
    fn bad_arg_index_is_refused() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(check(&p).is_err());
    }
}
