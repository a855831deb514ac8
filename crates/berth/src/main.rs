//! `berth`: the command line. It talks to berthd over the Docker Engine API (starting
//! it when none answers); image, volume, registry and system commands already do.

mod attach;
mod build;
mod container;
mod daemon;
mod format;
mod image;
mod inspect;
mod lifecycle;
mod network;
mod progress;
mod registry;
mod run_opts;
mod system;
mod volume;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A Docker-compatible container engine"
)]
struct Cli {
    /// Root of berth's persistent state
    #[arg(
        long,
        global = true,
        env = "BERTH_DATA_ROOT",
        default_value = "/var/lib/berth"
    )]
    data_root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: build::ImageCmd,
    },
    /// Manage berth
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// List images
    Images(image::LsArgs),
    /// Remove one or more images
    Rmi(image::RmArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout(registry::LogoutArgs),
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: container::ContainerCmd,
    },
    /// Create and run a new container from an image
    Run(container::RunArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Execute a command in a running container
    Exec(container::ExecArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Create a new container
    Create(container::RunArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// Pause all processes within one or more containers
    Pause(container::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(container::NamesArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Update the limits of one or more running containers
    Update(container::UpdateArgs),
    /// Display a live stream of container resource usage statistics
    Stats(container::StatsArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::DiffArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(container::AttachArgs),
    /// List port mappings or a specific mapping for the container
    Port(container::PortArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),

    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container::CpArgs),
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        cmd: volume::VolumeCmd,
    },
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: network::NetworkCmd,
    },
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Return low-level information on containers, images, networks or volumes
    Inspect(inspect::InspectArgs),
    /// Show the berth version information (client and daemon)
    Version,
    /// The per-container supervisor (internal)
    #[command(hide = true)]
    ContainerShim(container::ShimArgs),
    /// The end of a container the slim supervisor ran (internal)
    #[command(hide = true)]
    ContainerShimFinish(lifecycle::FinishArgs),
    /// The helper that runs one exec (internal)
    #[command(hide = true)]
    ContainerExec(container::ExecHelperArgs),
    /// The helper that copies in and out of a container (internal)
    #[command(hide = true)]
    ContainerArchive(container::ArchiveArgs),
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Show berth disk usage
    Df,
    /// Remove unused data (stopped containers, unused networks, dangling images)
    Prune {
        /// Remove all unused images, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Prune anonymous volumes
        #[arg(long)]
        volumes: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    lifecycle::supervisor_fast_path(&args);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| usage_error(e));
    let result = match cli.cmd {
        Cmd::Image { cmd } => build::image(&cli.data_root, cmd),
        Cmd::Build(a) => build::build(&cli.data_root, &a),
        Cmd::Images(a) => image::run(&cli.data_root, image::ImageCmd::Ls(a)),
        Cmd::Rmi(a) => image::run(&cli.data_root, image::ImageCmd::Rm(a)),
        Cmd::Tag(a) => image::run(&cli.data_root, image::ImageCmd::Tag(a)),
        Cmd::Save(a) => image::run(&cli.data_root, image::ImageCmd::Save(a)),
        Cmd::Load(a) => image::run(&cli.data_root, image::ImageCmd::Load(a)),
        Cmd::Import(a) => image::run(&cli.data_root, image::ImageCmd::Import(a)),
        Cmd::History(a) => image::run(&cli.data_root, image::ImageCmd::History(a)),
        Cmd::System { cmd: SystemCmd::Df } => image::system_df(&cli.data_root),
        Cmd::System {
            cmd:
                SystemCmd::Prune {
                    all,
                    volumes,
                    force,
                },
        } => image::system_prune(&cli.data_root, all, volumes, force),
        Cmd::System {
            cmd: SystemCmd::Info(a),
        }
        | Cmd::Info(a) => system::info(&cli.data_root, &a),
        Cmd::System {
            cmd: SystemCmd::Events(a),
        }
        | Cmd::Events(a) => system::events(&cli.data_root, &a),
        Cmd::Pull(a) => image::run(&cli.data_root, image::ImageCmd::Pull(a)),
        Cmd::Push(a) => image::run(&cli.data_root, image::ImageCmd::Push(a)),
        Cmd::Login(a) => registry::login(&cli.data_root, &a),
        Cmd::Logout(a) => registry::logout(&a),
        Cmd::Container { cmd } => container::run(&cli.data_root, cmd),
        Cmd::Run(a) => container::run(&cli.data_root, container::ContainerCmd::Run(a)),
        Cmd::Ps(a) => container::run(&cli.data_root, container::ContainerCmd::Ls(a)),
        Cmd::Rm(a) => container::run(&cli.data_root, container::ContainerCmd::Rm(a)),
        Cmd::Logs(a) => container::run(&cli.data_root, container::ContainerCmd::Logs(a)),
        Cmd::Exec(a) => container::run(&cli.data_root, container::ContainerCmd::Exec(a)),
        Cmd::Stop(a) => container::run(&cli.data_root, container::ContainerCmd::Stop(a)),
        Cmd::Kill(a) => container::run(&cli.data_root, container::ContainerCmd::Kill(a)),
        Cmd::Create(a) => container::run(&cli.data_root, container::ContainerCmd::Create(a)),
        Cmd::Start(a) => container::run(&cli.data_root, container::ContainerCmd::Start(a)),
        Cmd::Restart(a) => container::run(&cli.data_root, container::ContainerCmd::Restart(a)),
        Cmd::Wait(a) => container::run(&cli.data_root, container::ContainerCmd::Wait(a)),
        Cmd::Pause(a) => container::run(&cli.data_root, container::ContainerCmd::Pause(a)),
        Cmd::Unpause(a) => container::run(&cli.data_root, container::ContainerCmd::Unpause(a)),
        Cmd::Rename(a) => container::run(&cli.data_root, container::ContainerCmd::Rename(a)),
        Cmd::Top(a) => container::run(&cli.data_root, container::ContainerCmd::Top(a)),
        Cmd::Update(a) => container::run(&cli.data_root, container::ContainerCmd::Update(a)),
        Cmd::Stats(a) => container::run(&cli.data_root, container::ContainerCmd::Stats(a)),
        Cmd::Diff(a) => container::run(&cli.data_root, container::ContainerCmd::Diff(a)),
        Cmd::Export(a) => container::run(&cli.data_root, container::ContainerCmd::Export(a)),
        Cmd::Cp(a) => container::run(&cli.data_root, container::ContainerCmd::Cp(a)),
        Cmd::Volume { cmd } => volume::run(&cli.data_root, cmd),
        Cmd::ContainerShim(a) => container::shim(&cli.data_root, a),
        Cmd::ContainerShimFinish(a) => lifecycle::finish(&cli.data_root, &a),
        Cmd::ContainerExec(a) => container::exec_helper(&cli.data_root, a),
        Cmd::ContainerArchive(a) => container::archive_helper(&cli.data_root, a),
        Cmd::Attach(a) => container::run(&cli.data_root, container::ContainerCmd::Attach(a)),
        Cmd::Port(a) => container::run(&cli.data_root, container::ContainerCmd::Port(a)),
        Cmd::Commit(a) => container::run(&cli.data_root, container::ContainerCmd::Commit(a)),
        Cmd::Inspect(a) => inspect::run(&cli.data_root, &a).map(exit_on_failure),
        Cmd::Version => version(&cli.data_root),
        Cmd::Network { cmd } => network::run(&cli.data_root, cmd).map(exit_on_failure),
    };
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

/// Prints clap's message and leaves with docker's status for it: 125 for a bad flag
/// or value (as docker's flag errors), 1 for a missing argument or an unknown command,
/// 0 for `--help` and `--version`.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind as K;
    let code = match e.kind() {
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        K::MissingRequiredArgument | K::MissingSubcommand | K::InvalidSubcommand => 1,
        _ => 125,
    };
    let _ = e.print();
    std::process::exit(code)
}

/// Leaves with `code` when a command failed part-way (docker's status 1).
fn exit_on_failure(code: i32) {
    if code != 0 {
        std::process::exit(code);
    }
}

/// `berth version`: the client's, then the daemon's (over the API), as docker prints.
fn version(data_root: &std::path::Path) -> anyhow::Result<()> {
    println!("Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/amd64\n", env!("CARGO_PKG_VERSION"), berth_client::API_VERSION);
    let v = daemon::client(data_root)?.get_json("/version")?;
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    println!(
        "Server: berth\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}\n  Kernel:           {}",
        s("Version"), s("ApiVersion"), s("MinAPIVersion"), s("Os"), s("Arch"), s("KernelVersion")
    );
    Ok(())
}
