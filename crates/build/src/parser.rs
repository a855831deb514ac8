//! Line-level Dockerfile parsing: parser directives, comments, line
//! continuations, heredoc bodies and builder flags.
//!
//! [`parse_raw`] turns the text into [`RawNode`]s (one per instruction,
//! with its line range, keyword, flag words, argument text and heredocs);
//! [`crate::instructions`] turns those into the typed AST.

use crate::shell::{Lexer, NoVars};

/// What is wrong, without the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file holds no instruction at all.
    #[error("file with no instructions: a Dockerfile needs at least a FROM instruction")]
    NoInstructions,
    /// A keyword docker does not know.
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    /// The first instruction is not FROM (or ARG before FROM).
    #[error("no build stage in current context: the first instruction must be FROM (only ARG may come before it)")]
    NoStage,
    /// A heredoc whose terminator never came.
    #[error("unterminated heredoc {0:?}: add a line with just {0} to close it")]
    UnterminatedHeredoc(String),
    /// A parser directive given twice.
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// `# escape=` with something else than a backslash or backquote.
    #[error("invalid escape token {0:?}: use \\ or `")]
    BadEscape(String),
    /// Any other problem with an instruction; the text says what.
    #[error("{0}")]
    Invalid(String),
}

/// A parse error at a line of the Dockerfile (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {line}: {kind}")]
pub struct ParseError {
    /// First line of the instruction at fault.
    pub line: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ParseError {
    /// An error at `line`.
    pub fn new(line: usize, kind: ErrorKind) -> Self {
        Self { line, kind }
    }

    /// An [`ErrorKind::Invalid`] error with a message.
    pub fn invalid(line: usize, msg: impl Into<String>) -> Self {
        Self {
            line,
            kind: ErrorKind::Invalid(msg.into()),
        }
    }
}

/// Result alias of the parser.
pub type Result<T> = std::result::Result<T, ParseError>;

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    /// `# syntax=`: recorded, not acted on (berth has one built-in front end).
    pub syntax: Option<String>,
    /// `# escape=`: the escape character (`\` unless set to `` ` ``).
    pub escape: char,
    /// `# check=`: build-check settings, recorded as written.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A non-fatal remark about the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Line the remark is about.
    pub line: usize,
    /// The remark.
    pub message: String,
}

/// A heredoc attached to a RUN, COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOT` for `<<"EOT"`).
    pub name: String,
    /// The body, each line ending with a newline; for `<<-` leading tabs are removed.
    pub content: String,
    /// False when any part of the delimiter was quoted: the body is then not expanded.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped.
    pub chomp: bool,
    /// The file descriptor written before `<<` (as in `3<<EOF`), if any.
    pub fd: Option<u32>,
}

/// One instruction as written, before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawNode {
    /// First line (1-based).
    pub line: usize,
    /// Last line, heredoc bodies included.
    pub end_line: usize,
    /// The keyword as written (`run`, `RUN`, ...).
    pub keyword: String,
    /// Flag words as `--name[=value]`, with their quotes removed.
    pub flags: Vec<String>,
    /// The arguments after keyword and flags, trimmed.
    pub rest: String,
    /// The instruction line after joining continuations.
    pub original: String,
    /// Heredoc bodies, in the order they appear on the line.
    pub heredocs: Vec<Heredoc>,
}

/// The raw parse of a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFile {
    /// Parser directives.
    pub directives: Directives,
    /// Instructions in order.
    pub nodes: Vec<RawNode>,
    /// Non-fatal remarks.
    pub warnings: Vec<Warning>,
}

const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    /// Feed one line; returns a directive while still in the directive header.
    fn line(&mut self, line: &str) -> Option<(String, String)> {
        if self.done {
            return None;
        }
        let parsed = parse_directive(line);
        match parsed {
            Some((k, v)) if DIRECTIVES.contains(&k.as_str()) => Some((k, v)),
            _ => {
                self.done = true;
                None
            }
        }
    }
}

/// `#\s*key\s*=\s*value` with a key of letters and digits.
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_len];
    if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strip the escape character (and blanks after it) at the end of a line.
/// Returns the line and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(l) => (l, false),
        None => (line, true),
    }
}

fn can_contain_heredoc(keyword: &str) -> bool {
    matches!(
        keyword.to_ascii_lowercase().as_str(),
        "run" | "copy" | "add"
    )
}

/// Parse the file into raw instruction nodes.
pub fn parse_raw(src: &str) -> Result<RawFile> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut p = LineParser {
        lines,
        next: 0,
        directives: Directives::default(),
        dp: DirectiveParser {
            done: false,
            seen: Vec::new(),
        },
        warnings: Vec::new(),
    };
    let mut nodes = Vec::new();
    while let Some(node) = p.next_node()? {
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(ParseError::new(p.next.max(1), ErrorKind::NoInstructions));
    }
    Ok(RawFile {
        directives: p.directives,
        nodes,
        warnings: p.warnings,
    })
}

struct LineParser<'a> {
    lines: Vec<&'a str>,
    /// Index of the next line to read (also the 1-based number of the last read).
    next: usize,
    directives: Directives,
    dp: DirectiveParser,
    warnings: Vec<Warning>,
}

fn trim_newline(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

impl<'a> LineParser<'a> {
    fn read(&mut self) -> Option<&'a str> {
        let l = self.lines.get(self.next).copied();
        if l.is_some() {
            self.next += 1;
        }
        l
    }

    /// Directive handling and comment removal for one line.
    fn process_line(&mut self, raw: &'a str, strip_left: bool) -> Result<&'a str> {
        let mut token = trim_newline(raw);
        if strip_left {
            token = token.trim_start();
        }
        if let Some((k, v)) = self.dp.line(token) {
            self.set_directive(k, v)?;
        }
        Ok(if is_comment(token) { "" } else { token })
    }

    fn set_directive(&mut self, key: String, value: String) -> Result<()> {
        let line = self.next;
        if self.dp.seen.contains(&key) {
            return Err(ParseError::new(line, ErrorKind::DuplicateDirective(key)));
        }
        self.dp.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value.as_str() {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                _ => return Err(ParseError::new(line, ErrorKind::BadEscape(value))),
            },
            "syntax" => {
                self.warnings.push(Warning {
                    line,
                    message: format!("syntax directive {value:?} recorded and ignored: berth uses its built-in Dockerfile front end"),
                });
                self.directives.syntax = Some(value);
            }
            _ => self.directives.check = Some(value),
        }
        Ok(())
    }

    fn next_node(&mut self) -> Result<Option<RawNode>> {
        loop {
            let Some(raw) = self.read() else {
                return Ok(None);
            };
            let first = self.process_line(raw, true)?;
            let start = self.next;
            let escape = self.directives.escape;
            let (first, mut end) = trim_continuation(first, escape);
            if end && first.is_empty() {
                continue;
            }
            let mut line = first.to_string();
            let mut empty_continuation = false;
            while !end {
                let Some(raw) = self.read() else { break };
                let token = self.process_line(raw, false)?;
                if is_comment(raw) {
                    continue;
                }
                if token.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, e) = trim_continuation(token, escape);
                line.push_str(part);
                end = e;
            }
            if empty_continuation {
                self.warnings.push(Warning {
                    line: start,
                    message:
                        "NoEmptyContinuation: empty continuation line: remove the blank line inside this instruction"
                            .into(),
                });
            }
            return self.node_from_line(line, start).map(Some);
        }
    }

    fn node_from_line(&mut self, line: String, start: usize) -> Result<RawNode> {
        let mut node = split_instruction(&line, start);
        node.end_line = self.next;
        if can_contain_heredoc(&node.keyword) && line.contains("<<") {
            for mut doc in heredocs_from_line(&line) {
                doc.content = self.read_heredoc(&doc, start)?;
                node.heredocs.push(doc);
            }
            node.end_line = self.next;
        }
        Ok(node)
    }

    fn read_heredoc(&mut self, doc: &Heredoc, start: usize) -> Result<String> {
        let mut content = String::new();
        while let Some(raw) = self.read() {
            let mut candidate = trim_newline(raw);
            if doc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == doc.name {
                return Ok(content);
            }
            if doc.chomp {
                content.push_str(raw.trim_start_matches('\t'));
            } else {
                content.push_str(raw);
            }
        }
        Err(ParseError::new(
            start,
            ErrorKind::UnterminatedHeredoc(doc.name.clone()),
        ))
    }
}

/// Split one (joined) instruction line into keyword, flags and arguments.
pub fn split_instruction(line: &str, at: usize) -> RawNode {
    let trimmed = line.trim();
    let (keyword, args) = match trimmed.find([' ', '\t', '\x0b', '\x0c', '\r']) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start()),
        None => (trimmed, ""),
    };
    let (rest, flags) = extract_flags(args);
    RawNode {
        line: at,
        end_line: at,
        keyword: keyword.to_string(),
        flags,
        rest: rest.trim().to_string(),
        original: line.to_string(),
        heredocs: Vec::new(),
    }
}

/// Find the heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) among the words of a line.
pub fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    let lx = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::default()
    };
    let Ok(words) = lx.process_words(line, &NoVars) else {
        return Vec::new();
    };
    words.iter().filter_map(|w| parse_heredoc(w)).collect()
}

/// Parse one word as a heredoc start, docker's `^(\d*)<<(-?)([^<]*)$`.
pub fn parse_heredoc(word: &str) -> Option<Heredoc> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let after = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = if digits == 0 {
        None
    } else {
        word[..digits].parse().ok()
    };
    let lx = Lexer {
        skip_unset: true,
        ..Lexer::default()
    };
    let words = lx.process_words(rest, &NoVars).ok()?;
    if words.len() != 1 {
        return None;
    }
    let raw = Lexer {
        raw_quotes: true,
        ..lx
    }
    .process_words(rest, &NoVars)
    .ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw.len() == 1 && quotes(&words[0]) == quotes(&raw[0]);
    Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp,
        fd,
    })
}

/// Split leading `--flag[=value]` words off an argument string, as docker's
/// `extractBuilderFlags`: quotes in flag words are removed, `--` ends flags.
pub fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let b: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].1.is_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return ("", words);
        }
        let starts_flag = b[i].1 == '-' && b.get(i + 1).is_some_and(|c| c.1 == '-');
        if !starts_flag {
            return (&line[b[i].0..], words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        while i < b.len() {
            let ch = b[i].1;
            match quote {
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == '\\' => {
                    i += 1;
                    if let Some(c) = b.get(i) {
                        word.push(c.1);
                    }
                }
                _ => word.push(ch),
            }
            i += 1;
        }
        if word == "--" {
            let at = b.get(i).map_or(line.len(), |c| c.0);
            return (&line[at..], words);
        }
        if blank_ok || !word.is_empty() {
            words.push(word);
        }
    }
}

/// Docker's `parseWords`: split on blanks, keeping quotes and escapes as written.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None if ch.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
            }
            None => {
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    let Some(n) = chars.next() else { continue };
                    word.push(ch);
                    word.push(n);
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    let Some(n) = chars.next() else {
                        quote = None;
                        continue;
                    };
                    word.push(ch);
                    word.push(n);
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Outcome of trying the JSON (exec) form.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonForm {
    /// A JSON array of strings.
    Array(Vec<String>),
    /// Not JSON: use the shell form.
    NotJson,
}

/// Try to read `rest` as a JSON array of strings, as docker's `parseJSON`.
pub fn parse_json(rest: &str) -> std::result::Result<JsonForm, String> {
    if !rest.starts_with('[') {
        return Ok(JsonForm::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(JsonForm::NotJson);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only"
                    .to_string(),
            ),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(JsonForm::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(src: &str) -> RawFile {
        parse_raw(src).expect(src)
    }

    #[test]
    fn directives_recorded() {
        let f = raw("# syntax=docker/dockerfile:1\n# escape=`\n#check=skip=all\nFROM x\n");
        assert_eq!(f.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(f.directives.escape, '`');
        assert_eq!(f.directives.check.as_deref(), Some("skip=all"));
        assert_eq!(f.nodes[0].line, 4);
        assert!(f.warnings[0].message.contains("ignored"));
    }

    #[test]
    fn directives_only_at_top() {
        // After a comment that is not a directive, directives are comments.
        let f = raw("# hello\n# escape=`\nFROM x\n");
        assert_eq!(f.directives.escape, '\\');
        // An unknown directive ends the header too.
        let f = raw("# unknown=1\n# escape=`\nFROM x\n");
        assert_eq!(f.directives.escape, '\\');
        // So does an empty line.
        let f = raw("\n# escape=`\nFROM x\n");
        assert_eq!(f.directives.escape, '\\');
        // Case and spaces are free.
        let f = raw("#  ESCAPE = `\nFROM x\n");
        assert_eq!(f.directives.escape, '`');
        // A directive after an instruction is a comment.
        let f = raw("FROM x\n# escape=`\n");
        assert_eq!(f.directives.escape, '\\');
    }

    #[test]
    fn directive_errors() {
        let e = parse_raw("# escape=`\n# escape=\\\nFROM x").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, ErrorKind::DuplicateDirective("escape".into()));
        let e = parse_raw("# escape=x\nFROM x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadEscape("x".into()));
    }

    #[test]
    fn empty_files() {
        for src in [
            "",
            "\n\n",
            "# just a comment\n",
            "  # indented\n\n# more\n",
            "\u{feff}",
        ] {
            let e = parse_raw(src).unwrap_err();
            assert_eq!(e.kind, ErrorKind::NoInstructions, "{src:?}");
        }
    }

    #[test]
    fn continuations() {
        let f = raw("FROM x\nRUN a \\\n  b \\\n\n  # comment\n  c\nRUN d\n");
        assert_eq!(f.nodes[1].rest, "a   b   c");
        assert_eq!((f.nodes[1].line, f.nodes[1].end_line), (2, 6));
        assert_eq!(f.nodes[2].line, 7);
        assert_eq!(f.warnings.len(), 1);
        assert_eq!(f.warnings[0].line, 2);
        // Blanks after the escape still continue the line.
        let f = raw("FROM x\nRUN a \\  \n b\n");
        assert_eq!(f.nodes[1].rest, "a  b");
        // Backtick escape.
        let f = raw("# escape=`\nFROM x\nRUN a `\n b\\\nRUN c\n");
        assert_eq!(f.nodes[1].rest, "a  b\\");
        assert_eq!(f.nodes[2].line, 5);
    }

    #[test]
    fn comments_and_crlf() {
        let f =
            raw("\u{feff}# c\r\nFROM x\r\n   # indented comment\r\nRUN echo # not a comment\r\n");
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(f.nodes[1].rest, "echo # not a comment");
        assert_eq!(f.nodes[1].line, 4);
    }

    #[test]
    fn flags_extracted() {
        assert_eq!(
            extract_flags("--from=a --chown=\"x y\" src dst"),
            ("src dst", vec!["--from=a".into(), "--chown=x y".into()])
        );
        assert_eq!(extract_flags("-- --x y"), (" --x y", vec![]));
        assert_eq!(extract_flags("--link"), ("", vec!["--link".into()]));
        assert_eq!(extract_flags("echo --x"), ("echo --x", vec![]));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"b c\" d='e f' g\\ h", '\\'),
            ["a=\"b c\"", "d='e f'", "g\\ h"]
        );
        assert_eq!(parse_words("  x  ", '\\'), ["x"]);
        assert_eq!(parse_words("a=\"\"", '\\'), ["a=\"\""]);
        assert_eq!(parse_words("\"\"", '\\'), ["\"\""]);
    }

    #[test]
    fn heredoc_words() {
        let h = parse_heredoc("<<EOF").unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.fd),
            ("EOF", true, false, None)
        );
        let h = parse_heredoc("<<-\"EOT\"").unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOT", false, true));
        let h = parse_heredoc("<<'E'OF").unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("EOF", false));
        assert_eq!(parse_heredoc("3<<X").unwrap().fd, Some(3));
        assert!(parse_heredoc("<<").is_none());
        assert!(parse_heredoc("a<<EOF").is_none());
        assert!(parse_heredoc("<<<EOF").is_none());
    }

    #[test]
    fn heredoc_bodies() {
        let f = raw("FROM x\nRUN <<EOT bash\n  echo $HOME\nEOT\nRUN <<-A cat - <<B\n\t\tone\n\tA\ntwo\nB\nCMD x\n");
        let run = &f.nodes[1];
        assert_eq!(run.heredocs[0].content, "  echo $HOME\n");
        assert_eq!((run.line, run.end_line), (2, 4));
        let two = &f.nodes[2];
        assert_eq!(two.heredocs.len(), 2);
        assert_eq!(two.heredocs[0].content, "one\n");
        assert_eq!(two.heredocs[1].content, "two\n");
        assert_eq!(f.nodes[3].line, 10);
    }

    #[test]
    fn heredoc_bodies_are_raw() {
        // Comments, blank lines, escapes and CRLF are content, not syntax.
        let f = raw("FROM x\nRUN <<EOF\n# not a comment\n\nline \\\n  EOF\r\nEOF\r\nRUN y\n");
        let doc = &f.nodes[1].heredocs[0];
        assert_eq!(doc.content, "# not a comment\n\nline \\\n  EOF\r\n");
        assert_eq!(f.nodes[2].line, 8);
    }

    #[test]
    fn heredoc_unterminated() {
        let e = parse_raw("FROM x\n\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::new(3, ErrorKind::UnterminatedHeredoc("EOF".into()))
        );
    }

    #[test]
    fn heredoc_only_for_run_copy_add() {
        let f = raw("FROM x\nCMD cat <<EOF\nRUN x\n");
        assert_eq!(f.nodes.len(), 3);
        assert!(f.nodes[1].heredocs.is_empty());
    }

    #[test]
    fn json_forms() {
        assert_eq!(
            parse_json("[\"a\", \"b c\"]"),
            Ok(JsonForm::Array(vec!["a".into(), "b c".into()]))
        );
        assert_eq!(parse_json("[a]"), Ok(JsonForm::NotJson));
        assert_eq!(parse_json("echo [a]"), Ok(JsonForm::NotJson));
        assert!(parse_json("[1, \"a\"]").is_err());
    }
}
