//! Print the context entries a COPY source selects, after `.dockerignore`,
//! one name per line (or, with `--dest D`, where each lands), and the
//! content hash.
//!
//! `cargo run -p berth-build --example select_context -- CONTEXT_DIR [--dest D] [SOURCE...]`

use berth_build::context::{copy_destinations, Context};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: select_context DIR [SOURCE...]"))?;
    let mut sources: Vec<String> = args.collect();
    let mut dest = None;
    if sources.first().map(String::as_str) == Some("--dest") && sources.len() > 1 {
        dest = Some(sources[1].clone());
        sources.drain(..2);
    }
    if sources.is_empty() {
        sources.push(".".into());
    }
    let ctx = Context::open(&dir, None)?;
    let matches = ctx.select(&sources, &[])?;
    match &dest {
        Some(d) => copy_destinations(&matches, d, false)
            .iter()
            .for_each(|i| println!("{}", i.dest)),
        None => matches
            .iter()
            .flat_map(|m| &m.entries)
            .for_each(|e| println!("{}", e.name)),
    }
    println!("hash {}", ctx.content_hash(&matches)?);
    Ok(())
}
