//! Wildcard patterns: Go's `filepath.Match` (used for `COPY`/`ADD`
//! sources) and the `.dockerignore` flavour with `**`.

/// Errors of pattern compilation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Malformed pattern (unclosed `[`, trailing `\`, empty class, ...).
    #[error("syntax error in pattern {0:?}: fix the brackets or escapes")]
    BadPattern(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, GlobError>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A run of non-separator characters (`*`).
    Star,
    /// `**` before more pattern: any prefix ending in `/` (or nothing).
    DirStar,
    /// `**` at the end: anything at all.
    AnyStar,
    /// `?`: one non-separator character.
    One,
    /// `[...]`: a class of ranges, possibly negated.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// A literal character.
    Lit(char),
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Compile a pattern with Go `filepath.Match` syntax (no `**`).
    pub fn new(pattern: &str) -> Result<Self> {
        Self::compile(pattern, false)
    }

    /// Compile a `.dockerignore` pattern, where `**` crosses directories.
    pub fn new_double_star(pattern: &str) -> Result<Self> {
        Self::compile(pattern, true)
    }

    fn compile(pattern: &str, double_star: bool) -> Result<Self> {
        let bad = || GlobError::BadPattern(pattern.to_string());
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if double_star && chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= chars.len() {
                        Tok::AnyStar
                    } else {
                        Tok::DirStar
                    });
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '\\' => {
                    let n = *chars.get(i).ok_or_else(bad)?;
                    i += 1;
                    toks.push(Tok::Lit(n));
                }
                '[' => {
                    let (tok, next) = parse_class(&chars, i).ok_or_else(bad)?;
                    toks.push(tok);
                    i = next;
                }
                _ => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Self { toks })
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        match_toks(&self.toks, &s)
    }

    /// Whether the pattern has any wildcard at all.
    pub fn is_literal(&self) -> bool {
        self.toks.iter().all(|t| matches!(t, Tok::Lit(_)))
    }
}

/// Go's `filepath.Match(pattern, name)`.
pub fn match_path(pattern: &str, name: &str) -> Result<bool> {
    Ok(Glob::new(pattern)?.matches(name))
}

/// Whether `s` contains characters that `filepath.Match` treats specially.
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

fn parse_class(chars: &[char], mut i: usize) -> Option<(Tok, usize)> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize) -> Option<(char, usize)> {
    match chars.get(i)? {
        '-' | ']' => None,
        '\\' => chars.get(i + 1).map(|c| (*c, i + 2)),
        c => Some((*c, i + 1)),
    }
}

/// Match with memoisation over (token, position): polynomial even for
/// patterns such as `*a*a*a*b`.
fn match_toks(p: &[Tok], s: &[char]) -> bool {
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    match_at(p, s, 0, 0, &mut memo)
}

fn match_at(p: &[Tok], s: &[char], ti: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
    let slot = ti * (s.len() + 1) + si;
    if let Some(v) = memo[slot] {
        return v;
    }
    let rest = &s[si..];
    let v = match p.get(ti) {
        None => rest.is_empty(),
        Some(Tok::Star) => {
            let max = rest.iter().position(|c| *c == '/').unwrap_or(rest.len());
            (0..=max).any(|n| match_at(p, s, ti + 1, si + n, memo))
        }
        Some(Tok::AnyStar) => true,
        Some(Tok::DirStar) => {
            match_at(p, s, ti + 1, si, memo)
                || (0..rest.len())
                    .any(|n| rest[n] == '/' && match_at(p, s, ti + 1, si + n + 1, memo))
        }
        Some(Tok::One) => {
            rest.first().is_some_and(|c| *c != '/') && match_at(p, s, ti + 1, si + 1, memo)
        }
        Some(Tok::Class { negated, ranges }) => match rest.first() {
            Some(c) if *c != '/' => {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated && match_at(p, s, ti + 1, si + 1, memo)
            }
            _ => false,
        },
        Some(Tok::Lit(c)) => rest.first() == Some(c) && match_at(p, s, ti + 1, si + 1, memo),
    };
    memo[slot] = Some(v);
    v
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_table() {
        // Cases from the Go documentation of filepath.Match.
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(match_path(p, s).unwrap(), *want, "{p} ~ {s}");
        }
    }

    #[test]
    fn bad_patterns() {
        for p in [
            "[]a]", "[-]", "[x-]", "[", "[^", "[^bc", "a[", "\\", "[a-b-c]",
        ] {
            assert!(Glob::new(p).is_err(), "{p}");
        }
    }

    #[test]
    fn double_star() {
        let g = |p: &str| Glob::new_double_star(p).unwrap();
        assert!(g("**/foo").matches("foo"));
        assert!(g("**/foo").matches("a/b/foo"));
        assert!(!g("**/foo").matches("a/xfoo"));
        assert!(g("foo/**").matches("foo/a/b"));
        assert!(g("**").matches("anything/at/all"));
        assert!(g("a/**/b").matches("a/b"));
        assert!(g("a/**/b").matches("a/x/y/b"));
        assert!(g("**/*.go").matches("x/y.go"));
        assert!(!g("*.go").matches("x/y.go"));
    }

    #[test]
    fn no_exponential_backtracking() {
        let g = Glob::new(&"*a".repeat(30)).unwrap();
        assert!(!g.matches(&format!("{}b", "a".repeat(60))));
        let g = Glob::new_double_star(&"**/a".repeat(20)).unwrap();
        assert!(!g.matches(&format!("{}b", "a/".repeat(40))));
    }

    #[test]
    fn clean_paths() {
        for (i, o) in [
            ("", "."),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("./a//b/", "a/b"),
            ("/", "/"),
            ("a/./b/../c", "a/c"),
            ("..", ".."),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }
}
