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

mod steps;
mod values;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ast::{self, ArgDecl, Command, Healthcheck, Instruction, Node};
use crate::config::{
    rfc3339, Empty, HealthConfig, History, ImageConfig, DEFAULT_PATH, HISTORY_COMMENT,
};
use crate::glob::clean;
use crate::instructions::parse_node;
use crate::parser::split_instruction;
use crate::shell::{Lexer, ShellError};
use crate::stages::{Stage, StageSet};

pub use steps::*;
pub use values::*;

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
    /// The instruction being dispatched, as written.
    original: String,
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
            original: String::new(),
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
            original: self.original.clone(),
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
        self.original = node
            .original
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
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
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
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
        assert_eq!(p.steps[1].original, "RUN make \"$A\"");
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
