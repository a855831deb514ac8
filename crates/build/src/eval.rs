//! Stage evaluation: variable expansion with docker's scoping rules, and
//! the folding of metadata instructions into the image config.
//!
//! [`eval_stage`] walks one stage. ENV, LABEL, EXPOSE, VOLUME, USER,
//! WORKDIR, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD,
//! MAINTAINER and ARG change only the [`ImageConfig`] (and add history);
//! RUN, COPY, ADD and WORKDIR also yield [`Step`]s, fully expanded, that an
//! executor runs. ONBUILD triggers of the base image run first.
//!
//! Which words are expanded (as in docker):
//!
//! | instruction | expanded |
//! |---|---|
//! | FROM | image and `--platform`, with global ARGs only |
//! | ENV, LABEL | keys and values, all with the variables from before the instruction |
//! | ARG | default values |
//! | ADD, COPY | sources, destination, `--from`, `--chown`, `--chmod`, `--exclude`, `--checksum`; unquoted heredoc bodies |
//! | RUN | `--mount` option values only (the shell expands the command) |
//! | EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL | their arguments |
//! | CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER | nothing |
//!
//! Variables are the stage's ARGs in scope (declared in this stage, valued
//! from `--build-arg`, the default, or the global ARG of that name) overlaid
//! by the image's ENV, which always wins. Predefined proxy ARGs reach RUN's
//! environment only, and stay out of history and cache keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ast::{self, ArgDecl, Command, Healthcheck, Instruction, MountType, Node, Source};
use crate::config::{
    rfc3339, Empty, HealthConfig, History, ImageConfig, DEFAULT_PATH, HISTORY_COMMENT,
};
use crate::glob::clean;
use crate::instructions::{parse_node, parse_size};
use crate::parser::{parse_heredoc, split_instruction};
use crate::shell::{Lexer, ShellError};
use crate::stages::{Stage, StageSet};

/// Errors of stage evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A word could not be expanded.
    #[error("line {line}: failed to expand {word:?}: {source}")]
    Expand {
        /// The instruction.
        line: usize,
        /// The word as written.
        word: String,
        /// What went wrong.
        source: ShellError,
    },
    /// An instruction's value is not valid once expanded.
    #[error("line {line}: {message}")]
    Invalid {
        /// The instruction.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A stage refers to something bad.
    #[error(transparent)]
    Stage(#[from] crate::stages::StageError),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, EvalError>;

/// ARGs docker accepts without an ARG instruction (RUN sees them; history does not).
pub const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A platform (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub arch: String,
    /// `v7`, `v8`, ... or empty.
    pub variant: String,
}

impl Platform {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self::new(os, arch, "")),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() => Ok(Self::new(os, arch, v)),
            _ => Err(format!(
                "invalid platform {s:?}: use os/arch[/variant], as in linux/amd64"
            )),
        }
    }

    fn new(os: &str, arch: &str, variant: &str) -> Self {
        Self {
            os: os.to_ascii_lowercase(),
            arch: arch.to_ascii_lowercase(),
            variant: variant.to_string(),
        }
    }

    /// The platform this program runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            a => a,
        };
        Self::new("linux", arch, "")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// What a build was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--build-arg k=v`.
    pub build_args: BTreeMap<String, String>,
    /// Target platform (`--platform`).
    pub platform: Platform,
    /// Platform of the builder.
    pub build_platform: Platform,
    /// Unix time put on history entries (SOURCE_DATE_EPOCH); none leaves them undated.
    pub created: Option<i64>,
    /// `--label k=v`: added to the target stage's config.
    pub labels: BTreeMap<String, String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            build_args: BTreeMap::new(),
            platform: Platform::host(),
            build_platform: Platform::host(),
            created: None,
            labels: BTreeMap::new(),
        }
    }
}

impl BuildOptions {
    /// `SOURCE_DATE_EPOCH` from the environment, for reproducible timestamps.
    pub fn source_date_epoch() -> Option<i64> {
        std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
    }

    /// The automatic platform ARGs (`TARGETPLATFORM`, `BUILDARCH`, ...).
    pub fn platform_args(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (prefix, p) in [("TARGET", &self.platform), ("BUILD", &self.build_platform)] {
            m.insert(format!("{prefix}PLATFORM"), p.to_string());
            m.insert(format!("{prefix}OS"), p.os.clone());
            m.insert(format!("{prefix}ARCH"), p.arch.clone());
            m.insert(format!("{prefix}VARIANT"), p.variant.clone());
        }
        m
    }
}

/// Values of the ARGs declared before the first FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalArgs {
    /// Name to value, automatic platform ARGs included.
    pub values: BTreeMap<String, String>,
    /// Names declared by global ARG instructions.
    pub declared: BTreeSet<String>,
}

/// Evaluate the global ARGs (defaults expand with the ARGs before them).
pub fn global_args(set: &StageSet, opts: &BuildOptions) -> Result<GlobalArgs> {
    let mut g = GlobalArgs {
        values: opts.platform_args(),
        declared: BTreeSet::new(),
    };
    let lexer = Lexer::new(set.escape);
    for node in &set.global_args {
        let Instruction::Arg(decls) = &node.instruction else {
            continue;
        };
        for d in decls {
            let value = match (opts.build_args.get(&d.name), &d.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(def)) => Some(expand(&lexer, node.line, def, &g.values)?),
                (None, None) => None,
            };
            g.declared.insert(d.name.clone());
            match value {
                Some(v) => g.values.insert(d.name.clone(), v),
                None => g.values.remove(&d.name),
            };
        }
    }
    Ok(g)
}

fn expand(
    lexer: &Lexer,
    line: usize,
    word: &str,
    env: &BTreeMap<String, String>,
) -> Result<String> {
    lexer
        .process_word(word, env)
        .map_err(|source| EvalError::Expand {
            line,
            word: word.to_string(),
            source,
        })
}

/// Where COPY/ADD (or a RUN mount) takes files from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// Another stage's result.
    Stage(usize),
    /// An image.
    Image(String),
}

/// An inline file (a COPY heredoc, or a RUN heredoc script with a shebang).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// File name (the heredoc delimiter) or absolute path for RUN scripts.
    pub path: String,
    /// Contents, expanded when the delimiter was not quoted.
    pub data: String,
    /// Permission bits.
    pub mode: u32,
}

/// A `RUN --mount`, expanded and with docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    /// Mount type.
    pub kind: MountType,
    /// Absolute target path in the container (None: a secret exposed only as env).
    pub target: Option<String>,
    /// Path inside the source (context, stage or image).
    pub source: Option<String>,
    /// Where a bind (or cache seed) comes from.
    pub from: CopyFrom,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    /// Read-only.
    pub read_only: bool,
    /// Cache sharing mode.
    pub sharing: ast::CacheSharing,
    /// Permission bits (cache, secret, ssh).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Fail when the secret or ssh agent is missing.
    pub required: bool,
    /// Expose the secret as this environment variable.
    pub env: Option<String>,
}

/// A RUN for the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStep {
    /// The argv to execute (shell already prepended for the shell form).
    pub args: Vec<String>,
    /// Mounts.
    pub mounts: Vec<RunMount>,
    /// Network mode.
    pub network: ast::NetworkMode,
    /// Security mode.
    pub security: ast::SecurityMode,
    /// Files to provide read-only (heredoc scripts run directly).
    pub files: Vec<InlineFile>,
    /// Proxy variables from `--build-arg` (not part of the cache key).
    #[serde(skip)]
    pub proxy_env: Vec<String>,
}

/// A COPY or ADD for the executor; every string is expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyStep {
    /// ADD rather than COPY (URLs, git, archive extraction).
    pub add: bool,
    /// Where the sources are.
    pub from: CopyFrom,
    /// Source paths or patterns (URLs for ADD).
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineFile>,
    /// Absolute destination; a trailing `/` means a directory.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`, parsed from octal.
    pub chmod: Option<u32>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StepKind {
    /// Run a command in a container.
    Run(RunStep),
    /// Copy files in.
    Copy(CopyStep),
    /// Create the working directory (owned by the current user).
    Workdir(String),
}

/// One filesystem-changing step of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Line of the instruction (the FROM line for ONBUILD triggers).
    pub line: usize,
    /// What to do.
    pub kind: StepKind,
    /// Environment (`K=v`): the image's ENV and the ARGs in scope.
    pub env: Vec<String>,
    /// User to run as.
    pub user: String,
    /// Working directory.
    pub workdir: String,
    /// Index of this step's entry in the config history (to set `empty_layer`).
    pub history_index: usize,
}

/// The evaluation of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagePlan {
    /// Stage index.
    pub index: usize,
    /// The final image config of the stage (history included, rootfs left to the executor).
    pub config: ImageConfig,
    /// Steps to execute, in order.
    pub steps: Vec<Step>,
    /// Build args this stage declared.
    pub used_args: BTreeSet<String>,
}

/// Evaluate stage `index` of `set` on top of `base` (the base image's or
/// base stage's config; `None` for scratch).
pub fn eval_stage(
    set: &StageSet,
    index: usize,
    base: Option<&ImageConfig>,
    globals: &GlobalArgs,
    opts: &BuildOptions,
) -> Result<StagePlan> {
    let stage = &set.stages[index];
    let platform = stage_platform(set, stage, globals, opts)?;
    let mut ev = StageEval::new(set, stage, base, globals, opts, &platform);
    let triggers = std::mem::take(&mut ev.image.config.on_build);
    for trigger in &triggers {
        let raw = split_instruction(trigger, stage.line);
        let bad = |why: String| EvalError::Invalid {
            line: stage.line,
            message: format!("ONBUILD trigger {trigger:?} of the base image is invalid: {why}"),
        };
        let ins = parse_node(&raw, '\\').map_err(|e| bad(e.kind.to_string()))?;
        if let Instruction::From(_) | Instruction::Maintainer(_) | Instruction::Onbuild(_) = ins {
            return Err(bad(format!(
                "{} isn't allowed as an ONBUILD trigger",
                ins.keyword()
            )));
        }
        let node = Node {
            line: stage.line,
            end_line: stage.line,
            original: trigger.clone(),
            instruction: ins,
        };
        ev.dispatch(&node)?;
    }
    for node in &stage.commands {
        ev.dispatch(node)?;
    }
    Ok(StagePlan {
        index,
        config: ev.image,
        steps: ev.steps,
        used_args: ev.used_args,
    })
}

/// The platform a stage builds for: its `FROM --platform` (expanded with
/// the global ARGs), else the target platform.
pub fn stage_platform(
    set: &StageSet,
    stage: &Stage,
    globals: &GlobalArgs,
    opts: &BuildOptions,
) -> Result<Platform> {
    let Some(p) = &stage.from.platform else {
        return Ok(opts.platform.clone());
    };
    let p = expand(&Lexer::new(set.escape), stage.line, p, &globals.values)?;
    Platform::parse(&p).map_err(|message| EvalError::Invalid {
        line: stage.line,
        message: format!("FROM --platform: {message}"),
    })
}

struct StageEval<'a> {
    set: &'a StageSet,
    stage: &'a Stage,
    globals: &'a GlobalArgs,
    opts: &'a BuildOptions,
    image: ImageConfig,
    /// ARGs in scope, in declaration order, with their value (None: declared, unset).
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    steps: Vec<Step>,
    used_args: BTreeSet<String>,
    lexer: Lexer,
    line: usize,
}

impl<'a> StageEval<'a> {
    fn new(
        set: &'a StageSet,
        stage: &'a Stage,
        base: Option<&ImageConfig>,
        globals: &'a GlobalArgs,
        opts: &'a BuildOptions,
        platform: &Platform,
    ) -> Self {
        let mut image = base.cloned().unwrap_or_default();
        image.architecture = platform.arch.clone();
        image.os = platform.os.clone();
        image.variant = Some(platform.variant.clone()).filter(|v| !v.is_empty());
        image.created = None;
        if image.config.env_get("PATH").is_none() {
            image.config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        Self {
            set,
            stage,
            globals,
            opts,
            image,
            args: Vec::new(),
            cmd_set: false,
            steps: Vec::new(),
            used_args: BTreeSet::new(),
            lexer: Lexer::new(set.escape),
            line: stage.line,
        }
    }

    fn invalid(&self, message: impl Into<String>) -> EvalError {
        EvalError::Invalid {
            line: self.line,
            message: message.into(),
        }
    }

    /// Variables for expansion: ARGs in scope, overridden by ENV.
    fn vars(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for e in &self.image.config.env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    fn word(&self, w: &str) -> Result<String> {
        expand(&self.lexer, self.line, w, &self.vars())
    }

    fn opt_word(&self, w: &Option<String>) -> Result<Option<String>> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn history(&mut self, created_by: String, empty_layer: bool) -> usize {
        self.image.history.push(History {
            created: self.opts.created.map(rfc3339),
            created_by,
            author: None,
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer,
        });
        self.image.history.len() - 1
    }

    fn meta(&mut self, created_by: String) {
        self.history(created_by, true);
    }

    /// The environment a RUN sees: ENV, then ARGs not shadowed by ENV.
    fn run_env(&self) -> Vec<String> {
        let mut env = self.image.config.env.clone();
        for (k, v) in &self.args {
            if let Some(v) = v {
                if self.image.config.env_get(k).is_none() {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        env
    }

    fn push_step(&mut self, kind: StepKind, created_by: String) {
        let history_index = self.history(created_by, false);
        self.steps.push(Step {
            line: self.line,
            kind,
            env: self.run_env(),
            user: self.image.config.user.clone(),
            workdir: self.workdir(),
            history_index,
        });
    }

    fn workdir(&self) -> String {
        if self.image.config.working_dir.is_empty() {
            "/".into()
        } else {
            self.image.config.working_dir.clone()
        }
    }

    fn dispatch(&mut self, node: &Node) -> Result<()> {
        self.line = node.line;
        match &node.instruction {
            Instruction::From(_) => Err(self.invalid("FROM inside a stage")),
            Instruction::Env(kvs) => self.env(kvs),
            Instruction::Label(kvs) => self.label(kvs),
            Instruction::Maintainer(m) => {
                self.image.author = Some(m.clone());
                self.meta(format!("MAINTAINER {m}"));
                Ok(())
            }
            Instruction::Expose(ports) => self.expose(ports),
            Instruction::Volume(vols) => self.volume(vols),
            Instruction::User(u) => {
                let u = self.word(u)?;
                self.image.config.user = u.clone();
                self.meta(format!("USER {u}"));
                Ok(())
            }
            Instruction::Workdir(w) => self.workdir_ins(w),
            Instruction::Cmd(c) => {
                let args = self.command_args(c);
                self.image.config.cmd = Some(args.clone());
                self.cmd_set = true;
                self.meta(format!("CMD {}", go_quote_list(&args)));
                Ok(())
            }
            Instruction::Entrypoint(c) => self.entrypoint(c),
            Instruction::Shell(s) => {
                self.image.config.shell = s.clone();
                self.meta(format!("SHELL {}", go_quote_list(s)));
                Ok(())
            }
            Instruction::StopSignal(s) => {
                let s = self.word(s)?;
                if !valid_signal(&s) {
                    return Err(self.invalid(format!(
                        "invalid STOPSIGNAL {s:?}: use a signal name such as SIGTERM or a number"
                    )));
                }
                self.image.config.stop_signal = s.clone();
                self.meta(format!("STOPSIGNAL {s}"));
                Ok(())
            }
            Instruction::Healthcheck(h) => {
                self.healthcheck(h);
                Ok(())
            }
            Instruction::Onbuild(o) => {
                self.image.config.on_build.push(o.expression.clone());
                self.meta(format!("ONBUILD {}", o.expression));
                Ok(())
            }
            Instruction::Arg(decls) => self.arg(decls),
            Instruction::Run(r) => self.run(r),
            Instruction::Copy(c) => self.copy(&c.spec, c.from.as_deref(), c.parents, None),
            Instruction::Add(a) => self.copy(&a.spec, None, false, Some(a)),
        }
    }

    fn env(&mut self, kvs: &[ast::KeyValue]) -> Result<()> {
        // Every value expands with the environment before this instruction.
        let vars = self.vars();
        let mut msg = String::from("ENV");
        let mut pairs = Vec::new();
        for kv in kvs {
            let k = expand(&self.lexer, self.line, &kv.key, &vars)?;
            let v = expand(&self.lexer, self.line, &kv.value, &vars)?;
            if k.is_empty() {
                return Err(self.invalid("ENV names can not be blank"));
            }
            msg.push_str(&format!(" {k}={v}"));
            pairs.push((k, v));
        }
        for (k, v) in pairs {
            self.image.config.env_set(&k, &v);
        }
        self.meta(msg);
        Ok(())
    }

    fn label(&mut self, kvs: &[ast::KeyValue]) -> Result<()> {
        let vars = self.vars();
        let mut msg = String::from("LABEL");
        for kv in kvs {
            let k = expand(&self.lexer, self.line, &kv.key, &vars)?;
            let v = expand(&self.lexer, self.line, &kv.value, &vars)?;
            if k.is_empty() {
                return Err(self.invalid("LABEL names can not be blank"));
            }
            msg.push_str(&format!(" {k}={v}"));
            self.image.config.labels.insert(k, v);
        }
        self.meta(msg);
        Ok(())
    }

    fn expose(&mut self, ports: &[String]) -> Result<()> {
        let vars = self.vars();
        let mut added = Vec::new();
        for p in ports {
            let words = self
                .lexer
                .process_words(p, &vars)
                .map_err(|source| EvalError::Expand {
                    line: self.line,
                    word: p.clone(),
                    source,
                })?;
            for w in words {
                for port in parse_port_spec(&w).map_err(|m| self.invalid(m))? {
                    self.image
                        .config
                        .exposed_ports
                        .insert(port.clone(), Empty {});
                    added.push(port);
                }
            }
        }
        self.meta(format!("EXPOSE {}", added.join(" ")));
        Ok(())
    }

    fn volume(&mut self, vols: &[String]) -> Result<()> {
        let mut added = Vec::new();
        for v in vols {
            let v = self.word(v)?;
            if v.trim().is_empty() {
                return Err(self.invalid("VOLUME specified can not be an empty string"));
            }
            self.image.config.volumes.insert(v.clone(), Empty {});
            added.push(v);
        }
        self.meta(format!("VOLUME {}", go_quote_list(&added)));
        Ok(())
    }

    fn workdir_ins(&mut self, w: &str) -> Result<()> {
        let w = self.word(w)?;
        let path = if w.starts_with('/') {
            clean(&w)
        } else {
            clean(&format!("{}/{w}", self.workdir()))
        };
        self.image.config.working_dir = path.clone();
        self.push_step(StepKind::Workdir(path.clone()), format!("WORKDIR {path}"));
        // Creating a directory that exists adds nothing: the executor clears this when it adds a layer.
        if let Some(h) = self.image.history.last_mut() {
            h.empty_layer = true;
        }
        Ok(())
    }

    fn command_args(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = self.image.config.shell_or_default();
                v.push(s.clone());
                v
            }
        }
    }

    fn entrypoint(&mut self, c: &Command) -> Result<()> {
        // An empty ENTRYPOINT (`ENTRYPOINT []`) removes the inherited one.
        let args = match c {
            Command::Shell(s) if s.is_empty() => None,
            Command::Exec(v) if v.is_empty() => None,
            _ => Some(self.command_args(c)),
        };
        self.meta(format!(
            "ENTRYPOINT {}",
            go_quote_list(args.as_deref().unwrap_or_default())
        ));
        self.image.config.entrypoint = args;
        if !self.cmd_set {
            self.image.config.cmd = None;
        }
        Ok(())
    }

    fn healthcheck(&mut self, h: &Healthcheck) {
        let cfg = match h {
            Healthcheck::None => HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            },
            Healthcheck::Check(spec) => {
                let test = match &spec.command {
                    Command::Exec(v) => std::iter::once("CMD".to_string())
                        .chain(v.iter().cloned())
                        .collect(),
                    Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                };
                HealthConfig {
                    test,
                    interval: spec.interval,
                    timeout: spec.timeout,
                    start_period: spec.start_period,
                    start_interval: spec.start_interval,
                    retries: spec.retries,
                }
            }
        };
        self.meta(format!("HEALTHCHECK {}", go_quote_list(&cfg.test)));
        self.image.config.healthcheck = Some(cfg);
    }

    fn arg(&mut self, decls: &[ArgDecl]) -> Result<()> {
        let mut msg = String::from("ARG");
        for d in decls {
            let default = self.opt_word(&d.default)?;
            let value = match (self.opts.build_args.get(&d.name), &default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(def)) => Some(def.clone()),
                (None, None) if self.globals.declared.contains(&d.name) => {
                    self.globals.values.get(&d.name).cloned()
                }
                (None, None) => self.opts.platform_args().get(&d.name).cloned(),
            };
            msg.push(' ');
            msg.push_str(&d.name);
            if let Some(def) = &default {
                msg.push_str(&format!("={def}"));
            }
            self.used_args.insert(d.name.clone());
            match self.args.iter_mut().find(|(k, _)| *k == d.name) {
                Some(slot) => slot.1 = value,
                None => self.args.push((d.name.clone(), value)),
            }
        }
        self.meta(msg);
        Ok(())
    }

    fn resolve_from(&self, value: &str) -> Result<CopyFrom> {
        Ok(
            match self.set.resolve_from(value, self.stage.index, self.line)? {
                Some(i) => CopyFrom::Stage(i),
                None => CopyFrom::Image(value.to_string()),
            },
        )
    }

    fn run(&mut self, r: &ast::Run) -> Result<()> {
        let mut mounts = Vec::new();
        let mut ssh_count = 0;
        for m in &r.mounts {
            mounts.push(self.mount(m, &mut ssh_count)?);
        }
        let (args, files) = self.run_args(r);
        let proxy_env = PROXY_ARGS
            .iter()
            .filter_map(|k| self.opts.build_args.get(*k).map(|v| format!("{k}={v}")))
            .collect();
        let step = RunStep {
            args: args.clone(),
            mounts,
            network: r.network.unwrap_or(ast::NetworkMode::Default),
            security: r.security.unwrap_or(ast::SecurityMode::Sandbox),
            files,
            proxy_env,
        };
        let created_by = format!("RUN {} # buildkit", self.run_command_string(&args));
        self.push_step(StepKind::Run(step), created_by);
        Ok(())
    }

    /// Docker's `runCommandString`: `|N K=v ... argv`.
    fn run_command_string(&self, args: &[String]) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (k, v) in &self.args {
            let shown = self
                .image
                .config
                .env_get(k)
                .map(str::to_string)
                .or_else(|| v.clone())
                .unwrap_or_default();
            parts.push(format!("{k}={shown}"));
        }
        if !parts.is_empty() {
            parts.insert(0, format!("|{}", parts.len()));
        }
        parts.extend(args.iter().cloned());
        parts.join(" ")
    }

    /// The argv of a RUN, with docker's heredoc handling.
    fn run_args(&self, r: &ast::Run) -> (Vec<String>, Vec<InlineFile>) {
        let shell_cmd = match &r.command {
            Command::Exec(v) => return (v.clone(), Vec::new()),
            Command::Shell(s) => s,
        };
        let mut argv = self.image.config.shell_or_default();
        let Some(first) = r.heredocs.first() else {
            argv.push(shell_cmd.clone());
            return (argv, Vec::new());
        };
        if parse_heredoc(shell_cmd.trim()).is_some() {
            if first.content.starts_with("#!") {
                let path = format!("/dev/pipes/{}", first.name);
                let file = InlineFile {
                    path: path.clone(),
                    data: first.content.clone(),
                    mode: 0o755,
                };
                return (vec![path], vec![file]);
            }
            argv.push(first.content.clone());
            return (argv, Vec::new());
        }
        let mut full = shell_cmd.clone();
        for h in &r.heredocs {
            full.push('\n');
            full.push_str(&h.content);
            full.push_str(&h.name);
        }
        argv.push(full);
        (argv, Vec::new())
    }

    fn mount(&self, m: &ast::Mount, ssh_count: &mut usize) -> Result<RunMount> {
        let kind = m.mount_type();
        let target = self.opt_word(&m.target)?.map(|t| self.abs_path(&t));
        let id = self.opt_word(&m.id)?;
        let num = |v: &Option<String>, radix: u32, what: &str| -> Result<Option<u32>> {
            let Some(v) = self.opt_word(v)? else {
                return Ok(None);
            };
            u32::from_str_radix(&v, radix)
                .map(Some)
                .map_err(|_| self.invalid(format!("invalid mount {what} {v:?}")))
        };
        let mut rm = RunMount {
            kind,
            target,
            source: self.opt_word(&m.source)?,
            from: match self.opt_word(&m.from)? {
                Some(f) => self.resolve_from(&f)?,
                None => CopyFrom::Context,
            },
            id,
            read_only: m.read_only,
            sharing: m.sharing.unwrap_or(ast::CacheSharing::Shared),
            mode: num(&m.mode, 8, "mode")?,
            uid: num(&m.uid, 10, "uid")?,
            gid: num(&m.gid, 10, "gid")?,
            size: match self.opt_word(&m.size)? {
                Some(s) => Some(parse_size(&s).map_err(|e| self.invalid(e))?),
                None => None,
            },
            required: m.required,
            env: self.opt_word(&m.env)?,
        };
        match kind {
            MountType::Cache => {
                rm.id = rm.id.or_else(|| rm.target.clone());
                rm.mode = rm.mode.or(Some(0o755));
            }
            MountType::Secret => {
                if rm.id.is_none() {
                    rm.id = rm
                        .source
                        .clone()
                        .or_else(|| rm.target.as_deref().map(basename));
                }
                if rm.target.is_none() && rm.env.is_none() {
                    rm.target = rm.id.as_ref().map(|id| format!("/run/secrets/{id}"));
                }
                rm.mode = rm.mode.or(Some(0o400));
            }
            MountType::Ssh => {
                rm.id = rm.id.or_else(|| Some("default".into()));
                if rm.target.is_none() {
                    *ssh_count += 1;
                    rm.target = Some(format!("/run/buildkit/ssh_agent.{}", *ssh_count - 1));
                }
                rm.mode = rm.mode.or(Some(0o600));
            }
            MountType::Bind | MountType::Tmpfs => {}
        }
        Ok(rm)
    }

    fn abs_path(&self, p: &str) -> String {
        if p.starts_with('/') {
            clean(p)
        } else {
            clean(&format!("{}/{p}", self.workdir()))
        }
    }

    fn copy(
        &mut self,
        spec: &ast::CopySpec,
        from: Option<&str>,
        parents: bool,
        add: Option<&ast::Add>,
    ) -> Result<()> {
        let kw = if add.is_some() { "ADD" } else { "COPY" };
        let from_v = from.map(|f| self.word(f)).transpose()?;
        let mut sources = Vec::new();
        let mut inline = Vec::new();
        for s in &spec.sources {
            match s {
                Source::Path(p) => sources.push(self.word(p)?),
                Source::Heredoc(h) => inline.push(self.heredoc_file(h)?),
            }
        }
        let dest_raw = self.word(&spec.dest)?;
        let dir_dest = dest_raw.ends_with('/')
            || dest_raw.ends_with("/.")
            || dest_raw == "."
            || (sources.len() + inline.len() > 1);
        let mut dest = self.abs_path(&dest_raw);
        if dir_dest && !dest.ends_with('/') {
            dest.push('/');
        }
        let chmod = match self.opt_word(&spec.chmod)? {
            Some(m) => Some(parse_chmod(&m).map_err(|e| self.invalid(format!("{kw} {e}")))?),
            None => None,
        };
        let checksum = add
            .map(|a| self.opt_word(&a.checksum))
            .transpose()?
            .flatten();
        if checksum.is_some() && !sources.iter().all(|s| is_url(s)) {
            return Err(
                self.invalid("ADD --checksum needs HTTP(S) sources: remove it or use a URL")
            );
        }
        let excludes = spec
            .excludes
            .iter()
            .map(|e| self.word(e))
            .collect::<Result<Vec<_>>>()?;
        let step = CopyStep {
            add: add.is_some(),
            from: match &from_v {
                Some(f) => self.resolve_from(f)?,
                None => CopyFrom::Context,
            },
            sources,
            inline,
            dest,
            chown: self.opt_word(&spec.chown)?,
            chmod,
            link: spec.link,
            parents,
            excludes,
            checksum,
            keep_git_dir: add.is_some_and(|a| a.keep_git_dir),
            unpack: add.and_then(|a| a.unpack),
        };
        let created_by = copy_created_by(kw, &step, from_v.as_deref());
        self.push_step(StepKind::Copy(step), created_by);
        Ok(())
    }

    fn heredoc_file(&self, h: &ast::Heredoc) -> Result<InlineFile> {
        let data = if h.expand {
            let lx = Lexer {
                skip_quotes: true,
                ..self.lexer
            };
            expand(&lx, self.line, &h.content, &self.vars())?
        } else {
            h.content.clone()
        };
        Ok(InlineFile {
            path: h.name.clone(),
            data,
            mode: 0o644,
        })
    }
}

fn copy_created_by(kw: &str, s: &CopyStep, from: Option<&str>) -> String {
    let mut parts = vec![kw.to_string()];
    if let Some(f) = from {
        parts.push(format!("--from={f}"));
    }
    if let Some(c) = &s.chown {
        parts.push(format!("--chown={c}"));
    }
    if let Some(m) = s.chmod {
        parts.push(format!("--chmod={m:04o}"));
    }
    if s.link {
        parts.push("--link".into());
    }
    parts.extend(s.sources.iter().cloned());
    parts.extend(s.inline.iter().map(|f| format!("<<{}", f.path)));
    parts.push(s.dest.clone());
    format!("{} # buildkit", parts.join(" "))
}

fn basename(p: &str) -> String {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(p)
        .to_string()
}

/// Whether an ADD source is a URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Whether an ADD source is fetched rather than read from the context
/// (a URL, or a git repository such as `git@host:repo` or `https://host/repo.git#ref`).
pub fn is_url_or_git(s: &str) -> bool {
    is_url(s) || s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://")
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Parse `--chmod`: octal digits up to 07777.
pub fn parse_chmod(s: &str) -> std::result::Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!(
            "--chmod={s} is invalid: use octal permission bits such as 0755"
        )),
    }
}

/// Expand an EXPOSE word (`80`, `80/udp`, `8000-8002/tcp`) into `port/proto` keys.
pub fn parse_port_spec(spec: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid proto {proto:?} in EXPOSE {spec}: use tcp, udp or sctp"
        ));
    }
    if ports.contains(':') {
        return Err(format!("EXPOSE {spec}: publishing ports belongs to `run -p`, EXPOSE takes container ports only"));
    }
    let bad = || {
        format!("invalid port {ports:?} in EXPOSE: use a number from 1 to 65535 or a range such as 8000-8010")
    };
    let num = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(ports)?, num(ports)?),
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: [&str; 33] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CLD", "CONT", "STOP", "TSTP", "TTIN",
    "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR",
];

/// Whether `s` names a Linux signal (`SIGTERM`, `term`, `15`, `SIGRTMIN+3`).
pub fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if SIGNALS.contains(&name) || name == "SYS" || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let rt = |p: &str| {
        name.strip_prefix(p)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=30).contains(&n))
    };
    rt("RTMIN+") || rt("RTMAX-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, stages::split};

    fn opts() -> BuildOptions {
        BuildOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            build_platform: Platform::parse("linux/amd64").unwrap(),
            ..Default::default()
        }
    }

    fn eval_with(src: &str, o: &BuildOptions, base: Option<&ImageConfig>) -> Result<StagePlan> {
        let set = split(&parse(src).unwrap()).unwrap();
        let g = global_args(&set, o)?;
        eval_stage(&set, set.stages.len() - 1, base, &g, o)
    }

    fn eval(src: &str) -> StagePlan {
        eval_with(src, &opts(), None).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn env(p: &StagePlan) -> Vec<&str> {
        p.config.config.env.iter().map(String::as_str).collect()
    }

    #[test]
    fn env_not_visible_within_same_instruction() {
        let p = eval("FROM scratch\nENV A=1\nENV A=2 B=$A\nENV C=${A}3\n");
        assert_eq!(
            env(&p),
            [
                format!("PATH={DEFAULT_PATH}").as_str(),
                "A=2",
                "B=1",
                "C=23"
            ]
        );
    }

    #[test]
    fn env_quotes_and_legacy_form() {
        let p = eval("FROM scratch\nENV A=\"x y\" B='$A' C=a\\ b\nENV D hello \"world\" $A\n");
        assert_eq!(p.config.config.env_get("A"), Some("x y"));
        assert_eq!(p.config.config.env_get("B"), Some("$A"));
        assert_eq!(p.config.config.env_get("C"), Some("a b"));
        assert_eq!(p.config.config.env_get("D"), Some("hello world x y"));
    }

    #[test]
    fn base_env_used_for_expansion() {
        let mut base = ImageConfig::default();
        base.config.env = vec!["PATH=/go/bin:/usr/bin".into(), "GOPATH=/go".into()];
        base.config.cmd = Some(vec!["bash".into()]);
        let p = eval_with(
            "FROM golang\nWORKDIR $GOPATH/src\nENTRYPOINT [\"go\"]\n",
            &opts(),
            Some(&base),
        )
        .unwrap();
        assert_eq!(p.config.config.working_dir, "/go/src");
        assert_eq!(env(&p), ["PATH=/go/bin:/usr/bin", "GOPATH=/go"]);
        // ENTRYPOINT resets an inherited CMD.
        assert_eq!(p.config.config.cmd, None);
        let p = eval_with(
            "FROM golang\nCMD [\"x\"]\nENTRYPOINT [\"go\"]\n",
            &opts(),
            Some(&base),
        )
        .unwrap();
        assert_eq!(p.config.config.cmd, Some(vec!["x".to_string()]));
    }

    #[test]
    fn arg_scoping() {
        let src = "ARG VER=1.0\nARG BASE=alpine:${VER}\nFROM $BASE AS one\nRUN echo $VER\nARG VER\nENV V=$VER\n\
                   FROM scratch\nENV V=${VER:-unset}\nARG VER=2.0\nENV W=$VER\n";
        let set = split(&parse(src).unwrap()).unwrap();
        let o = opts();
        let g = global_args(&set, &o).unwrap();
        assert_eq!(g.values["BASE"], "alpine:1.0");
        let one = eval_stage(&set, 0, None, &g, &o).unwrap();
        assert_eq!(one.config.config.env_get("V"), Some("1.0"));
        let two = eval_stage(&set, 1, None, &g, &o).unwrap();
        assert_eq!(two.config.config.env_get("V"), Some("unset"));
        assert_eq!(two.config.config.env_get("W"), Some("2.0"));
        // Build args override defaults, global and local.
        let mut o = opts();
        o.build_args.insert("VER".into(), "9".into());
        let g = global_args(&set, &o).unwrap();
        assert_eq!(g.values["BASE"], "alpine:9");
        assert_eq!(
            eval_stage(&set, 1, None, &g, &o)
                .unwrap()
                .config
                .config
                .env_get("W"),
            Some("9")
        );
    }

    #[test]
    fn env_overrides_arg() {
        let mut o = opts();
        o.build_args.insert("V".into(), "from-cli".into());
        let p = eval_with("FROM scratch\nARG V\nENV V=env\nENV W=$V\n", &o, None).unwrap();
        assert_eq!(p.config.config.env_get("W"), Some("env"));
        let p = eval_with("FROM scratch\nENV V=env\nARG V\nENV W=$V\n", &o, None).unwrap();
        assert_eq!(p.config.config.env_get("W"), Some("env"));
    }

    #[test]
    fn platform_args() {
        let src = "FROM --platform=$BUILDPLATFORM scratch\nENV A=${TARGETARCH:-none}\nARG TARGETARCH\nENV B=$TARGETARCH\n";
        let p = eval(src);
        assert_eq!(p.config.config.env_get("A"), Some("none"));
        assert_eq!(p.config.config.env_get("B"), Some("amd64"));
    }

    #[test]
    fn run_steps_env_and_history() {
        let mut o = opts();
        o.build_args
            .insert("http_proxy".into(), "http://proxy:3128".into());
        o.created = Some(0);
        let p = eval_with(
            "FROM scratch\nARG A=1\nUSER app\nWORKDIR /w\nRUN make \"$A\"\nRUN [\"ls\", \"-l\"]\n",
            &o,
            None,
        )
        .unwrap();
        assert_eq!(p.steps.len(), 3);
        let StepKind::Run(r) = &p.steps[1].kind else {
            panic!()
        };
        assert_eq!(r.args, ["/bin/sh", "-c", "make \"$A\""]);
        assert_eq!(r.proxy_env, ["http_proxy=http://proxy:3128"]);
        assert_eq!(p.steps[1].env.last().map(String::as_str), Some("A=1"));
        assert_eq!(
            (p.steps[1].user.as_str(), p.steps[1].workdir.as_str()),
            ("app", "/w")
        );
        let h = &p.config.history[p.steps[1].history_index];
        assert_eq!(h.created_by, "RUN |1 A=1 /bin/sh -c make \"$A\" # buildkit");
        assert!(!h.empty_layer);
        assert_eq!(h.created.as_deref(), Some("1970-01-01T00:00:00Z"));
        let StepKind::Run(r) = &p.steps[2].kind else {
            panic!()
        };
        assert_eq!(r.args, ["ls", "-l"]);
        assert!(p
            .config
            .history
            .iter()
            .all(|h| !h.created_by.contains("proxy")));
    }

    #[test]
    fn shell_instruction_changes_shell_form() {
        let p = eval(
            "FROM scratch\nSHELL [\"bash\", \"-eo\", \"pipefail\", \"-c\"]\nRUN a | b\nCMD run\n",
        );
        let StepKind::Run(r) = &p.steps[0].kind else {
            panic!()
        };
        assert_eq!(r.args, ["bash", "-eo", "pipefail", "-c", "a | b"]);
        assert_eq!(p.config.config.cmd.as_ref().unwrap()[0], "bash");
        assert_eq!(p.config.config.shell.len(), 4);
    }

    #[test]
    fn run_heredocs() {
        let p = eval("FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\nRUN <<EOT\n#!/usr/bin/env python3\nprint(1)\nEOT\nRUN python3 <<X\nprint(2)\nX\n");
        let args: Vec<_> = p
            .steps
            .iter()
            .map(|s| match &s.kind {
                StepKind::Run(r) => r.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(args[0].args, ["/bin/sh", "-c", "echo a\necho b\n"]);
        assert_eq!(args[1].args, ["/dev/pipes/EOT"]);
        assert_eq!(args[1].files[0].data, "#!/usr/bin/env python3\nprint(1)\n");
        assert_eq!(args[1].files[0].mode, 0o755);
        assert_eq!(args[2].args, ["/bin/sh", "-c", "python3 <<X\nprint(2)\nX"]);
    }

    #[test]
    fn run_mounts_resolved() {
        let src = "FROM scratch AS tools\nFROM scratch\nARG C=/cache\nWORKDIR /src\n\
                   RUN --mount=type=cache,target=$C --mount=type=secret,id=npmrc --mount=type=secret,target=/t/tok \
                   --mount=type=ssh --mount=type=bind,from=tools,source=/bin,target=bin --mount=type=tmpfs,target=/tmp,size=1m \
                   --mount=type=secret,id=k,env=KEY x\n";
        let p = eval(src);
        let StepKind::Run(r) = &p.steps[1].kind else {
            panic!()
        };
        let m = &r.mounts;
        assert_eq!(
            (m[0].target.as_deref(), m[0].id.as_deref(), m[0].mode),
            (Some("/cache"), Some("/cache"), Some(0o755))
        );
        assert_eq!(
            (m[1].target.as_deref(), m[1].id.as_deref()),
            (Some("/run/secrets/npmrc"), Some("npmrc"))
        );
        assert_eq!(m[2].id.as_deref(), Some("tok"));
        assert_eq!(
            (m[3].target.as_deref(), m[3].id.as_deref()),
            (Some("/run/buildkit/ssh_agent.0"), Some("default"))
        );
        assert_eq!(
            (m[4].target.as_deref(), &m[4].from),
            (Some("/src/bin"), &CopyFrom::Stage(0))
        );
        assert_eq!(m[5].size, Some(1 << 20));
        assert_eq!(
            (m[6].target.as_deref(), m[6].env.as_deref()),
            (None, Some("KEY"))
        );
    }

    #[test]
    fn copy_steps() {
        let src = "FROM scratch AS build\nFROM scratch\nARG D=/app\nENV OWNER=1000\nWORKDIR /w\n\
                   COPY --from=build --chown=$OWNER:$OWNER --chmod=755 --link bin/* $D/\nCOPY a.txt rel\n\
                   COPY <<EOF <<'RAW' ./\nhi $OWNER \"q\"\nEOF\nraw $OWNER\nRAW\nADD --checksum=sha256:00 https://x/y.tgz /y\n\
                   COPY --from=alpine:3 /etc/os-release /\n";
        let p = eval(src);
        let copies: Vec<CopyStep> = p
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Copy(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let c = &copies[0];
        assert_eq!(
            (c.from.clone(), c.chown.as_deref(), c.chmod, c.link),
            (CopyFrom::Stage(0), Some("1000:1000"), Some(0o755), true)
        );
        assert_eq!(
            (c.sources.clone(), c.dest.as_str()),
            (vec!["bin/*".to_string()], "/app/")
        );
        assert_eq!(copies[1].dest, "/w/rel");
        assert_eq!(copies[2].dest, "/w/");
        assert_eq!(copies[2].inline[0].data, "hi 1000 \"q\"\n");
        assert_eq!(copies[2].inline[1].data, "raw $OWNER\n");
        assert!(copies[3].add);
        assert_eq!(copies[3].checksum.as_deref(), Some("sha256:00"));
        assert_eq!(copies[4].from, CopyFrom::Image("alpine:3".into()));
        let h = &p.config.history[p.steps[1].history_index].created_by;
        assert_eq!(
            h,
            "COPY --from=build --chown=1000:1000 --chmod=0755 --link bin/* /app/ # buildkit"
        );
    }

    #[test]
    fn metadata_folded_into_config() {
        let src = "FROM scratch\nLABEL a=1 \"b c\"=\"d e\"\nMAINTAINER me\nEXPOSE 80 53/udp 8000-8001\nVOLUME /data [\"x\"]\n\
                   VOLUME [\"/v1\", \"/v2\"]\nUSER 1000:1000\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=30s --retries=2 CMD curl -f x\n\
                   ONBUILD RUN make\nCMD [\"serve\"]\n";
        let p = eval(src);
        let c = &p.config.config;
        assert_eq!(c.labels["b c"], "d e");
        assert_eq!(p.config.author.as_deref(), Some("me"));
        let ports: Vec<&str> = c.exposed_ports.keys().map(String::as_str).collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert!(c.volumes.contains_key("/v2") && c.volumes.contains_key("/data"));
        assert_eq!(
            (c.user.as_str(), c.stop_signal.as_str()),
            ("1000:1000", "SIGINT")
        );
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.test.clone(), hc.interval, hc.retries),
            (
                vec!["CMD-SHELL".to_string(), "curl -f x".to_string()],
                30_000_000_000,
                2
            )
        );
        assert_eq!(c.on_build, ["RUN make"]);
        assert_eq!(c.cmd, Some(vec!["serve".to_string()]));
        assert!(p.steps.is_empty());
        assert!(p.config.history.iter().all(|h| h.empty_layer));
        assert_eq!(p.config.history.len(), 10);
        assert_eq!(p.config.history[8].created_by, "ONBUILD RUN make");
    }

    #[test]
    fn empty_entrypoint_clears_and_dot_dests_are_dirs() {
        let mut base = ImageConfig::default();
        base.config.entrypoint = Some(vec!["/init".into()]);
        let p = eval_with(
            "FROM x\nENTRYPOINT []\nCMD []\nCOPY a /w/.\n",
            &opts(),
            Some(&base),
        )
        .unwrap();
        assert_eq!(p.config.config.entrypoint, None);
        assert_eq!(p.config.config.cmd, Some(vec![]));
        let StepKind::Copy(c) = &p.steps[0].kind else {
            panic!()
        };
        assert_eq!(c.dest, "/w/");
    }

    #[test]
    fn healthcheck_none_and_workdir() {
        let p = eval("FROM scratch\nHEALTHCHECK NONE\nWORKDIR a\nWORKDIR b/../c\nWORKDIR /abs\n");
        assert_eq!(p.config.config.healthcheck.as_ref().unwrap().test, ["NONE"]);
        assert_eq!(p.config.config.working_dir, "/abs");
        let dirs: Vec<_> = p
            .steps
            .iter()
            .map(|s| match &s.kind {
                StepKind::Workdir(d) => d.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(dirs, ["/a", "/a/c", "/abs"]);
    }

    #[test]
    fn onbuild_triggers_of_base_run_first() {
        let mut base = ImageConfig::default();
        base.config.on_build = vec!["ENV FROM_TRIGGER=1".into(), "COPY . /src".into()];
        let p = eval_with("FROM parent\nRUN make\n", &opts(), Some(&base)).unwrap();
        assert_eq!(p.config.config.env_get("FROM_TRIGGER"), Some("1"));
        assert!(p.config.config.on_build.is_empty());
        assert!(matches!(p.steps[0].kind, StepKind::Copy(_)));
        assert!(matches!(p.steps[1].kind, StepKind::Run(_)));
        base.config.on_build = vec!["FROM x".into()];
        let e = eval_with("FROM parent\n", &opts(), Some(&base)).unwrap_err();
        assert!(e.to_string().contains("ONBUILD trigger \"FROM x\""), "{e}");
    }

    #[test]
    fn eval_errors() {
        let o = opts();
        for (src, want) in [
            (
                "FROM scratch\nENV A=${B:?must_be_set}\n",
                "line 2: failed to expand \"${B:?must_be_set}\": B: must_be_set",
            ),
            ("FROM scratch\nEXPOSE 80/foo\n", "invalid proto"),
            ("FROM scratch\nEXPOSE 0\n", "invalid port"),
            ("FROM scratch\nEXPOSE 80:80\n", "publishing ports"),
            ("FROM scratch\nSTOPSIGNAL SIGNOPE\n", "invalid STOPSIGNAL"),
            (
                "FROM scratch\nCOPY --chmod=999 a b\n",
                "--chmod=999 is invalid",
            ),
            (
                "FROM scratch\nADD --checksum=sha256:0 a b\n",
                "needs HTTP(S) sources",
            ),
            (
                "FROM scratch\nCOPY --from=1 a b\n",
                "refers to the current or a later build stage",
            ),
            (
                "FROM scratch\nRUN --mount=type=tmpfs,target=/t,size=big x\n",
                "invalid size",
            ),
        ] {
            let e = eval_with(src, &o, None).unwrap_err().to_string();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn backtick_escape_directive_applies_to_expansion() {
        let p = eval("# escape=`\nFROM scratch\nENV P=C:\\dir\\x Q=a`$b\nWORKDIR C:\\app\n");
        assert_eq!(p.config.config.env_get("P"), Some("C:\\dir\\x"));
        assert_eq!(p.config.config.env_get("Q"), Some("a$b"));
    }

    #[test]
    fn signals_and_ports() {
        for s in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "SIGWINCH"] {
            assert!(valid_signal(s), "{s}");
        }
        for s in ["0", "65", "SIGFOO", "RTMIN+99", ""] {
            assert!(!valid_signal(s), "{s}");
        }
        assert_eq!(parse_port_spec("8080/UDP").unwrap(), ["8080/udp"]);
        assert!(parse_port_spec("10-5").is_err());
        assert!(parse_port_spec("70000").is_err());
    }

    #[test]
    fn stage_platform_from_flag() {
        let mut o = opts();
        o.build_platform = Platform::parse("linux/arm64/v8").unwrap();
        let p = eval_with("FROM --platform=$BUILDPLATFORM scratch\n", &o, None).unwrap();
        assert_eq!(
            (p.config.architecture.as_str(), p.config.variant.as_deref()),
            ("arm64", Some("v8"))
        );
        let p = eval_with("FROM scratch\n", &o, None).unwrap();
        assert_eq!(
            (p.config.architecture.as_str(), p.config.variant.as_deref()),
            ("amd64", None)
        );
        let e = eval_with("FROM --platform=bogus scratch\n", &o, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: FROM --platform: invalid platform \"bogus\""),
            "{e}"
        );
    }

    #[test]
    fn platform_parse() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert!(Platform::parse("linux").is_err());
    }
}
