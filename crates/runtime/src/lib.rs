//! berth-runtime: the OCI runtime as a library.
//!
//! The engine calls it in-process (no extra exec per container); the `berth-runtime`
//! binary is a runc-compatible command line over it. A container is created from an OCI
//! bundle: the calling process forks the container's init straight into its new
//! namespaces, the init builds the rootfs (mounts, devices, pivot_root, masked and
//! read-only paths), drops privileges (user, capabilities, no_new_privs, seccomp) and
//! waits on an exec fifo until `start`. State lives under a root directory, one locked
//! directory per container.
//!
//! The entry points fork: call them from a single-threaded process (the CLI and the
//! per-container supervisor are).
//!
//! ```no_run
//! use berth_runtime::{CreateOptions, Runtime};
//! let rt = Runtime::new("/run/berth-runtime");
//! let created = rt.create("demo", "/tmp/bundle".as_ref(), CreateOptions::default())?;
//! rt.start("demo")?;
//! # Ok::<(), berth_runtime::Error>(())
//! ```

mod container;
pub mod default_seccomp;
pub mod error;
mod exec;
pub mod features;
mod hooks;
mod init;
pub mod mount;
mod process;
mod rootfs;
mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
pub mod tty;

pub use container::{CreateOptions, Created, Runtime, CGROUP_ROOT};
pub use error::{Error, Result};
pub use exec::ExecOptions;
pub use state::{OciState, Status};
