//! Print what the front end makes of a Dockerfile: the target stage's image
//! config and its steps, as JSON (base images are taken as empty).
//!
//! `cargo run -p berth-build --example eval_dockerfile -- Dockerfile [--target T] [--build-arg K=V]...`

use std::collections::BTreeMap;

use berth_build::eval::BuildOptions;
use berth_build::plan::Plan;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: eval_dockerfile FILE [--target T] [--build-arg K=V]")
    })?;
    let mut target = None;
    let mut build_args = BTreeMap::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--target" => target = args.next(),
            "--build-arg" => {
                let kv = args.next().unwrap_or_default();
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                build_args.insert(k.to_string(), v.to_string());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let src = std::fs::read_to_string(&path)?;
    let opts = BuildOptions {
        build_args,
        ..Default::default()
    };
    let plan = Plan::new(&src, opts, target.as_deref())?;
    let mut stages = plan.eval_all(|_, _| Ok(Default::default()))?;
    let out = stages
        .remove(&plan.target)
        .map(|p| serde_json::json!({"config": p.config, "steps": p.steps}));
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
