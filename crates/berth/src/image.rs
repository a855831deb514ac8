//! `berth image …`, `system df` and `system prune`, over the daemon's API with docker's
//! output formats.

use crate::format::{human_since, human_size, render, table};
use anyhow::{bail, Context, Result};
use berth_client::{enc, Body, Client};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
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
    /// Filter output (reference=, dangling=, label=, before=, since=)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// List multi-platform images as a tree (not supported by berth)
    #[arg(long)]
    tree: bool,
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
    /// Do not delete untagged parents
    #[arg(long)]
    no_prune: bool,
    /// Remove only the given platform variant (linux/amd64 only)
    #[arg(long)]
    platform: Vec<String>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go-template subset ({{.Id}}, {{.Config.Cmd}}, {{json .}})
    #[arg(short, long)]
    format: Option<String>,
    /// Inspect the given platform variant (linux/amd64 only)
    #[arg(long)]
    platform: Option<String>,
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
    /// Format output using a Go-template subset: "table" (default), "table TEMPLATE",
    /// "json" or TEMPLATE with .ID .CreatedSince .CreatedAt .CreatedBy .Size .Comment
    #[arg(long)]
    format: Option<String>,
    /// Show history for the given platform (linux/amd64 only)
    #[arg(long)]
    platform: Option<String>,
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
    /// Save only the given platform variant (linux/amd64 only)
    #[arg(long)]
    platform: Vec<String>,
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
    /// Load only the given platform variant (linux/amd64 only)
    #[arg(long)]
    platform: Vec<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long, default_value = "")]
    message: String,
    /// Set platform if server is multi-platform capable (linux/amd64 only)
    #[arg(long)]
    platform: Option<String>,
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
    /// Provide filter values (label=, until=)
    #[arg(long = "filter")]
    filter: Vec<String>,
}

pub fn run(root: &Path, cmd: ImageCmd) -> Result<()> {
    let c = crate::daemon::client(root)?;
    match cmd {
        ImageCmd::Ls(a) => ls(&c, &a),
        ImageCmd::Tag(a) => tag(&c, &a),
        ImageCmd::Rm(a) => rm(&c, &a),
        ImageCmd::Inspect(a) => inspect(&c, &a),
        ImageCmd::History(a) => history(&c, &a),
        ImageCmd::Save(a) => save(&c, &a),
        ImageCmd::Load(a) => load(&c, &a),
        ImageCmd::Import(a) => import(&c, &a),
        ImageCmd::Prune(a) => prune(&c, &a),
        ImageCmd::Pull(a) => crate::registry::pull(&c, &a),
        ImageCmd::Push(a) => crate::registry::push(&c, &a),
    }
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `key=value` flags as docker's `filters` query value (URL-encoded JSON).
pub fn filters_query(flags: &[String], extra: &[(&str, &str)]) -> Result<String> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in flags {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter {f:?} (expected name=value)");
        };
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    for (k, v) in extra {
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(if m.is_empty() {
        String::new()
    } else {
        enc(&serde_json::to_string(&m)?)
    })
}

/// `unix seconds` → RFC 3339, for the human "3 days ago".
pub fn rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339())
}

/// `repo:tag` → (repo, tag); a colon in the registry's port is not a tag.
fn split_tag(name: &str) -> (String, String) {
    match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (name.to_string(), "<none>".into()),
    }
}

fn ls(c: &Client, a: &LsArgs) -> Result<()> {
    if a.tree {
        bail!("--tree is not supported: berth stores single-platform (linux/amd64) images, so there is no platform tree to show; use `berth image ls`");
    }
    let mut extra = Vec::new();
    if let Some(r) = &a.reference {
        extra.push(("reference", r.as_str()));
    }
    let q = filters_query(&a.filter, &extra)?;
    let list = c.get_json(&format!("/images/json?filters={q}"))?;
    let mut rows = Vec::new();
    for s in list.as_array().into_iter().flatten() {
        let id_full = s["Id"].as_str().unwrap_or_default();
        let tags: Vec<String> = s["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .filter(|t| t != "<none>:<none>")
            .collect();
        let names: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter().map(|t| split_tag(t)).collect()
        };
        let created = s["Created"].as_i64().and_then(rfc3339);
        let size = s["Size"].as_u64().unwrap_or(0);
        for (repo, tag) in names {
            let digest = s["RepoDigests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
                .find(|d| d.starts_with(&format!("{repo}@")))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>");
            let id = if a.no_trunc {
                id_full.to_string()
            } else {
                short(id_full)
            };
            rows.push(json!({
                "Repository": repo, "Tag": tag, "Digest": digest, "ID": id,
                "CreatedSince": human_since(created.as_deref()), "CreatedAt": created.clone().unwrap_or_default(),
                "Size": human_size(size), "Containers": s["Containers"].to_string(),
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

fn print_formatted(f: &str, rows: &[Value]) -> Result<()> {
    if let Some(tpl) = f.strip_prefix("table") {
        let tpl = tpl.trim_start();
        let head = template_fields(tpl);
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
fn template_fields(tpl: &str) -> Vec<String> {
    tpl.split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().trim_start_matches('.').to_string())
        .collect()
}

fn tag(c: &Client, a: &TagArgs) -> Result<()> {
    let (repo, tag) = split_tag(&a.target);
    let tag = if tag == "<none>" { String::new() } else { tag };
    c.request(
        "POST",
        &format!(
            "/images/{}/tag?repo={}&tag={}",
            a.source,
            enc(&repo),
            enc(&tag)
        ),
        Body::Empty,
    )?
    .ok()?;
    Ok(())
}

fn rm(c: &Client, a: &RmArgs) -> Result<()> {
    for p in &a.platform {
        check_platform(Some(p))?;
    }
    let mut failed = false;
    for name in &a.images {
        let q = format!("?force={}&noprune={}", a.force as u8, a.no_prune as u8);
        match c.delete(&format!("/images/{}{q}", enc(name))) {
            Ok(v) => {
                for line in v.as_array().into_iter().flatten() {
                    for (k, v) in line.as_object().into_iter().flatten() {
                        println!("{k}: {}", v.as_str().unwrap_or_default());
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn inspect(c: &Client, a: &InspectArgs) -> Result<()> {
    check_platform(a.platform.as_deref())?;
    let (docs, code) = crate::format::inspect_each(&a.images, |n| {
        c.get_json(&format!("/images/{}/json", berth_client::enc(n)))
    });
    match crate::format::print_docs(&docs, a.format.as_deref(), code) {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}

fn history(c: &Client, a: &HistoryArgs) -> Result<()> {
    check_platform(a.platform.as_deref())?;
    let rows = c.get_json(&format!("/images/{}/history", a.image))?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let id_of = |r: &Value| {
        let id = r["Id"].as_str().unwrap_or("<missing>").to_string();
        if id.starts_with("sha256:") && !a.no_trunc {
            short(&id)
        } else {
            id
        }
    };
    if a.quiet {
        rows.iter().for_each(|r| println!("{}", id_of(r)));
        return Ok(());
    }
    let mut out = Vec::new();
    for r in &rows {
        let mut by = r["CreatedBy"]
            .as_str()
            .unwrap_or_default()
            .replace('\t', " ");
        if !a.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        let created = r["Created"].as_i64().and_then(rfc3339);
        let size = r["Size"].as_u64().unwrap_or(0);
        let (since, size) = if a.human {
            (human_since(created.as_deref()), human_size(size))
        } else {
            (created.clone().unwrap_or_default(), size.to_string())
        };
        out.push(json!({
            "ID": id_of(r), "CreatedSince": since, "CreatedAt": created.unwrap_or_default(),
            "CreatedBy": by, "Size": size, "Comment": r["Comment"].as_str().unwrap_or_default(),
        }));
    }
    let headers = json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
    });
    let f = a.format.as_deref().unwrap_or("table");
    print!(
        "{}",
        crate::format::format_rows(f, HISTORY_TABLE, &headers, &out)?
    );
    Ok(())
}

/// docker's default `history` columns.
const HISTORY_TABLE: &str = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

/// `--platform`: berth runs linux/amd64 images only; anything else fails clearly.
pub fn check_platform(p: Option<&str>) -> Result<()> {
    match p.map(|p| p.trim().to_ascii_lowercase()) {
        None => Ok(()),
        Some(p) if p.is_empty() || p == "linux" || p == "linux/amd64" || p == "linux/x86_64" => {
            Ok(())
        }
        Some(p) => bail!(
            "platform {p:?} is not supported: berth runs linux/amd64 images only; leave --platform out or use linux/amd64"
        ),
    }
}

fn save(c: &Client, a: &SaveArgs) -> Result<()> {
    for p in &a.platform {
        check_platform(Some(p))?;
    }
    let names: Vec<String> = a
        .images
        .iter()
        .map(|n| format!("names={}", enc(n)))
        .collect();
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut r = c
        .request(
            "GET",
            &format!("/images/get?{}", names.join("&")),
            Body::Empty,
        )?
        .ok()?
        .reader();
    match &a.output {
        Some(p) => {
            let tmp = p.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let copied = std::io::copy(&mut r, &mut w).and_then(|_| w.flush());
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).context("the daemon's archive stream broke off");
            }
            std::fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            std::io::copy(&mut r, &mut out).context("the daemon's archive stream broke off")?;
            out.flush()?;
        }
    }
    Ok(())
}

fn load(c: &Client, a: &LoadArgs) -> Result<()> {
    for p in &a.platform {
        check_platform(Some(p))?;
    }
    let mut input: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty; use -i FILE or pipe an archive in");
            }
            Box::new(std::io::stdin().lock())
        }
    };
    // quiet=1 always: our client sends the whole archive before it reads the reply,
    // so per-layer progress could fill the socket and stall both sides.
    let r = c
        .request(
            "POST",
            "/images/load?quiet=1",
            Body::Stream(&mut input, "application/x-tar"),
        )?
        .ok()?;
    crate::progress::show_json_stream(r.reader(), a.quiet)?;
    Ok(())
}

fn import(c: &Client, a: &ImportArgs) -> Result<()> {
    check_platform(a.platform.as_deref())?;
    let mut input: Box<dyn Read> = if a.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?)
    };
    let mut q = format!("/images/create?fromSrc=-&message={}", enc(&a.message));
    if let Some(r) = &a.reference {
        let (repo, tag) = split_tag(r);
        q.push_str(&format!("&repo={}", enc(&repo)));
        if tag != "<none>" {
            q.push_str(&format!("&tag={}", enc(&tag)));
        }
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    let r = c
        .request("POST", &q, Body::Stream(&mut input, "application/x-tar"))?
        .ok()?;
    let (_, statuses) = crate::progress::show_json_stream(r.reader(), true)?;
    match statuses.last() {
        Some(id) => println!("{id}"),
        None => bail!("the daemon did not report the imported image's id"),
    }
    Ok(())
}

/// Asks before a prune unless `-f`, as docker does.
pub fn confirm(what: &str) -> Result<bool> {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `POST /images/prune`; returns the bytes reclaimed after printing what went.
fn prune_images(c: &Client, all: bool, filter: &[String]) -> Result<u64> {
    let extra: &[(&str, &str)] = if all { &[("dangling", "false")] } else { &[] };
    let q = filters_query(filter, extra)?;
    let v = c.post_json(&format!("/images/prune?filters={q}"), None)?;
    let gone = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !gone.is_empty() {
        println!("Deleted Images:");
        for d in &gone {
            for (k, v) in d.as_object().into_iter().flatten() {
                println!("{}: {}", k.to_lowercase(), v.as_str().unwrap_or_default());
            }
        }
        println!();
    }
    Ok(v["SpaceReclaimed"].as_u64().unwrap_or(0))
}

fn prune(c: &Client, a: &PruneArgs) -> Result<()> {
    let what = if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    if !a.force && !confirm(what)? {
        return Ok(());
    }
    let bytes = prune_images(c, a.all, &a.filter)?;
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(())
}

#[derive(Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>", "label!=<key>", "until=24h")
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// `berth system prune`: stopped containers, unused networks, dangling (or all unused)
/// images and, with `--volumes`, unused anonymous volumes, as docker does; the
/// filters go to every prune.
pub fn system_prune(root: &Path, a: &SystemPruneArgs) -> Result<()> {
    let (all, volumes, force) = (a.all, a.volumes, a.force);
    if volumes && a.filter.iter().any(|f| f.starts_with("until=")) {
        bail!("the \"until\" filter is not supported with \"--volumes\": leave one of them out");
    }
    let q = filters_query(&a.filter, &[])?;
    let c = crate::daemon::client(root)?;
    if !force {
        let mut what =
            "  - all stopped containers\n  - all networks not used by at least one container\n"
                .to_string();
        if volumes {
            what.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        what.push_str(if all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        });
        what.push_str("  - unused build cache\n");
        if !confirm(&format!(":\n{what}"))? {
            return Ok(());
        }
    }
    let mut total = 0;
    // Containers and networks are other areas' routes: a daemon without them is
    // skipped with a note rather than failing the whole prune.
    for (path, key, title) in [
        (
            "/containers/prune",
            "ContainersDeleted",
            "Deleted Containers:",
        ),
        ("/networks/prune", "NetworksDeleted", "Deleted Networks:"),
    ] {
        match c.post_json(&format!("{path}?filters={q}"), None) {
            Ok(v) => {
                let gone = v[key].as_array().cloned().unwrap_or_default();
                if !gone.is_empty() {
                    println!("{title}");
                    gone.iter()
                        .for_each(|g| println!("{}", g.as_str().unwrap_or_default()));
                    println!();
                }
                total += v["SpaceReclaimed"].as_u64().unwrap_or(0);
            }
            Err(berth_client::Error::Api { status: 404, .. }) => {
                eprintln!(
                    "note: this daemon cannot prune {}",
                    &path[1..path.len() - 6]
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    if volumes {
        total += crate::volume::prune_volumes(&c, false, &a.filter)?;
    }
    total += prune_images(&c, all, &a.filter)?;
    println!("Total reclaimed space: {}", human_size(total));
    Ok(())
}

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Format output using a Go-template subset: "table" (default), "table TEMPLATE",
    /// "json" or TEMPLATE with .Type .TotalCount .Active .Size .Reclaimable
    #[arg(long)]
    format: Option<String>,
}

/// docker's default `system df` columns.
const DF_TABLE: &str = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";

/// `berth system df`: the summary table, `--format`, or with `-v` each object.
pub fn system_df(root: &Path, a: &DfArgs) -> Result<()> {
    let c = crate::daemon::client(root)?;
    let v = c.get_json("/system/df")?;
    if a.verbose {
        return df_verbose(&v, a.format.as_deref());
    }
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let pct = |part: u64, whole: u64| {
        (part * 100)
            .checked_div(whole)
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default()
    };
    let images = arr("Images");
    let active_imgs = images
        .iter()
        .filter(|i| i["Containers"].as_u64().unwrap_or(0) > 0)
        .count();
    let img_size = v["LayersSize"].as_u64().unwrap_or(0);
    let img_free: u64 = images
        .iter()
        .filter(|i| i["Containers"].as_u64().unwrap_or(0) == 0)
        .map(|i| i["Size"].as_u64().unwrap_or(0))
        .sum::<u64>()
        .min(img_size);
    let containers = arr("Containers");
    let running = containers
        .iter()
        .filter(|c| c["State"] == "running")
        .count();
    let ct_size: u64 = containers
        .iter()
        .map(|c| c["SizeRw"].as_u64().unwrap_or(0))
        .sum();
    let ct_free: u64 = containers
        .iter()
        .filter(|c| c["State"] != "running")
        .map(|c| c["SizeRw"].as_u64().unwrap_or(0))
        .sum();
    let volumes = arr("Volumes");
    let used = |v: &Value| v["UsageData"]["RefCount"].as_u64().unwrap_or(0) > 0;
    let vol_active = volumes.iter().filter(|v| used(v)).count();
    let vol_size: u64 = volumes
        .iter()
        .map(|v| v["UsageData"]["Size"].as_u64().unwrap_or(0))
        .sum();
    let vol_free: u64 = volumes
        .iter()
        .filter(|v| !used(v))
        .map(|v| v["UsageData"]["Size"].as_u64().unwrap_or(0))
        .sum();
    // docker's units.HumanSize: four digits
    let hs = |n| crate::format::human_size_digits(n, 4);
    let row = |name: &str, total: usize, active: usize, size: u64, free: u64| {
        json!({
            "Type": name, "TotalCount": total.to_string(), "Active": active.to_string(),
            "Size": hs(size), "Reclaimable": format!("{}{}", hs(free), pct(free, size)),
        })
    };
    let headers = json!({
        "Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE",
    });
    let t = vec![
        row("Images", images.len(), active_imgs, img_size, img_free),
        row("Containers", containers.len(), running, ct_size, ct_free),
        row(
            "Local Volumes",
            volumes.len(),
            vol_active,
            vol_size,
            vol_free,
        ),
        row("Build Cache", 0, 0, 0, 0),
    ];
    let f = a.format.as_deref().unwrap_or("table");
    print!("{}", crate::format::format_rows(f, DF_TABLE, &headers, &t)?);
    Ok(())
}

/// `system df -v`: docker's four sections (images, containers, volumes, build cache);
/// with `--format`, the template over the whole document (`{{json .}}`).
fn df_verbose(v: &Value, format: Option<&str>) -> Result<()> {
    if let Some(f) = format {
        if f.trim() == "json" {
            println!("{}", serde_json::to_string(v)?);
        } else {
            println!("{}", render(f, v)?);
        }
        return Ok(());
    }
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let when = |x: &Value| human_since(x["Created"].as_i64().and_then(rfc3339).as_deref());
    let n = |x: &Value, k: &str| x[k].as_u64().unwrap_or(0);
    let mut t = vec![[
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
        "CONTAINERS",
    ]
    .map(String::from)
    .to_vec()];
    for i in arr("Images") {
        let tags: Vec<String> = i["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        let names = if tags.is_empty() {
            vec![("<none>".to_string(), "<none>".to_string())]
        } else {
            tags.iter().map(|t| split_tag(t)).collect()
        };
        let (size, shared) = (n(&i, "Size"), n(&i, "SharedSize"));
        for (repo, tag) in names {
            t.push(vec![
                repo,
                tag,
                short(i["Id"].as_str().unwrap_or_default()),
                when(&i),
                human_size(size),
                human_size(shared),
                crate::format::human_size_digits(size.saturating_sub(shared), 4),
                n(&i, "Containers").to_string(),
            ]);
        }
    }
    print!("Images space usage:\n\n{}", table(&t));
    let mut t = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "LOCAL VOLUMES",
        "SIZE",
        "CREATED",
        "STATUS",
        "NAMES",
    ]
    .map(String::from)
    .to_vec()];
    for x in arr("Containers") {
        let cmd = x["Command"].as_str().unwrap_or_default();
        let cmd = if cmd.chars().count() > 19 {
            cmd.chars().take(19).collect::<String>() + "…"
        } else {
            cmd.to_string()
        };
        let vols = x["Mounts"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["Type"] == "volume").count())
            .unwrap_or(0);
        t.push(vec![
            short(x["Id"].as_str().unwrap_or_default()),
            x["Image"].as_str().unwrap_or_default().to_string(),
            format!("\"{cmd}\""),
            vols.to_string(),
            human_size(n(&x, "SizeRw")),
            when(&x),
            x["Status"].as_str().unwrap_or_default().to_string(),
            x["Names"][0]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
        ]);
    }
    print!("\nContainers space usage:\n\n{}", table(&t));
    let mut t = vec![["VOLUME NAME", "LINKS", "SIZE"].map(String::from).to_vec()];
    for x in arr("Volumes") {
        t.push(vec![
            x["Name"].as_str().unwrap_or_default().to_string(),
            n(&x["UsageData"], "RefCount").to_string(),
            crate::format::human_size_digits(n(&x["UsageData"], "Size"), 4),
        ]);
    }
    print!("\nLocal Volumes space usage:\n\n{}", table(&t));
    println!("\nBuild cache usage: 0B\n");
    print!(
        "{}",
        table(&[[
            "CACHE ID",
            "CACHE TYPE",
            "SIZE",
            "CREATED",
            "LAST USED",
            "USAGE",
            "SHARED"
        ]
        .map(String::from)
        .to_vec()])
    );
    Ok(())
}
