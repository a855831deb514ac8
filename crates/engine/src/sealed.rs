//! Run from a sealed in-memory copy of our own binary before joining a container's
//! namespaces (`exec`), so a process in the container can never open and overwrite
//! the engine binary through `/proc/<pid>/exe` (CVE-2019-5736). The copy is a memfd
//! sealed against writes, growth and shrinking, as runc (and `berth-runtime`) do.

use crate::error::{Error, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::ffi::CString;
use std::os::fd::AsFd;

const NAME: &str = "berth-sealed";

/// Whether this process already runs from the sealed copy.
pub fn is_sealed() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with(&format!("/memfd:{NAME}")))
        .unwrap_or(false)
}

fn cstrings(items: impl Iterator<Item = Vec<u8>>) -> Result<Vec<CString>> {
    items
        .map(|b| CString::new(b).map_err(|_| Error::Invalid("argument with a NUL byte".into())))
        .collect()
}

/// Re-executes this process (same arguments and environment) from a sealed copy of
/// its binary, unless it already runs from one. Returns only on failure.
pub fn reexec_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let name = CString::new(NAME).map_err(|_| Error::Invalid("memfd name".into()))?;
    let fd = memfd_create(
        name.as_c_str(),
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| Error::sys("memfd_create", e))?;
    let mut exe = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("open", "/proc/self/exe", e))?;
    let mut copy = std::fs::File::from(fd);
    std::io::copy(&mut exe, &mut copy).map_err(|e| Error::io("copy", "/proc/self/exe", e))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| Error::sys("seal", e))?;
    let args = cstrings(std::env::args_os().map(|a| a.into_encoded_bytes()))?;
    let env = cstrings(std::env::vars_os().map(|(k, v)| {
        let mut b = k.into_encoded_bytes();
        b.push(b'=');
        b.extend(v.into_encoded_bytes());
        b
    }))?;
    let e = nix::unistd::fexecve(copy.as_fd(), &args, &env)
        .err()
        .unwrap_or(nix::Error::UnknownErrno);
    Err(Error::sys("fexecve the sealed copy", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_is_not_sealed() {
        assert!(!is_sealed());
    }
}
