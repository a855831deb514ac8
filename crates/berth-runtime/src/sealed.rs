//! Run from a sealed in-memory copy of our own binary, so that a process inside a
//! container can never open and overwrite the runtime binary through /proc/<pid>/exe
//! (CVE-2019-5736). The copy is a memfd with write, grow, shrink and seal seals.

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsFd;

const NAME: &str = "berth-runtime-sealed";

/// Whether we already run from the sealed copy.
fn sealed() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with(&format!("/memfd:{NAME}")))
        .unwrap_or(false)
}

/// Re-exec from a sealed memfd copy unless already doing so. Returns only on failure
/// (the caller goes on with a warning) or when already sealed.
pub fn ensure() -> Result<(), String> {
    if sealed() {
        return Ok(());
    }
    let name = CString::new(NAME).map_err(|e| e.to_string())?;
    let fd = memfd_create(
        name.as_c_str(),
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| format!("memfd_create: {e}"))?;
    let exe = std::fs::read("/proc/self/exe").map_err(|e| format!("read /proc/self/exe: {e}"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(&exe).map_err(|e| format!("copy binary: {e}"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(f.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| format!("seal: {e}"))?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let e = nix::unistd::fexecve(f.as_fd(), &args, &env).err();
    Err(format!(
        "fexecve sealed copy: {}",
        e.map(|e| e.to_string()).unwrap_or_default()
    ))
}
