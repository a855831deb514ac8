//! The hidden commands of a container's lifecycle: `container-shim-finish` (the slim
//! supervisor hands a container's exit back with it) and `health-monitor` (started by
//! a container's supervisor to run its healthcheck).

use berth_engine::Engine;
use clap::Args;
use std::path::Path;

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

/// The hidden `health-monitor` command: runs container `id`'s healthcheck until it
/// stops (started by the container's supervisor).
pub fn health_monitor(data_root: &Path, id: &str) -> anyhow::Result<()> {
    engine(data_root)?.health_monitor(id)?;
    Ok(())
}
