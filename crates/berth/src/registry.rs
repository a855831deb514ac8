//! `berth pull`, `push`, `login`, `logout`.

use anyhow::{bail, Context, Result};
use berth_client::{enc, Body};
use berth_image::Reference;
use berth_registry::Credentials;
use clap::Args;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

#[derive(Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Download all tagged images in the repository
    #[arg(short, long)]
    all_tags: bool,
    /// Set platform if server is multi-platform capable (linux/amd64 only)
    #[arg(long)]
    platform: Option<String>,
    /// Skip image verification (berth does not verify signatures: accepted, no effect)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    disable_content_trust: bool,
    /// Plain HTTP for this registry (loopback registries always use it)
    #[arg(long)]
    insecure: bool,
    name: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Push all tags of an image to the repository
    #[arg(short, long)]
    all_tags: bool,
    /// Push the given platform's manifest (linux/amd64 only)
    #[arg(long)]
    platform: Option<String>,
    /// Skip image signing (berth does not sign: accepted, no effect)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    disable_content_trust: bool,
    /// Plain HTTP for this registry (loopback registries always use it)
    #[arg(long)]
    insecure: bool,
    name: String,
}

/// `-a` with a tag is docker's usage error.
fn check_all_tags(name: &str, all: bool) -> Result<()> {
    if all && berth_image::reference::names_tag(name) {
        bail!(
            "tag can't be used with --all-tags/-a: give the repository only ({})",
            name.split('@')
                .next()
                .unwrap_or(name)
                .rsplit_once(':')
                .map(|(r, _)| r)
                .unwrap_or(name)
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Plain HTTP for this registry (loopback registries always use it)
    #[arg(long)]
    insecure: bool,
    /// Registry host[:port] (default docker.io)
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default docker.io)
    server: Option<String>,
}

/// `--insecure` has no effect of its own: the daemon reaches registries, loopback
/// ones over plain HTTP; others need `BERTH_INSECURE_REGISTRIES` in berthd's environment.
fn check_insecure(domain: &str, insecure: bool) -> Result<()> {
    if insecure && !berth_registry::is_loopback(domain) {
        bail!("--insecure {domain}: the daemon reaches registries; start berthd with BERTH_INSECURE_REGISTRIES={domain} for plain HTTP");
    }
    Ok(())
}

/// `X-Registry-Auth` for `domain` from the credentials `berth login` stored here (the
/// daemon keeps none): base64url of `{"username","password","serveraddress"}`, or `{}`.
pub fn registry_auth(domain: &str) -> Result<String> {
    use base64::Engine as _;
    let creds = Credentials::new(Credentials::default_path()).get(domain)?;
    let v = match creds {
        Some((u, p)) => serde_json::json!({"username": u, "password": p, "serveraddress": domain}),
        None => serde_json::json!({}),
    };
    Ok(base64::engine::general_purpose::URL_SAFE.encode(v.to_string()))
}

pub fn pull(c: &berth_client::Client, a: &PullArgs) -> Result<()> {
    crate::image::check_platform(a.platform.as_deref())?;
    check_all_tags(&a.name, a.all_tags)?;
    let r = Reference::parse(&a.name)?;
    check_insecure(&r.domain, a.insecure)?;
    let resp = start_pull(c, &r, a.all_tags)?;
    crate::progress::show_json_stream(resp.reader(), a.quiet)?;
    if a.all_tags {
        println!("{}", r.repository());
    } else {
        println!("{r}");
    }
    Ok(())
}

/// Asks the daemon to pull `r` (every tag of its repository with `all_tags`) with
/// the user's credentials for its registry; the reply streams the progress.
pub fn start_pull(
    c: &berth_client::Client,
    r: &Reference,
    all_tags: bool,
) -> Result<berth_client::Response> {
    let (from, tag) = match (&r.tag, &r.digest) {
        // docker's API: an empty tag pulls every tag
        _ if all_tags => (r.repository(), String::new()),
        (_, Some(d)) => (r.repository(), d.clone()),
        (Some(t), None) => (r.repository(), t.clone()),
        (None, None) => (r.repository(), "latest".to_string()),
    };
    let auth = registry_auth(&r.domain)?;
    Ok(c.request_with(
        "POST",
        &format!("/images/create?fromImage={}&tag={}", enc(&from), enc(&tag)),
        Body::Empty,
        &[("X-Registry-Auth", &auth)],
    )?
    .ok()?)
}

pub fn push(c: &berth_client::Client, a: &PushArgs) -> Result<()> {
    crate::image::check_platform(a.platform.as_deref())?;
    check_all_tags(&a.name, a.all_tags)?;
    let r = Reference::parse(&a.name)?;
    check_insecure(&r.domain, a.insecure)?;
    // docker's API: an empty tag pushes every local tag of the repository
    let tag = if a.all_tags {
        String::new()
    } else {
        r.tag.clone().unwrap_or_else(|| "latest".into())
    };
    let auth = registry_auth(&r.domain)?;
    let resp = c
        .request_with(
            "POST",
            &format!("/images/{}/push?tag={}", r.repository(), enc(&tag)),
            Body::Empty,
            &[("X-Registry-Auth", &auth)],
        )?
        .ok()?;
    crate::progress::show_json_stream(resp.reader(), a.quiet)?;
    if a.quiet {
        println!("{r}");
    }
    Ok(())
}

fn server(s: &Option<String>) -> String {
    match s.as_deref() {
        None | Some("docker.io") | Some("index.docker.io") | Some("registry-1.docker.io") => {
            "docker.io".into()
        }
        Some(s) => s
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    }
}

/// `berth login`: the daemon checks the credentials against the registry
/// (`POST /auth`); they are then kept here, in the client's credentials file.
pub fn login(root: &Path, a: &LoginArgs) -> Result<()> {
    let host = server(&a.server);
    let user = match &a.username {
        Some(u) => u.clone(),
        None => {
            if !std::io::stdin().is_terminal() {
                bail!("cannot prompt for a username: stdin is not a terminal; use --username");
            }
            eprint!("Username: ");
            let mut u = String::new();
            std::io::stdin().lock().read_line(&mut u)?;
            u.trim().to_string()
        }
    };
    let password = if a.password_stdin {
        let mut p = String::new();
        std::io::stdin().lock().read_line(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        bail!("no password given: use --password-stdin (or --password)");
    };
    check_insecure(&host, a.insecure)?;
    crate::daemon::client(root)?
        .post_json(
            "/auth",
            Some(
                &serde_json::json!({"username": user, "password": password, "serveraddress": host}),
            ),
        )
        .with_context(|| format!("login to {host} failed"))?;
    Credentials::new(Credentials::default_path()).set(&host, &user, &password)?;
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(a: &LogoutArgs) -> Result<()> {
    let host = server(&a.server);
    if Credentials::new(Credentials::default_path()).remove(&host)? {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(())
}
