//! The typed Dockerfile AST: one enum variant per instruction.
//!
//! Words are kept as written (quotes, escapes and `$` references intact):
//! which words get expanded, and with which variables, depends on where the
//! instruction sits in the build; [`crate::eval`] does that.

use serde::Serialize;

pub use crate::parser::{Directives, Heredoc, Warning};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// Instructions in file order.
    pub instructions: Vec<Node>,
    /// Non-fatal remarks.
    pub warnings: Vec<Warning>,
}

/// One instruction and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// First line (1-based).
    pub line: usize,
    /// Last line, continuation and heredoc lines included.
    pub end_line: usize,
    /// The instruction text after joining continuation lines.
    pub original: String,
    /// The typed instruction.
    pub instruction: Instruction,
}

/// A Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    /// `FROM [--platform=p] image [AS name]`.
    From(From),
    /// `RUN [--mount=...] [--network=...] [--security=...] command`.
    Run(Run),
    /// `CMD`: the default command.
    Cmd(Command),
    /// `LABEL k=v ...`.
    Label(Vec<KeyValue>),
    /// `MAINTAINER name` (deprecated; becomes the author field).
    Maintainer(String),
    /// `EXPOSE port[/proto] ...`, sorted as docker does.
    Expose(Vec<String>),
    /// `ENV k=v ...` or `ENV k v`.
    Env(Vec<KeyValue>),
    /// `ADD [flags] src... dest`.
    Add(Add),
    /// `COPY [flags] src... dest`.
    Copy(Copy),
    /// `ENTRYPOINT`: the entry point.
    Entrypoint(Command),
    /// `VOLUME path ...` or JSON.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `ONBUILD instruction`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK [options] CMD ...` or `HEALTHCHECK NONE`.
    Healthcheck(Healthcheck),
    /// `SHELL ["executable", "args"...]`.
    Shell(Vec<String>),
}

impl Instruction {
    /// The keyword in upper case (`RUN`, `COPY`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::From(_) => "FROM",
            Self::Run(_) => "RUN",
            Self::Cmd(_) => "CMD",
            Self::Label(_) => "LABEL",
            Self::Maintainer(_) => "MAINTAINER",
            Self::Expose(_) => "EXPOSE",
            Self::Env(_) => "ENV",
            Self::Add(_) => "ADD",
            Self::Copy(_) => "COPY",
            Self::Entrypoint(_) => "ENTRYPOINT",
            Self::Volume(_) => "VOLUME",
            Self::User(_) => "USER",
            Self::Workdir(_) => "WORKDIR",
            Self::Arg(_) => "ARG",
            Self::Onbuild(_) => "ONBUILD",
            Self::StopSignal(_) => "STOPSIGNAL",
            Self::Healthcheck(_) => "HEALTHCHECK",
            Self::Shell(_) => "SHELL",
        }
    }
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The base: an image reference, a stage name, or `scratch` (unexpanded).
    pub image: String,
    /// `--platform` (unexpanded).
    pub platform: Option<String>,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
}

/// Exec (JSON) or shell form of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    /// `["exe", "arg"]`: run as is.
    Exec(Vec<String>),
    /// `exe arg`: run through the stage's shell.
    Shell(String),
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// `--mount` options, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
    /// The command.
    pub command: Command,
    /// Heredoc bodies referenced by the command.
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The default network.
    Default,
    /// No network at all.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// The default sandbox.
    Sandbox,
    /// Privileged.
    Insecure,
}

/// `--mount=type=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// Read-only (by default) bind of the context or another stage.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// A fresh tmpfs.
    Tmpfs,
    /// A secret file (or env variable) never written into a layer.
    Secret,
    /// A forwarded SSH agent socket.
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Several writers at once.
    Shared,
    /// A new cache if the existing one is in use.
    Private,
    /// One writer at a time.
    Locked,
}

/// A `RUN --mount`. String values are kept unexpanded; see [`crate::eval`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Mount {
    /// Mount type (bind when not given).
    pub kind: Option<MountType>,
    /// `target`/`dst`/`destination`.
    pub target: Option<String>,
    /// `source`/`src`.
    pub source: Option<String>,
    /// `from`: a stage or image to mount from.
    pub from: Option<String>,
    /// `id` (cache, secret, ssh).
    pub id: Option<String>,
    /// Read-only, after docker's defaults (bind, secret, ssh: yes; cache, tmpfs: no).
    pub read_only: bool,
    /// `sharing` (cache).
    pub sharing: Option<CacheSharing>,
    /// `mode` as written (octal).
    pub mode: Option<String>,
    /// `uid`.
    pub uid: Option<String>,
    /// `gid`.
    pub gid: Option<String>,
    /// `size` (tmpfs), as written.
    pub size: Option<String>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `env` (secret): expose the secret as this variable.
    pub env: Option<String>,
}

impl Mount {
    /// The mount type, bind when not given.
    pub fn mount_type(&self) -> MountType {
        self.kind.unwrap_or(MountType::Bind)
    }
}

/// A `key=value` pair of ENV or LABEL (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// Key as written.
    pub key: String,
    /// Value as written.
    pub value: String,
}

/// One name of an ARG instruction (unexpanded default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default value, if any.
    pub default: Option<String>,
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Source {
    /// A path or pattern in the context (or stage), or a URL for ADD.
    Path(String),
    /// An inline file from a heredoc; its name is the file name.
    Heredoc(Heredoc),
}

/// What COPY and ADD share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySpec {
    /// Sources, in order.
    pub sources: Vec<Source>,
    /// Destination (unexpanded).
    pub dest: String,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=pattern` (repeatable).
    pub excludes: Vec<String>,
    /// Whether the JSON form was used.
    pub json: bool,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Sources, destination and shared flags.
    pub spec: CopySpec,
    /// `--from=stage|image|index`.
    pub from: Option<String>,
    /// `--parents`: keep the parent directories of sources.
    pub parents: bool,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    /// Sources, destination and shared flags.
    pub spec: CopySpec,
    /// `--checksum=sha256:...` for URL sources.
    pub checksum: Option<String>,
    /// `--keep-git-dir` for git sources.
    pub keep_git_dir: bool,
    /// `--unpack`: force (true) or prevent (false) extraction of archives.
    pub unpack: Option<bool>,
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger text stored in the image (`RUN make`).
    pub expression: String,
    /// The trigger, parsed.
    pub trigger: Box<Instruction>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Check(HealthCheckSpec),
}

/// The options and command of a health check. Durations are in nanoseconds; 0 means inherit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheckSpec {
    /// The test command.
    pub command: Command,
    /// `--interval`.
    pub interval: u64,
    /// `--timeout`.
    pub timeout: u64,
    /// `--start-period`.
    pub start_period: u64,
    /// `--start-interval`.
    pub start_interval: u64,
    /// `--retries`.
    pub retries: u32,
}
