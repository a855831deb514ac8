//! berth-build: berth's image builder.
//!
//! The front end is pure (no containers, no image store): it turns a
//! Dockerfile and a build context into what an executor needs. The
//! executor ([`exec`]) runs that against an image store: the stages a
//! target needs, independent ones in parallel, RUN steps in containers,
//! content-addressed cache keys, progress as [`exec::progress::Event`]s.
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
//! Driving a build (what the executor does with this crate):
//!
//! 1. `Plan::new(dockerfile_text, options, target)`; report `plan.warnings()`;
//! 2. `Context::open(dir, Some(dockerfile_path))` (or `Context::from_tar`);
//! 3. for each wave of `plan.waves()` (stages in a wave may run in parallel),
//!    evaluate each stage with `plan.eval(i, base_config)`, where the base is
//!    the config of the image or stage it starts from (`plan.base(i)`);
//! 4. for each `Step`: `cache::step_inputs` then `cache::cache_key(parent, step,
//!    inputs)`; on a miss run it (RUN in a container with `step.env`,
//!    `step.user`, `step.workdir`; COPY/ADD with `Context::select` and
//!    `context::copy_destinations`), and set
//!    `config.history[step.history_index].empty_layer` from whether a layer came out;
//! 5. the target stage's `StagePlan::config` plus the layer diff IDs is the image config.
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
#![warn(missing_docs)]

pub mod ast;
pub mod cache;
pub mod config;
pub mod context;
pub mod eval;
pub mod exec;
pub mod glob;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod shell;
pub mod stages;

pub use instructions::parse;
pub use parser::{ErrorKind, ParseError};
