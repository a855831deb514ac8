//! berth-sys: the one place in berth where `unsafe` is allowed.
//!
//! Each function wraps one system call (or a tiny fixed sequence of them) behind a
//! safe signature. Every `unsafe` block carries a `// SAFETY:` comment naming the
//! invariant it relies on; the workspace denies undocumented unsafe blocks.
//!
//! ```no_run
//! let fds = berth_sys::proc::close_range_cloexec(3);
//! ```

pub mod bpf;
pub mod proc;
