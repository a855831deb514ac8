//! `berth volume create/ls/inspect/rm/prune`, over the daemon's API.

use crate::format::{human_size, inspect_each, remove_each, render, table};
use berth_client::{enc, Client};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(Box<CreateArgs>),
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
    /// Specify volume driver name (local only)
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set driver specific options: type=, device=, o= (e.g. -o type=tmpfs -o
    /// device=tmpfs -o o=size=64m)
    #[arg(short, long)]
    opt: Vec<String>,
    /// Cluster Volume availability (swarm only: not supported)
    #[arg(long)]
    availability: Option<String>,
    /// Cluster Volume group (swarm only: not supported)
    #[arg(long)]
    group: Option<String>,
    /// Minimum size of the Cluster Volume in bytes (swarm only: not supported)
    #[arg(long)]
    limit_bytes: Option<String>,
    /// Maximum size of the Cluster Volume in bytes (swarm only: not supported)
    #[arg(long)]
    required_bytes: Option<String>,
    /// Cluster Volume access scope (swarm only: not supported)
    #[arg(long)]
    scope: Option<String>,
    /// Cluster Volume secrets (swarm only: not supported)
    #[arg(long)]
    secret: Vec<String>,
    /// Cluster Volume access sharing (swarm only: not supported)
    #[arg(long)]
    sharing: Option<String>,
    /// A topology that the Cluster Volume would be preferred in (swarm only: not supported)
    #[arg(long)]
    topology_preferred: Vec<String>,
    /// A topology that the Cluster Volume must be accessible from (swarm only: not supported)
    #[arg(long)]
    topology_required: Vec<String>,
    /// Cluster Volume access type (swarm only: not supported)
    #[arg(long = "type")]
    access_type: Option<String>,
    /// Volume name
    name: Option<String>,
}

impl CreateArgs {
    /// The swarm-only flags given, by name.
    fn cluster_flags(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |given: bool, name: &'static str| {
            if given {
                out.push(name);
            }
        };
        add(self.availability.is_some(), "--availability");
        add(self.group.is_some(), "--group");
        add(self.limit_bytes.is_some(), "--limit-bytes");
        add(self.required_bytes.is_some(), "--required-bytes");
        add(self.scope.is_some(), "--scope");
        add(!self.secret.is_empty(), "--secret");
        add(self.sharing.is_some(), "--sharing");
        add(!self.topology_preferred.is_empty(), "--topology-preferred");
        add(!self.topology_required.is_empty(), "--topology-required");
        add(self.access_type.is_some(), "--type");
        out
    }
}

/// `volume create`: the local driver only, with its options; the swarm flags fail.
fn create(c: &Client, a: CreateArgs) -> anyhow::Result<i32> {
    let cluster = a.cluster_flags();
    if !cluster.is_empty() {
        anyhow::bail!(
            "{} {} only supported for cluster volumes (swarm), which berth does not run",
            cluster.join(", "),
            if cluster.len() == 1 { "is" } else { "are" }
        );
    }
    if a.driver != "local" {
        anyhow::bail!(
            "volume driver {:?} is not supported: berth has the local driver only (leave --driver out)",
            a.driver
        );
    }
    let kv = |flag: &str, l: &str| -> anyhow::Result<(String, String)> {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ if flag == "--label" && !l.is_empty() => Ok((l.to_string(), String::new())),
            _ => anyhow::bail!("{flag} {l:?}: use key=value"),
        }
    };
    let labels = a
        .label
        .iter()
        .map(|l| kv("--label", l))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let opts = a
        .opt
        .iter()
        .map(|o| kv("--opt", o))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let name = a.name.or(a.name_flag).unwrap_or_default();
    let v = c.post_json(
        "/volumes/create",
        Some(&serde_json::json!({"Name": name, "Labels": labels, "Driver": "local", "DriverOpts": opts})),
    )?;
    println!("{}", v["Name"].as_str().unwrap_or_default());
    Ok(0)
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (name=, label=, dangling=, driver=)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go-template subset ({{.Name}}, {{.Driver}}, {{.Mountpoint}})
    #[arg(long)]
    format: Option<String>,
    /// Display only cluster volumes (swarm: berth has none)
    #[arg(long)]
    cluster: bool,
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
    /// Do not fail on a missing volume (a volume in use is never removed)
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
    /// Provide filter values (label=)
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// Runs a volume command; exits 1 on failure as docker does.
pub fn run(data_root: &Path, cmd: VolumeCmd) -> anyhow::Result<()> {
    let c = crate::daemon::client(data_root)?;
    let code = match dispatch(&c, cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn dispatch(c: &Client, cmd: VolumeCmd) -> anyhow::Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(c, *a),
        VolumeCmd::Ls(a) if a.cluster => anyhow::bail!(
            "--cluster is only supported for cluster volumes (swarm), which berth does not run"
        ),
        VolumeCmd::Ls(a) => {
            let q = crate::image::filters_query(&a.filter, &[])?;
            let v = c.get_json(&format!("/volumes?filters={q}"))?;
            let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            let name = |v: &serde_json::Value| v["Name"].as_str().unwrap_or_default().to_string();
            if a.quiet {
                vols.iter().for_each(|v| println!("{}", name(v)));
                return Ok(0);
            }
            if let Some(f) = &a.format {
                for v in &vols {
                    println!("{}", render(f, v)?);
                }
                return Ok(0);
            }
            let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
            rows.extend(vols.iter().map(|v| vec!["local".to_string(), name(v)]));
            print!("{}", table(&rows));
            Ok(0)
        }
        VolumeCmd::Inspect(a) => {
            let (docs, code) =
                inspect_each(&a.volumes, |n| c.get_json(&format!("/volumes/{}", enc(n))));
            Ok(crate::format::print_docs(&docs, a.format.as_deref(), code))
        }
        VolumeCmd::Rm(a) => {
            let force = if a.force { "?force=1" } else { "" };
            Ok(remove_each(&a.volumes, |n| {
                c.delete(&format!("/volumes/{}{force}", enc(n)))
                    .map(|_| true)
            }))
        }
        VolumeCmd::Prune(a) => {
            if !a.force
                && !crate::image::confirm(if a.all {
                    "all local volumes not used by at least one container"
                } else {
                    "anonymous local volumes not used by at least one container"
                })?
            {
                return Ok(0);
            }
            let bytes = prune_volumes(c, a.all, &a.filter)?;
            println!("Total reclaimed space: {}", human_size(bytes));
            Ok(0)
        }
    }
}

/// `POST /volumes/prune`: prints the removed volumes, returns the bytes reclaimed.
pub fn prune_volumes(c: &Client, all: bool, filter: &[String]) -> anyhow::Result<u64> {
    let extra: &[(&str, &str)] = if all { &[("all", "true")] } else { &[] };
    let q = crate::image::filters_query(filter, extra)?;
    let v = c.post_json(&format!("/volumes/prune?filters={q}"), None)?;
    let gone = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
    if !gone.is_empty() {
        println!("Deleted Volumes:");
        gone.iter()
            .for_each(|n| println!("{}", n.as_str().unwrap_or_default()));
        println!();
    }
    Ok(v["SpaceReclaimed"].as_u64().unwrap_or(0))
}
