//! The hidden command of a container's lifecycle: `container-shim-finish` (the slim
//! supervisor hands a container's exit back with it). And [`supervisor_fast_path`]: the
//! supervisor's own command lines, recognised before the full grammar is built.

use berth_engine::Engine;
use clap::Args;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The hidden `container-shim-finish` command: `berth-shim` hands a container's exit
/// back with it.
#[derive(Args)]
pub struct FinishArgs {
    /// Descriptor on which to report the exit
    #[arg(long)]
    status_fd: Option<i32>,
    id: String,
    code: i32,
}

/// Records the exit of a container the slim supervisor ran and exits.
pub fn finish(data_root: &Path, a: &FinishArgs) -> anyhow::Result<()> {
    let code = engine(data_root)?.finish_handed_back(&a.id, a.code, a.status_fd);
    std::process::exit(code)
}

fn engine(data_root: &Path) -> anyhow::Result<Engine> {
    let runtime_root =
        std::env::var_os("BERTH_RUNTIME_ROOT").unwrap_or_else(|| "/run/berth/runtime".into());
    Ok(Engine::new(data_root, runtime_root)?)
}

/// The supervisor's command lines exactly as the engine spawns them, recognised
/// without clap: one starts for every container, on `run`'s critical path, where
/// building the whole command grammar would be most of its start-up.
/// - `<exe> --data-root <root> container-shim --status-fd <n> <id>`;
/// - `<exe> --data-root <root> container-shim-finish --status-fd <n> <id> <code>`.
///
/// Runs the command and exits; returns for any other command line (clap parses it,
/// and says what is wrong with a malformed one).
pub fn supervisor_fast_path(args: &[OsString]) -> Option<()> {
    let a: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let (root, rest) = match a.as_slice() {
        [_, "--data-root", root, rest @ ..] => (PathBuf::from(root), rest),
        _ => return None,
    };
    match rest {
        ["container-shim", "--status-fd", fd, id] => {
            let fd = fd.parse().ok()?;
            let exe = std::env::current_exe().ok()?;
            let e = engine(&root).ok()?;
            let argv = vec![
                exe.into(),
                "--data-root".into(),
                e.data_root().into(),
                "container-shim".into(),
            ];
            std::process::exit(e.with_shim(argv).shim(id, Some(fd)))
        }
        ["container-shim-finish", "--status-fd", fd, id, code] => {
            let (fd, code) = (fd.parse().ok()?, code.parse().ok()?);
            let e = engine(&root).ok()?;
            std::process::exit(e.finish_handed_back(id, code, Some(fd)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_command_lines_are_left_to_clap() {
        let v = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        for args in [
            v(&["berth", "run", "--rm", "img", "true"]),
            v(&["berth", "--data-root", "/x", "container-shim", "id"]),
            v(&[
                "berth",
                "--data-root",
                "/x",
                "container-shim",
                "--status-fd",
                "x",
                "id",
            ]),
            v(&[
                "berth",
                "--data-root",
                "/x",
                "container-shim-finish",
                "--status-fd",
                "3",
                "id",
                "z",
            ]),
            v(&["berth", "container-shim", "--status-fd", "3", "id"]),
        ] {
            assert_eq!(supervisor_fast_path(&args), None, "{args:?}");
        }
    }
}
