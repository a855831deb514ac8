//! `berth pull`, `push`, `login`, `logout`.

use anyhow::{bail, Context, Result};
use berth_image::Reference;
use berth_registry::{Client, Credentials, Options};
use clap::Args;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

#[derive(Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
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
    /// Plain HTTP for this registry (loopback registries always use it)
    #[arg(long)]
    insecure: bool,
    name: String,
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

fn client(domain: &str, insecure: bool) -> Client {
    let mut o = Options::default();
    if insecure {
        o.insecure.push(domain.to_string());
    }
    Client::new(o)
}

pub fn pull(root: &Path, a: &PullArgs) -> Result<()> {
    let images = crate::image::open(root)?;
    let r = Reference::parse(&a.name)?;
    let progress = crate::progress::for_cli(a.quiet);
    if !a.quiet {
        println!(
            "{}: Pulling from {}",
            r.tag.as_deref().or(r.digest.as_deref()).unwrap_or("latest"),
            r.path
        );
    }
    let p = client(&r.domain, a.insecure).pull(&images, &a.name, progress.as_ref())?;
    drop(progress);
    if a.quiet {
        println!("{}", r);
        return Ok(());
    }
    println!("Digest: {}", p.digest);
    if p.downloaded {
        println!("Status: Downloaded newer image for {}", r.familiar());
    } else {
        println!("Status: Image is up to date for {}", r.familiar());
    }
    println!("{r}");
    Ok(())
}

pub fn push(root: &Path, a: &PushArgs) -> Result<()> {
    let images = crate::image::open(root)?;
    let r = Reference::parse(&a.name)?;
    let progress = crate::progress::for_cli(a.quiet);
    if !a.quiet {
        println!("The push refers to repository [{}]", r.repository());
    }
    let (digest, size) = client(&r.domain, a.insecure).push(&images, &a.name, progress.as_ref())?;
    drop(progress);
    if a.quiet {
        println!("{}", r);
    } else {
        println!(
            "{}: digest: {digest} size: {size}",
            r.tag.as_deref().unwrap_or("latest")
        );
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

pub fn login(a: &LoginArgs) -> Result<()> {
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
    client(&host, a.insecure)
        .check_login(&host, &user, &password)
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
