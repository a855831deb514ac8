//! `berth volume create/ls/inspect/rm/prune`, calling the engine directly until the
//! daemon exists.

use crate::format::table;
use berth_engine::{Engine, Volume};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (all unused ones with -a)
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume name
    #[arg(long = "name")]
    name_flag: Option<String>,
    /// Set metadata for a volume (key=value)
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Volume name
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go-template subset ({{.Mountpoint}}, {{json .}})
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Accepted for docker compatibility (a volume in use is never removed)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn json(v: &Volume) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": v.created_at,
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

/// Runs a volume command; exits 1 on failure as docker does.
pub fn run(data_root: &Path, cmd: VolumeCmd) -> anyhow::Result<()> {
    let runtime_root = std::env::var_os("BERTH_RUNTIME_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/run/berth/runtime".into());
    let code = match Engine::new(data_root, runtime_root).and_then(|e| dispatch(&e, cmd)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            1
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn dispatch(e: &Engine, cmd: VolumeCmd) -> Result<i32, berth_engine::Error> {
    match cmd {
        VolumeCmd::Create(a) => {
            let labels: BTreeMap<String, String> = a
                .label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let v = e.volume_create(a.name.or(a.name_flag).as_deref(), labels, false)?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCmd::Ls(a) => {
            let vols = e.volume_list()?;
            if a.quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
                return Ok(0);
            }
            let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
            rows.extend(
                vols.iter()
                    .map(|v| vec!["local".to_string(), v.name.clone()]),
            );
            print!("{}", table(&rows));
            Ok(0)
        }
        VolumeCmd::Inspect(a) => {
            let mut docs = Vec::new();
            let mut code = 0;
            for n in &a.volumes {
                match e.volume_inspect(n) {
                    Ok(v) => docs.push(json(&v)),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        code = 1;
                    }
                }
            }
            Ok(crate::format::print_docs(&docs, a.format.as_deref(), code))
        }
        VolumeCmd::Rm(a) => {
            let _ = a.force;
            let mut code = 0;
            for n in &a.volumes {
                match e.volume_remove(n) {
                    Ok(()) => println!("{n}"),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCmd::Prune(a) => {
            if !a.force {
                eprint!("WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ");
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let removed = e.volume_prune(a.all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: 0B");
            Ok(0)
        }
    }
}
