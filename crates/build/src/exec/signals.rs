//! Interruptions: SIGINT, SIGTERM and SIGHUP are blocked for the whole build
//! and read from a signalfd, so that Ctrl-C fails the build through the normal
//! error path and every guard (mounts, snapshots, the RUN container) cleans
//! up. The runtime's init unblocks every signal before it executes a RUN
//! command, so containers still get default signal handling.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{ExecError, Result};

/// The blocked signals and their signalfd; the old mask comes back on drop.
pub struct Interrupts {
    fd: SignalFd,
    old: SigSet,
}

impl Interrupts {
    /// Block SIGINT, SIGTERM and SIGHUP for this thread and watch them.
    pub fn block() -> Result<Self> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        let sys = |op: &str| {
            let op = op.to_string();
            move |error| ExecError::Sys { op, error }
        };
        let old = set
            .thread_swap_mask(SigmaskHow::SIG_BLOCK)
            .map_err(sys("block SIGINT and SIGTERM"))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC);
        match fd {
            Ok(fd) => Ok(Self { fd, old }),
            Err(e) => {
                let _ = old.thread_set_mask();
                Err(sys("watch SIGINT and SIGTERM")(e))
            }
        }
    }

    /// Fail with [`ExecError::Interrupted`] when a signal arrived.
    pub fn check(&self) -> Result<()> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Err(ExecError::Interrupted(
                Signal::try_from(info.ssi_signo as i32)
                    .map_or_else(|_| "a signal".into(), |s| s.to_string()),
            )),
            _ => Ok(()),
        }
    }
}

impl AsFd for Interrupts {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        let _ = self.old.thread_set_mask();
    }
}
