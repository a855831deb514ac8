//! The runc command contract: commands, flags and output shapes.

use anyhow::{anyhow, bail, Context, Result};
use berth_runtime::{CreateOptions, ExecOptions, Runtime, Status};
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "berth-runtime", version = version_text(), disable_version_flag = true,
    about = "berth's OCI runtime, with runc's command line")]
struct Cli {
    /// root directory for storage of container state
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// write error messages to this file too
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// enable debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// use systemd cgroups (accepted; cgroupfs is used when systemd is absent)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// accepted for compatibility
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// print the version
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

fn version_text() -> &'static str {
    concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.2.1")
}

#[derive(Args, Debug, Default)]
struct CreateArgs {
    /// path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// unix socket that receives the pty master
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// write the init's pid to this file
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// do not use pivot_root (for ramdisk roots)
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// pass N extra file descriptors (3 .. 3+N-1) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// container id
    id: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// create a container (its process waits for `start`)
    Create(CreateArgs),
    /// start the process of a created container
    Start { id: String },
    /// create and start a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// detach from the container's process
        #[arg(short = 'd', long)]
        detach: bool,
        /// keep the container after it exits
        #[arg(long)]
        keep: bool,
    },
    /// print the state of a container
    State { id: String },
    /// send a signal to the container's init (default SIGTERM)
    Kill {
        /// signal all processes of the container
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// delete a container
    Delete {
        /// kill a running container first
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// run a new process inside a container
    Exec(ExecArgs),
    /// list the processes of a container
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        /// options passed to ps(1)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// list containers
    List {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        /// print only ids
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// freeze all processes of a container
    Pause { id: String },
    /// thaw a paused container
    Resume { id: String },
    /// change the resources of a running container
    Update(UpdateArgs),
    /// print container statistics
    Events {
        /// print statistics once and exit
        #[arg(long)]
        stats: bool,
        /// interval between statistics (e.g. 5s, 500ms)
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// print what this runtime implements (OCI features document)
    Features,
    /// write a default config.json
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(Args, Debug)]
struct ExecArgs {
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// working directory in the container
    #[arg(long)]
    cwd: Option<String>,
    /// environment variables (KEY=VALUE)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// uid[:gid]
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// additional gids
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// path to a process.json
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// detach from the process
    #[arg(short = 'd', long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// set no_new_privs
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// add a capability
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    #[arg(long = "apparmor", hide = true)]
    apparmor: Option<String>,
    #[arg(long = "ignore-paused", hide = true)]
    ignore_paused: bool,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct UpdateArgs {
    /// a LinuxResources JSON file, or - for stdin
    #[arg(short = 'r', long)]
    resources: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// memory limit (bytes, or with k/m/g suffix)
    #[arg(long)]
    memory: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    id: String,
}

/// Entry: returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let log = (cli.log.clone(), cli.log_format.clone());
    if cli.debug {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e, &log);
            1
        }
    }
}

fn report(e: &anyhow::Error, (log, format): &(Option<PathBuf>, String)) {
    let msg = format!("{e:#}");
    eprintln!("berth-runtime: {msg}");
    if let Some(p) = log {
        let line = if format == "json" {
            serde_json::json!({"level": "error", "msg": msg, "time": berth_runtime::state::now_rfc3339()}).to_string()
        } else {
            format!(
                "time=\"{}\" level=error msg={:?}",
                berth_runtime::state::now_rfc3339(),
                msg
            )
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    if cli.version {
        println!("berth-runtime {}", version_text());
        return Ok(0);
    }
    let Some(cmd) = cli.cmd else {
        bail!("no command given: try `berth-runtime --help`");
    };
    if cli.systemd_cgroup && !Path::new("/run/systemd/system").exists() {
        eprintln!(
            "berth-runtime: warning: --systemd-cgroup: systemd is not running here; using cgroupfs"
        );
    }
    if needs_sealed_copy(&cmd) {
        if let Err(e) = crate::sealed::ensure() {
            eprintln!("berth-runtime: warning: cannot run from a sealed copy of the binary: {e}");
        }
    }
    let rt = Runtime::new(&cli.root);
    match cmd {
        Cmd::Create(a) => {
            create(&rt, &a, None)?;
            Ok(0)
        }
        Cmd::Start { id } => {
            rt.start(&id)?;
            Ok(0)
        }
        Cmd::Run {
            create: a,
            detach,
            keep,
        } => run_container(&rt, a, detach, keep),
        Cmd::State { id } => {
            println!("{}", serde_json::to_string_pretty(&rt.state(&id)?)?);
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = berth_runtime::signal::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(&id, sig, all)?;
            Ok(0)
        }
        Cmd::Delete { force, id } => {
            match rt.delete(&id, force) {
                Err(berth_runtime::Error::NotFound(_)) if force => {}
                r => r?,
            }
            Ok(0)
        }
        Cmd::Exec(a) => exec(&rt, a),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, &format, &id, &ps_args),
        Cmd::List { format, quiet } => list(&rt, &format, quiet),
        Cmd::Pause { id } => {
            rt.pause(&id)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            rt.resume(&id)?;
            Ok(0)
        }
        Cmd::Update(a) => update(&rt, a),
        Cmd::Events {
            stats,
            interval,
            id,
        } => events(&rt, stats, &interval, &id),
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::features::features())?
            );
            Ok(0)
        }
        Cmd::Spec { bundle, rootless } => spec(&bundle, rootless),
    }
}

/// Whether a process of some container could address ours before it execs.
///
/// Our forked child is made non-dumpable at once, so /proc/<pid>/exe is closed to
/// processes without CAP_SYS_PTRACE; a fresh pid namespace makes it invisible to every
/// container process besides. `exec` enters a namespace where container processes
/// already run, and a create that joins an existing or the host pid namespace is
/// visible to them: those run from a sealed memfd copy of the binary (CVE-2019-5736).
fn needs_sealed_copy(cmd: &Cmd) -> bool {
    match cmd {
        Cmd::Exec(_) => true,
        Cmd::Create(a) | Cmd::Run { create: a, .. } => !has_new_pid_namespace(&a.bundle),
        _ => false,
    }
}

fn has_new_pid_namespace(bundle: &Path) -> bool {
    std::fs::read_to_string(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["linux"]["namespaces"].as_array().map(|ns| {
                ns.iter().any(|n| {
                    n["type"] == "pid" && n.get("path").is_none_or(|p| p.is_null() || p == "")
                })
            })
        })
        .unwrap_or(false)
}

fn create(
    rt: &Runtime,
    a: &CreateArgs,
    console_fd: Option<std::os::fd::OwnedFd>,
) -> Result<berth_runtime::Created> {
    let opts = CreateOptions {
        console_socket: a.console_socket.clone(),
        console_fd,
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        stdio: None,
    };
    let c = rt.create(&a.id, &a.bundle, opts)?;
    for w in &c.warnings {
        eprintln!("berth-runtime: warning: {w}");
    }
    if let Some(p) = &a.pid_file {
        write_pid_file(p, c.pid)?;
    }
    Ok(c)
}

fn write_pid_file(p: &Path, pid: i32) -> Result<()> {
    let tmp = p.with_extension("tmp-berth");
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, p).with_context(|| format!("write pid file {}", p.display()))
}

fn bundle_wants_terminal(bundle: &Path) -> bool {
    std::fs::read_to_string(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
}

fn exit_code(status: nix::sys::wait::WaitStatus) -> i32 {
    match status {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => 1,
    }
}

/// Wait for `pid`, forwarding nothing; returns its exit code.
fn wait_for(pid: i32) -> Result<i32> {
    loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(
                s @ (nix::sys::wait::WaitStatus::Exited(..)
                | nix::sys::wait::WaitStatus::Signaled(..)),
            ) => return Ok(exit_code(s)),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(anyhow!("wait for container process {pid}: {e}")),
        }
    }
}

fn run_container(rt: &Runtime, a: CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let terminal = bundle_wants_terminal(&a.bundle);
    // In the foreground with a terminal and no console socket we hold the pty ourselves.
    let (ours, theirs) = if terminal && !detach && a.console_socket.is_none() {
        let (x, y) =
            std::os::unix::net::UnixStream::pair().context("socketpair for the console")?;
        (Some(x), Some(std::os::fd::OwnedFd::from(y)))
    } else {
        (None, None)
    };
    // Block the forwarded signals before the container exists, so one that arrives
    // early is queued for the forwarder rather than killing us (the container's init
    // unblocks every signal before it execs).
    let forwarded = if detach {
        None
    } else {
        Some(block_forwarded_signals()?)
    };
    let c = create(rt, &a, theirs)?;
    let master = match &ours {
        Some(s) => Some(berth_runtime::tty::recv_fd(s.as_raw_fd())?),
        None => None,
    };
    if let Err(e) = rt.start(&a.id) {
        let _ = rt.delete(&a.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    if let Some(set) = forwarded {
        forward_signals(set, c.pid);
    }
    let relay = master.map(|m| std::thread::spawn(move || berth_runtime::tty::relay(m)));
    let code = wait_for(c.pid)?;
    if let Some(r) = relay {
        let _ = r.join();
    }
    if !keep {
        rt.delete(&a.id, true)?;
    }
    Ok(code)
}

/// The signals a foreground `run` forwards to the container's init, as runc does.
fn block_forwarded_signals() -> Result<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set.thread_block().context("block signals for forwarding")?;
    Ok(set)
}

/// A thread that waits for the blocked signals (sigwait) and sends them to `pid`.
fn forward_signals(set: nix::sys::signal::SigSet, pid: i32) {
    std::thread::spawn(move || loop {
        if let Ok(sig) = set.wait() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    });
}

fn parse_user(u: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid
        .parse()
        .with_context(|| format!("--user {u:?}: uid must be a number"))?;
    let gid = gid
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {u:?}: gid must be a number"))
        })
        .transpose()?;
    Ok((uid, gid))
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let state = rt.state(&a.id)?;
    let mut process: oci_spec::runtime::Process = match &a.process {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read process file {}", p.display()))?;
            let de = &mut serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow!("process file {}: {}: {}", p.display(), e.path(), e.inner()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec: no command given: berth-runtime exec <id> <command> [args...]");
            }
            base_process(&state.bundle)?
        }
    };
    if a.process.is_none() {
        process.set_args(Some(a.command.clone()));
        process.set_terminal(Some(a.tty));
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(a.env.iter().cloned());
        process.set_env(Some(env));
        if let Some(c) = &a.cwd {
            process.set_cwd(PathBuf::from(c));
        }
        if let Some(u) = &a.user {
            let (uid, gid) = parse_user(u)?;
            let mut user = process.user().clone();
            user.set_uid(uid);
            if let Some(g) = gid {
                user.set_gid(g);
            }
            process.set_user(user);
        }
        if !a.additional_gids.is_empty() {
            let mut user = process.user().clone();
            user.set_additional_gids(Some(a.additional_gids.clone()));
            process.set_user(user);
        }
        if a.no_new_privs {
            process.set_no_new_privileges(Some(true));
        }
        if !a.cap.is_empty() {
            let mut caps = process.capabilities().clone().unwrap_or_default();
            for c in &a.cap {
                let cap: oci_spec::runtime::Capability =
                    serde_json::from_value(serde_json::json!(c)).map_err(|_| {
                        anyhow!("--cap {c:?}: unknown capability (use a name like CAP_NET_ADMIN)")
                    })?;
                for set in [
                    caps.bounding().clone(),
                    caps.effective().clone(),
                    caps.permitted().clone(),
                ]
                .iter_mut()
                {
                    let _ = set;
                }
                let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                    let mut s = s.clone().unwrap_or_default();
                    s.insert(cap);
                    Some(s)
                };
                caps.set_bounding(add(caps.bounding()));
                caps.set_effective(add(caps.effective()));
                caps.set_permitted(add(caps.permitted()));
            }
            process.set_capabilities(Some(caps));
        }
    }
    let tty = process.terminal().unwrap_or(false);
    let (ours, theirs) = if tty && a.console_socket.is_none() {
        if a.detach {
            bail!("exec --tty --detach needs --console-socket to receive the terminal");
        }
        let (x, y) =
            std::os::unix::net::UnixStream::pair().context("socketpair for the console")?;
        (Some(x), Some(std::os::fd::OwnedFd::from(y)))
    } else {
        (None, None)
    };
    let opts = ExecOptions {
        console_socket: a.console_socket.clone(),
        console_fd: theirs,
        preserve_fds: a.preserve_fds,
        stdio: None,
        unconfined: false,
    };
    let pid = rt.exec(&a.id, process, opts)?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p, pid)?;
    }
    if a.detach {
        return Ok(0);
    }
    let relay = match &ours {
        Some(s) => {
            let m = berth_runtime::tty::recv_fd(s.as_raw_fd())?;
            Some(std::thread::spawn(move || berth_runtime::tty::relay(m)))
        }
        None => None,
    };
    let code = wait_for(pid)?;
    if let Some(r) = relay {
        let _ = r.join();
    }
    Ok(code)
}

/// The container's own process section (env, user, caps, cwd) as the base for exec.
fn base_process(bundle: &Path) -> Result<oci_spec::runtime::Process> {
    let text = std::fs::read_to_string(bundle.join("config.json"))
        .with_context(|| format!("read {}/config.json", bundle.display()))?;
    let spec = berth_runtime::spec::parse_config(&text)?;
    Ok(spec.process().clone().unwrap_or_default())
}

fn ps(rt: &Runtime, format: &str, id: &str, ps_args: &[String]) -> Result<i32> {
    let pids = rt.ps(id)?;
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            Ok(0)
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps(1)")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&p) {
                        println!("{l}");
                    }
                }
            }
            Ok(0)
        }
        other => bail!("--format {other:?}: use table or json"),
    }
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<i32> {
    let all = rt.list()?;
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match format {
        "json" => println!("{}", serde_json::to_string(&all)?),
        "table" => {
            println!(
                "{:<12} {:<10} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &all {
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<32} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                );
            }
        }
        other => bail!("--format {other:?}: use table or json"),
    }
    Ok(0)
}

/// Parse "512m", "1g", "1048576" into bytes.
fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        anyhow!("invalid size {s:?}: use a number of bytes or a value like 512m or 1g")
    })?;
    Ok((n * mult as f64) as i64)
}

fn update(rt: &Runtime, a: UpdateArgs) -> Result<i32> {
    use oci_spec::runtime::{LinuxPids, LinuxResources};
    let mut r: LinuxResources = match a.resources.as_deref() {
        Some(src) => {
            let mut text = String::new();
            if src == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("read resources from stdin")?;
            } else {
                text = std::fs::read_to_string(src)
                    .with_context(|| format!("read resources file {src}"))?;
            }
            let de = &mut serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow!("resources: {}: {}", e.path(), e.inner()))?
        }
        None => LinuxResources::default(),
    };
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    if a.memory.is_some() || a.memory_swap.is_some() {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_bytes(v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_bytes(v)?));
        }
        r.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if a.cpu_shares.is_some() {
            c.set_shares(a.cpu_shares);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        r.set_cpu(Some(c));
    }
    rt.update(&a.id, &r)?;
    Ok(0)
}

fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let bad = || anyhow!("--interval {s:?}: use a duration like 5s or 500ms");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn events(rt: &Runtime, once: bool, interval: &str, id: &str) -> Result<i32> {
    let every = parse_interval(interval)?;
    loop {
        let st = rt.state(id)?;
        if st.status == Status::Stopped {
            return Ok(0);
        }
        let stats = rt.stats(id)?;
        println!(
            "{}",
            serde_json::json!({"type": "stats", "id": id, "data": stats})
        );
        if once {
            return Ok(0);
        }
        std::thread::sleep(every);
    }
}

fn spec(bundle: &Path, rootless: bool) -> Result<i32> {
    let p = bundle.join("config.json");
    if p.exists() {
        bail!("{} already exists: remove it first", p.display());
    }
    let spec = if rootless {
        oci_spec::runtime::Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        berth_runtime::features::default_spec()
    };
    std::fs::write(&p, serde_json::to_string_pretty(&spec)?)
        .with_context(|| format!("write {}", p.display()))?;
    Ok(0)
}
