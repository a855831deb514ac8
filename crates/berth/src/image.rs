//! `berth image …` and `berth system df`.

use crate::format::{human_since, human_size, render, table};
use anyhow::{bail, Context, Result};
use berth_image::{Images, Reference};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Download an image from a registry
    Pull(crate::registry::PullArgs),
    /// Upload an image to a registry
    Push(crate::registry::PushArgs),
}

#[derive(Args)]
pub struct LsArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a Go-template subset ({{.Repository}}, {{.Tag}}, {{.ID}}, ...)
    #[arg(long)]
    format: Option<String>,
    /// Only images matching this reference
    reference: Option<String>,
}

#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go-template subset ({{.Id}}, {{.Config.Cmd}}, {{json .}})
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    image: String,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long, default_value = "")]
    message: String,
    /// A rootfs tarball, or - for STDIN
    file: String,
    reference: Option<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn open(root: &Path) -> Result<Images> {
    Images::open(root)
        .with_context(|| format!("cannot open the image store under {}", root.display()))
}

pub fn run(root: &Path, cmd: ImageCmd) -> Result<()> {
    match &cmd {
        ImageCmd::Pull(a) => return crate::registry::pull(root, a),
        ImageCmd::Push(a) => return crate::registry::push(root, a),
        _ => {}
    }
    let images = open(root)?;
    match cmd {
        ImageCmd::Ls(a) => ls(&images, &a),
        ImageCmd::Tag(a) => Ok(images.tag(&a.source, &a.target)?),
        ImageCmd::Rm(a) => rm(&images, &a),
        ImageCmd::Inspect(a) => inspect(&images, &a),
        ImageCmd::History(a) => history(&images, &a),
        ImageCmd::Save(a) => save(&images, &a),
        ImageCmd::Load(a) => load(&images, &a),
        ImageCmd::Import(a) => import(&images, &a),
        ImageCmd::Prune(a) => prune(&images, &a),
        ImageCmd::Pull(_) | ImageCmd::Push(_) => Ok(()),
    }
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn ls(images: &Images, a: &LsArgs) -> Result<()> {
    let filter = a.reference.as_deref().map(Reference::parse).transpose()?;
    let mut rows = Vec::new();
    for s in images.list()? {
        let names: Vec<(String, String)> = if s.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            s.tags
                .iter()
                .map(|t| {
                    Reference::parse(t)
                        .map(|r| (r.familiar_repository(), r.tag.unwrap_or_default()))
                })
                .collect::<Result<_, _>>()?
        };
        for (repo, tag) in names {
            if let Some(f) = &filter {
                if f.familiar_repository() != repo
                    || (a.reference.as_deref().is_some_and(|r| r.contains(':'))
                        && f.tag.as_deref() != Some(tag.as_str()))
                {
                    continue;
                }
            }
            let digest = s
                .repo_digests
                .iter()
                .find(|d| d.starts_with(&format!("{repo}@")))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>");
            let id = if a.no_trunc {
                s.id.clone()
            } else {
                short(&s.id)
            };
            rows.push(serde_json::json!({
                "Repository": repo, "Tag": tag, "Digest": digest, "ID": id,
                "CreatedSince": human_since(s.created.as_deref()), "CreatedAt": s.created.clone().unwrap_or_default(),
                "Size": human_size(s.size), "Containers": s.containers.to_string(),
            }));
        }
    }
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    if let Some(f) = &a.format {
        return print_formatted(f, &rows);
    }
    let mut cols = vec!["Repository", "Tag"];
    if a.digests {
        cols.push("Digest");
    }
    cols.extend(["ID", "CreatedSince", "Size"]);
    let mut t = vec![cols.iter().map(|c| header(c)).collect::<Vec<_>>()];
    t.extend(rows.iter().map(|r| {
        cols.iter()
            .map(|c| r[*c].as_str().unwrap_or_default().to_string())
            .collect()
    }));
    print!("{}", table(&t));
    Ok(())
}

fn header(col: &str) -> String {
    match col {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        other => other.to_uppercase(),
    }
}

fn print_formatted(f: &str, rows: &[serde_json::Value]) -> Result<()> {
    if let Some(tpl) = f.strip_prefix("table") {
        let tpl = tpl.trim_start();
        let head = regex_lite_fields(tpl);
        let mut t = vec![head.iter().map(|c| header(c)).collect::<Vec<_>>()];
        for r in rows {
            t.push(
                head.iter()
                    .map(|c| render(&format!("{{{{.{c}}}}}"), r))
                    .collect::<Result<_>>()?,
            );
        }
        print!("{}", table(&t));
        return Ok(());
    }
    for r in rows {
        println!("{}", render(f, r)?);
    }
    Ok(())
}

/// The field names used in a template (`{{.ID}}\t{{.Size}}` → [ID, Size]).
fn regex_lite_fields(tpl: &str) -> Vec<String> {
    tpl.split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().trim_start_matches('.').to_string())
        .collect()
}

fn rm(images: &Images, a: &RmArgs) -> Result<()> {
    let mut failed = false;
    for name in &a.images {
        match images.remove(name, a.force) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn inspect(images: &Images, a: &InspectArgs) -> Result<()> {
    let mut all = Vec::new();
    for n in &a.images {
        let v = images.inspect(n)?;
        match &a.format {
            Some(f) => println!("{}", render(f, &v)?),
            None => all.push(v),
        }
    }
    if a.format.is_none() {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

fn history(images: &Images, a: &HistoryArgs) -> Result<()> {
    let rows = images.history(&a.image)?;
    if a.quiet {
        rows.iter().for_each(|r| {
            println!(
                "{}",
                if a.no_trunc {
                    r.id.clone()
                } else if r.id.starts_with("sha256:") {
                    short(&r.id)
                } else {
                    r.id.clone()
                }
            )
        });
        return Ok(());
    }
    let mut t = vec![vec![
        "IMAGE".into(),
        "CREATED".into(),
        "CREATED BY".into(),
        "SIZE".into(),
        "COMMENT".into(),
    ]];
    for r in rows {
        let id = if r.id.starts_with("sha256:") && !a.no_trunc {
            short(&r.id)
        } else {
            r.id.clone()
        };
        let mut by = r.created_by.replace('\t', " ");
        if !a.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        let created = if a.human {
            human_since(r.created.as_deref())
        } else {
            r.created.clone().unwrap_or_default()
        };
        let size = if a.human {
            human_size(r.size)
        } else {
            r.size.to_string()
        };
        t.push(vec![id, created, by, size, r.comment]);
    }
    print!("{}", table(&t));
    Ok(())
}

fn save(images: &Images, a: &SaveArgs) -> Result<()> {
    let progress = crate::progress::for_cli(a.quiet || a.output.is_none());
    match &a.output {
        Some(p) => {
            let tmp = p.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let w = std::io::BufWriter::with_capacity(1 << 20, f);
            if let Err(e) = images.save(&a.images, w, progress.as_ref()) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            images.save(&a.images, out, progress.as_ref())?;
        }
    }
    Ok(())
}

fn load(images: &Images, a: &LoadArgs) -> Result<()> {
    let progress = crate::progress::for_cli(a.quiet);
    let loaded = match &a.input {
        Some(p) => images.load(p, progress.as_ref())?,
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty; use -i FILE or pipe an archive in");
            }
            images.load_reader(std::io::stdin().lock(), progress.as_ref())?
        }
    };
    let mut out = std::io::stdout().lock();
    for l in loaded {
        if l.names.is_empty() {
            writeln!(out, "Loaded image ID: {}", l.id)?;
        }
        for n in l.names {
            writeln!(out, "Loaded image: {n}")?;
        }
    }
    Ok(())
}

fn import(images: &Images, a: &ImportArgs) -> Result<()> {
    let input: Box<dyn Read> = if a.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?)
    };
    let id = images.import(input, a.reference.as_deref(), &a.change, &a.message)?;
    println!("{id}");
    Ok(())
}

fn prune(images: &Images, a: &PruneArgs) -> Result<()> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let (ids, bytes) = images.prune(a.all)?;
    if !ids.is_empty() {
        println!("Deleted Images:");
        ids.iter().for_each(|i| println!("deleted: {i}"));
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(())
}

pub fn system_df(root: &Path) -> Result<()> {
    let images = open(root)?;
    let du = images.disk_usage()?;
    let pct = |part: u64, whole: u64| {
        (part * 100)
            .checked_div(whole)
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default()
    };
    let t = vec![
        vec![
            "TYPE".into(),
            "TOTAL".into(),
            "ACTIVE".into(),
            "SIZE".into(),
            "RECLAIMABLE".into(),
        ],
        vec![
            "Images".into(),
            du.images.to_string(),
            du.images_active.to_string(),
            human_size(du.images_size),
            format!(
                "{}{}",
                human_size(du.images_reclaimable),
                pct(du.images_reclaimable, du.images_size)
            ),
        ],
        vec![
            "Containers".into(),
            du.containers.to_string(),
            "0".into(),
            human_size(du.containers_size),
            format!(
                "{}{}",
                human_size(du.containers_size),
                pct(du.containers_size, du.containers_size)
            ),
        ],
        vec![
            "Local Volumes".into(),
            "0".into(),
            "0".into(),
            "0B".into(),
            "0B".into(),
        ],
        vec![
            "Build Cache".into(),
            "0".into(),
            "0".into(),
            "0B".into(),
            "0B".into(),
        ],
    ];
    print!("{}", table(&t));
    Ok(())
}
