//! berth-build: the Dockerfile front end.
pub mod glob;
pub mod shell;
