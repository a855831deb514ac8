//! Device access rules: the v1 `devices.allow`/`devices.deny` writes and the v2 eBPF
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program, both generated from the OCI rule list.
//!
//! The v2 program is built from the rules as the v1 kernel would see them after
//! applying them in order (see [`Emulator`]), so both layouts enforce the same policy.

use berth_sys::bpf::BpfInsn;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{Error, Result};

const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device kind as the devices controller knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// block device
    Block,
    /// character device
    Char,
}

/// One exception to the default policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// device kind
    pub kind: Kind,
    /// major (None = any)
    pub major: Option<u32>,
    /// minor (None = any)
    pub minor: Option<u32>,
    /// access bits (m=1, r=2, w=4)
    pub access: u8,
}

/// A parsed OCI rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `a` rule: resets the policy to allow-all or deny-all.
    All { allow: bool },
    /// A rule on one kind of device.
    One { allow: bool, ex: Exception },
    /// A rule the devices controller does not check (FIFOs): ignored.
    Skip,
}

fn parse_access(idx: usize, access: Option<&str>) -> Result<u8> {
    let Some(s) = access else { return Ok(ACC_ALL) };
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(Error::InvalidResource {
                    field: format!("linux.resources.devices[{idx}].access"),
                    reason: format!("{s:?} has {c:?}; use a combination of r, w and m"),
                })
            }
        };
    }
    Ok(if bits == 0 { ACC_ALL } else { bits })
}

fn parse_num(idx: usize, what: &str, v: Option<i64>) -> Result<Option<u32>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| Error::InvalidResource {
                field: format!("linux.resources.devices[{idx}].{what}"),
                reason: format!(
                    "{n} is not a device number; use 0..=4294967295 or omit it for any"
                ),
            }),
    }
}

fn parse_rule(idx: usize, r: &LinuxDeviceCgroup) -> Result<Rule> {
    let allow = r.allow();
    let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => return Ok(Rule::All { allow }),
        LinuxDeviceType::B => Kind::Block,
        LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
        LinuxDeviceType::P => return Ok(Rule::Skip),
    };
    let ex = Exception {
        kind,
        major: parse_num(idx, "major", r.major())?,
        minor: parse_num(idx, "minor", r.minor())?,
        access: parse_access(idx, r.access().as_deref())?,
    };
    Ok(Rule::One { allow, ex })
}

fn fmt_num(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_string(), |n| n.to_string())
}

fn fmt_access(a: u8) -> String {
    let mut s = String::new();
    if a & ACC_READ != 0 {
        s.push('r');
    }
    if a & ACC_WRITE != 0 {
        s.push('w');
    }
    if a & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

/// The writes for cgroup v1, in order: `(file, line)` with file `devices.allow` or
/// `devices.deny`. Rules are written in the order given (the kernel applies them in
/// sequence); a rule list starting with a deny-all therefore writes `a` to
/// `devices.deny` first and then punches the allowed holes.
pub fn v1_writes(rules: &[LinuxDeviceCgroup]) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for (idx, r) in rules.iter().enumerate() {
        let (allow, line) = match parse_rule(idx, r)? {
            Rule::All { allow } => (allow, "a".to_string()),
            Rule::One { allow, ex } => {
                let k = if ex.kind == Kind::Block { 'b' } else { 'c' };
                let line = format!(
                    "{k} {}:{} {}",
                    fmt_num(ex.major),
                    fmt_num(ex.minor),
                    fmt_access(ex.access)
                );
                (allow, line)
            }
            Rule::Skip => continue,
        };
        out.push((
            if allow {
                "devices.allow"
            } else {
                "devices.deny"
            },
            line,
        ));
    }
    Ok(out)
}

/// The v1 devices controller's state machine: a default policy plus exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// whether access is allowed unless an exception matches
    pub default_allow: bool,
    /// the exceptions, in the order they were added
    pub exceptions: Vec<Exception>,
}

impl Emulator {
    /// Apply `rules` in order starting from `allow all` (a fresh cgroup with no program).
    pub fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Self> {
        let mut e = Emulator {
            default_allow: true,
            exceptions: Vec::new(),
        };
        for (idx, r) in rules.iter().enumerate() {
            match parse_rule(idx, r)? {
                Rule::All { allow } => {
                    e.default_allow = allow;
                    e.exceptions.clear();
                }
                Rule::One { allow, ex } if allow == e.default_allow => e.remove(&ex),
                Rule::One { ex, .. } => e.add(ex),
                Rule::Skip => {}
            }
        }
        Ok(e)
    }

    fn add(&mut self, ex: Exception) {
        if let Some(cur) = self
            .exceptions
            .iter_mut()
            .find(|c| c.kind == ex.kind && c.major == ex.major && c.minor == ex.minor)
        {
            cur.access |= ex.access;
        } else {
            self.exceptions.push(ex);
        }
    }

    fn remove(&mut self, ex: &Exception) {
        for c in self.exceptions.iter_mut() {
            if c.kind == ex.kind && c.major == ex.major && c.minor == ex.minor {
                c.access &= !ex.access;
            }
        }
        self.exceptions.retain(|c| c.access != 0);
    }
}

// eBPF opcodes (see <linux/bpf_common.h>, <linux/bpf.h>).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

/// Registers after the prologue: r2 = device type, r3 = access, r4 = major, r5 = minor.
fn prologue() -> Vec<BpfInsn> {
    vec![
        // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
        BpfInsn::new(LDX_MEM_W, 2, 1, 0, 0),
        BpfInsn::new(ALU32_AND_K, 2, 0, 0, 0xffff),
        BpfInsn::new(LDX_MEM_W, 3, 1, 0, 0),
        BpfInsn::new(ALU32_RSH_K, 3, 0, 0, 16),
        BpfInsn::new(LDX_MEM_W, 4, 1, 4, 0),
        BpfInsn::new(LDX_MEM_W, 5, 1, 8, 0),
    ]
}

/// One block: if the request matches `ex`, return `verdict`; otherwise fall through.
/// In allow-list mode the request must be a subset of the exception's access (like
/// the v1 kernel); in deny-list mode any overlap denies.
fn block(ex: &Exception, verdict: bool, subset: bool) -> Vec<BpfInsn> {
    // Jumps are built with off = 0 and patched to the block end below.
    let mut b = Vec::new();
    let ty = if ex.kind == Kind::Block {
        BPF_DEVCG_DEV_BLOCK
    } else {
        BPF_DEVCG_DEV_CHAR
    };
    b.push(BpfInsn::new(JMP_JNE_K, 2, 0, 0, ty));
    if ex.access != ACC_ALL || !subset {
        b.push(BpfInsn::new(ALU32_MOV_X, 1, 3, 0, 0));
        b.push(BpfInsn::new(ALU32_AND_K, 1, 0, 0, i32::from(ex.access)));
        if subset {
            b.push(BpfInsn::new(JMP_JNE_X, 1, 3, 0, 0));
        } else {
            b.push(BpfInsn::new(JMP_JEQ_K, 1, 0, 0, 0));
        }
    }
    if let Some(m) = ex.major {
        b.push(BpfInsn::new(JMP_JNE_K, 4, 0, 0, m as i32));
    }
    if let Some(m) = ex.minor {
        b.push(BpfInsn::new(JMP_JNE_K, 5, 0, 0, m as i32));
    }
    b.push(BpfInsn::new(ALU64_MOV_K, 0, 0, 0, i32::from(verdict)));
    b.push(BpfInsn::new(JMP_EXIT, 0, 0, 0, 0));
    let len = b.len();
    for (i, insn) in b.iter_mut().enumerate() {
        if matches!(insn.code, JMP_JNE_K | JMP_JNE_X | JMP_JEQ_K) {
            insn.off = (len - i - 1) as i16;
        }
    }
    b
}

/// The `BPF_PROG_TYPE_CGROUP_DEVICE` program enforcing `rules` (returns 1 = allow).
pub fn bpf_program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<BpfInsn>> {
    let emu = Emulator::from_rules(rules)?;
    let mut prog = prologue();
    for ex in &emu.exceptions {
        prog.extend(block(ex, !emu.default_allow, !emu.default_allow));
    }
    prog.push(BpfInsn::new(
        ALU64_MOV_K,
        0,
        0,
        0,
        i32::from(emu.default_allow),
    ));
    prog.push(BpfInsn::new(JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// Run `prog` on one request, as the kernel would (only the opcodes generated above).
/// Used by the unit tests to check the program's verdicts without loading it.
#[cfg(test)]
pub(crate) fn interpret(prog: &[BpfInsn], kind: Kind, access: u8, major: u32, minor: u32) -> bool {
    let ty = if kind == Kind::Block { 1u64 } else { 2u64 };
    let ctx = [((access as u64) << 16) | ty, major as u64, minor as u64];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = if cfg!(target_endian = "little") {
            ((i.regs & 0xf) as usize, (i.regs >> 4) as usize)
        } else {
            ((i.regs >> 4) as usize, (i.regs & 0xf) as usize)
        };
        let imm = i.imm as u32 as u64;
        let mut jump = false;
        match i.code {
            LDX_MEM_W => {
                assert_eq!(src, 1);
                r[dst] = ctx[i.off as usize / 4];
            }
            ALU32_AND_K => r[dst] = (r[dst] as u32 & imm as u32) as u64,
            ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> imm) as u64,
            ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
            ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
            JMP_JNE_K => jump = r[dst] != imm,
            JMP_JNE_X => jump = r[dst] != r[src],
            JMP_JEQ_K => jump = r[dst] == imm,
            JMP_EXIT => return r[0] == 1,
            c => panic!("unexpected opcode {c:#x}"),
        }
        pc += 1;
        if jump {
            pc += i.off as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).expect("rules json")
    }

    const DOCKERISH: &str = r#"[
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rw"}
    ]"#;

    #[test]
    fn v1_writes_deny_all_first_then_holes_in_order() {
        let w = v1_writes(&rules(DOCKERISH)).expect("writes");
        assert_eq!(
            w,
            vec![
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c 1:5 rwm".to_string()),
                ("devices.allow", "c 1:3 r".to_string()),
                ("devices.allow", "c 136:* rwm".to_string()),
                ("devices.allow", "b 8:0 rw".to_string()),
            ]
        );
    }

    #[test]
    fn bad_access_names_the_field() {
        let err = v1_writes(&rules(r#"[{"allow": true, "type": "c", "access": "rx"}]"#))
            .expect_err("x is not an access");
        assert!(err.to_string().contains("devices[0].access"), "{err}");
    }

    #[test]
    fn emulator_follows_kernel_semantics() {
        let e = Emulator::from_rules(&rules(
            r#"[{"allow": false}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]"#,
        ))
        .expect("emu");
        assert!(!e.default_allow);
        assert_eq!(e.exceptions.len(), 1);
        assert_eq!(e.exceptions[0].access, ACC_READ);
        // allow-all clears the exceptions
        let e = Emulator::from_rules(&rules(
            r#"[{"allow": false}, {"allow": true, "type": "c", "major": 1, "minor": 3}, {"allow": true}]"#,
        ))
        .expect("emu");
        assert!(e.default_allow);
        assert!(e.exceptions.is_empty());
    }

    #[test]
    fn bpf_allowlist_verdicts() {
        let p = bpf_program(&rules(DOCKERISH)).expect("prog");
        assert!(interpret(&p, Kind::Char, ACC_READ | ACC_WRITE, 1, 5)); // /dev/zero
        assert!(interpret(&p, Kind::Char, ACC_READ, 1, 3)); // /dev/null read
        assert!(!interpret(&p, Kind::Char, ACC_WRITE, 1, 3)); // /dev/null write
        assert!(!interpret(&p, Kind::Char, ACC_READ | ACC_WRITE, 1, 3));
        assert!(interpret(&p, Kind::Char, ACC_READ, 136, 7)); // any pts
        assert!(!interpret(&p, Kind::Block, ACC_READ, 136, 7));
        assert!(interpret(&p, Kind::Block, ACC_READ, 8, 0));
        assert!(!interpret(&p, Kind::Block, ACC_MKNOD, 8, 0));
        assert!(!interpret(&p, Kind::Char, ACC_READ, 10, 200)); // /dev/net/tun
    }

    #[test]
    fn bpf_denylist_verdicts() {
        let p = bpf_program(&rules(
            r#"[{"allow": true}, {"allow": false, "type": "c", "major": 10, "minor": 200, "access": "w"}]"#,
        ))
        .expect("prog");
        assert!(interpret(&p, Kind::Char, ACC_READ, 10, 200));
        assert!(!interpret(&p, Kind::Char, ACC_READ | ACC_WRITE, 10, 200));
        assert!(interpret(&p, Kind::Char, ACC_WRITE, 1, 3));
    }

    #[test]
    fn bpf_empty_rules_allow_everything() {
        let p = bpf_program(&[]).expect("prog");
        assert_eq!(p.len(), 8);
        assert!(interpret(&p, Kind::Block, ACC_ALL, 8, 0));
    }

    #[test]
    fn bpf_jump_offsets_land_on_next_block() {
        let p = bpf_program(&rules(r#"[{"allow": false}, {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#))
            .expect("prog");
        // prologue(6) + block(jne type, mov, and, jne acc, jne maj, jne min, mov, exit = 8) + 2
        assert_eq!(p.len(), 16);
        assert_eq!(p[6].off, 7);
        assert_eq!(p[9].off, 4);
        assert_eq!(p[11].off, 2);
    }
}
