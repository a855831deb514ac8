//! `berth container …` and the short forms (`run`, `ps`, `rm`, `logs`, `exec`,
//! `stop`, `kill`), calling the engine library directly until the daemon exists.
//! Exit codes follow docker: the container's own status for `run`/`exec`, 125 when
//! the engine fails, 126/127 when the command cannot be run or found, 1 for the
//! other commands' failures.

use crate::format::{human_since, table};
use berth_engine::{Attach, CreateOptions, Engine, ExecOptions, State, Summary};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the runtime keeps container state (`BERTH_RUNTIME_ROOT` overrides it).
const DEFAULT_RUNTIME_ROOT: &str = "/run/berth/runtime";

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// List containers
    #[command(visible_alias = "ps", visible_alias = "list")]
    Ls(PsArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Create a new container
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Update the limits of one or more running containers
    Update(UpdateArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Display a live stream of container resource usage statistics
    Stats(StatsArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(TopArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
}

#[derive(Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH or a local path
    src: String,
    /// CONTAINER:DEST_PATH or a local path
    dest: String,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    container: String,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args)]
pub struct TopArgs {
    container: String,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go-template subset ({{.State.Status}}, {{json .}}, ...)
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(long)]
    hostname: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    memory: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[command(flatten)]
    pub net: crate::network::NetArgs,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Read in a file of environment variables
    #[arg(long)]
    env_file: Vec<PathBuf>,
    /// Set metadata on a container (key=value)
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Add Linux capabilities (e.g. NET_ADMIN, or ALL)
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long)]
    ulimit: Vec<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    stop_timeout: Option<u64>,
    /// Security options: seccomp=unconfined, no-new-privileges
    #[arg(long)]
    security_opt: Vec<String>,
    /// Log driver options: max-size (default 20m), max-file (default 5)
    #[arg(long)]
    log_opt: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…[,readonly])
    #[arg(long)]
    mount: Vec<String>,
    /// Bind mount a volume (/host:/container[:ro])
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// The image to run
    image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output (name=, id=, status=, exited=, ancestor=, label=)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a Go-template subset ({{.ID}}, {{.Names}}, {{.Status}}, ...;
    /// "table " prefix for columns with headers)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since a timestamp (2013-01-02T13:23:37Z) or relative (42m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (2013-01-02T13:23:37Z) or relative (42m)
    #[arg(long)]
    until: Option<String>,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// The hidden `container-shim` command: the per-container supervisor.
#[derive(Args)]
pub struct ShimArgs {
    /// Descriptor on which to report start and exit
    #[arg(long)]
    status_fd: Option<i32>,
    /// Copy the output to our stdout/stderr too
    #[arg(long)]
    attach: bool,
    id: String,
}

fn runtime_root() -> PathBuf {
    std::env::var_os("BERTH_RUNTIME_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNTIME_ROOT))
}

fn engine(data_root: &Path) -> Result<Engine, berth_engine::Error> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let e = Engine::new(data_root, runtime_root())?;
    let argv = vec![
        exe.into(),
        "--data-root".into(),
        e.data_root().into(),
        "container-shim".into(),
    ];
    Ok(e.with_shim(argv))
}

/// Runs a container command and exits with docker's status for it.
pub fn run(data_root: &Path, cmd: ContainerCmd) -> anyhow::Result<()> {
    let is_run = matches!(cmd, ContainerCmd::Run(_) | ContainerCmd::Create(_));
    let code = match engine(data_root).and_then(|e| dispatch(&e, cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            if is_run || matches!(e.exit_code(), 126 | 127) {
                e.exit_code()
            } else {
                1
            }
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// The hidden shim command.
pub fn shim(data_root: &Path, a: ShimArgs) -> anyhow::Result<()> {
    let attach = if a.attach {
        Attach::Attached
    } else {
        Attach::Detached
    };
    let code = engine(data_root)?.shim(&a.id, a.status_fd, attach);
    std::process::exit(code)
}

fn dispatch(e: &Engine, cmd: ContainerCmd) -> Result<i32, berth_engine::Error> {
    match cmd {
        ContainerCmd::Run(a) => run_container(e, a),
        ContainerCmd::Ls(a) => ps(e, &a),
        ContainerCmd::Rm(a) => each(&a.containers, |c| e.remove(c, a.force, a.volumes)),
        ContainerCmd::Logs(a) => logs(e, &a),
        ContainerCmd::Exec(a) => {
            // a process that joins the container's pid namespace must not expose
            // our binary through /proc/<pid>/exe (CVE-2019-5736)
            if let Err(err) = berth_engine::sealed::reexec_sealed() {
                eprintln!("berth: warning: cannot run from a sealed copy of the binary: {err}");
            }
            exec(e, a)
        }
        ContainerCmd::Stop(a) => each(&a.containers, |c| {
            e.stop(c, a.time.map(Duration::from_secs)).map(|_| ())
        }),
        ContainerCmd::Kill(a) => each(&a.containers, |c| e.kill(c, &a.signal).map(|_| ())),
        ContainerCmd::Create(a) => {
            let id = e.create(&create_options(a)?)?;
            println!("{id}");
            Ok(0)
        }
        ContainerCmd::Start(a) if a.attach => {
            if a.containers.len() > 1 {
                return Err(berth_engine::Error::Invalid(
                    "you cannot start and attach multiple containers at once".into(),
                ));
            }
            e.start_existing(&a.containers[0], true)
        }
        ContainerCmd::Start(a) => each(&a.containers, |c| e.start_existing(c, false).map(|_| ())),
        ContainerCmd::Restart(a) => each(&a.containers, |c| {
            e.restart(c, a.time.map(Duration::from_secs)).map(|_| ())
        }),
        ContainerCmd::Wait(a) => {
            let mut code = 0;
            for c in &a.containers {
                match e.wait(c) {
                    Ok(status) => println!("{status}"),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        ContainerCmd::Inspect(a) => inspect(e, &a),
        ContainerCmd::Pause(a) => each(&a.containers, |c| e.pause(c).map(|_| ())),
        ContainerCmd::Unpause(a) => each(&a.containers, |c| e.unpause(c).map(|_| ())),
        ContainerCmd::Rename(a) => e.rename(&a.container, &a.new_name).map(|_| 0),
        ContainerCmd::Top(a) => top(e, &a),
        ContainerCmd::Update(a) => {
            let u = berth_engine::Update {
                memory: a.memory.as_deref().map(parse_memory).transpose()?,
                memory_swap: a.memory_swap.as_deref().map(parse_swap).transpose()?,
                cpus: a.cpus,
                cpu_shares: a.cpu_shares,
                pids_limit: a.pids_limit,
            };
            each(&a.containers, |c| e.update(c, &u).map(|_| ()))
        }
        ContainerCmd::Prune(a) => prune(e, &a),
        ContainerCmd::Stats(a) => stats(e, &a),
        ContainerCmd::Export(a) => {
            let out = match &a.output {
                Some(p) => std::process::Stdio::from(std::fs::File::create(p).map_err(|err| {
                    berth_engine::Error::Invalid(format!("cannot create {}: {err}", p.display()))
                })?),
                None => {
                    use std::io::IsTerminal;
                    if std::io::stdout().is_terminal() {
                        return Err(berth_engine::Error::Invalid(
                            "cowardly refusing to save to a terminal: use the -o flag or redirect"
                                .into(),
                        ));
                    }
                    std::process::Stdio::inherit()
                }
            };
            e.export(&a.container, out).map(|_| 0)
        }
        ContainerCmd::Cp(a) => {
            // CONTAINER:PATH; a local path with a colon starts with / or .
            let split = |s: &str| -> Option<(String, String)> {
                if s.starts_with('/') || s.starts_with('.') {
                    return None;
                }
                s.split_once(':')
                    .map(|(c, p)| (c.to_string(), p.to_string()))
            };
            match (split(&a.src), split(&a.dest)) {
                (Some((c, p)), None) => e.copy_from(&c, &p, Path::new(&a.dest)).map(|_| 0),
                (None, Some((c, p))) => e.copy_to(&c, Path::new(&a.src), &p).map(|_| 0),
                _ => Err(berth_engine::Error::Invalid(
                    "copying between containers or between local paths is not supported: one side must be CONTAINER:PATH".into(),
                )),
            }
        }
        ContainerCmd::Diff(a) => {
            for (c, p) in e.diff(&a.container)? {
                println!("{} {p}", c.letter());
            }
            Ok(0)
        }
    }
}

/// Applies `f` to every container, printing each as typed; 1 if any failed.
fn each(
    what: &[String],
    f: impl Fn(&str) -> Result<(), berth_engine::Error>,
) -> Result<i32, berth_engine::Error> {
    let mut code = 0;
    for c in what {
        match f(c) {
            Ok(()) => println!("{c}"),
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `-e KEY=VALUE` as is; `-e KEY` takes our value, or is dropped when unset.
fn env_value(v: &str) -> Option<String> {
    if v.contains('=') {
        return Some(v.to_string());
    }
    std::env::var(v).ok().map(|val| format!("{v}={val}"))
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…]`.
fn parse_mount(spec: &str, opts: &mut CreateOptions) -> Result<(), berth_engine::Error> {
    let bad = |why: &str| berth_engine::Error::Invalid(format!("--mount {spec:?}: {why}"));
    let (mut typ, mut src, mut dst, mut ro, mut size) = ("volume", None, None, false, None);
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = v,
            "source" | "src" => src = Some(v),
            "target" | "destination" | "dst" => dst = Some(v),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => size = Some(v),
            _ => return Err(bad(&format!("unknown field {k:?}"))),
        }
    }
    let dst = dst.ok_or_else(|| bad("target= is required"))?;
    match typ {
        "tmpfs" => {
            let extra = size.map(|s| format!(":size={s}")).unwrap_or_default();
            opts.tmpfs.push(format!("{dst}{extra}"));
        }
        "bind" | "volume" => {
            let src = match (typ, src) {
                ("bind", Some(s)) if s.starts_with('/') => s.to_string(),
                ("bind", _) => return Err(bad("a bind mount needs an absolute source=")),
                (_, Some(s)) => s.to_string(),
                // an anonymous volume: a fresh name
                (_, None) => berth_engine::names::new_id()?,
            };
            let mode = if ro { ":ro" } else { "" };
            opts.binds.push(format!("{src}:{dst}{mode}").parse()?);
        }
        t => {
            return Err(bad(&format!(
                "type {t:?} is not supported: use bind, volume or tmpfs"
            )))
        }
    }
    Ok(())
}

/// `--env-file`: KEY=VALUE lines (a bare KEY takes our value), `#` comments.
fn env_files(files: &[PathBuf]) -> Result<Vec<String>, berth_engine::Error> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            berth_engine::Error::Invalid(format!("--env-file {}: {e}", f.display()))
        })?;
        out.extend(
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(env_value),
        );
    }
    Ok(out)
}

/// docker's binary sizes with four significant digits: `1.203MiB`, `15.5GiB`.
fn bytes_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut i = 0;
    while x >= 1024.0 && i < units.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    let digits = if x >= 1000.0 {
        0
    } else if x >= 100.0 {
        1
    } else if x >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{x:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

fn stats(e: &Engine, a: &StatsArgs) -> Result<i32, berth_engine::Error> {
    use berth_engine::stats::{cpu_percent, host_cpu_ns};
    let targets: Vec<Summary> = if a.containers.is_empty() {
        e.list(a.all)?
    } else {
        a.containers
            .iter()
            .map(|c| e.inspect(c))
            .collect::<Result<_, _>>()?
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sample = || {
        let host = host_cpu_ns();
        targets
            .iter()
            .map(|t| (e.stats(&t.record.id).ok(), host))
            .collect::<Vec<_>>()
    };
    let mut before = sample();
    loop {
        std::thread::sleep(Duration::from_millis(if a.no_stream { 500 } else { 1000 }));
        let after = sample();
        let mut rows = vec![[
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ]
        .map(String::from)
        .to_vec()];
        for (t, ((b, hb), (s, ha))) in targets.iter().zip(before.iter().zip(after.iter())) {
            let id = short_id(&t.record.id, a.no_trunc);
            let row = match (b, s) {
                (Some(b), Some(s)) => vec![
                    id,
                    t.record.name.clone(),
                    format!(
                        "{:.2}%",
                        cpu_percent((b.cpu_ns, *hb), (s.cpu_ns, *ha), cpus)
                    ),
                    format!("{} / {}", bytes_size(s.mem_usage), bytes_size(s.mem_limit)),
                    format!(
                        "{:.2}%",
                        if s.mem_limit > 0 {
                            s.mem_usage as f64 / s.mem_limit as f64 * 100.0
                        } else {
                            0.0
                        }
                    ),
                    "0B / 0B".into(),
                    format!(
                        "{} / {}",
                        crate::format::human_size(s.blk_read),
                        crate::format::human_size(s.blk_write)
                    ),
                    s.pids.to_string(),
                ],
                _ => {
                    let mut r = vec![id, t.record.name.clone()];
                    r.extend(
                        ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"].map(String::from),
                    );
                    r
                }
            };
            rows.push(row);
        }
        if !a.no_stream {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", table(&rows));
        if a.no_stream {
            return Ok(0);
        }
        before = after;
    }
}

/// `--memory-swap`: a size, or -1 for unlimited.
fn parse_swap(s: &str) -> Result<i64, berth_engine::Error> {
    if s == "-1" {
        return Ok(-1);
    }
    berth_engine::record::parse_size(s).map(|n| n as i64)
}

/// `top`: the host's `ps -f` for the container's processes (docker's columns).
fn top(e: &Engine, a: &TopArgs) -> Result<i32, berth_engine::Error> {
    let pids = e.top(&a.container)?;
    let list = pids
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let out = std::process::Command::new("ps")
        .args(["-f", "-p", &list])
        .output()
        .map_err(|err| {
            berth_engine::Error::Invalid(format!("top needs ps(1) (procps) on the host: {err}"))
        })?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(0)
}

fn prune(e: &Engine, a: &PruneArgs) -> Result<i32, berth_engine::Error> {
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let removed = e.prune()?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(0)
}

/// `--memory`: docker's sizes, at least 6 MB.
fn parse_memory(s: &str) -> Result<i64, berth_engine::Error> {
    let bytes = berth_engine::record::parse_size(s)?;
    if bytes < 6 << 20 {
        return Err(berth_engine::Error::Invalid(format!(
            "--memory {s}: the minimum memory limit allowed is 6MB"
        )));
    }
    Ok(bytes as i64)
}

fn exec(e: &Engine, a: ExecArgs) -> Result<i32, berth_engine::Error> {
    e.exec(
        &a.container,
        &ExecOptions {
            cmd: a.command,
            tty: a.tty,
            interactive: a.interactive,
            env: a.env.iter().filter_map(|v| env_value(v)).collect(),
            user: a.user,
            workdir: a.workdir,
        },
    )
}

/// The engine's options from `run`/`create` flags.
fn create_options(a: RunArgs) -> Result<CreateOptions, berth_engine::Error> {
    let mut log = berth_engine::LogOptions::default();
    for o in &a.log_opt {
        log.set(o)?;
    }
    let mut opts = CreateOptions {
        image: a.image,
        name: a.name,
        cmd: a.command,
        entrypoint: a.entrypoint,
        env: env_files(&a.env_file)?
            .into_iter()
            .chain(a.env.iter().filter_map(|v| env_value(v)))
            .collect(),
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        memory: a.memory.as_deref().map(parse_memory).transpose()?,
        pids_limit: a.pids_limit,
        read_only: a.read_only,
        binds: a
            .volume
            .iter()
            .map(|v| v.parse())
            .collect::<Result<_, _>>()?,
        auto_remove: a.rm,
        tty: a.tty,
        interactive: a.interactive,
        log,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        tmpfs: a.tmpfs,
        ulimits: a.ulimit,
        cpus: a.cpus,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus,
        memory_swap: a.memory_swap.as_deref().map(parse_swap).transpose()?,
        stop_signal: a.stop_signal,
        stop_timeout: a.stop_timeout,
        labels: a
            .label
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        ..Default::default()
    };
    a.net
        .apply(&mut opts)
        .map_err(|e| berth_engine::Error::Invalid(format!("{e:#}")))?;
    for o in &a.security_opt {
        opts.security_opt(o)?;
    }
    for m in &a.mount {
        parse_mount(m, &mut opts)?;
    }
    Ok(opts)
}

fn run_container(e: &Engine, a: RunArgs) -> Result<i32, berth_engine::Error> {
    let (detach, tty) = (a.detach, a.tty);
    let opts = create_options(a)?;
    let id = e.create(&opts)?;
    if detach {
        e.start(&id, false)?;
        println!("{id}");
        return Ok(0);
    }
    if tty {
        return e.run_tty(&id);
    }
    e.start(&id, true)
}

fn ps(e: &Engine, a: &PsArgs) -> Result<i32, berth_engine::Error> {
    let filters = a
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    berth_engine::Error::Invalid(format!(
                        "bad format of filter {f:?} (expected name=value)"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // docker lists stopped containers too when filtering by status or exit code
    let all = a.all || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut list = e.list(all)?;
    for (k, v) in &filters {
        let keep = |c: &Summary| match k.as_str() {
            "name" => c.record.name.contains(v.trim_start_matches('/')),
            "id" => c.record.id.starts_with(v.as_str()),
            "status" => state_name(c.state) == v,
            "exited" => matches!(c.state, State::Exited(code) if code.to_string() == *v),
            "ancestor" => c.record.options.image == *v,
            "label" => match v.split_once('=') {
                Some((lk, lv)) => c.record.options.labels.get(lk).is_some_and(|x| x == lv),
                None => c.record.options.labels.contains_key(v.as_str()),
            },
            _ => true,
        };
        if !["name", "id", "status", "exited", "ancestor", "label"].contains(&k.as_str()) {
            return Err(berth_engine::Error::Invalid(format!(
                "invalid filter {k:?}: use name, id, status, exited, ancestor or label"
            )));
        }
        list.retain(|c| keep(c));
    }
    if a.quiet {
        for c in &list {
            println!("{}", short_id(&c.record.id, a.no_trunc));
        }
        return Ok(0);
    }
    if let Some(f) = &a.format {
        return ps_format(&list, f, a.no_trunc);
    }
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    .map(String::from)
    .to_vec()];
    for c in &list {
        rows.push(vec![
            short_id(&c.record.id, a.no_trunc),
            c.record.options.image.clone(),
            command_column(c, a.no_trunc),
            human_since(Some(&c.record.created)),
            status_column(c),
            String::new(),
            c.record.name.clone(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Created => "created",
        State::Running => "running",
        State::Exited(_) => "exited",
        State::Dead => "dead",
    }
}

/// `ps --format`: docker's fields; a `table ` prefix prints aligned columns under
/// docker's headers.
fn ps_format(list: &[Summary], f: &str, no_trunc: bool) -> Result<i32, berth_engine::Error> {
    use serde_json::json;
    let (is_table, tpl) = match f.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, f),
    };
    let render = |v: &serde_json::Value| {
        crate::format::render(tpl, v)
            .map_err(|e| berth_engine::Error::Invalid(format!("template: {e:#}")))
    };
    let mut lines = Vec::new();
    if is_table {
        lines.push(render(&json!({
            "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
            "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
            "State": "STATE", "Ports": "PORTS", "Names": "NAMES",
        }))?);
    }
    for c in list {
        lines.push(render(&json!({
            "ID": short_id(&c.record.id, no_trunc),
            "Image": c.record.options.image,
            "Command": command_column(c, no_trunc),
            "CreatedAt": c.record.created,
            "RunningFor": human_since(Some(&c.record.created)),
            "Status": status_column(c),
            "State": state_name(c.state),
            "Ports": "",
            "Names": c.record.name,
        }))?);
    }
    if is_table {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.split('\t').map(String::from).collect())
            .collect();
        print!("{}", table(&rows));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(0)
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

/// docker's COMMAND column: the command line cut to 20 characters, then quoted.
fn command_column(c: &Summary, no_trunc: bool) -> String {
    let mut s = std::iter::once(c.record.path.as_str())
        .chain(c.record.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if !no_trunc && s.chars().count() > 20 {
        s = s.chars().take(19).collect::<String>() + "…";
    }
    format!("{s:?}")
}

fn status_column(c: &Summary) -> String {
    let since = |t: Option<&str>| human_since(t).trim_end_matches(" ago").to_string();
    match c.state {
        State::Created => "Created".into(),
        State::Running if c.paused => {
            format!("Up {} (Paused)", since(c.record.started_at.as_deref()))
        }
        State::Running => format!("Up {}", since(c.record.started_at.as_deref())),
        State::Exited(code) => format!(
            "Exited ({code}) {}",
            human_since(c.exit.as_ref().map(|x| x.finished_at.as_str()))
        ),
        State::Dead => "Dead".into(),
    }
}

/// `--since`/`--until`: RFC 3339, unix seconds, or a duration back from now
/// (`90s`, `42m`, `1h30m`), as docker takes them. Returns RFC 3339 with nanoseconds,
/// comparable with the log's timestamps as strings.
fn log_time(flag: &str, v: &str) -> Result<String, berth_engine::Error> {
    use chrono::{DateTime, SecondsFormat, Utc};
    let bad = || {
        berth_engine::Error::Invalid(format!(
            "{flag} {v:?}: use a timestamp (2013-01-02T13:23:37Z), unix seconds, or a duration like 42m"
        ))
    };
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(fmt(t.with_timezone(&Utc)));
    }
    if let Ok(secs) = v.parse::<f64>() {
        let t = DateTime::from_timestamp((secs.floor()) as i64, (secs.fract() * 1e9) as u32)
            .ok_or_else(bad)?;
        return Ok(fmt(t));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => return Err(bad()),
            }
        };
        total += num.parse::<f64>().map_err(|_| bad())? * unit;
        num.clear();
    }
    if !num.is_empty() || total == 0.0 {
        return Err(bad());
    }
    let back = chrono::Duration::milliseconds((total * 1000.0) as i64);
    Ok(fmt(Utc::now() - back))
}

fn logs(e: &Engine, a: &LogsArgs) -> Result<i32, berth_engine::Error> {
    use std::io::Write;
    let id = e.resolve(&a.container)?;
    let path = e.log_path(&id);
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().map_err(|_| {
            berth_engine::Error::Invalid(format!("--tail {n:?}: use a number of lines or \"all\""))
        })?),
    };
    let since = a
        .since
        .as_deref()
        .map(|v| log_time("--since", v))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|v| log_time("--until", v))
        .transpose()?;
    // where we are: the last time printed and how many entries had it
    let mut cursor: Option<(String, usize)> = None;
    let mut last_round = false;
    loop {
        let entries = berth_engine::logs::read(&path)?;
        let mut same = 0;
        let mut fresh: Vec<&berth_engine::logs::Entry> = Vec::new();
        for en in &entries {
            if let Some((t, n)) = &cursor {
                if en.time < *t {
                    continue;
                }
                if en.time == *t {
                    same += 1;
                    if same <= *n {
                        continue;
                    }
                }
            }
            fresh.push(en);
        }
        fresh.retain(|en| {
            since.as_ref().is_none_or(|s| en.time >= *s)
                && until.as_ref().is_none_or(|u| en.time <= *u)
        });
        if cursor.is_none() {
            if let Some(n) = tail {
                let skip = fresh.len().saturating_sub(n);
                fresh.drain(..skip);
            }
        }
        for en in &fresh {
            let line = if a.timestamps {
                format!("{} {}", en.time, en.log)
            } else {
                en.log.clone()
            };
            let _ = if en.stream == "stderr" {
                std::io::stderr().write_all(line.as_bytes())
            } else {
                std::io::stdout().write_all(line.as_bytes())
            };
        }
        let _ = std::io::stdout().flush();
        if let Some(last) = entries.last() {
            let n = entries.iter().filter(|x| x.time == last.time).count();
            cursor = Some((last.time.clone(), n));
        } else if cursor.is_none() {
            cursor = Some((String::new(), 0));
        }
        if !a.follow || last_round {
            return Ok(0);
        }
        match e.inspect(&id) {
            Ok(s) if s.state == State::Running => std::thread::sleep(Duration::from_millis(100)),
            // one more read for what came before the exit
            _ => last_round = true,
        }
    }
}

fn inspect(e: &Engine, a: &InspectArgs) -> Result<i32, berth_engine::Error> {
    let mut docs = Vec::new();
    let mut code = 0;
    for c in &a.containers {
        match e.inspect(c).and_then(|s| inspect_json(e, &s)) {
            Ok(v) => docs.push(v),
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                code = 1;
            }
        }
    }
    Ok(crate::format::print_docs(&docs, a.format.as_deref(), code))
}

/// docker's `container inspect` shape (the fields berth knows so far).
fn inspect_json(e: &Engine, s: &Summary) -> Result<serde_json::Value, berth_engine::Error> {
    use serde_json::json;
    let r = &s.record;
    let o = &r.options;
    let spec = e.runtime_spec(&r.id)?;
    let process = &spec["process"];
    let dir = e.container_dir(&r.id);
    let zero_time = "0001-01-01T00:00:00Z";
    let status = match s.state {
        State::Created => "created",
        State::Running if s.paused => "paused",
        State::Running => "running",
        State::Exited(_) => "exited",
        State::Dead => "dead",
    };
    let user = o.user.clone().unwrap_or_default();
    Ok(json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": status,
            "Running": s.state == State::Running,
            "Paused": s.paused,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": s.state == State::Dead,
            "Pid": if s.state == State::Running { r.pid.unwrap_or(0) } else { 0 },
            "ExitCode": s.exit.as_ref().map(|x| x.code).unwrap_or(0),
            "Error": "",
            "StartedAt": r.started_at.as_deref().unwrap_or(zero_time),
            "FinishedAt": s.exit.as_ref().map(|x| x.finished_at.as_str()).unwrap_or(zero_time),
        },
        "Image": o.image,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": e.log_path(&r.id),
        "Name": format!("/{}", r.name),
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "Binds": o.binds.iter().map(|b| format!(
                "{}:{}{}",
                b.volume.clone().unwrap_or_else(|| b.source.display().to_string()),
                b.target.display(),
                if b.readonly { ":ro" } else { "" }
            )).collect::<Vec<_>>(),
            "Volumes": r.volumes,
            "LogConfig": {"Type": "json-file", "Config": {
                "max-size": o.log.max_size.to_string(),
                "max-file": o.log.max_files.to_string(),
            }},
            "NetworkMode": berth_engine::network::mode_name(&o.network, &o.endpoints),
            "AutoRemove": o.auto_remove,
            "Memory": o.memory.unwrap_or(0),
            "PidsLimit": o.pids_limit,
            "ReadonlyRootfs": o.read_only,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "NanoCpus": o.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
            "CpuShares": o.cpu_shares.unwrap_or(0),
            "CpusetCpus": o.cpuset_cpus.clone().unwrap_or_default(),
            "MemorySwap": o.memory_swap.unwrap_or(0),
            "Tmpfs": o.tmpfs.iter().map(|t| {
                let (p, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
                (p.to_string(), opts.to_string())
            }).collect::<std::collections::BTreeMap<_, _>>(),
            "Ulimits": o.ulimits,
            "SecurityOpt": o.seccomp_unconfined.then_some(vec!["seccomp=unconfined"]),
        },
        "Config": {
            "Hostname": spec["hostname"],
            "User": user,
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "Env": process["env"],
            "Cmd": std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>(),
            "Image": o.image,
            "WorkingDir": process["cwd"],
            "Entrypoint": o.entrypoint.as_ref().map(|x| vec![x.clone()]),
            "Labels": o.labels,
            "StopSignal": r.stop_signal,
            "StopTimeout": o.stop_timeout,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64m").expect("64m"), 64 << 20);
        assert_eq!(parse_memory("1g").expect("1g"), 1 << 30);
        assert_eq!(parse_memory("1.5g").expect("1.5g"), 3 << 29);
        assert_eq!(parse_memory("10485760").expect("bytes"), 10 << 20);
        assert!(parse_memory("1k").is_err());
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn mounts_parse() {
        let mut o = CreateOptions::default();
        parse_mount("type=bind,source=/a,target=/b,readonly", &mut o).expect("bind");
        parse_mount("type=volume,src=v,dst=/c", &mut o).expect("volume");
        parse_mount("type=tmpfs,target=/t,tmpfs-size=1m", &mut o).expect("tmpfs");
        assert!(o.binds[0].readonly && o.binds[1].volume.as_deref() == Some("v"));
        assert_eq!(o.tmpfs, ["/t:size=1m"]);
        assert!(parse_mount("type=bind,source=rel,target=/b", &mut o).is_err());
        assert!(parse_mount("type=npipe,target=/b", &mut o).is_err());
        assert!(parse_mount("type=bind,source=/a", &mut o).is_err());
    }

    #[test]
    fn log_times() {
        assert_eq!(
            log_time("--since", "2013-01-02T13:23:37Z").expect("rfc3339"),
            "2013-01-02T13:23:37.000000000Z"
        );
        assert_eq!(
            log_time("--since", "1357133017").expect("unix"),
            "2013-01-02T13:23:37.000000000Z"
        );
        let ago = log_time("--since", "1h30m").expect("relative");
        assert!(ago < log_time("--since", "1h").expect("1h"));
        for bad in ["yesterday", "5x", "10q"] {
            assert!(log_time("--since", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_sizes_like_docker() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1536), "1.5KiB");
        assert_eq!(bytes_size(1_261_568), "1.203MiB");
        assert_eq!(bytes_size(16_642_998_272), "15.5GiB");
    }
}
