//! berth-build: the Dockerfile front end of berth's image builder.
//!
//! Everything here is pure (no containers, no image store): it turns a
//! Dockerfile and a build context into what an executor needs.
//!
//! - [`parse`]: our own parser and shell-word lexer: parser directives,
//!   comments, line continuations, both escape characters, exec and shell
//!   forms, heredocs, every instruction and its flags, into a typed
//!   [`ast::Dockerfile`] whose nodes carry their line numbers;
//! - [`shell::Lexer`]: docker's variable expansion (`$v`, `${v:-w}`, ...);
//! - [`plan::Plan`]: stages, ARG scoping, the stage graph, `--target`,
//!   the stages a target needs and the waves that can build in parallel;
//! - [`eval`]: folds each stage's metadata instructions into a docker
//!   image config ([`config::ImageConfig`], with history) and yields the
//!   RUN/COPY/ADD/WORKDIR [`eval::Step`]s, fully expanded;
//! - [`context::Context`]: `.dockerignore` ([`ignore`]), source selection
//!   for COPY/ADD and content hashes; [`cache::cache_key`] chains them.
//!
//! ```
//! use berth_build::eval::{BuildOptions, StepKind};
//! use berth_build::plan::Plan;
//!
//! let src = "FROM alpine AS build\nARG V=1\nRUN echo $V > /v\n\
//!            FROM scratch\nCOPY --from=build /v /v\nCMD [\"/v\"]\n";
//! let plan = Plan::new(src, BuildOptions::default(), None).unwrap();
//! assert_eq!(plan.order(), vec![0, 1]);
//! let stages = plan.eval_all(|_image, _platform| Ok(Default::default())).unwrap();
//! let last = &stages[&1];
//! assert_eq!(last.config.config.cmd, Some(vec!["/v".to_string()]));
//! assert!(matches!(last.steps[0].kind, StepKind::Copy(_)));
//! ```
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
pub mod plan;
pub mod shell;
pub mod stages;

pub use instructions::parse;
pub use parser::{ErrorKind, ParseError};
