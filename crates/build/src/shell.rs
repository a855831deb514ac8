//! Shell-word lexer and variable expansion, with docker's rules.
//!
//! This mirrors what the Dockerfile front end does to the words of
//! instructions such as `ENV`, `COPY` or `WORKDIR`: it removes quotes,
//! applies escapes, expands `$v`, `${v}`, `${v:-w}`, `${v-w}`, `${v:+w}`,
//! `${v+w}`, `${v:?msg}`, `${v?msg}`, `${v#p}`, `${v##p}`, `${v%p}`,
//! `${v%%p}`, `${v/p/r}` and `${v//p/r}`, and optionally splits the result
//! into words. It never runs anything: `$(...)` and backquotes are literal.

use std::collections::{BTreeMap, HashMap};

/// Errors of the shell-word lexer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A quote or `${` was not closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(String),
    /// `${` without its `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}` and friends.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${v!x}` and other modifiers docker does not know.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${v?msg}` or `${v:?msg}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required {
        /// Variable name.
        name: String,
        /// The message given in the word, or docker's default.
        message: String,
    },
    /// A `#`, `%` or `/` pattern with a bad escape.
    #[error("invalid pattern ({0}) in substitution")]
    BadPattern(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ShellError>;

/// Where the lexer looks variables up.
pub trait Lookup {
    /// The value of `name`, or `None` when it is not set.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for [(&str, &str)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// An environment in which nothing is set.
pub struct NoVars;

impl Lookup for NoVars {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// The shell-word lexer; the fields select docker's lexing variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` by default, `` ` `` with `# escape=``.
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as they are.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character and docker's defaults.
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expand `word` as one word (spaces are kept).
    pub fn process_word(&self, word: &str, env: &(impl Lookup + ?Sized)) -> Result<String> {
        Ok(self.run(word, env)?.0)
    }

    /// Expand `word` and split the result into words, as docker does
    /// after substitution (quoted parts are never split).
    pub fn process_words(&self, word: &str, env: &(impl Lookup + ?Sized)) -> Result<Vec<String>> {
        Ok(self.run(word, env)?.1)
    }

    fn run(&self, word: &str, env: &(impl Lookup + ?Sized)) -> Result<(String, Vec<String>)> {
        let env: &dyn Lookup = &DynLookup(env);
        let mut sw = ShellWord {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            env,
        };
        let raw = self.raw_escapes;
        sw.process_stop_on(None, raw)
    }
}

struct DynLookup<'a, T: ?Sized>(&'a T);

impl<T: Lookup + ?Sized> Lookup for DynLookup<'_, T> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.lookup(name)
    }
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct ShellWord<'a> {
    lex: Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Lookup,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                    words.add_string(&v);
                }
                '\'' if !self.lex.skip_quotes => {
                    let v = self.process_single_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                '"' if !self.lex.skip_quotes => {
                    let v = self.process_double_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        let Some(esc) = self.next() else { break };
                        words.add_raw_char(esc);
                        result.push(esc);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ShellError::Unterminated(stop.to_string()));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String> {
        let mut out = String::new();
        let open = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::Unterminated("single-quote".into())),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String> {
        let mut out = String::new();
        let open = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::Unterminated("double-quote".into())),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.lex.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                ch = self.next().unwrap_or(n);
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        self.env.lookup(name).map(str::to_string)
    }

    fn process_dollar(&mut self) -> Result<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(ShellError::MissingBrace);
        };
        let mut modifier = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if ch == ':' {
                    null_is_unset = true;
                    ch = self.next().ok_or(ShellError::MissingBrace)?;
                    modifier.push(ch);
                }
                self.modifier(&name, ch, &modifier, null_is_unset)
            }
            '/' => self.replace(&name),
            _ => Err(ShellError::UnsupportedModifier(modifier)),
        }
    }

    fn word_until_brace(&mut self, raw_escapes: bool) -> Result<String> {
        match self.process_stop_on(Some('}'), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(ShellError::MissingBrace),
            Err(e) => Err(e),
        }
    }

    fn modifier(
        &mut self,
        name: &str,
        ch: char,
        modifier: &str,
        null_is_unset: bool,
    ) -> Result<String> {
        let raw = ch == '#' || ch == '%';
        let word = self.word_until_brace(raw)?;
        let value = self.get(name);
        if self.lex.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let empty = |v: &Option<String>| v.is_none() || (null_is_unset && v.as_deref() == Some(""));
        match ch {
            '-' => Ok(if empty(&value) {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty(&value) { String::new() } else { word }),
            '?' => match value {
                None => Err(required(name, word, "is not allowed to be unset")),
                Some(v) if null_is_unset && v.is_empty() => {
                    Err(required(name, word, "is not allowed to be empty"))
                }
                Some(v) => Ok(v),
            },
            '#' | '%' => {
                let value = value.unwrap_or_default();
                let (greedy, pat) = match word.strip_prefix(ch) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                let pat = Pattern::parse(&pat)?;
                Ok(if ch == '#' {
                    pat.trim_prefix(&value, greedy)
                } else {
                    pat.trim_suffix(&value, greedy)
                })
            }
            _ => Err(ShellError::UnsupportedModifier(modifier.to_string())),
        }
    }

    fn replace(&mut self, name: &str) -> Result<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => {
                return Err(ShellError::Unterminated("'/' in ${}".into()))
            }
            Err(e) => return Err(e),
        };
        let replacement = self.word_until_brace(true)?;
        let Some(value) = self.get(name) else {
            if self.lex.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let pat = Pattern::parse(&pattern)?;
        Ok(pat.replace(&value, &replacement, all))
    }
}

fn required(name: &str, word: String, default: &str) -> ShellError {
    let message = if word.is_empty() {
        default.to_string()
    } else {
        word
    };
    ShellError::Required {
        name: name.to_string(),
        message,
    }
}

/// A `${v#pattern}` pattern: `*` any string, `?` one character, `\` escapes.
#[derive(Debug)]
struct Pattern(Vec<PatTok>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum PatTok {
    Star,
    Any,
    Lit(char),
}

impl Pattern {
    fn parse(src: &str) -> Result<Self> {
        let chars: Vec<char> = src.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => toks.push(PatTok::Star),
                '?' => toks.push(PatTok::Any),
                '\\' => {
                    // `\}` and `\/` lose their escape; `\*`, `\?`, `\\` are literal.
                    match chars.get(i) {
                        Some('}' | '/') => {}
                        Some(&n @ ('*' | '?' | '\\')) => {
                            toks.push(PatTok::Lit(n));
                            i += 1;
                        }
                        _ => return Err(ShellError::BadPattern(src.to_string())),
                    }
                }
                _ => toks.push(PatTok::Lit(c)),
            }
        }
        Ok(Self(toks))
    }

    /// Whole-string match, memoised over (token, position).
    fn matches(&self, s: &[char]) -> bool {
        fn go(p: &[PatTok], s: &[char], ti: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
            let slot = ti * (s.len() + 1) + si;
            if let Some(v) = memo[slot] {
                return v;
            }
            let v = match p.get(ti) {
                None => si == s.len(),
                Some(PatTok::Star) => (si..=s.len()).any(|i| go(p, s, ti + 1, i, memo)),
                Some(PatTok::Any) => si < s.len() && go(p, s, ti + 1, si + 1, memo),
                Some(PatTok::Lit(c)) => s.get(si) == Some(c) && go(p, s, ti + 1, si + 1, memo),
            };
            memo[slot] = Some(v);
            v
        }
        let mut memo = vec![None; (self.0.len() + 1) * (s.len() + 1)];
        go(&self.0, s, 0, 0, &mut memo)
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut lens: Vec<usize> = (0..=v.len()).collect();
        if greedy {
            lens.reverse();
        }
        match lens.into_iter().find(|&n| self.matches(&v[..n])) {
            Some(n) => v[n..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut starts: Vec<usize> = (0..=v.len()).collect();
        if !greedy {
            starts.reverse();
        }
        match starts.into_iter().find(|&n| self.matches(&v[n..])) {
            Some(n) => v[..n].iter().collect(),
            None => value.to_string(),
        }
    }

    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut done = false;
        while i <= v.len() {
            let found = if done {
                None
            } else {
                (i..=v.len()).rev().find(|&e| self.matches(&v[i..e]))
            };
            match found {
                Some(end) => {
                    out.push_str(replacement);
                    if end == i {
                        // An empty match: keep the character and move on.
                        if let Some(c) = v.get(i) {
                            out.push(*c);
                        }
                        i += 1;
                    } else {
                        i = end;
                    }
                    done = !all;
                }
                None => {
                    if let Some(c) = v.get(i) {
                        out.push(*c);
                    }
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
            ("SP", "a b  c"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn word(s: &str) -> String {
        Lexer::default().process_word(s, &env()).expect(s)
    }

    #[test]
    fn simple_and_braced() {
        assert_eq!(word("$PWD"), "/home");
        assert_eq!(word("${PWD}"), "/home");
        assert_eq!(word("he$PWD/x"), "he/home/x");
        assert_eq!(word("$UNSET"), "");
        assert_eq!(word("$"), "$");
        assert_eq!(word("a$ b"), "a$ b");
        assert_eq!(word("$KOREAN"), "한국어");
    }

    #[test]
    fn modifiers() {
        assert_eq!(word("${UNSET:-def}"), "def");
        assert_eq!(word("${NULL:-def}"), "def");
        assert_eq!(word("${NULL-def}"), "");
        assert_eq!(word("${UNSET-def}"), "def");
        assert_eq!(word("${PWD:+alt}"), "alt");
        assert_eq!(word("${NULL:+alt}"), "");
        assert_eq!(word("${NULL+alt}"), "alt");
        assert_eq!(word("${UNSET+alt}"), "");
        assert_eq!(word("${UNSET:-$PWD}"), "/home");
        assert_eq!(word("${UNSET:-'a b'}"), "a b");
        assert_eq!(word("${PWD:?msg}"), "/home");
    }

    #[test]
    fn required_errors() {
        let lx = Lexer::default();
        let e = lx.process_word("${UNSET:?need it}", &env()).unwrap_err();
        assert_eq!(e.to_string(), "UNSET: need it");
        let e = lx.process_word("${NULL:?}", &env()).unwrap_err();
        assert_eq!(e.to_string(), "NULL: is not allowed to be empty");
        let e = lx.process_word("${UNSET?}", &env()).unwrap_err();
        assert_eq!(e.to_string(), "UNSET: is not allowed to be unset");
        assert_eq!(lx.process_word("${NULL?}", &env()).unwrap(), "");
    }

    #[test]
    fn syntax_errors() {
        let lx = Lexer::default();
        for (w, msg) in [
            ("${", "syntax error: missing '}'"),
            ("${}", "syntax error: bad substitution"),
            ("${:x}", "syntax error: bad substitution"),
            ("${PWD", "syntax error: missing '}'"),
            ("${PWD:-x", "syntax error: missing '}'"),
            (
                "'abc",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"abc",
                "unexpected end of statement while looking for matching double-quote",
            ),
            ("${PWD!x}", "unsupported modifier (!) in substitution"),
            ("${PWD:=x}", "unsupported modifier (:=) in substitution"),
        ] {
            assert_eq!(
                lx.process_word(w, &env()).unwrap_err().to_string(),
                msg,
                "{w}"
            );
        }
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(word("'$PWD'"), "$PWD");
        assert_eq!(word("\"$PWD\""), "/home");
        assert_eq!(word("\\$PWD"), "$PWD");
        assert_eq!(word("\"\\$PWD\""), "$PWD");
        assert_eq!(word("\"a\\b\""), "a\\b");
        assert_eq!(word("\"a\\\"b\""), "a\"b");
        assert_eq!(word("'a\\b'"), "a\\b");
        assert_eq!(word("a\\ b"), "a b");
        assert_eq!(word("abc\\"), "abc");
        assert_eq!(word("\"it's\""), "it's");
    }

    #[test]
    fn backtick_escape() {
        let lx = Lexer::new('`');
        assert_eq!(lx.process_word("`$PWD", &env()).unwrap(), "$PWD");
        assert_eq!(lx.process_word("c:\\dir", &env()).unwrap(), "c:\\dir");
        assert_eq!(lx.process_word("\"`\"\"", &env()).unwrap(), "\"");
    }

    #[test]
    fn words() {
        let lx = Lexer::default();
        assert_eq!(
            lx.process_words("a $SP 'x y'", &env()).unwrap(),
            ["a", "a", "b", "c", "x y"]
        );
        assert_eq!(lx.process_words("\"$SP\"", &env()).unwrap(), ["a b  c"]);
        assert_eq!(
            lx.process_words("  ", &env()).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(lx.process_words("a\\ b c", &env()).unwrap(), ["a b", "c"]);
    }

    #[test]
    fn patterns() {
        let e: BTreeMap<String, String> = [("F".to_string(), "dir/sub/file.tar.gz".to_string())]
            .into_iter()
            .collect();
        let lx = Lexer::default();
        let w = |s: &str| lx.process_word(s, &e).unwrap();
        assert_eq!(w("${F#*/}"), "sub/file.tar.gz");
        assert_eq!(w("${F##*/}"), "file.tar.gz");
        assert_eq!(w("${F%.*}"), "dir/sub/file.tar");
        assert_eq!(w("${F%%.*}"), "dir/sub/file");
        assert_eq!(w("${F/\\//-}"), "dir-sub/file.tar.gz");
        assert_eq!(w("${F//\\//-}"), "dir-sub-file.tar.gz");
        assert_eq!(w("${F/nomatch/x}"), "dir/sub/file.tar.gz");
        assert_eq!(w("${F#nomatch}"), "dir/sub/file.tar.gz");
    }

    #[test]
    fn skip_quotes_for_heredocs() {
        let lx = Lexer {
            skip_quotes: true,
            ..Lexer::default()
        };
        assert_eq!(
            lx.process_word("say '$PWD' \"x\"\n", &env()).unwrap(),
            "say '/home' \"x\"\n"
        );
    }

    #[test]
    fn skip_unset_and_raw() {
        let lx = Lexer {
            skip_unset: true,
            ..Lexer::default()
        };
        assert_eq!(
            lx.process_word("$X ${Y} ${Z:-d} $PWD", &env()).unwrap(),
            "$X ${Y} ${Z:-d} /home"
        );
        let raw = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            ..Lexer::default()
        };
        assert_eq!(
            raw.process_words("'a b' \"c\" d\\ e", &NoVars).unwrap(),
            ["'a b'", "\"c\"", "d\\ e"]
        );
    }
}
