//! Build a context directory into a data root with the library, progress
//! rendered as `--progress` says (how the CLI and the daemon hook in).
//!
//! `cargo run -p berth-build --example build -- DATA_ROOT CONTEXT_DIR TAG [auto|plain|tty|quiet|classic|json] [--no-cache]`

use berth_build::context::Context;
use berth_build::exec::progress::{for_stderr, JsonLines, Progress};
use berth_build::exec::{build_with, Request};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, dir, tag, rest @ ..] = &args[..] else {
        anyhow::bail!("usage: build DATA_ROOT CONTEXT_DIR TAG [PROGRESS]");
    };
    let no_cache = rest.iter().any(|a| a == "--no-cache");
    let mode = rest
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("auto", String::as_str);
    let images = berth_image::Images::open(root)?;
    let df_path = std::path::Path::new(dir).join("Dockerfile");
    let ctx = Context::open(dir, Some(&df_path))?;
    let mut req = Request::new(std::fs::read_to_string(&df_path)?, vec![tag.clone()]);
    req.no_cache = no_cache;
    let mut progress: Box<dyn Progress> = match mode {
        "json" => Box::new(JsonLines::new(std::io::stdout())),
        m => for_stderr(m)
            .ok_or_else(|| anyhow::anyhow!("--progress {m}: use auto, plain, tty or quiet"))?,
    };
    let runtime = std::path::Path::new(root).join("runtime");
    let built = build_with(&images, &runtime, &ctx, &req, progress.as_mut())?;
    drop(progress);
    println!("{}", built.id);
    Ok(())
}
