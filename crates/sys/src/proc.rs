//! Process-level wrappers: fork with namespace flags, fd hygiene, terminal control,
//! and the few process attributes nix does not wrap.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Result of [`fork_with_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the parent; the child has this pid (in our pid namespace).
    Parent(i32),
    /// We are the child.
    Child,
}

/// fork(2) that also creates the namespaces in `flags` (`CLONE_NEW*`), via clone(2)
/// without a new stack, so the child continues on a copy of the parent's stack.
///
/// The child must only run code that is safe after fork: the caller must be
/// single-threaded (berth's runtime entry points are), or the child must limit itself to
/// async-signal-safe calls until it execs.
pub fn fork_with_flags(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: clone with a null stack pointer and without CLONE_VM behaves like fork(2):
    // the child gets a copy-on-write copy of the address space and resumes here. No
    // pointers are passed (ptid/ctid/tls are null). Single-threadedness is the caller's
    // documented obligation.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Mark every fd `>= first` close-on-exec (close_range with CLOSE_RANGE_CLOEXEC), so
/// nothing of ours leaks into the program we exec.
pub fn close_range_cloexec(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags of this process; no memory is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make `fd` (a terminal) the controlling terminal of this session (TIOCSCTTY).
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument by value; fd is a valid borrowed fd.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open the peer (slave) side of a pty master without resolving any path (TIOCGPTPEER).
pub fn open_pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags by value and returns a new fd or -1.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a freshly returned fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Set the terminal window size (TIOCSWINSZ).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct through the pointer, which is valid for
    // the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read the terminal window size (TIOCGWINSZ): (rows, cols).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize struct through the pointer, which points to a
    // live, properly aligned local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// setdomainname(2) (NIS domain name of the UTS namespace).
pub fn set_domainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe the bytes of `name`, valid for the call.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, class<<13 | level) for the calling process.
pub fn set_io_priority(class: u32, level: u32) -> io::Result<()> {
    let prio = ((class & 0x7) << 13) | (level & 0x1fff);
    // SAFETY: ioprio_set takes three integers; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sched_setscheduler(0, policy, priority) for the calling process.
pub fn set_scheduler(policy: i32, priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: the param pointer refers to a live local for the duration of the call.
    let r = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// _exit(2): leave the process at once, without running atexit handlers or
/// destructors (used by forked children that must not unwind into the parent's code).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Take ownership of a raw descriptor the kernel just installed (e.g. received with
/// SCM_RIGHTS or returned by a raw system call).
pub fn own_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor that is open and owned by nobody else; the
    // returned OwnedFd becomes its only owner and closes it on drop.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// pidfd_open(2): a descriptor that becomes readable (POLLIN) when process `pid`
/// exits, for any process, not only our children. Used to watch supervisors that a
/// previous daemon started.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, passes no memory, and returns a new
    // descriptor that nobody else owns (or -1).
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(own_fd(r as i32))
}

/// Gives back the pages of the calling thread's stack below the current frame (less
/// a 16 KiB margin for what it calls next): a thread that did deep work and then
/// blocks for long (a daemon's `wait` or `logs -f` client) keeps resident only what it
/// still uses. Pages touched again come back zero-filled. Only for spawned threads
/// (the main thread's stack is not a fixed mapping).
pub fn release_idle_stack() -> io::Result<()> {
    const MARGIN: usize = 16 << 10;
    const PAGE: usize = 4096;
    let marker = 0u8;
    let sp = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np initialises `attr` for the calling thread (it is
    // destroyed below, whatever happens next).
    let r = unsafe { libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    let mut addr: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `attr` was initialised above; `addr` and `size` are valid out-pointers.
    let r = unsafe { libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) };
    // SAFETY: `attr` was initialised by pthread_getattr_np and is not used after this.
    unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    let low = (addr as usize).div_ceil(PAGE) * PAGE;
    let high = sp.saturating_sub(MARGIN) / PAGE * PAGE;
    if sp < addr as usize || sp > addr as usize + size || high <= low {
        return Ok(());
    }
    // SAFETY: [low, high) is in this thread's own stack and at least MARGIN below the
    // current frame: the stack grows down, so no live frame, and nothing else, uses
    // it. MADV_DONTNEED on this private anonymous memory only drops its pages; they
    // read as zeros when touched again.
    let r = unsafe { libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// mallopt(M_ARENA_MAX, n): glibc keeps at most `n` malloc arenas, instead of one per
/// thread that ever allocated (up to 8 per core), so a daemon with a thread per
/// connection does not keep a heap per thread. Returns whether glibc took it.
pub fn limit_malloc_arenas(n: i32) -> bool {
    // SAFETY: mallopt takes two integers and only changes the allocator's settings;
    // called before other threads exist.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
}

/// dup2(2) on raw descriptor numbers (stdio plumbing in a forked child).
pub fn dup2_raw(old: std::os::fd::RawFd, new: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: dup2 only manipulates this process's descriptor table; an invalid `old`
    // yields EBADF. Callers own `new` (stdio slots of a child about to exec).
    let r = unsafe { libc::dup2(old, new) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// setpriority(PRIO_PROCESS, 0, nice) for the calling process.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments, no memory passed.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// clone3(2) used like fork: new namespaces from `flags` and, when `cgroup` is given
/// (a descriptor of a cgroup2 directory), born directly into that cgroup
/// (CLONE_INTO_CGROUP), which spares the global cgroup write lock of a later move.
/// Same single-threaded obligation as [`fork_with_flags`].
pub fn fork_into_cgroup(flags: libc::c_int, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args = CloneArgs {
        flags: flags as u32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 reads `args` (a live, correctly sized #[repr(C)] struct) during the
    // call only. With stack = 0 and no CLONE_VM it behaves like fork(2): the child gets
    // a copy-on-write copy of the address space and resumes here.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Restore SIGPIPE to its default action and unblock every signal, undoing what the
/// Rust runtime (which ignores SIGPIPE) and the caller set, before exec'ing a program
/// that expects a clean slate. Other inherited ignored signals are kept, as runc does.
pub fn reset_signals_for_exec() -> io::Result<()> {
    // SAFETY: setting SIG_DFL installs no handler code; the call only changes this
    // process's disposition of SIGPIPE.
    let r = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if r == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    nix::sys::signal::SigSet::all()
        .thread_unblock()
        .map_err(io::Error::from)
}

/// Join a new session keyring named `name` (keyctl KEYCTL_JOIN_SESSION_KEYRING), so the
/// container does not share the caller's keys. ENOSYS (no key support) is not an error.
pub fn join_session_keyring(name: &std::ffi::CStr) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: the name pointer refers to a NUL-terminated string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// personality(2): set the execution domain (e.g. PER_LINUX32 = 0x0008) of this process.
pub fn set_personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: personality takes one integer and touches no memory of ours.
    let r = unsafe { libc::personality(persona) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Touches about `kib` KiB of stack.
    #[inline(never)]
    fn deep(kib: usize) -> u8 {
        let mut a = [0u8; 1024];
        a[kib % 1024] = kib as u8;
        let a = std::hint::black_box(a);
        if kib == 0 {
            return a[0];
        }
        a[kib % 1024].wrapping_add(deep(kib - 1))
    }

    #[test]
    fn idle_stack_is_given_back_and_can_be_used_again() {
        let t = std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| {
                let before = deep(1024);
                let keep = [7u8; 512];
                release_idle_stack().expect("release");
                // what is in use survives; what was given back works again
                assert_eq!(std::hint::black_box(keep)[511], 7);
                assert_eq!(deep(1024), before);
            })
            .expect("spawn");
        t.join().expect("the thread ran");
    }
}
