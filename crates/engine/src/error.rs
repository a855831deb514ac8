//! Errors of the engine, each mapped to the exit code docker's CLI would give.

use std::path::PathBuf;

/// Everything that can go wrong while managing containers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container has that id, id prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// Something other than a container is missing (network, volume, a path in a
    /// container): the whole message, in docker's words.
    #[error("{0}")]
    Missing(String),
    /// An id prefix names more than one container.
    #[error("multiple containers match {0:?}: use more of the id or the name")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the container name \"/{name}\" is already in use by container \"{id}\": remove (or rename) that container to reuse the name")]
    NameInUse {
        /// the name asked for
        name: String,
        /// the container that holds it
        id: String,
    },
    /// Bad user input (flags, names, sizes).
    #[error("{0}")]
    Invalid(String),
    /// The operation does not fit the container's state.
    #[error("{0}")]
    Conflict(String),
    /// The command could not be found in the container (docker's 127).
    #[error("{0}")]
    CommandNotFound(String),
    /// The command exists but cannot be run (docker's 126).
    #[error("{0}")]
    CommandNotExecutable(String),
    /// From the image service.
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    /// From the runtime.
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
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
    /// A stored JSON document is unreadable.
    #[error("cannot parse {path}: {source}: remove the container with `berth rm --force`")]
    Corrupt {
        /// which file
        path: PathBuf,
        /// the cause
        #[source]
        source: serde_json::Error,
    },
    /// A failure the supervisor reported (its message as it gave it).
    #[error("{0}")]
    Reported(String),
    /// From the networking layer.
    #[error(transparent)]
    Network(#[from] berth_network::Error),
    /// The container supervisor failed or went away.
    #[error("container supervisor: {0}")]
    Shim(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The exit status docker's CLI uses for this error: 127 when the command is not
    /// found, 126 when it cannot be run, 125 for every engine failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CommandNotFound(_) => 127,
            Error::CommandNotExecutable(_) => 126,
            _ => 125,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_docker() {
        assert_eq!(Error::CommandNotFound("x".into()).exit_code(), 127);
        assert_eq!(Error::CommandNotExecutable("x".into()).exit_code(), 126);
        assert_eq!(Error::NotFound("x".into()).exit_code(), 125);
    }
}
