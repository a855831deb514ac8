//! Describe-then-apply: planners return [`Op`]s, an [`Executor`] applies them.
//!
//! Only [`System`] touches the host; [`Recorder`] keeps the ops for unit
//! tests, so every planner is testable without root.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Errors of applying ops.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program is not installed.
    #[error("{program} not found: install the Debian package {package}")]
    Missing {
        /// The program.
        program: String,
        /// The package that provides it.
        package: &'static str,
    },
    /// The program ran and failed.
    #[error("`{op}` failed ({status}): {stderr}")]
    Failed {
        /// The op, printed as a shell line.
        op: String,
        /// The exit status.
        status: String,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// A netlink request failed.
    #[error("`{op}` failed")]
    Netlink {
        /// The op, printed as the equivalent `ip` commands.
        op: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// Spawning or writing failed.
    #[error("`{op}`")]
    Io {
        /// The op, printed as a shell line.
        op: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of applying ops.
pub type Result<T> = std::result::Result<T, Error>;

/// One change to the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Run a program.
    Run {
        /// The program (looked up in PATH).
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// Fed on stdin when present.
        stdin: Option<String>,
        /// A failure is logged and ignored (teardown of what may be gone).
        tolerate_failure: bool,
    },
    /// A per-container change applied over netlink.
    Net(crate::netlink::NetOp),
    /// Write a small file (a sysctl under /proc/sys).
    Write {
        /// The file.
        path: PathBuf,
        /// Its new contents.
        contents: String,
    },
}

impl Op {
    /// `program args...`.
    pub fn run<S: AsRef<str>>(program: &str, args: impl IntoIterator<Item = S>) -> Self {
        Op::Run {
            program: program.to_string(),
            args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
            stdin: None,
            tolerate_failure: false,
        }
    }

    /// `ip args...`.
    pub fn ip<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Self {
        Op::run("ip", args)
    }

    /// `ip args...` run inside the network namespace at `netns` (a path such
    /// as `/proc/<pid>/ns/net` or `/run/netns/<name>`), through `nsenter`.
    pub fn ip_in<S: AsRef<str>>(netns: &Path, args: impl IntoIterator<Item = S>) -> Self {
        let mut v = vec![
            format!("--net={}", netns.display()),
            "--".into(),
            "ip".into(),
        ];
        v.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        Op::run("nsenter", v)
    }

    /// `nft -f -` with `script` on stdin (applied atomically by nft).
    pub fn nft_script(script: String) -> Self {
        Op::Run {
            program: "nft".into(),
            args: vec!["-f".into(), "-".into()],
            stdin: Some(script),
            tolerate_failure: false,
        }
    }

    /// The same op, with failures ignored.
    pub fn tolerant(mut self) -> Self {
        if let Op::Run {
            tolerate_failure, ..
        } = &mut self
        {
            *tolerate_failure = true;
        }
        self
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Run {
                program,
                args,
                stdin,
                ..
            } => {
                write!(f, "{program}")?;
                for a in args {
                    write!(f, " {a}")?;
                }
                if let Some(s) = stdin {
                    write!(f, " <<EOF\n{s}EOF")?;
                }
                Ok(())
            }
            Op::Write { path, contents } => {
                write!(f, "echo {} > {}", contents.trim(), path.display())
            }
            Op::Net(op) => op.fmt(f),
        }
    }
}

/// Applies ops.
pub trait Executor: Send + Sync {
    /// Applies one op and returns its stdout.
    fn run(&self, op: &Op) -> Result<String>;

    /// Applies ops in order, stopping at the first failure.
    fn apply(&self, ops: &[Op]) -> Result<()> {
        for op in ops {
            self.run(op)?;
        }
        Ok(())
    }
}

/// The Debian package that provides `program`.
pub fn package_of(program: &str) -> &'static str {
    match program {
        "ip" => "iproute2",
        "nft" => "nftables",
        "nsenter" => "util-linux",
        _ => "providing it",
    }
}

/// Applies ops on the host.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl Executor for System {
    fn run(&self, op: &Op) -> Result<String> {
        match op {
            Op::Net(n) => {
                tracing::debug!(op = %n, "network op");
                crate::netlink::apply(n).map_err(|source| Error::Netlink {
                    op: n.to_string(),
                    source,
                })?;
                Ok(String::new())
            }
            Op::Write { path, contents } => {
                std::fs::write(path, contents).map_err(|source| Error::Io {
                    op: op.to_string(),
                    source,
                })?;
                Ok(String::new())
            }
            Op::Run {
                program,
                args,
                stdin,
                tolerate_failure,
            } => {
                tracing::debug!(op = %op, "network op");
                let mut cmd = Command::new(program);
                cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
                cmd.stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                });
                let mut child = cmd.spawn().map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => Error::Missing {
                        program: program.clone(),
                        package: package_of(program),
                    },
                    _ => Error::Io {
                        op: op.to_string(),
                        source,
                    },
                })?;
                if let (Some(s), Some(mut w)) = (stdin, child.stdin.take()) {
                    w.write_all(s.as_bytes()).map_err(|source| Error::Io {
                        op: op.to_string(),
                        source,
                    })?;
                }
                let out = child.wait_with_output().map_err(|source| Error::Io {
                    op: op.to_string(),
                    source,
                })?;
                let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if !out.status.success() {
                    if *tolerate_failure {
                        tracing::debug!(op = %op, %stderr, "ignored failure");
                    } else {
                        return Err(Error::Failed {
                            op: op.to_string(),
                            status: out.status.to_string(),
                            stderr,
                        });
                    }
                }
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
        }
    }
}

/// Records ops without applying them (unit tests, dry runs).
#[derive(Debug, Default)]
pub struct Recorder {
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    /// The ops recorded so far, as shell lines.
    pub fn lines(&self) -> Vec<String> {
        self.ops
            .lock()
            .map(|v| v.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }
}

impl Executor for Recorder {
    fn run(&self, op: &Op) -> Result<String> {
        if let Ok(mut v) = self.ops.lock() {
            v.push(op.clone());
        }
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_missing_program() {
        let op = Op::ip_in(Path::new("/run/netns/x"), ["link", "set", "lo", "up"]);
        assert_eq!(
            op.to_string(),
            "nsenter --net=/run/netns/x -- ip link set lo up"
        );
        let err = System
            .run(&Op::run("nft-not-here-berth", ["x"]))
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        assert_eq!(package_of("nft"), "nftables");
        let r = Recorder::default();
        r.apply(&[Op::ip(["link"]), Op::nft_script("x".into())])
            .unwrap();
        assert_eq!(r.lines(), vec!["ip link", "nft -f - <<EOF\nxEOF"]);
    }
}
