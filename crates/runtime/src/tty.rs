//! Terminals: the container side creates a pty in its own devpts and sends the master
//! over the console socket with SCM_RIGHTS, exactly as runc does; the caller side can
//! receive it and relay it to its own terminal.

use crate::error::{Error, Result};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// Open a new pty in the container's /dev/ptmx; returns (master, peer).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let m = nix::pty::posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )
    .map_err(|e| Error::sys("open /dev/ptmx (is /dev/pts mounted?)", e))?;
    nix::pty::unlockpt(&m).map_err(|e| Error::sys("unlockpt", e))?;
    let master: OwnedFd = m.into();
    let peer = berth_sys::proc::open_pty_peer(master.as_fd())
        .map_err(|e| Error::Init(format!("open pty peer: {e}")))?;
    Ok((master, peer))
}

/// Send `fd` over the unix socket `sock` with the name runc uses.
pub fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> Result<()> {
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send pty master over the console socket", e))?;
    Ok(())
}

/// Receive one fd sent with [`send_fd`].
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| Error::sys("receive pty master", e))?;
    for c in msg
        .cmsgs()
        .map_err(|e| Error::sys("read control message", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // recvmsg just installed this descriptor; nothing else owns it.
                return Ok(berth_sys::proc::own_fd(*fd));
            }
        }
    }
    Err(Error::Init(
        "console socket: no file descriptor received".into(),
    ))
}

/// Relay between our stdin/stdout and the pty master until the container side closes.
/// Puts our terminal in raw mode for the duration when stdin is a tty.
pub fn relay(master: OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::termios;
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        if let Ok((r, c)) = berth_sys::proc::window_size(stdin.as_fd()) {
            let _ = berth_sys::proc::set_window_size(master.as_fd(), r, c);
        }
    }
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let m_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let i_ev = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if m_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(master.as_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => break,
                Ok(n) => write_all(std::io::stdout().as_fd(), &buf[..n]),
                Err(nix::Error::EINTR) => {}
                Err(_) => break,
            }
        }
        if i_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n]),
            }
        }
    }
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &t);
    }
    Ok(())
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
    }
}
