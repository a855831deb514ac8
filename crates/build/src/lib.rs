//! berth-build: the Dockerfile front end.
pub mod ast;
pub mod glob;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use instructions::parse;
