//! The steps a stage yields for the executor (RUN, COPY/ADD, WORKDIR),
//! and how RUN and COPY/ADD instructions turn into them.

use serde::Serialize;

use super::values::{is_url, parse_chmod};
use super::{expand, Result, StageEval, PROXY_ARGS};
use crate::ast::{self, Command, MountType, Source};
use crate::glob::clean;
use crate::instructions::parse_size;
use crate::parser::parse_heredoc;
use crate::shell::Lexer;

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
    /// The instruction as written (first line), for progress output.
    pub original: String,
}
impl StageEval<'_> {
    fn resolve_from(&self, value: &str) -> Result<CopyFrom> {
        Ok(
            match self.set.resolve_from(value, self.stage.index, self.line)? {
                Some(i) => CopyFrom::Stage(i),
                None => CopyFrom::Image(value.to_string()),
            },
        )
    }

    pub(super) fn run(&mut self, r: &ast::Run) -> Result<()> {
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

    pub(super) fn copy(
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
