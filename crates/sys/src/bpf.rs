//! eBPF helpers (cgroup v2 device filter programs).
//!
//! Raw `bpf(2)` wrappers only: loading a program, attaching it to a cgroup
//! directory, querying and detaching. Building the instructions is the caller's job
//! (see `berth-cgroups`).
//!
//! ```no_run
//! use berth_sys::bpf::{self, BpfInsn};
//! // r0 = 1; exit  (allow every device access)
//! let prog = [BpfInsn::new(0xb7, 0, 0, 0, 1), BpfInsn::new(0x95, 0, 0, 0, 0)];
//! let fd = bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, &prog, "Apache-2.0").unwrap();
//! ```

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `BPF_PROG_TYPE_CGROUP_DEVICE` from `<linux/bpf.h>`.
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` attach type from `<linux/bpf.h>`.
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI` attach flag: several programs may be attached to one cgroup.
pub const BPF_F_ALLOW_MULTI: u32 = 2;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

/// One eBPF instruction, laid out exactly like the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// opcode
    pub code: u8,
    /// dst_reg (low 4 bits on little endian) and src_reg (high 4 bits)
    pub regs: u8,
    /// signed offset
    pub off: i16,
    /// signed immediate
    pub imm: i32,
}

impl BpfInsn {
    /// Build an instruction from its opcode, registers, offset and immediate.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        let regs = if cfg!(target_endian = "little") {
            (dst & 0x0f) | ((src & 0x0f) << 4)
        } else {
            ((dst & 0x0f) << 4) | (src & 0x0f)
        };
        BpfInsn {
            code,
            regs,
            off,
            imm,
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Call `bpf(cmd, attr, sizeof(attr))`.
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` struct whose layout
    // matches the prefix of `union bpf_attr` for `cmd`; its exact size is passed, so
    // the kernel reads and writes only within it. Pointers stored inside it (if any)
    // are set by the callers to buffers that outlive this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::other("bpf returned an invalid fd"))?;
    // SAFETY: the kernel just returned `fd` as a new file descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load a program of `prog_type` (for example [`BPF_PROG_TYPE_CGROUP_DEVICE`]).
///
/// On rejection the verifier log is retried for and included in the error message.
pub fn prog_load(prog_type: u32, insns: &[BpfInsn], license: &str) -> io::Result<OwnedFd> {
    let license = CString::new(license)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "license contains a nul"))?;
    let insn_cnt = u32::try_from(insns.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many instructions"))?;
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => owned_fd(fd),
        Err(first) => {
            // Retry once with the verifier log so the error explains itself.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match sys_bpf(BPF_PROG_LOAD, &mut attr) {
                Ok(fd) => owned_fd(fd),
                Err(_) => {
                    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    Err(io::Error::new(
                        first.kind(),
                        format!("{first}; verifier log: {}", text.trim()),
                    ))
                }
            }
        }
    }
}

/// Attach `prog` to the cgroup directory `cgroup` with `attach_type` and `flags`.
pub fn prog_attach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// Detach `prog` from the cgroup directory `cgroup`.
pub fn prog_detach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

/// Ids of the programs attached to `cgroup` (directly, not inherited) for `attach_type`.
pub fn prog_query(cgroup: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match sys_bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // ENOSPC: more programs than room; prog_cnt holds the real count.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() =>
            {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(e) => return Err(e),
        }
    }
}

/// Open a file descriptor for the loaded program with id `id`.
pub fn prog_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    owned_fd(sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_layout_matches_kernel() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        let i = BpfInsn::new(0x61, 2, 1, 4, 0);
        if cfg!(target_endian = "little") {
            assert_eq!(i.regs, 0x12);
        }
    }
}
