//! Errors of the runtime library.

use std::path::PathBuf;

/// Everything that can go wrong while managing a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json is malformed or asks for something invalid; names the field.
    #[error("config.json: {0}")]
    Config(String),
    /// The container id is already taken.
    #[error("container {0:?} already exists: choose another id or delete it first")]
    Exists(String),
    /// No container with that id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The container id is not a valid name.
    #[error("invalid container id {0:?}: use letters, digits, '_', '-', '.' and start with a letter or digit")]
    InvalidId(String),
    /// The operation is not allowed in the container's current state.
    #[error("container {id:?} is {status}: {what}")]
    BadState {
        /// container id
        id: String,
        /// current status
        status: String,
        /// what cannot be done and what to do
        what: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// what was being done
        op: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// what was being done
        op: String,
        /// the errno
        #[source]
        source: nix::Error,
    },
    /// The cgroup could not be set up.
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    /// The container's init process reported a failure while setting up.
    #[error("{0}")]
    Init(String),
    /// A hook failed.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        /// prestart, createRuntime, ...
        kind: &'static str,
        /// the hook's path
        path: PathBuf,
        /// what happened
        reason: String,
    },
    /// Bad user input on the command line or API (signal names, sizes).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }
}
