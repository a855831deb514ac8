//! `berth inspect`: docker's type-agnostic inspect. Each name is looked up as a
//! container, then an image, a network and a volume (docker's order; the first
//! match wins), or only as `--type`.

use berth_client::{enc, Client};
use clap::Args;
use serde_json::Value;
use std::path::Path;

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go-template subset ({{.Id}}, {{.State.Status}}, {{json .}})
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    size: bool,
    /// Return JSON for the specified type (container, image, network, volume)
    #[arg(long = "type")]
    kind: Option<String>,
    /// Names or IDs of objects
    #[arg(required = true, value_name = "NAME|ID")]
    names: Vec<String>,
}

/// The object types, in the order docker tries them.
const KINDS: [&str; 4] = ["container", "image", "network", "volume"];

/// Runs `inspect`; returns the exit code (1 when any name was not found).
pub fn run(data_root: &Path, a: &InspectArgs) -> anyhow::Result<i32> {
    let kinds: Vec<&str> = match a.kind.as_deref() {
        None => KINDS.to_vec(),
        Some(k) if KINDS.contains(&k) => vec![k],
        Some(k) => anyhow::bail!(
            "{k:?} is not a valid value for --type: use one of {}",
            KINDS.join(", ")
        ),
    };
    let c = crate::daemon::client(data_root)?;
    let (docs, code) = crate::format::inspect_each(&a.names, |n| lookup(&c, &kinds, n, a.size));
    Ok(crate::format::print_docs(&docs, a.format.as_deref(), code))
}

/// The first of `kinds` that has an object called `name`.
fn lookup(c: &Client, kinds: &[&str], name: &str, size: bool) -> Result<Value, String> {
    for kind in kinds {
        let path = match *kind {
            "container" if size => format!("/containers/{}/json?size=1", enc(name)),
            "container" => format!("/containers/{}/json", enc(name)),
            "image" => format!("/images/{}/json", enc(name)),
            "network" => format!("/networks/{}", enc(name)),
            _ => format!("/volumes/{}", enc(name)),
        };
        match c.get_json(&path) {
            Err(berth_client::Error::Api { status: 404, .. }) => continue,
            r => return r.map_err(|e| e.to_string()),
        }
    }
    let what = match kinds {
        [one] => one,
        _ => "object",
    };
    // docker's words for it
    Err(format!("Error: No such {what}: {name}"))
}
