//! berth-build: the Dockerfile front end.
#![cfg_attr(test, allow(clippy::unwrap_used))]
pub mod ast;
pub mod cache;
pub mod config;
pub mod context;
pub mod eval;
pub mod glob;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod shell;
pub mod stages;

pub use instructions::parse;
