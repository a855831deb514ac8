//! `berth`: the command line. For now the image commands and `system df`, calling the
//! image library directly; they move behind the engine API once the daemon exists.

mod format;
mod image;
mod progress;
mod registry;

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
        cmd: image::ImageCmd,
    },
    /// Manage berth
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
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
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Show berth disk usage
    Df,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Image { cmd } => image::run(&cli.data_root, cmd),
        Cmd::Images(a) => image::run(&cli.data_root, image::ImageCmd::Ls(a)),
        Cmd::Rmi(a) => image::run(&cli.data_root, image::ImageCmd::Rm(a)),
        Cmd::Tag(a) => image::run(&cli.data_root, image::ImageCmd::Tag(a)),
        Cmd::Save(a) => image::run(&cli.data_root, image::ImageCmd::Save(a)),
        Cmd::Load(a) => image::run(&cli.data_root, image::ImageCmd::Load(a)),
        Cmd::Import(a) => image::run(&cli.data_root, image::ImageCmd::Import(a)),
        Cmd::History(a) => image::run(&cli.data_root, image::ImageCmd::History(a)),
        Cmd::System { cmd: SystemCmd::Df } => image::system_df(&cli.data_root),
        Cmd::Pull(a) => registry::pull(&cli.data_root, &a),
        Cmd::Push(a) => registry::push(&cli.data_root, &a),
        Cmd::Login(a) => registry::login(&a),
        Cmd::Logout(a) => registry::logout(&a),
    };
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
