//! Typing of raw nodes: argument checks, flags, mounts, health checks.

use std::collections::BTreeMap;

use crate::ast::*;
use crate::parser::{
    parse_heredoc, parse_json, parse_raw, parse_words, split_instruction, ErrorKind, JsonForm,
    ParseError, RawNode, Result,
};

/// Every instruction keyword, for suggestions.
const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parse a whole Dockerfile into the typed AST.
///
/// Errors carry the line of the instruction at fault; a file without any
/// instruction, or whose first instruction is neither FROM nor ARG, is an error.
pub fn parse(src: &str) -> Result<Dockerfile> {
    let raw = parse_raw(src)?;
    let escape = raw.directives.escape;
    let mut instructions = Vec::with_capacity(raw.nodes.len());
    let mut seen_from = false;
    for node in &raw.nodes {
        let instruction = parse_node(node, escape)?;
        match instruction {
            Instruction::From(_) => seen_from = true,
            Instruction::Arg(_) => {}
            _ if !seen_from => return Err(ParseError::new(node.line, ErrorKind::NoStage)),
            _ => {}
        }
        instructions.push(Node {
            line: node.line,
            end_line: node.end_line,
            original: node.original.trim().to_string(),
            instruction,
        });
    }
    if !seen_from {
        let line = raw.nodes.last().map_or(1, |n| n.line);
        return Err(ParseError::new(line, ErrorKind::NoStage));
    }
    let mut warnings = raw.warnings.clone();
    warnings.extend(lint(&raw.nodes, &instructions));
    let warnings = apply_check_directive(raw.directives.check.as_deref(), warnings)?;
    Ok(Dockerfile {
        directives: raw.directives,
        instructions,
        warnings,
    })
}

/// Honour `# check=skip=Name1,Name2` (or `skip=all`) and `error=true`,
/// which turns the first remaining check warning into an error.
fn apply_check_directive(check: Option<&str>, warnings: Vec<Warning>) -> Result<Vec<Warning>> {
    let Some(check) = check else {
        return Ok(warnings);
    };
    let mut skip: Vec<String> = Vec::new();
    let mut error = false;
    for part in check.split(';') {
        match part.trim().split_once('=') {
            Some(("skip", v)) => skip.extend(v.split(',').map(|s| s.trim().to_ascii_lowercase())),
            Some(("error", v)) => error = v.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let name = |w: &Warning| -> Option<String> {
        let (n, _) = w.message.split_once(':')?;
        n.chars()
            .all(|c| c.is_ascii_alphanumeric())
            .then(|| n.to_ascii_lowercase())
    };
    let kept: Vec<Warning> = warnings
        .into_iter()
        .filter(|w| match name(w) {
            Some(n) => !skip.iter().any(|s| s == "all" || *s == n),
            None => true,
        })
        .collect();
    if error {
        if let Some(w) = kept.iter().find(|w| name(w).is_some()) {
            return Err(ParseError::invalid(
                w.line,
                format!("{} (failing because of # check=error=true)", w.message),
            ));
        }
    }
    Ok(kept)
}

/// Build checks docker reports as warnings (a subset of its build checks).
fn lint(raw: &[RawNode], nodes: &[Node]) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut warn = |line: usize, message: String| out.push(Warning { line, message });
    for (r, n) in raw.iter().zip(nodes) {
        match &n.instruction {
            Instruction::Maintainer(_) => warn(
                n.line,
                "MaintainerDeprecated: MAINTAINER is deprecated, use LABEL org.opencontainers.image.authors=..."
                    .into(),
            ),
            Instruction::From(_) => {
                let words: Vec<&str> = r.rest.split_whitespace().collect();
                if let [_, as_kw, name] = words.as_slice() {
                    if name.chars().any(|c| c.is_ascii_uppercase()) {
                        warn(n.line, format!("StageNameCasing: stage name {name:?} should be lowercase"));
                    }
                    let kw_upper = r.keyword.chars().all(|c| !c.is_ascii_lowercase());
                    let as_upper = as_kw.chars().all(|c| !c.is_ascii_lowercase());
                    if kw_upper != as_upper {
                        warn(n.line, format!("FromAsCasing: '{as_kw}' and '{}' keywords' casing do not match", r.keyword));
                    }
                }
            }
            Instruction::Cmd(Command::Shell(_)) | Instruction::Entrypoint(Command::Shell(_)) => warn(
                n.line,
                format!(
                    "JSONArgsRecommended: JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                    n.instruction.keyword()
                ),
            ),
            _ => {}
        }
    }
    out
}

/// Type one raw node.
pub fn parse_node(node: &RawNode, escape: char) -> Result<Instruction> {
    let p = NodeParser {
        node,
        escape,
        kw: node.keyword.to_ascii_uppercase(),
    };
    p.parse()
}

struct NodeParser<'a> {
    node: &'a RawNode,
    escape: char,
    kw: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Str,
    Bool,
    Strings,
}

#[derive(Default)]
struct Flags(BTreeMap<&'static str, Vec<String>>);

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(|v| v.last().cloned())
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(|v| v.last()).map(|v| v == "true")
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

impl NodeParser<'_> {
    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError::invalid(self.node.line, msg)
    }

    fn rest(&self) -> &str {
        &self.node.rest
    }

    fn parse(&self) -> Result<Instruction> {
        Ok(match self.kw.as_str() {
            "FROM" => Instruction::From(self.from()?),
            "RUN" => Instruction::Run(self.run()?),
            "CMD" => {
                self.flags(&[])?;
                Instruction::Cmd(self.command(false)?)
            }
            "ENTRYPOINT" => {
                self.flags(&[])?;
                Instruction::Entrypoint(self.command(false)?)
            }
            "SHELL" => Instruction::Shell(self.shell()?),
            "LABEL" => Instruction::Label(self.name_values()?),
            "ENV" => Instruction::Env(self.name_values()?),
            "MAINTAINER" => Instruction::Maintainer(self.single()?),
            "USER" => Instruction::User(self.single()?),
            "WORKDIR" => Instruction::Workdir(self.single()?),
            "STOPSIGNAL" => Instruction::StopSignal(self.single()?),
            "EXPOSE" => Instruction::Expose(self.expose()?),
            "VOLUME" => Instruction::Volume(self.volume()?),
            "ARG" => Instruction::Arg(self.arg()?),
            "COPY" => Instruction::Copy(self.copy()?),
            "ADD" => Instruction::Add(self.add()?),
            "ONBUILD" => Instruction::Onbuild(self.onbuild()?),
            "HEALTHCHECK" => Instruction::Healthcheck(self.healthcheck()?),
            _ => {
                return Err(ParseError::new(
                    self.node.line,
                    ErrorKind::UnknownInstruction(self.unknown()),
                ))
            }
        })
    }

    fn unknown(&self) -> String {
        let kw = &self.node.keyword;
        let best = KEYWORDS
            .iter()
            .map(|k| (edit_distance(&kw.to_ascii_uppercase(), k), *k))
            .min();
        match best {
            Some((d, k)) if d <= 2 && kw.len() > 3 => format!("{kw} (did you mean {k}?)"),
            _ => kw.clone(),
        }
    }

    /// Docker's BFlags: `--name=value`, `--name` for booleans, repeatable lists.
    fn flags(&self, spec: &[(&'static str, FlagKind)]) -> Result<Flags> {
        let mut out = Flags::default();
        for word in &self.node.flags {
            let Some(arg) = word.strip_prefix("--") else {
                return Err(self.err(format!("flag {word:?} of {} should start with --", self.kw)));
            };
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let allowed: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
                let hint = if allowed.is_empty() {
                    format!("{} takes no flags", self.kw)
                } else {
                    format!("{} takes {}", self.kw, allowed.join(", "))
                };
                return Err(self.err(format!("unknown flag: --{name} ({hint})")));
            };
            let values = out.0.entry(key).or_default();
            if kind != FlagKind::Strings && !values.is_empty() {
                return Err(self.err(format!("duplicate flag specified: --{name}")));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v))
                    if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") =>
                {
                    v.to_ascii_lowercase()
                }
                (FlagKind::Bool, Some("")) | (_, None) => {
                    return Err(self.err(format!("missing a value on flag: --{name}")));
                }
                (FlagKind::Bool, Some(v)) => {
                    return Err(self.err(format!(
                        "expecting boolean value for flag --{name}, not: {v}"
                    )));
                }
                (_, Some(v)) => v.to_string(),
            };
            values.push(value);
        }
        Ok(out)
    }

    fn single(&self) -> Result<String> {
        self.flags(&[])?;
        if self.rest().is_empty() {
            return Err(self.err(format!("{} requires exactly one argument", self.kw)));
        }
        Ok(self.rest().to_string())
    }

    fn whitespace_words(&self) -> Vec<String> {
        self.rest()
            .split([' ', '\t', '\x0b', '\x0c', '\r'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn json_or_words(&self) -> Result<(Vec<String>, bool)> {
        match parse_json(self.rest()).map_err(|e| self.err(e))? {
            JsonForm::Array(v) => Ok((v, true)),
            JsonForm::NotJson => Ok((self.whitespace_words(), false)),
        }
    }

    fn command(&self, required: bool) -> Result<Command> {
        let rest = self.rest();
        if required && rest.is_empty() {
            return Err(self.err(format!("{} requires at least one argument", self.kw)));
        }
        match parse_json(rest).map_err(|e| self.err(e))? {
            JsonForm::Array(v) => Ok(Command::Exec(v)),
            JsonForm::NotJson => Ok(Command::Shell(rest.to_string())),
        }
    }

    fn from(&self) -> Result<From> {
        let flags = self.flags(&[("platform", FlagKind::Str)])?;
        let args = self.whitespace_words();
        let name = match args.as_slice() {
            [_] => None,
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let lower = name.to_ascii_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(self.err(format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    )));
                }
                Some(lower)
            }
            _ => return Err(self.err("FROM requires either one or three arguments: FROM [--platform=...] image [AS name]")),
        };
        Ok(From {
            image: args[0].clone(),
            platform: flags.string("platform"),
            name,
        })
    }

    fn run(&self) -> Result<Run> {
        let flags = self.flags(&[
            ("mount", FlagKind::Strings),
            ("network", FlagKind::Str),
            ("security", FlagKind::Str),
        ])?;
        let mounts = flags
            .strings("mount")
            .iter()
            .map(|m| parse_mount(m).map_err(|e| self.err(e)))
            .collect::<Result<Vec<_>>>()?;
        let network = match flags.string("network").as_deref() {
            None => None,
            Some("default") => Some(NetworkMode::Default),
            Some("none") => Some(NetworkMode::None),
            Some("host") => Some(NetworkMode::Host),
            Some(v) => {
                return Err(self.err(format!(
                    "unsupported network mode {v:?}: use default, none or host"
                )))
            }
        };
        let security = match flags.string("security").as_deref() {
            None => None,
            Some("sandbox") => Some(SecurityMode::Sandbox),
            Some("insecure") => Some(SecurityMode::Insecure),
            Some(v) => {
                return Err(self.err(format!(
                    "unsupported security mode {v:?}: use sandbox or insecure"
                )))
            }
        };
        Ok(Run {
            mounts,
            network,
            security,
            command: self.command(true)?,
            heredocs: self.node.heredocs.clone(),
        })
    }

    fn shell(&self) -> Result<Vec<String>> {
        self.flags(&[])?;
        match parse_json(self.rest()).map_err(|e| self.err(e))? {
            JsonForm::Array(v) if v.is_empty() => Err(self.err("SHELL requires at least one argument")),
            JsonForm::Array(v) => Ok(v),
            JsonForm::NotJson if self.rest().is_empty() => Err(self.err("SHELL requires at least one argument")),
            JsonForm::NotJson => Err(self.err("SHELL requires the arguments to be in JSON form, as in SHELL [\"/bin/sh\", \"-c\"]")),
        }
    }

    /// ENV and LABEL: `k=v ...` or the legacy `k v`.
    fn name_values(&self) -> Result<Vec<KeyValue>> {
        self.flags(&[])?;
        let words = parse_words(self.rest(), self.escape);
        let Some(first) = words.first() else {
            return Err(self.err(format!("{} requires at least one argument", self.kw)));
        };
        if !first.contains('=') {
            let mut parts = self.rest().splitn(2, [' ', '\t', '\x0b', '\x0c', '\r']);
            let key = parts.next().unwrap_or_default().to_string();
            let value = parts
                .next()
                .map(|v| v.trim_start().to_string())
                .filter(|v| !v.is_empty());
            let Some(value) = value else {
                return Err(self.err(format!(
                    "{} must have two arguments: {} name=value",
                    self.kw, self.kw
                )));
            };
            return Ok(vec![KeyValue { key, value }]);
        }
        words
            .iter()
            .map(|w| match w.split_once('=') {
                Some(("", _)) => Err(self.err(format!("{} names can not be blank", self.kw))),
                Some((k, v)) => Ok(KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                }),
                None => Err(self.err(format!(
                    "syntax error - can't find = in {w:?}. Must be of the form: name=value"
                ))),
            })
            .collect()
    }

    fn expose(&self) -> Result<Vec<String>> {
        self.flags(&[])?;
        let mut ports = self.whitespace_words();
        if ports.is_empty() {
            return Err(self.err("EXPOSE requires at least one argument"));
        }
        ports.sort();
        Ok(ports)
    }

    fn volume(&self) -> Result<Vec<String>> {
        self.flags(&[])?;
        let (vols, _) = self.json_or_words()?;
        if vols.is_empty() {
            return Err(self.err("VOLUME requires at least one argument"));
        }
        vols.into_iter()
            .map(|v| {
                let v = v.trim().to_string();
                if v.is_empty() {
                    Err(self.err("VOLUME specified can not be an empty string"))
                } else {
                    Ok(v)
                }
            })
            .collect()
    }

    fn arg(&self) -> Result<Vec<ArgDecl>> {
        self.flags(&[])?;
        let words = parse_words(self.rest(), self.escape);
        if words.is_empty() {
            return Err(self.err("ARG requires at least one argument"));
        }
        words
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some(("", _)) => Err(self.err("ARG names can not be blank")),
                Some((k, v)) => Ok(ArgDecl {
                    name: k.to_string(),
                    default: Some(v.to_string()),
                }),
                None => Ok(ArgDecl {
                    name: w,
                    default: None,
                }),
            })
            .collect()
    }

    fn copy_spec(&self, flags: &Flags) -> Result<CopySpec> {
        let (mut args, json) = self.json_or_words()?;
        if args.len() < 2 {
            return Err(self.err(format!(
                "{} requires at least two arguments, but only one was provided. Destination could not be determined",
                self.kw
            )));
        }
        let dest = args.pop().unwrap_or_default();
        if parse_heredoc(&dest).is_some() {
            return Err(self.err(format!(
                "{} cannot accept a heredoc as a destination",
                self.kw
            )));
        }
        let sources = args
            .into_iter()
            .map(|src| match parse_heredoc(&src) {
                Some(h) => {
                    let body = self.node.heredocs.iter().find(|d| d.name == h.name);
                    Source::Heredoc(body.cloned().unwrap_or(h))
                }
                None => Source::Path(src),
            })
            .collect();
        Ok(CopySpec {
            sources,
            dest,
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            excludes: flags.strings("exclude"),
            json,
        })
    }

    fn copy(&self) -> Result<Copy> {
        use FlagKind::*;
        let flags = self.flags(&[
            ("from", Str),
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", Strings),
        ])?;
        Ok(Copy {
            spec: self.copy_spec(&flags)?,
            from: flags.string("from"),
            parents: flags.bool("parents").unwrap_or(false),
        })
    }

    fn add(&self) -> Result<Add> {
        use FlagKind::*;
        let flags = self.flags(&[
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("exclude", Strings),
            ("checksum", Str),
            ("keep-git-dir", Bool),
            ("unpack", Bool),
        ])?;
        Ok(Add {
            spec: self.copy_spec(&flags)?,
            checksum: flags.string("checksum"),
            keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
            unpack: flags.bool("unpack"),
        })
    }

    fn onbuild(&self) -> Result<Onbuild> {
        self.flags(&[])?;
        // Flags belong to the trigger: re-split the text after ONBUILD.
        let original = self.node.original.trim_start();
        let expression = original
            .get(self.node.keyword.len()..)
            .unwrap_or_default()
            .trim()
            .to_string();
        if expression.is_empty() {
            return Err(self.err("ONBUILD requires at least one argument"));
        }
        let sub = split_instruction(&expression, self.node.line);
        match sub.keyword.to_ascii_uppercase().as_str() {
            "ONBUILD" => {
                return Err(self.err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
            }
            k @ ("FROM" | "MAINTAINER") => {
                return Err(self.err(format!("{k} isn't allowed as an ONBUILD trigger")))
            }
            _ => {}
        }
        let trigger = parse_node(&sub, self.escape)?;
        Ok(Onbuild {
            expression,
            trigger: Box::new(trigger),
        })
    }

    fn healthcheck(&self) -> Result<Healthcheck> {
        let rest = self.rest();
        let (typ, cmd) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim_start()),
            None => (rest, ""),
        };
        if typ.is_empty() {
            return Err(self.err("HEALTHCHECK requires at least one argument"));
        }
        let typ = typ.to_ascii_uppercase();
        if typ == "NONE" {
            if let Some(f) = self.node.flags.first() {
                return Err(self.err(format!("HEALTHCHECK NONE takes no flags: remove {f}")));
            }
            if !cmd.is_empty() {
                return Err(self.err("HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(Healthcheck::None);
        }
        use FlagKind::Str;
        let flags = self.flags(&[
            ("interval", Str),
            ("timeout", Str),
            ("start-period", Str),
            ("start-interval", Str),
            ("retries", Str),
        ])?;
        if typ != "CMD" {
            return Err(self.err(format!("unknown type {typ:?} in HEALTHCHECK (try CMD)")));
        }
        let command = match parse_json(cmd).map_err(|e| self.err(e))? {
            JsonForm::Array(v) if !v.is_empty() => Command::Exec(v),
            JsonForm::NotJson if !cmd.is_empty() => Command::Shell(cmd.to_string()),
            _ => return Err(self.err("missing command after HEALTHCHECK CMD")),
        };
        let dur = |name: &str| -> Result<u64> {
            let Some(v) = flags.string(name) else {
                return Ok(0);
            };
            let d =
                parse_duration(&v).map_err(|e| self.err(format!("invalid --{name} {v:?}: {e}")))?;
            if d != 0 && d < 1_000_000 {
                return Err(self.err(format!("interval --{name} cannot be less than 1ms")));
            }
            Ok(d)
        };
        let retries = match flags.string("retries") {
            None => 0,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n < 0 => {
                    return Err(self.err(format!("--retries cannot be negative ({n})")))
                }
                Ok(n) => {
                    u32::try_from(n).map_err(|_| self.err(format!("--retries {n} is too large")))?
                }
                Err(_) => {
                    return Err(self.err(format!("invalid --retries {v:?}: use a whole number")))
                }
            },
        };
        Ok(Healthcheck::Check(HealthCheckSpec {
            command,
            interval: dur("interval")?,
            timeout: dur("timeout")?,
            start_period: dur("start-period")?,
            start_interval: dur("start-interval")?,
            retries,
        }))
    }
}

/// `^[a-z][a-z0-9-_.]*$`.
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Go's `time.ParseDuration`, in nanoseconds; negative durations are refused.
pub fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if let Some(neg) = body.strip_prefix('-') {
        return if !neg.is_empty() && neg.chars().all(|c| c == '0') {
            Ok(0)
        } else {
            Err("cannot be negative".into())
        };
    }
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return Err("expected a number, as in 30s or 1m30s".into());
        }
        let value: f64 = num.parse().map_err(|_| format!("bad number {num:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit: use ns, us, ms, s, m or h".into()),
            u => return Err(format!("unknown unit {u:?}: use ns, us, ms, s, m or h")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > u64::MAX as f64 {
        return Err("too large".into());
    }
    Ok(total.round() as u64)
}

/// Split a CSV record (Go `encoding/csv` style: `"` quotes a field).
fn csv_fields(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quote in {s:?}"));
    }
    out.push(field);
    Ok(out)
}

fn parse_bool(key: &str, v: &str) -> std::result::Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("invalid value {v:?} for {key}: use true or false")),
    }
}

/// Parse one `--mount` value (`type=cache,target=/root/.cache,...`).
pub fn parse_mount(spec: &str) -> std::result::Result<Mount, String> {
    let bad = |m: String| format!("invalid --mount={spec}: {m}");
    let fields = csv_fields(spec).map_err(bad)?;
    let mut m = Mount {
        kind: mount_type_field(&fields).map_err(bad)?,
        ..Mount::default()
    };
    let mut read_only: Option<bool> = None;
    for f in fields.iter().filter(|f| !f.is_empty()) {
        mount_field(&mut m, &mut read_only, f).map_err(bad)?;
    }
    let ty = m.mount_type();
    m.read_only = read_only.unwrap_or(!matches!(ty, MountType::Cache | MountType::Tmpfs));
    validate_mount(&m).map_err(bad)?;
    Ok(m)
}

/// The `type=` of a mount (it decides which keys are allowed, so it is read first).
fn mount_type_field(fields: &[String]) -> std::result::Result<Option<MountType>, String> {
    let mut kind = None;
    for f in fields {
        let Some((k, v)) = f.split_once('=') else {
            continue;
        };
        if !k.eq_ignore_ascii_case("type") {
            continue;
        }
        kind = Some(match v.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => {
                return Err(format!(
                    "unsupported mount type {v:?}: use bind, cache, tmpfs, secret or ssh"
                ))
            }
        });
    }
    Ok(kind)
}

/// Apply one `key[=value]` field of a mount.
fn mount_field(
    m: &mut Mount,
    read_only: &mut Option<bool>,
    f: &str,
) -> std::result::Result<(), String> {
    let ty = m.mount_type();
    let (key, value) = match f.split_once('=') {
        Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
        None => (f.to_ascii_lowercase(), None),
    };
    let flag = |v: Option<String>| v.map_or(Ok(true), |v| parse_bool(&key, &v));
    let need = |v: Option<String>| {
        v.ok_or_else(|| format!("unexpected key '{key}' in '{f}': give it a value"))
    };
    let secretish = matches!(ty, MountType::Secret | MountType::Ssh);
    match key.as_str() {
        "type" => {}
        "readonly" | "ro" => *read_only = Some(flag(value)?),
        "readwrite" | "rw" => *read_only = Some(!flag(value)?),
        "required" if secretish => m.required = flag(value)?,
        "from" => m.from = Some(need(value)?),
        "source" | "src" => m.source = Some(need(value)?),
        "target" | "dst" | "destination" => m.target = Some(need(value)?),
        "id" => m.id = Some(need(value)?),
        "size" if ty == MountType::Tmpfs => m.size = Some(need(value)?),
        "sharing" if ty == MountType::Cache => {
            let v = need(value)?;
            m.sharing = Some(match v.to_ascii_lowercase().as_str() {
                "shared" => CacheSharing::Shared,
                "private" => CacheSharing::Private,
                "locked" => CacheSharing::Locked,
                _ => {
                    return Err(format!(
                        "unsupported sharing value {v:?}: use shared, private or locked"
                    ))
                }
            });
        }
        "mode" | "uid" | "gid"
            if matches!(ty, MountType::Cache | MountType::Secret | MountType::Ssh) =>
        {
            let v = need(value)?;
            let radix = if key == "mode" { 8 } else { 10 };
            if !v.contains('$') && u32::from_str_radix(&v, radix).is_err() {
                return Err(format!("invalid {key} {v:?}"));
            }
            match key.as_str() {
                "mode" => m.mode = Some(v),
                "uid" => m.uid = Some(v),
                _ => m.gid = Some(v),
            }
        }
        "env" if ty == MountType::Secret => m.env = Some(need(value)?),
        _ => {
            return Err(format!(
                "unexpected key '{key}' for mount type {}",
                type_name(ty)
            ))
        }
    }
    Ok(())
}

/// Docker's per-type requirements once every field is read.
fn validate_mount(m: &Mount) -> std::result::Result<(), String> {
    let ty = m.mount_type();
    match ty {
        MountType::Bind | MountType::Cache | MountType::Tmpfs if m.target.is_none() => {
            Err(format!("mount type {} requires a target", type_name(ty)))
        }
        MountType::Secret
            if m.target.is_none() && m.id.is_none() && m.env.is_none() && m.source.is_none() =>
        {
            Err("a secret mount needs an id, a target or an env".into())
        }
        MountType::Ssh if m.source.is_some() => Err("source is not allowed for ssh mounts".into()),
        _ => Ok(()),
    }
}

fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// Docker's `RAMInBytes`: `64m`, `1.5GiB`, `1024` (binary multiples).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..num_len]
        .parse()
        .map_err(|_| format!("invalid size {s:?}"))?;
    let unit = t[num_len..].trim_start().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mul: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => {
            return Err(format!(
                "invalid size {s:?}: use a number with k, m, g, t or p"
            ))
        }
    };
    Ok((num * mul) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Instruction {
        let df = parse(&format!("FROM scratch\n{src}\n")).unwrap_or_else(|e| panic!("{src}: {e}"));
        df.instructions[1].instruction.clone()
    }

    fn err(src: &str) -> String {
        let e = parse(&format!("FROM scratch\n{src}\n")).unwrap_err();
        assert_eq!(e.line, 2, "{src}: {e}");
        e.kind.to_string()
    }

    #[test]
    fn from_forms() {
        let df = parse("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n").unwrap();
        let Instruction::From(f) = &df.instructions[0].instruction else {
            panic!()
        };
        assert_eq!(f.image, "golang:1.22");
        assert_eq!(f.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(f.name.as_deref(), Some("build"));
        for bad in ["FROM", "FROM a b", "FROM a as", "FROM a AS b c"] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("one or three arguments"),
                "{bad}: {e}"
            );
        }
        let e = parse("FROM a AS 1abc").unwrap_err();
        assert!(e.to_string().contains("invalid name for build stage"));
        let e = parse("FROM --plat=x a").unwrap_err();
        assert!(e.to_string().contains("unknown flag: --plat"), "{e}");
    }

    #[test]
    fn arg_before_from_and_stage_required() {
        assert!(parse("ARG V=1\nFROM a:$V\n").is_ok());
        let e = parse("ARG V=1\nRUN x\n").unwrap_err();
        assert_eq!((e.line, e.kind), (2, ErrorKind::NoStage));
        let e = parse("ARG V=1\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoStage);
    }

    #[test]
    fn unknown_instruction() {
        assert_eq!(
            err("RUNN x"),
            "unknown instruction: RUNN (did you mean RUN?)"
        );
        assert_eq!(err("FOO x"), "unknown instruction: FOO");
        // Keywords are case-insensitive.
        assert!(matches!(one("run echo"), Instruction::Run(_)));
    }

    #[test]
    fn run_forms() {
        let Instruction::Run(r) = one("RUN [\"echo\", \"hi\"]") else {
            panic!()
        };
        assert_eq!(r.command, Command::Exec(vec!["echo".into(), "hi".into()]));
        let Instruction::Run(r) = one("RUN echo \"$HOME\"") else {
            panic!()
        };
        assert_eq!(r.command, Command::Shell("echo \"$HOME\"".into()));
        let Instruction::Run(r) = one("RUN [not json") else {
            panic!()
        };
        assert_eq!(r.command, Command::Shell("[not json".into()));
        assert_eq!(err("RUN"), "RUN requires at least one argument");
        assert_eq!(
            err("RUN [1]"),
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
    }

    #[test]
    fn run_flags() {
        let Instruction::Run(r) = one(
            "RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000 \
             --mount=type=bind,source=.,target=/src,rw --mount=type=tmpfs,target=/tmp,size=64m \
             --mount=type=secret,id=tok,required --mount=type=ssh --network=none --security=insecure make",
        ) else {
            panic!()
        };
        assert_eq!(r.mounts.len(), 5);
        let c = &r.mounts[0];
        assert_eq!(c.kind, Some(MountType::Cache));
        assert_eq!(
            (c.target.as_deref(), c.id.as_deref(), c.sharing),
            (
                Some("/root/.cache"),
                Some("pip"),
                Some(CacheSharing::Locked)
            )
        );
        assert!(!c.read_only);
        assert!(!r.mounts[1].read_only);
        assert_eq!(r.mounts[2].size.as_deref(), Some("64m"));
        assert!(r.mounts[3].required && r.mounts[3].read_only);
        assert_eq!(r.mounts[4].kind, Some(MountType::Ssh));
        assert_eq!(r.network, Some(NetworkMode::None));
        assert_eq!(r.security, Some(SecurityMode::Insecure));
        assert_eq!(r.command, Command::Shell("make".into()));
        // Bind mounts are read-only unless told otherwise.
        let Instruction::Run(r) = one("RUN --mount=target=/x,from=build ls") else {
            panic!()
        };
        assert_eq!(r.mounts[0].mount_type(), MountType::Bind);
        assert!(r.mounts[0].read_only);
    }

    #[test]
    fn run_flag_errors() {
        for (src, want) in [
            (
                "RUN --mount=type=nfs,target=/x a",
                "unsupported mount type \"nfs\"",
            ),
            (
                "RUN --mount=type=cache a",
                "mount type cache requires a target",
            ),
            (
                "RUN --mount=type=bind,target=/x,size=1 a",
                "unexpected key 'size' for mount type bind",
            ),
            (
                "RUN --mount=type=cache,target=/x,sharing=weird a",
                "unsupported sharing value",
            ),
            (
                "RUN --mount=type=cache,target=/x,mode=999 a",
                "invalid mode",
            ),
            (
                "RUN --mount=type=bind,target=/x,required a",
                "unexpected key 'required'",
            ),
            ("RUN --mount a", "missing a value on flag: --mount"),
            (
                "RUN --network=bridge a",
                "unsupported network mode \"bridge\"",
            ),
            (
                "RUN --network=none --network=host a",
                "duplicate flag specified: --network",
            ),
            ("RUN --security=root a", "unsupported security mode"),
            (
                "RUN --foo a",
                "unknown flag: --foo (RUN takes --mount, --network, --security)",
            ),
        ] {
            let e = err(src);
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn cmd_entrypoint_shell() {
        assert_eq!(
            one("CMD [\"a\"]"),
            Instruction::Cmd(Command::Exec(vec!["a".into()]))
        );
        assert_eq!(one("CMD []"), Instruction::Cmd(Command::Exec(vec![])));
        assert_eq!(
            one("ENTRYPOINT exec app"),
            Instruction::Entrypoint(Command::Shell("exec app".into()))
        );
        assert_eq!(
            one("SHELL [\"bash\", \"-ec\"]"),
            Instruction::Shell(vec!["bash".into(), "-ec".into()])
        );
        assert!(err("SHELL bash -c").contains("JSON form"));
        assert_eq!(err("SHELL []"), "SHELL requires at least one argument");
        assert_eq!(err("CMD --x a"), "unknown flag: --x (CMD takes no flags)");
    }

    #[test]
    fn env_and_label_forms() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(
            one("ENV A=1 B=\"two words\" C=a\\ b"),
            Instruction::Env(vec![
                kv("A", "1"),
                kv("B", "\"two words\""),
                kv("C", "a\\ b")
            ])
        );
        assert_eq!(
            one("ENV A hello   world"),
            Instruction::Env(vec![kv("A", "hello   world")])
        );
        assert_eq!(one("ENV A="), Instruction::Env(vec![kv("A", "")]));
        assert_eq!(
            one("LABEL \"com.x\"=\"y z\""),
            Instruction::Label(vec![kv("\"com.x\"", "\"y z\"")])
        );
        assert_eq!(one("LABEL a b"), Instruction::Label(vec![kv("a", "b")]));
        assert_eq!(err("ENV"), "ENV requires at least one argument");
        assert_eq!(err("ENV A"), "ENV must have two arguments: ENV name=value");
        assert_eq!(err("ENV =x"), "ENV names can not be blank");
        assert!(err("ENV A=1 B").contains("can't find = in \"B\""));
        assert_eq!(err("LABEL"), "LABEL requires at least one argument");
    }

    #[test]
    fn simple_single_arg_instructions() {
        assert_eq!(one("USER app:app"), Instruction::User("app:app".into()));
        assert_eq!(one("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
        assert_eq!(
            one("STOPSIGNAL SIGTERM"),
            Instruction::StopSignal("SIGTERM".into())
        );
        assert_eq!(
            one("MAINTAINER Jo <jo@x>"),
            Instruction::Maintainer("Jo <jo@x>".into())
        );
        for k in ["USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"] {
            assert_eq!(err(k), format!("{k} requires exactly one argument"));
        }
    }

    #[test]
    fn expose_volume_arg() {
        assert_eq!(
            one("EXPOSE 8080/udp 80 443/tcp"),
            Instruction::Expose(vec!["443/tcp".into(), "80".into(), "8080/udp".into()])
        );
        assert_eq!(err("EXPOSE"), "EXPOSE requires at least one argument");
        assert_eq!(
            one("VOLUME /a /b"),
            Instruction::Volume(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(
            one("VOLUME [\"/a b\"]"),
            Instruction::Volume(vec!["/a b".into()])
        );
        assert_eq!(
            err("VOLUME [\" \"]"),
            "VOLUME specified can not be an empty string"
        );
        assert_eq!(
            one("ARG A B=2 C=\"x y\""),
            Instruction::Arg(vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some("2".into())
                },
                ArgDecl {
                    name: "C".into(),
                    default: Some("\"x y\"".into())
                },
            ])
        );
        assert_eq!(err("ARG =1"), "ARG names can not be blank");
        assert_eq!(err("ARG"), "ARG requires at least one argument");
    }

    #[test]
    fn copy_and_add() {
        let Instruction::Copy(c) = one("COPY --from=build --chown=1:1 --chmod=0644 --link --parents --exclude=*.md --exclude=tmp a b* /dst/") else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.spec.chown.as_deref(), Some("1:1"));
        assert_eq!(c.spec.chmod.as_deref(), Some("0644"));
        assert!(c.spec.link && c.parents);
        assert_eq!(c.spec.excludes, ["*.md", "tmp"]);
        assert_eq!(
            c.spec.sources,
            [Source::Path("a".into()), Source::Path("b*".into())]
        );
        assert_eq!(c.spec.dest, "/dst/");
        let Instruction::Copy(c) = one("COPY [\"a b\", \"/c d/\"]") else {
            panic!()
        };
        assert!(c.spec.json);
        assert_eq!(c.spec.dest, "/c d/");
        let Instruction::Add(a) =
            one("ADD --checksum=sha256:abc --keep-git-dir --unpack=false https://x/y.tgz /y")
        else {
            panic!()
        };
        assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
        assert!(a.keep_git_dir);
        assert_eq!(a.unpack, Some(false));
        assert!(err("COPY a").contains("requires at least two arguments"));
        assert!(err("ADD --from=x a b").contains("unknown flag: --from"));
        assert!(err("COPY --checksum=x a b").contains("unknown flag: --checksum"));
        assert!(err("COPY --link=maybe a b").contains("expecting boolean value for flag --link"));
        assert_eq!(err("COPY --from a b"), "missing a value on flag: --from");
    }

    #[test]
    fn copy_heredoc() {
        let df =
            parse("FROM x\nCOPY <<EOF <<-\"TWO\" /dst/\nhello $X\nEOF\n\tworld\n\tTWO\nRUN true\n")
                .unwrap();
        let Instruction::Copy(c) = &df.instructions[1].instruction else {
            panic!()
        };
        let [Source::Heredoc(a), Source::Heredoc(b)] = c.spec.sources.as_slice() else {
            panic!()
        };
        assert_eq!(
            (a.name.as_str(), a.content.as_str(), a.expand),
            ("EOF", "hello $X\n", true)
        );
        assert_eq!(
            (b.name.as_str(), b.content.as_str(), b.expand),
            ("TWO", "world\n", false)
        );
        assert_eq!(df.instructions[2].line, 7);
        assert_eq!(
            err("COPY a <<EOF\nx\nEOF"),
            "COPY cannot accept a heredoc as a destination"
        );
    }

    #[test]
    fn heredoc_edge_cases() {
        let df = parse("FROM x\nRUN <<EMPTY\nEMPTY\nRUN \"<<NOHEREDOC\"\nRUN [\"<<EOF\"]\nADD <<EOF foo.txt /bar\ninline\nEOF\nRUN <<INDENT\n\tfoo\nINDENT\n").unwrap();
        let ins: Vec<&Instruction> = df.instructions.iter().map(|n| &n.instruction).collect();
        let Instruction::Run(r) = ins[1] else {
            panic!()
        };
        assert_eq!((r.heredocs.len(), r.heredocs[0].content.as_str()), (1, ""));
        let Instruction::Run(r) = ins[2] else {
            panic!()
        };
        assert!(r.heredocs.is_empty());
        let Instruction::Run(r) = ins[3] else {
            panic!()
        };
        assert_eq!(r.command, Command::Exec(vec!["<<EOF".into()]));
        assert!(r.heredocs.is_empty());
        let Instruction::Add(a) = ins[4] else {
            panic!()
        };
        assert!(matches!(&a.spec.sources[0], Source::Heredoc(h) if h.content == "inline\n"));
        assert_eq!(a.spec.sources[1], Source::Path("foo.txt".into()));
        let Instruction::Run(r) = ins[5] else {
            panic!()
        };
        assert_eq!(r.heredocs[0].content, "\tfoo\n");
        assert_eq!(df.instructions[5].line, 9);
        // USER cannot hold a heredoc: the body line is an instruction.
        assert!(parse("FROM x\nUSER <<INVALID\nINVALID\n").is_err());
    }

    #[test]
    fn onbuild() {
        let Instruction::Onbuild(o) = one("ONBUILD COPY --chown=1 . /app") else {
            panic!()
        };
        assert_eq!(o.expression, "COPY --chown=1 . /app");
        assert!(matches!(*o.trigger, Instruction::Copy(_)));
        assert_eq!(
            err("ONBUILD ONBUILD RUN x"),
            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(
            err("onbuild from x"),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            err("ONBUILD MAINTAINER x"),
            "MAINTAINER isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(err("ONBUILD"), "ONBUILD requires at least one argument");
        assert!(err("ONBUILD RUNX a").contains("unknown instruction"));
    }

    #[test]
    fn healthcheck() {
        assert_eq!(
            one("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::None)
        );
        let Instruction::Healthcheck(Healthcheck::Check(h)) =
            one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/")
        else {
            panic!()
        };
        assert_eq!(
            h.command,
            Command::Shell("curl -f http://localhost/".into())
        );
        assert_eq!((h.interval, h.timeout), (300_000_000_000, 3_000_000_000));
        assert_eq!(
            (h.start_period, h.start_interval, h.retries),
            (90_000_000_000, 500_000_000, 3)
        );
        let Instruction::Healthcheck(Healthcheck::Check(h)) =
            one("HEALTHCHECK cmd [\"/bin/check\"]")
        else {
            panic!()
        };
        assert_eq!(h.command, Command::Exec(vec!["/bin/check".into()]));
        assert_eq!(
            err("HEALTHCHECK NONE x"),
            "HEALTHCHECK NONE takes no arguments"
        );
        assert_eq!(
            err("HEALTHCHECK CMD"),
            "missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            err("HEALTHCHECK RUN x"),
            "unknown type \"RUN\" in HEALTHCHECK (try CMD)"
        );
        assert_eq!(
            err("HEALTHCHECK --retries=-1 CMD x"),
            "--retries cannot be negative (-1)"
        );
        assert_eq!(
            err("HEALTHCHECK --interval=1us CMD x"),
            "interval --interval cannot be less than 1ms"
        );
        assert!(err("HEALTHCHECK --timeout=3 CMD x").contains("missing unit"));
        assert!(err("HEALTHCHECK --foo=1 CMD x").contains("unknown flag: --foo"));
        assert_eq!(
            err("HEALTHCHECK"),
            "HEALTHCHECK requires at least one argument"
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_duration("250µs"), Ok(250_000));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1x").is_err());
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn build_check_warnings() {
        let df = parse("FROM a as Build\nMAINTAINER x\nCMD run it\nENTRYPOINT [\"x\"]\n").unwrap();
        let msgs: Vec<(usize, &str)> = df
            .warnings
            .iter()
            .map(|w| (w.line, w.message.split(':').next().unwrap_or_default()))
            .collect();
        assert_eq!(
            msgs,
            [
                (1, "StageNameCasing"),
                (1, "FromAsCasing"),
                (2, "MaintainerDeprecated"),
                (3, "JSONArgsRecommended")
            ]
        );
        assert!(parse("FROM a AS b\nCMD [\"x\"]\n")
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn check_directive() {
        let src = "FROM a as Build\nCMD run\n";
        assert_eq!(parse(src).unwrap().warnings.len(), 3);
        let skip = parse(&format!(
            "# check=skip=JSONArgsRecommended,FromAsCasing\n{src}"
        ))
        .unwrap();
        let names: Vec<&str> = skip
            .warnings
            .iter()
            .map(|w| w.message.split(':').next().unwrap())
            .collect();
        assert_eq!(names, ["StageNameCasing"]);
        assert!(parse(&format!("# check=skip=all\n{src}"))
            .unwrap()
            .warnings
            .is_empty());
        let e = parse(&format!("# check=error=true\n{src}")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("StageNameCasing"), "{e}");
        assert!(parse("# check=error=true;skip=all\nFROM a as Build\n").is_ok());
    }

    #[test]
    fn line_numbers_in_errors() {
        let e = parse("FROM a\n\n# c\nRUN ok \\\n  still\nCOPY onlyone\n").unwrap_err();
        assert_eq!(e.line, 6);
        assert!(e
            .to_string()
            .starts_with("dockerfile parse error on line 6: COPY requires at least two"));
    }
}
