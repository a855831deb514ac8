//! berth-runtime: a runc-compatible command line over the berth runtime library.

mod cli;
mod sealed;

fn main() {
    std::process::exit(cli::main());
}
