//! `berth container …` and the short forms (`run`, `ps`, `rm`, `logs`, `exec`, …): each
//! command goes through berthd's Docker Engine API (started on demand, see
//! [`crate::daemon`]). Streams (run, start -a, attach, exec) are in
//! [`crate::attach`]. Exit codes follow docker: the container's own status for
//! `run`/`start -a`/`exec`, 125 when the engine fails, 126/127 when the command cannot
//! be run or found, 1 for the other commands' failures.
//!
//! The hidden `container-shim`, `container-exec` and `container-archive` commands are
//! the engine's helper processes; they call the engine library directly.

use crate::attach::{self as io, Streams};
use crate::format::{human_since, table};
use anyhow::{anyhow, bail, Context};
use berth_client::{enc, Body, Client};
use berth_engine::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::io::Write;
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
    Diff(DiffArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
}

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy (it is shown on a terminal only)
    #[arg(short, long)]
    quiet: bool,
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
    /// Format output using a Go-template subset: "table" (default), "table TEMPLATE",
    /// "json" or TEMPLATE with .Container .Name .ID .CPUPerc .MemUsage .MemPerc .NetIO
    /// .BlockIO .PIDs
    #[arg(long)]
    format: Option<String>,
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
    /// ps options (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
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
    /// Memory soft limit
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    cpu_period: Option<u64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota (-1 for none)
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    /// Limit the CPU real-time period in microseconds
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    /// Limit the CPU real-time runtime in microseconds
    #[arg(long)]
    cpu_rt_runtime: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=<key>=<value>", "label!=<key>")
    #[arg(long = "filter")]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Restore from this checkpoint (not supported: berth has no checkpoint/restore)
    #[arg(long)]
    checkpoint: Option<String>,
    /// Use a custom checkpoint storage directory (not supported)
    #[arg(long)]
    checkpoint_dir: Option<String>,
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
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    /// Attach to STDIN, STDOUT or STDERR (default: STDOUT and STDERR)
    #[arg(short = 'a', long = "attach")]
    attach: Vec<String>,
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
    net: crate::network::NetArgs,
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
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|:rw])
    #[arg(long)]
    volumes_from: Vec<String>,
    /// Give extended privileges to this container (every capability, no seccomp)
    #[arg(long)]
    privileged: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Restart policy to apply when a container exits (no, always, on-failure[:N],
    /// unless-stopped)
    #[arg(long, default_value = "no")]
    restart: String,
    /// Command to run to check health
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long, allow_hyphen_values = true)]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long, allow_hyphen_values = true)]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, allow_hyphen_values = true)]
    health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h)
    #[arg(long, allow_hyphen_values = true)]
    health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    #[command(flatten)]
    opts: crate::run_opts::RunOpts,
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
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long)]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
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
    /// Remove the specified link (berth has no legacy links: refused)
    #[arg(short, long)]
    link: bool,
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
    /// Show extra details provided to logs: the values of the --log-opt labels=/env=
    /// keys (k=v,… and a space before each line, as docker)
    #[arg(long)]
    details: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    detach_keys: Option<String>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    env_file: Vec<PathBuf>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Give extended privileges to the command (every capability, no seccomp)
    #[arg(long)]
    privileged: bool,
    container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container (default: its --stop-signal, else SIGTERM)
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container (default: its --stop-timeout,
    /// else 10; -1 waits for ever)
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
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
    id: String,
}

/// The hidden `container-exec` command: the helper that runs one exec.
#[derive(Args)]
pub struct ExecHelperArgs {
    /// Descriptor on which to report start and exit
    #[arg(long)]
    status_fd: i32,
    /// The client's upgraded connection
    #[arg(long)]
    client_fd: Option<i32>,
    id: String,
    exec_id: String,
    /// The exec's description (JSON)
    json: String,
}

/// The hidden `container-archive` command: copies in and out of a container.
#[derive(Args)]
pub struct ArchiveArgs {
    /// stat, get or put
    op: String,
    id: String,
    path: String,
}

fn runtime_root() -> PathBuf {
    std::env::var_os("BERTH_RUNTIME_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNTIME_ROOT))
}

/// The engine, for the hidden helper commands.
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

/// The hidden shim command.
pub fn shim(data_root: &Path, a: ShimArgs) -> anyhow::Result<()> {
    let code = engine(data_root)?.shim(&a.id, a.status_fd);
    std::process::exit(code)
}

/// The hidden exec helper command.
pub fn exec_helper(data_root: &Path, a: ExecHelperArgs) -> anyhow::Result<()> {
    // a process that joins the container's pid namespace must not expose our binary
    // through /proc/<pid>/exe (CVE-2019-5736)
    if let Err(err) = berth_engine::sealed::reexec_sealed() {
        eprintln!("berth: warning: cannot run from a sealed copy of the binary: {err}");
    }
    let e = engine(data_root)?;
    let code = e.exec_helper(&a.id, &a.exec_id, &a.json, a.status_fd, a.client_fd);
    std::process::exit(code)
}

/// The hidden archive helper command: `stat` prints the path's metadata as JSON,
/// `get` writes a tar to stdout, `put` extracts a tar from stdin.
pub fn archive_helper(data_root: &Path, a: ArchiveArgs) -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    let e = engine(data_root)?;
    let r = match a.op.as_str() {
        "stat" => e.archive_stat(&a.id, &a.path).map(|st| {
            println!("{}", serde_json::to_string(&st).unwrap_or_default());
        }),
        "get" => std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|err| berth_engine::Error::Invalid(err.to_string()))
            .and_then(|fd| e.archive_get(&a.id, &a.path, fd)),
        op @ ("put" | "put-owned") => std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|err| berth_engine::Error::Invalid(err.to_string()))
            .and_then(|fd| e.archive_put(&a.id, &a.path, fd, op == "put-owned")),
        op => bail!("unknown archive operation {op:?}: use stat, get, put or put-owned"),
    };
    if let Err(err) = r {
        eprintln!("berth: {err}");
        std::process::exit(1);
    }
    Ok(())
}

/// Runs a container command and exits with docker's status for it.
pub fn run(data_root: &Path, cmd: ContainerCmd) -> anyhow::Result<()> {
    // docker's run and create fail with 125; start and the others with 1
    let engine_cmd = matches!(cmd, ContainerCmd::Run(_) | ContainerCmd::Create(_));
    let code = match crate::daemon::client(data_root).and_then(|c| dispatch(&c, cmd)) {
        Ok(code) => code,
        Err(e) => {
            let code = failure_code(&e, engine_cmd);
            match e.downcast_ref::<berth_client::Error>() {
                Some(api @ berth_client::Error::Api { .. }) => eprintln!("{api}"),
                _ => eprintln!("berth: {e:#}"),
            }
            code
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// docker's exit codes for a failed command: for run/create 126/127 when the
/// container's command cannot be run or found, else 125; 1 for the other commands.
fn failure_code(e: &anyhow::Error, engine_cmd: bool) -> i32 {
    if let Some(r) = e.downcast_ref::<Refused>() {
        return r.code;
    }
    if !engine_cmd {
        return 1;
    }
    let msg = format!("{e:#}");
    if let Some(berth_client::Error::Api { .. }) = e.downcast_ref::<berth_client::Error>() {
        if msg.contains("executable file not found")
            || msg.contains("no such file or directory")
                && msg.contains("failed to create container")
        {
            return 127;
        }
        if msg.contains("permission denied") && msg.contains("failed to create container") {
            return 126;
        }
    }
    125
}

fn dispatch(c: &Client, cmd: ContainerCmd) -> anyhow::Result<i32> {
    match cmd {
        ContainerCmd::Run(a) => run_container(c, a),
        ContainerCmd::Create(a) => {
            let (id, _) = create(c, &a)?;
            println!("{id}");
            Ok(0)
        }
        ContainerCmd::Ls(a) => ps(c, &a),
        ContainerCmd::Rm(a) if a.link => Err(refuse(
            1,
            "rm --link: berth has no legacy links to remove (containers on a user network reach each other by name)",
        )),
        ContainerCmd::Rm(a) => each(&a.containers, |x| {
            c.delete(&format!(
                "/containers/{}?force={}&v={}",
                enc(x),
                a.force as u8,
                a.volumes as u8
            ))
            .map(|_| ())
        }),
        ContainerCmd::Logs(a) => logs(c, &a),
        ContainerCmd::Exec(a) => exec(c, a),
        ContainerCmd::Stop(a) => {
            let q = stop_query(&a)?;
            each(&a.containers, |x| {
                c.post(&format!("/containers/{}/stop{q}", enc(x)))
            })
        }
        ContainerCmd::Restart(a) => {
            let q = stop_query(&a)?;
            each(&a.containers, |x| {
                c.post(&format!("/containers/{}/restart{q}", enc(x)))
            })
        }
        ContainerCmd::Kill(a) => each(&a.containers, |x| {
            c.post(&format!(
                "/containers/{}/kill?signal={}",
                enc(x),
                enc(&a.signal)
            ))
        }),
        ContainerCmd::Start(a) => start(c, a),
        ContainerCmd::Attach(a) => attach(c, a),
        ContainerCmd::Wait(a) => wait(c, &a),
        ContainerCmd::Inspect(a) => inspect(c, &a),
        ContainerCmd::Pause(a) => each(&a.containers, |x| {
            c.post(&format!("/containers/{}/pause", enc(x)))
        }),
        ContainerCmd::Unpause(a) => each(&a.containers, |x| {
            c.post(&format!("/containers/{}/unpause", enc(x)))
        }),
        ContainerCmd::Rename(a) => {
            c.post(&format!(
                "/containers/{}/rename?name={}",
                enc(&a.container),
                enc(&a.new_name)
            ))?;
            Ok(0)
        }
        ContainerCmd::Top(a) => top(c, &a),
        ContainerCmd::Update(a) => update(c, &a),
        ContainerCmd::Prune(a) => prune(c, &a),
        ContainerCmd::Stats(a) => stats(c, &a),
        ContainerCmd::Diff(a) => diff(c, &a),
        ContainerCmd::Export(a) => export(c, &a),
        ContainerCmd::Cp(a) => {
            let opts = io::CpOptions {
                archive: a.archive,
                follow_link: a.follow_link,
                quiet: a.quiet,
            };
            io::cp(c, &a.src, &a.dest, &opts).map(|_| 0)
        }
        ContainerCmd::Port(a) => port(c, &a),
        ContainerCmd::Commit(a) => commit(c, &a),
    }
}

/// `wait`: each container's exit code.
fn wait(c: &Client, a: &WaitArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for x in &a.containers {
        match c.post_json(&format!("/containers/{}/wait", enc(x)), None) {
            Ok(v) => println!("{}", v["StatusCode"]),
            Err(err) => {
                eprintln!("{err}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `inspect`: docker's documents, or `--format` of each.
fn inspect(c: &Client, a: &InspectArgs) -> anyhow::Result<i32> {
    let size = if a.size { "?size=1" } else { "" };
    let (docs, code) = crate::format::inspect_each(&a.containers, |x| {
        c.get_json(&format!("/containers/{}/json{size}", enc(x)))
    });
    Ok(crate::format::print_docs(&docs, a.format.as_deref(), code))
}

/// `update`: new limits for running containers.
fn update(c: &Client, a: &UpdateArgs) -> anyhow::Result<i32> {
    let mut b = Map::new();
    if let Some(m) = &a.memory {
        b.insert("Memory".into(), json!(parse_memory(m)?));
    }
    if let Some(m) = &a.memory_swap {
        b.insert("MemorySwap".into(), json!(parse_swap(m)?));
    }
    if let Some(n) = a.cpus {
        b.insert("NanoCpus".into(), json!((n * 1e9) as i64));
    }
    if let Some(n) = a.cpu_shares {
        b.insert("CpuShares".into(), json!(n));
    }
    if let Some(n) = a.pids_limit {
        b.insert("PidsLimit".into(), json!(n));
    }
    if let Some(m) = &a.memory_reservation {
        let bytes = berth_engine::record::parse_size(m).map_err(|e| {
            refuse(
                125,
                format!("invalid argument {m:?} for \"--memory-reservation\" flag: {e}"),
            )
        })?;
        b.insert("MemoryReservation".into(), json!(bytes));
    }
    if let Some(n) = a.cpu_period {
        b.insert("CpuPeriod".into(), json!(n));
    }
    if let Some(n) = a.cpu_quota {
        b.insert("CpuQuota".into(), json!(n));
    }
    if let Some(v) = &a.cpuset_cpus {
        b.insert("CpusetCpus".into(), json!(v));
    }
    if let Some(v) = &a.cpuset_mems {
        b.insert("CpusetMems".into(), json!(v));
    }
    if let Some(w) = a.blkio_weight {
        if w != 0 && !(10..=1000).contains(&w) {
            return Err(refuse(
                125,
                format!("invalid argument \"{w}\" for \"--blkio-weight\" flag: use 10 to 1000, or 0 to disable"),
            ));
        }
        b.insert("BlkioWeight".into(), json!(w));
    }
    if let Some(n) = a.cpu_rt_period {
        b.insert("CpuRealtimePeriod".into(), json!(n));
    }
    if let Some(n) = a.cpu_rt_runtime {
        b.insert("CpuRealtimeRuntime".into(), json!(n));
    }
    if let Some(r) = &a.restart {
        b.insert(
            "RestartPolicy".into(),
            restart_policy(r).map_err(|e| refuse(125, format!("{e:#}")))?,
        );
    }
    if b.is_empty() {
        return Err(refuse(
            1,
            "you must provide one or more flags when using this command",
        ));
    }
    let body = Value::Object(b);
    each(&a.containers, |x| {
        let v = c.post_json(&format!("/containers/{}/update", enc(x)), Some(&body))?;
        for w in v["Warnings"].as_array().into_iter().flatten() {
            eprintln!("{}", w.as_str().unwrap_or_default());
        }
        Ok(())
    })
}

/// `diff`: docker's `C`/`A`/`D` lines.
fn diff(c: &Client, a: &DiffArgs) -> anyhow::Result<i32> {
    let v = c.get_json(&format!("/containers/{}/changes", enc(&a.container)))?;
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch["Kind"].as_i64() {
            Some(1) => 'A',
            Some(2) => 'D',
            _ => 'C',
        };
        println!("{k} {}", ch["Path"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// `stop`/`restart`: docker's `?signal=&t=` query (the daemon checks the signal).
fn stop_query(a: &StopArgs) -> anyhow::Result<String> {
    let mut q = Vec::new();
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    Ok(if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    })
}

/// Applies `f` to every container, printing each as typed; 1 if any failed.
fn each(what: &[String], f: impl Fn(&str) -> berth_client::Result<()>) -> anyhow::Result<i32> {
    let mut code = 0;
    for c in what {
        match f(c) {
            Ok(()) => println!("{c}"),
            Err(err) => {
                eprintln!("{err}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…]` as
/// docker's HostConfig.Mounts entry.
fn parse_mount(spec: &str) -> anyhow::Result<Value> {
    let bad = |why: &str| anyhow!("--mount {spec:?}: {why}");
    let (mut typ, mut src, mut dst, mut ro, mut size) = ("volume", None, None, false, None);
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = v,
            "source" | "src" => src = Some(v),
            "target" | "destination" | "dst" => dst = Some(v),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => size = Some(berth_engine::record::parse_size(v)?),
            _ => return Err(bad(&format!("unknown field {k:?}"))),
        }
    }
    let dst = dst.ok_or_else(|| bad("target= is required"))?;
    match typ {
        "tmpfs" => Ok(json!({"Type": "tmpfs", "Target": dst, "TmpfsOptions": {"SizeBytes": size}})),
        "bind" if !src.is_some_and(|s| s.starts_with('/')) => {
            Err(bad("a bind mount needs an absolute source="))
        }
        "bind" | "volume" => {
            Ok(json!({"Type": typ, "Source": src.unwrap_or(""), "Target": dst, "ReadOnly": ro}))
        }
        t => Err(bad(&format!(
            "type {t:?} is not supported: use bind, volume or tmpfs"
        ))),
    }
}

/// docker's durations for the health flags (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn duration_ns(flag: &str, v: &str) -> anyhow::Result<i64> {
    let bad = || anyhow!("{flag} {v:?}: use a duration like 30s, 1m30s or 500ms");
    let (sign, v) = match v.strip_prefix('-') {
        Some(rest) => (-1f64, rest),
        None => (1f64, v),
    };
    let (mut total, mut num) = (0f64, String::new());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1e6
            }
            'h' => 3.6e12,
            'm' => 6e10,
            's' => 1e9,
            _ => return Err(bad()),
        };
        total += num.parse::<f64>().map_err(|_| bad())? * unit;
        num.clear();
    }
    if !num.is_empty() && num != "0" {
        return Err(bad());
    }
    Ok((sign * total) as i64)
}

/// `--restart`: docker's RestartPolicy.
fn restart_policy(v: &str) -> anyhow::Result<Value> {
    let (name, n) = v.split_once(':').unwrap_or((v, ""));
    match name {
        "no" | "always" | "unless-stopped" if n.is_empty() => {
            Ok(json!({"Name": name, "MaximumRetryCount": 0}))
        }
        "on-failure" => {
            let count: i64 = if n.is_empty() {
                0
            } else {
                n.parse()
                    .map_err(|_| anyhow!("--restart {v:?}: the retry count must be a number"))?
            };
            Ok(json!({"Name": name, "MaximumRetryCount": count}))
        }
        _ => bail!("--restart {v:?}: use no, always, unless-stopped or on-failure[:max-retries]"),
    }
}

/// `--ulimit name=soft[:hard]` as docker's Ulimits entry.
fn ulimit(v: &str) -> anyhow::Result<Value> {
    ulimit_entry(v).map_err(|e| anyhow!("--ulimit {e}"))
}

/// `name=soft[:hard]` (run's and build's `--ulimit`) as docker's
/// `{"Name","Soft","Hard"}`; the error says what the value should be.
pub(crate) fn ulimit_entry(v: &str) -> std::result::Result<Value, String> {
    let bad = || format!("{v:?}: use name=soft[:hard], e.g. nofile=1024:2048");
    let (name, lim) = v.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = lim.split_once(':').unwrap_or((lim, lim));
    let n = |x: &str| x.parse::<i64>().map_err(|_| bad());
    Ok(json!({"Name": name, "Soft": n(soft)?, "Hard": n(hard)?}))
}

/// The create request for `run`/`create` flags.
fn create_body(a: &RunArgs, socket: &Path) -> anyhow::Result<Value> {
    let env: Vec<String> = env_files(&a.env_file)?
        .into_iter()
        .chain(a.env.iter().filter_map(|v| env_value(v)))
        .collect();
    let labels: Map<String, Value> = crate::run_opts::labels(&a.opts.label_file, &a.label)?;
    let mut log = Map::new();
    for o in &a.log_opt {
        berth_engine::LogOptions::default().set(o)?;
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        log.insert(k.into(), json!(v));
    }
    let tmpfs: Map<String, Value> = a
        .tmpfs
        .iter()
        .map(|t| {
            let (p, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
            (p.to_string(), json!(o))
        })
        .collect();
    for v in &a.volume {
        v.parse::<berth_engine::Bind>()?;
    }
    for s in &a.security_opt {
        berth_engine::CreateOptions::default().security_opt(s)?;
    }
    let at = attach_streams(a)?;
    let health = health_config(a)?;
    let console = if a.tty { io::terminal_size() } else { None };
    let mut host = json!({
        "Binds": a.volume, "VolumesFrom": a.volumes_from, "Mounts": a.mount.iter().map(|m| parse_mount(m)).collect::<anyhow::Result<Vec<_>>>()?,
        "Tmpfs": tmpfs,
        "Memory": a.memory.as_deref().map(parse_memory).transpose()?.unwrap_or(0),
        "MemorySwap": a.memory_swap.as_deref().map(parse_swap).transpose()?.unwrap_or(0),
        "NanoCpus": a.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "CpuShares": a.cpu_shares.unwrap_or(0), "CpusetCpus": a.cpuset_cpus.clone().unwrap_or_default(),
        "PidsLimit": a.pids_limit, "ReadonlyRootfs": a.read_only,
        "CapAdd": a.cap_add, "CapDrop": a.cap_drop, "Privileged": a.privileged,
        "SecurityOpt": a.security_opt,
        "Ulimits": a.ulimit.iter().map(|u| ulimit(u)).collect::<anyhow::Result<Vec<_>>>()?,
        "Init": a.init, "AutoRemove": a.rm,
        "RestartPolicy": restart_policy(&a.restart)?,
        "LogConfig": {"Type": "json-file", "Config": log},
    });
    if let Some((h, w)) = console {
        host["ConsoleSize"] = json!([h, w]);
    }
    let mut body = json!({
        "Image": a.image, "Cmd": if a.command.is_empty() { Value::Null } else { json!(a.command) },
        "Entrypoint": a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        "Env": env, "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(), "Hostname": a.hostname.clone().unwrap_or_default(),
        "Tty": a.tty, "OpenStdin": a.interactive, "StdinOnce": a.interactive && at.stdin,
        "AttachStdin": at.stdin, "AttachStdout": at.stdout, "AttachStderr": at.stderr,
        "Labels": labels, "StopSignal": a.stop_signal, "StopTimeout": a.stop_timeout,
        "HostConfig": host,
    });
    a.net.to_body(&mut body)?;
    a.opts.to_body(&mut body, socket)?;
    if let Some(h) = health {
        body["Healthcheck"] = h;
    }
    Ok(body)
}

/// A failure with the exit status docker gives it (a refused combination of flags:
/// 125, as for a bad flag; some of `run`'s own checks: 1).
#[derive(Debug)]
struct Refused {
    code: i32,
    msg: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Refused {}

fn refuse(code: i32, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused {
        code,
        msg: msg.into(),
    })
}

/// The streams `run` attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

/// docker's rules: `-a` names the streams (STDOUT and STDERR without it), `-i` adds
/// STDIN; `-d` attaches none and refuses `-a`.
fn attach_streams(a: &RunArgs) -> anyhow::Result<Attach> {
    let mut at = Attach {
        stdin: a.interactive,
        stdout: a.attach.is_empty(),
        stderr: a.attach.is_empty(),
    };
    for s in &a.attach {
        match s.to_ascii_lowercase().as_str() {
            "stdin" => at.stdin = true,
            "stdout" => at.stdout = true,
            "stderr" => at.stderr = true,
            _ => {
                return Err(refuse(
                    125,
                    format!("invalid argument {s:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"),
                ))
            }
        }
    }
    if a.detach {
        if !a.attach.is_empty() {
            return Err(refuse(
                1,
                "conflicting options: cannot specify both --attach and --detach: drop -a to run in the background, or -d to stay attached",
            ));
        }
        return Ok(Attach {
            stdin: false,
            stdout: false,
            stderr: false,
        });
    }
    Ok(at)
}

/// The `Healthcheck` of the `--health-*` flags (docker's checks): `NONE` for
/// `--no-healthcheck`; without `--health-cmd` the image's command with these
/// settings; `None` when no flag is given.
fn health_config(a: &RunArgs) -> anyhow::Result<Option<Value>> {
    let d = |f: &str, v: &Option<String>| -> anyhow::Result<i64> {
        let ns = v.as_deref().map(|v| duration_ns(f, v)).transpose()?;
        match ns {
            Some(n) if n < 0 => Err(refuse(125, format!("{f} cannot be negative"))),
            n => Ok(n.unwrap_or(0)),
        }
    };
    let interval = d("--health-interval", &a.health_interval)?;
    let timeout = d("--health-timeout", &a.health_timeout)?;
    let start_period = d("--health-start-period", &a.health_start_period)?;
    let start_interval = d("--health-start-interval", &a.opts.health_start_interval)?;
    let retries = a.health_retries.unwrap_or(0);
    if retries < 0 {
        return Err(refuse(125, "--health-retries cannot be negative"));
    }
    let cmd = a.health_cmd.as_deref().filter(|c| !c.is_empty());
    let any = cmd.is_some()
        || interval != 0
        || timeout != 0
        || start_period != 0
        || start_interval != 0
        || retries != 0;
    if a.no_healthcheck {
        if any {
            return Err(refuse(
                125,
                "--no-healthcheck conflicts with --health-* options: keep one or the other",
            ));
        }
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    if !any {
        return Ok(None);
    }
    let test = cmd.map_or(json!([]), |c| json!(["CMD-SHELL", c]));
    Ok(Some(json!({
        "Test": test, "Interval": interval, "Timeout": timeout,
        "StartPeriod": start_period, "StartInterval": start_interval, "Retries": retries,
    })))
}

/// Flag combinations docker refuses before it asks the daemon anything.
fn check_run_flags(a: &RunArgs) -> anyhow::Result<()> {
    attach_streams(a)?;
    a.opts.check().map_err(|e| refuse(125, format!("{e:#}")))?;
    health_config(a)?;
    if a.rm && !matches!(a.restart.as_str(), "no" | "") {
        return Err(refuse(
            125,
            "conflicting options: cannot specify both --restart and --rm: a container that removes itself cannot be restarted",
        ));
    }
    Ok(())
}

/// docker's check before it relays stdin to a terminal: our stdin must be one.
fn check_tty(stdin: bool, tty: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if stdin && tty && !std::io::stdin().is_terminal() {
        return Err(refuse(
            1,
            "the input device is not a TTY: run it from a terminal, or drop -t when stdin is a pipe or a file",
        ));
    }
    Ok(())
}

/// Creates the container; its id and whether it has a terminal.
fn create(c: &Client, a: &RunArgs) -> anyhow::Result<(String, bool)> {
    check_run_flags(a)?;
    let body = create_body(a, c.socket())?;
    let q = crate::run_opts::create_query(a.name.as_deref(), a.opts.platform.as_deref());
    let url = format!("/containers/create{q}");
    // docker's default: pull an image the store lacks
    let pull = a.opts.pull.as_deref().unwrap_or("missing");
    if pull == "always" {
        crate::run_opts::pull(c, &a.image, a.opts.quiet)?;
    }
    let create = || -> anyhow::Result<Result<Value, berth_client::Error>> {
        Ok(c.request("POST", &url, Body::Json(&body))?
            .ok()
            .and_then(|r| r.json()))
    };
    let no_image = |r: &Result<Value, berth_client::Error>| {
        matches!(r, Err(berth_client::Error::Api { status: 404, message })
            if message.starts_with("No such image"))
    };
    let mut r = create()?;
    if no_image(&r) && pull == "missing" {
        eprintln!("Unable to find image '{}' locally", a.image);
        crate::run_opts::pull(c, &a.image, a.opts.quiet).with_context(|| {
            format!(
                "the image {} is neither here nor pullable: import or load it, or build it with `berth build -t {} .`",
                a.image, a.image
            )
        })?;
        r = create()?;
    }
    let v = r?;
    let id = v["Id"]
        .as_str()
        .context("the daemon's create reply has no Id")?
        .to_string();
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or(""));
    }
    crate::run_opts::api_socket_config(c, &a.opts, &id)?;
    crate::run_opts::write_cidfile(a.opts.cidfile.as_ref(), &id)?;
    Ok((id, a.tty))
}

/// `run`: create, then detached: start and print the id; else attach, start, relay,
/// and exit with the container's status.
fn run_container(c: &Client, a: RunArgs) -> anyhow::Result<i32> {
    check_run_flags(&a)?;
    let at = attach_streams(&a)?;
    if !a.detach {
        check_tty(at.stdin, a.tty)?;
    }
    let (id, tty) = create(c, &a)?;
    if a.detach {
        c.post(&format!("/containers/{id}/start"))?;
        println!("{id}");
        return Ok(0);
    }
    let keys = a.detach_keys.clone();
    let streams = Streams {
        // the container's stdin is open only with -i
        stdin: at.stdin && a.interactive,
        stdout: at.stdout,
        stderr: at.stderr,
        tty,
        detach_keys: keys,
        sig_proxy: a.sig_proxy && !tty,
    };
    let session = io::attach_container(c, &id, &streams)?;
    let condition = if a.rm { "removed" } else { "next-exit" };
    let wait = c
        .request(
            "POST",
            &format!("/containers/{id}/wait?condition={condition}"),
            Body::Empty,
        )?
        .ok()?;
    c.post(&format!("/containers/{id}/start"))?;
    match session.relay(c, &id, &streams)? {
        io::Ended::Detached => Ok(0),
        io::Ended::Exited => {
            let v = wait.json()?;
            if let Some(m) = v["Error"]["Message"].as_str() {
                bail!("{m}");
            }
            Ok(v["StatusCode"].as_i64().unwrap_or(125) as i32)
        }
    }
}

/// `start`: each container; with `-a`, attached to the one given.
fn start(c: &Client, a: StartArgs) -> anyhow::Result<i32> {
    if a.checkpoint.is_some() || a.checkpoint_dir.is_some() {
        return Err(refuse(
            1,
            "start --checkpoint: berth has no checkpoint/restore (CRIU); start the container without it",
        ));
    }
    if !a.attach && !a.interactive {
        return each(&a.containers, |x| {
            c.post(&format!("/containers/{}/start", enc(x)))
        });
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let what = &a.containers[0];
    let v = c.get_json(&format!("/containers/{}/json", enc(what)))?;
    let id = v["Id"].as_str().unwrap_or(what).to_string();
    let streams = Streams {
        stdin: a.interactive && v["Config"]["OpenStdin"].as_bool().unwrap_or(false),
        stdout: true,
        stderr: true,
        tty: v["Config"]["Tty"].as_bool().unwrap_or(false),
        detach_keys: a.detach_keys,
        sig_proxy: true,
    };
    check_tty(streams.stdin, streams.tty)?;
    let session = io::attach_container(c, &id, &streams)?;
    let wait = c
        .request(
            "POST",
            &format!("/containers/{id}/wait?condition=next-exit"),
            Body::Empty,
        )?
        .ok()?;
    c.post(&format!("/containers/{id}/start"))?;
    match session.relay(c, &id, &streams)? {
        io::Ended::Detached => Ok(0),
        io::Ended::Exited => Ok(wait.json()?["StatusCode"].as_i64().unwrap_or(125) as i32),
    }
}

/// `attach`: to a running container, until it exits or the detach keys.
fn attach(c: &Client, a: AttachArgs) -> anyhow::Result<i32> {
    let v = c.get_json(&format!("/containers/{}/json", enc(&a.container)))?;
    let id = v["Id"].as_str().unwrap_or(&a.container).to_string();
    if !v["State"]["Running"].as_bool().unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let streams = Streams {
        stdin: !a.no_stdin && v["Config"]["OpenStdin"].as_bool().unwrap_or(false),
        stdout: true,
        stderr: true,
        tty,
        detach_keys: a.detach_keys,
        sig_proxy: a.sig_proxy && !tty,
    };
    check_tty(streams.stdin, streams.tty)?;
    let session = io::attach_container(c, &id, &streams)?;
    let wait = c
        .request("POST", &format!("/containers/{id}/wait"), Body::Empty)?
        .ok()?;
    match session.relay(c, &id, &streams)? {
        io::Ended::Detached => Ok(0),
        io::Ended::Exited => Ok(wait.json()?["StatusCode"].as_i64().unwrap_or(125) as i32),
    }
}

/// `exec`: create the exec, then run it detached or attached; its exit code.
fn exec(c: &Client, a: ExecArgs) -> anyhow::Result<i32> {
    let attached = !a.detach;
    if attached {
        check_tty(a.interactive, a.tty)?;
    }
    // docker's order: the files first, then -e (a later value wins)
    let mut env = env_files(&a.env_file).map_err(|e| refuse(125, format!("{e:#}")))?;
    env.extend(a.env.iter().filter_map(|v| env_value(v)));
    let mut body = json!({
        "Cmd": a.command, "Tty": a.tty, "AttachStdin": a.interactive && attached,
        "AttachStdout": attached, "AttachStderr": attached,
        "Env": env,
        "User": a.user.clone().unwrap_or_default(), "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Privileged": a.privileged,
    });
    if a.tty {
        if let Some((h, w)) = io::terminal_size() {
            body["ConsoleSize"] = json!([h, w]);
        }
    }
    let v = c.post_json(
        &format!("/containers/{}/exec", enc(&a.container)),
        Some(&body),
    )?;
    let exec_id = v["Id"]
        .as_str()
        .context("the daemon's exec reply has no Id")?
        .to_string();
    if a.detach {
        c.post_json(
            &format!("/exec/{exec_id}/start"),
            Some(&json!({"Detach": true, "Tty": a.tty})),
        )?;
        return Ok(0);
    }
    let streams = Streams {
        stdin: a.interactive,
        stdout: true,
        stderr: true,
        tty: a.tty,
        detach_keys: a.detach_keys,
        sig_proxy: false,
    };
    let session = io::start_exec(c, &exec_id, &streams)?;
    match session.relay_exec(c, &exec_id, &streams)? {
        io::Ended::Detached => Ok(0),
        io::Ended::Exited => {
            let v = c.get_json(&format!("/exec/{exec_id}/json"))?;
            Ok(v["ExitCode"].as_i64().unwrap_or(126) as i32)
        }
    }
}

fn ps(c: &Client, a: &PsArgs) -> anyhow::Result<i32> {
    let mut filters: Map<String, Value> = Map::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter {f:?} (expected name=value)"))?;
        if let Some(l) = filters
            .entry(k.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            l.push(json!(v));
        }
    }
    let limit = if a.latest { Some(1) } else { a.last };
    let mut q = format!(
        "/containers/json?all={}&size={}&filters={}",
        (a.all || limit.is_some()) as u8,
        a.size as u8,
        enc(&Value::Object(filters).to_string())
    );
    if let Some(n) = limit {
        q.push_str(&format!("&limit={n}"));
    }
    let list = c.get_json(&q)?;
    let list = list.as_array().cloned().unwrap_or_default();
    if a.quiet {
        for x in &list {
            println!("{}", short_id(x["Id"].as_str().unwrap_or(""), a.no_trunc));
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list.iter().map(|x| ps_row(x, a.no_trunc)).collect();
    if let Some(f) = &a.format {
        return ps_format(&rows, f);
    }
    let mut cols = vec![
        "ID",
        "Image",
        "Command",
        "RunningFor",
        "Status",
        "Ports",
        "Names",
    ];
    let mut head = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if a.size {
        cols.push("Size");
        head.push("SIZE");
    }
    let mut out = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in &rows {
        out.push(
            cols.iter()
                .map(|k| r[*k].as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    print!("{}", table(&out));
    Ok(0)
}

/// One `ps` row with docker's field names for `--format`.
fn ps_row(x: &Value, no_trunc: bool) -> Value {
    let created = chrono::DateTime::from_timestamp(x["Created"].as_i64().unwrap_or(0), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let mut cmd = x["Command"].as_str().unwrap_or("").to_string();
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let names: Vec<&str> = x["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .map(|n| n.trim_start_matches('/'))
        .collect();
    let ports: Vec<String> = x["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["PublicPort"].as_u64() {
            Some(pp) => format!(
                "{}:{}->{}/{}",
                p["IP"].as_str().unwrap_or("0.0.0.0"),
                pp,
                p["PrivatePort"],
                p["Type"].as_str().unwrap_or("tcp")
            ),
            None => format!(
                "{}/{}",
                p["PrivatePort"],
                p["Type"].as_str().unwrap_or("tcp")
            ),
        })
        .collect();
    json!({
        "ID": short_id(x["Id"].as_str().unwrap_or(""), no_trunc),
        "Image": x["Image"], "Command": format!("{cmd:?}"),
        "CreatedAt": created, "RunningFor": human_since(Some(&created)),
        "Status": x["Status"], "State": x["State"], "Ports": ports.join(", "),
        "Names": names.join(","), "Labels": x["Labels"],
        "Size": format!("{} (virtual {})",
            crate::format::human_size(x["SizeRw"].as_u64().unwrap_or(0)),
            crate::format::human_size(x["SizeRootFs"].as_u64().unwrap_or(0))),
    })
}

/// `ps --format`: docker's fields; a `table ` prefix prints aligned columns under
/// docker's headers.
fn ps_format(rows: &[Value], f: &str) -> anyhow::Result<i32> {
    let (is_table, tpl) = match f.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, f),
    };
    let render = |v: &Value| crate::format::render(tpl, v).map_err(|e| anyhow!("template: {e:#}"));
    let mut lines = Vec::new();
    if is_table {
        lines.push(render(&json!({
            "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
            "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
            "State": "STATE", "Ports": "PORTS", "Names": "NAMES", "Labels": "LABELS",
        }))?);
    }
    for r in rows {
        lines.push(render(r)?);
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

/// RFC 3339 → docker's `since`/`until` query value (unix seconds with nanoseconds).
fn unix_query(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos()))
        .unwrap_or_default()
}

fn logs(c: &Client, a: &LogsArgs) -> anyhow::Result<i32> {
    let v = c.get_json(&format!("/containers/{}/json", enc(&a.container)))?;
    let id = v["Id"].as_str().unwrap_or(&a.container).to_string();
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let tail = match a.tail.as_str() {
        "all" | "-1" => "all".to_string(),
        n => n
            .parse::<u64>()
            .map_err(|_| anyhow!("--tail {n:?}: use a number of lines or \"all\""))?
            .to_string(),
    };
    let mut q = format!(
        "/containers/{id}/logs?stdout=1&stderr=1&tail={tail}&follow={}&timestamps={}",
        a.follow as u8, a.timestamps as u8
    );
    if a.details {
        q.push_str("&details=1");
    }
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", unix_query(&log_time("--since", s)?)));
    }
    if let Some(u) = &a.until {
        q.push_str(&format!("&until={}", unix_query(&log_time("--until", u)?)));
    }
    let mut r = c.request("GET", &q, Body::Empty)?.ok()?.reader();
    if tty {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 16384];
        loop {
            let n = std::io::Read::read(&mut r, &mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
    } else {
        berth_client::demux(&mut r, &mut std::io::stdout(), &mut std::io::stderr())?;
    }
    Ok(0)
}

/// `top`: docker's table from the daemon's Titles and Processes.
fn top(c: &Client, a: &TopArgs) -> anyhow::Result<i32> {
    let mut q = format!("/containers/{}/top", enc(&a.container));
    if !a.ps_args.is_empty() {
        q.push_str(&format!("?ps_args={}", enc(&a.ps_args.join(" "))));
    }
    let v = c.get_json(&q)?;
    let mut rows: Vec<Vec<String>> = vec![v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap_or("").to_string())
        .collect()];
    for p in v["Processes"].as_array().into_iter().flatten() {
        rows.push(
            p.as_array()
                .into_iter()
                .flatten()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    print!("{}", table(&rows));
    Ok(0)
}

fn prune(c: &Client, a: &PruneArgs) -> anyhow::Result<i32> {
    let q = crate::image::filters_query(&a.filter, &[])?;
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let v = c.post_json(&format!("/containers/prune?filters={q}"), None)?;
    let removed = v["ContainersDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{}", id.as_str().unwrap_or(""));
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::format::human_size(v["SpaceReclaimed"].as_u64().unwrap_or(0))
    );
    Ok(0)
}

/// docker's default `stats` columns.
const STATS_TABLE: &str =
    "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// One `stats` row from docker's stats document, with docker's placeholder names;
/// `container` is the name or id as the user gave it (`.Container`).
fn stats_row(container: &str, v: &Value, no_trunc: bool) -> Value {
    let n = |x: &Value| x.as_u64().unwrap_or(0);
    let cpu_delta = n(&v["cpu_stats"]["cpu_usage"]["total_usage"])
        .saturating_sub(n(&v["precpu_stats"]["cpu_usage"]["total_usage"]))
        as f64;
    let sys_delta = n(&v["cpu_stats"]["system_cpu_usage"])
        .saturating_sub(n(&v["precpu_stats"]["system_cpu_usage"])) as f64;
    let cpus = n(&v["cpu_stats"]["online_cpus"]).max(1) as f64;
    let cpu = if sys_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let usage = n(&v["memory_stats"]["usage"]);
    let limit = n(&v["memory_stats"]["limit"]);
    let mem_pct = if limit > 0 {
        usage as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    let blk = |op: &str| {
        v["blkio_stats"]["io_service_bytes_recursive"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["op"].as_str().is_some_and(|o| o.eq_ignore_ascii_case(op)))
            .map(|e| n(&e["value"]))
            .sum::<u64>()
    };
    let (rx, tx) = v["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .fold((0, 0), |(r, t), i| {
            (r + n(&i["rx_bytes"]), t + n(&i["tx_bytes"]))
        });
    let hs = crate::format::human_size;
    json!({
        "Container": container,
        "ID": short_id(v["id"].as_str().unwrap_or(""), no_trunc),
        "Name": v["name"].as_str().unwrap_or("").trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(usage), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", hs(rx), hs(tx)),
        "BlockIO": format!("{} / {}", hs(blk("read")), hs(blk("write"))),
        "PIDs": n(&v["pids_stats"]["current"]).to_string(),
    })
}

fn stats(c: &Client, a: &StatsArgs) -> anyhow::Result<i32> {
    let targets: Vec<String> = if a.containers.is_empty() {
        c.get_json(&format!("/containers/json?all={}", a.all as u8))?
            .as_array()
            .into_iter()
            .flatten()
            // docker's .Container for a container it listed itself: the short id
            .filter_map(|x| x["Id"].as_str().map(|id| id.chars().take(12).collect()))
            .collect()
    } else {
        a.containers.clone()
    };
    let format = a.format.as_deref().unwrap_or("table");
    let headers = json!({
        "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    });
    loop {
        let docs: Vec<(String, Value)> = std::thread::scope(|s| {
            let hs: Vec<_> = targets
                .iter()
                .map(|t| {
                    s.spawn(move || {
                        c.get_json(&format!("/containers/{}/stats?stream=0", enc(t)))
                            .map(|v| (t.clone(), v))
                    })
                })
                .collect();
            hs.into_iter()
                .filter_map(|h| h.join().ok())
                .collect::<berth_client::Result<Vec<_>>>()
        })?;
        let rows: Vec<Value> = docs
            .iter()
            .map(|(t, v)| stats_row(t, v, a.no_trunc))
            .collect();
        let out = crate::format::format_rows(format, STATS_TABLE, &headers, &rows)
            .map_err(|e| refuse(125, format!("{e:#}")))?;
        if !a.no_stream {
            print!("\x1b[2J\x1b[H");
        }
        print!("{out}");
        std::io::stdout().flush()?;
        if a.no_stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn export(c: &Client, a: &ExportArgs) -> anyhow::Result<i32> {
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal: use the -o flag or redirect");
            }
            Box::new(std::io::stdout())
        }
    };
    let mut r = c
        .request(
            "GET",
            &format!("/containers/{}/export", enc(&a.container)),
            Body::Empty,
        )?
        .ok()?
        .reader();
    std::io::copy(&mut r, &mut out)?;
    out.flush()?;
    Ok(0)
}

/// `commit`: the container's changes as a new image; prints its id.
fn commit(c: &Client, a: &CommitArgs) -> anyhow::Result<i32> {
    let mut q = format!(
        "/commit?container={}&pause={}&comment={}&author={}&changes={}",
        enc(&a.container),
        a.pause as u8,
        enc(a.message.as_deref().unwrap_or("")),
        enc(a.author.as_deref().unwrap_or("")),
        enc(&a.change.join("\n"))
    );
    if let Some(r) = &a.reference {
        // the tag is after the last colon that is not part of a registry host:port
        let (repo, tag) = match r.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (r.as_str(), ""),
        };
        q.push_str(&format!("&repo={}&tag={}", enc(repo), enc(tag)));
    }
    let v = c.post_json(&q, None)?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

/// `port`: the published ports from the container's NetworkSettings.
fn port(c: &Client, a: &PortArgs) -> anyhow::Result<i32> {
    let v = c.get_json(&format!("/containers/{}/json", enc(&a.container)))?;
    let want = a.port.as_deref().map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut found = false;
    if let Some(ports) = v["NetworkSettings"]["Ports"].as_object() {
        for (k, binds) in ports {
            if want.as_ref().is_some_and(|w| w != k) {
                continue;
            }
            for b in binds.as_array().into_iter().flatten() {
                found = true;
                let ip = b["HostIp"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("0.0.0.0");
                let hp = b["HostPort"].as_str().unwrap_or("");
                if want.is_some() {
                    println!("{ip}:{hp}");
                } else {
                    println!("{k} -> {ip}:{hp}");
                }
            }
        }
    }
    if let (Some(w), false) = (&want, found) {
        bail!("no public port '{w}' published for {}", a.container);
    }
    Ok(0)
}

/// `-e KEY=VALUE` as is; `-e KEY` takes our value, or is dropped when unset.
fn env_value(v: &str) -> Option<String> {
    if v.contains('=') {
        return Some(v.to_string());
    }
    std::env::var(v).ok().map(|val| format!("{v}={val}"))
}

/// `--env-file`: KEY=VALUE lines (a bare KEY takes our value), `#` comments.
fn env_files(files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", f.display()))?;
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

/// `--memory-swap`: a size, or -1 for unlimited.
fn parse_swap(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    Ok(berth_engine::record::parse_size(s).map(|n| n as i64)?)
}

/// `--memory`: docker's sizes, at least 6 MB.
fn parse_memory(s: &str) -> anyhow::Result<i64> {
    let bytes = berth_engine::record::parse_size(s)?;
    if bytes < 6 << 20 {
        return Err(anyhow::anyhow!(
            "--memory {s}: the minimum memory limit allowed is 6MB"
        ));
    }
    Ok(bytes as i64)
}

/// `--since`/`--until`: RFC 3339, unix seconds, or a duration back from now
/// (`90s`, `42m`, `1h30m`), as docker takes them. Returns RFC 3339 with nanoseconds,
/// comparable with the log's timestamps as strings.
fn log_time(flag: &str, v: &str) -> anyhow::Result<String> {
    use chrono::{DateTime, SecondsFormat, Utc};
    let bad = || {
        anyhow::anyhow!(
            "{flag} {v:?}: use a timestamp (2013-01-02T13:23:37Z), unix seconds, or a duration like 42m"
        )
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
        let b = parse_mount("type=bind,source=/a,target=/b,readonly").expect("bind");
        assert_eq!(
            b,
            json!({"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true})
        );
        let v = parse_mount("type=volume,src=v,dst=/c").expect("volume");
        assert_eq!(v["Source"], "v");
        let t = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").expect("tmpfs");
        assert_eq!(t["TmpfsOptions"]["SizeBytes"], 1 << 20);
        assert!(parse_mount("type=bind,source=rel,target=/b").is_err());
        assert!(parse_mount("type=npipe,target=/b").is_err());
        assert!(parse_mount("type=bind,source=/a").is_err());
    }

    #[test]
    fn failures_exit_like_docker() {
        let api = |m: &str| {
            anyhow::Error::from(berth_client::Error::Api {
                status: 400,
                message: m.into(),
            })
        };
        let nf = "failed to create container abc: exec: \"x\": executable file not found in $PATH";
        assert_eq!(failure_code(&api(nf), true), 127);
        assert_eq!(failure_code(&api(nf), false), 1);
        let denied = "failed to create container abc: exec: \"/etc\": permission denied";
        assert_eq!(failure_code(&api(denied), true), 126);
        assert_eq!(failure_code(&api("No such image: x"), true), 125);
        assert_eq!(failure_code(&anyhow::anyhow!("bad flag"), true), 125);
    }

    /// `run ARGS… img` as parsed flags.
    fn run_args(args: &[&str]) -> RunArgs {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: RunArgs,
        }
        let argv = std::iter::once("run")
            .chain(args.iter().copied())
            .chain(std::iter::once("img"));
        <T as clap::Parser>::try_parse_from(argv).expect("flags").a
    }

    #[test]
    fn attached_streams_follow_dockers_table() {
        let at =
            |args: &[&str]| attach_streams(&run_args(args)).map(|a| (a.stdin, a.stdout, a.stderr));
        assert_eq!(at(&[]).expect("none"), (false, true, true));
        assert_eq!(at(&["-a", "stdin"]).expect("stdin"), (true, false, false));
        assert_eq!(at(&["-i"]).expect("-i"), (true, true, true));
        assert_eq!(
            at(&["-i", "-a", "STDERR"]).expect("-i -a"),
            (true, false, true)
        );
        assert_eq!(at(&["-d", "-i"]).expect("-d"), (false, false, false));
        let refused = at(&["-d", "-a", "stdout"]).expect_err("-a with -d");
        assert_eq!(failure_code(&refused, true), 1);
        assert_eq!(failure_code(&at(&["-a", "x"]).expect_err("bad"), true), 125);
    }

    #[test]
    fn health_flags_follow_docker() {
        let hc = |args: &[&str]| health_config(&run_args(args));
        assert_eq!(hc(&[]).expect("none"), None);
        assert_eq!(
            hc(&["--no-healthcheck"]).expect("off"),
            Some(json!({"Test": ["NONE"]}))
        );
        let only_interval = hc(&["--health-interval", "2s"])
            .expect("interval")
            .expect("set");
        assert_eq!(only_interval["Test"], json!([]));
        assert_eq!(only_interval["Interval"], 2_000_000_000i64);
        for bad in [
            &["--no-healthcheck", "--health-cmd", "x"][..],
            &["--health-timeout", "-1s"][..],
            &["--health-retries", "-2"][..],
        ] {
            assert_eq!(
                failure_code(&hc(bad).expect_err("refused"), true),
                125,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn health_durations_and_restart_policies() {
        assert_eq!(
            duration_ns("--health-interval", "1m30s").expect("d"),
            90_000_000_000
        );
        assert_eq!(
            duration_ns("--health-timeout", "500ms").expect("ms"),
            500_000_000
        );
        assert!(duration_ns("--health-timeout", "5x").is_err());
        assert_eq!(
            restart_policy("on-failure:3").expect("p")["MaximumRetryCount"],
            3
        );
        assert!(restart_policy("sometimes").is_err());
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
