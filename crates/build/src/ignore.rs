//! `.dockerignore` files with docker's rules.
//!
//! Lines starting with `#` are comments; blank lines are skipped; each
//! pattern is cleaned (`filepath.Clean`) and a leading `/` dropped; `**`
//! matches any number of directories; `!` re-includes; the last matching
//! pattern wins; a path is excluded when it or one of its parent
//! directories matches.
//!
//! Checked against docker CLI 28 on a context exercising `*.md`,
//! `!README*.md`, re-exclusion, `!logs/keep` inside an ignored `logs`,
//! `**/node_modules`, `/docs/`, `temp?`, `*/temp*` and `**/*_test.go`:
//! `COPY . /c/` gave the same file list.

use std::path::{Path, PathBuf};

use crate::glob::{clean, Glob, GlobError};

/// Errors about ignore files.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A malformed pattern.
    #[error("invalid .dockerignore pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        source: GlobError,
    },
    /// A lone `!`.
    #[error("illegal exclusion pattern \"!\" in .dockerignore: put a path after the !")]
    LoneBang,
    /// The ignore file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, IgnoreError>;

/// Read the patterns of a `.dockerignore` text (docker's `ignorefile.ReadAll`).
pub fn read_patterns(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim();
        if p.is_empty() {
            continue;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut pat = String::new();
        if !p.is_empty() {
            pat = clean(p);
            if pat.len() > 1 && pat.starts_with('/') {
                pat.remove(0);
            }
        }
        out.push(if invert { format!("!{pat}") } else { pat });
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Glob(Glob),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    exclusion: bool,
    kind: MatchType,
}

impl Pattern {
    fn new(raw: &str) -> Result<Option<Self>> {
        let mut p = raw.trim();
        if p.is_empty() {
            return Ok(None);
        }
        let exclusion = p.starts_with('!');
        if exclusion {
            p = &p[1..];
            if p.is_empty() {
                return Err(IgnoreError::LoneBang);
            }
        }
        let text = clean(p);
        let bad = |source| IgnoreError::Pattern {
            pattern: raw.to_string(),
            source,
        };
        Glob::new(&text).map_err(bad)?;
        let kind = match match_type(&text) {
            0 => MatchType::Exact,
            1 => MatchType::Prefix,
            2 => MatchType::Suffix,
            _ => MatchType::Glob(Glob::new_double_star(&text).map_err(bad)?),
        };
        Ok(Some(Self {
            text,
            exclusion,
            kind,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchType::Exact => path == self.text,
            MatchType::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            MatchType::Glob(g) => g.matches(path),
        }
    }
}

/// Docker's match-type choice: 0 exact, 1 prefix (`foo/**`), 2 suffix (`**/foo`), 3 full pattern.
fn match_type(p: &str) -> u8 {
    let chars: Vec<char> = p.chars().collect();
    let mut t = 0u8;
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                t = if i >= chars.len() && t == 0 { 1 } else { 3 };
                if start == 0 {
                    t = 2;
                }
            }
            '*' | '?' | '[' | ']' => t = 3,
            '\\' if i < chars.len() => {
                i += 1;
                t = 3;
            }
            _ => {}
        }
    }
    t
}

/// A compiled set of ignore patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Compile patterns (as returned by [`read_patterns`]).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut out = Vec::new();
        for p in patterns {
            if let Some(p) = Pattern::new(p.as_ref())? {
                out.push(p);
            }
        }
        Ok(Self { patterns: out })
    }

    /// Load the ignore file for a build: `<Dockerfile>.dockerignore` next to
    /// the Dockerfile wins over `.dockerignore` at the context root.
    pub fn for_build(context: &Path, dockerfile: Option<&Path>) -> Result<Self> {
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(context.join(".dockerignore"));
        for c in candidates {
            match std::fs::read_to_string(&c) {
                Ok(text) => {
                    tracing::debug!(file = %c.display(), "using ignore file");
                    return Self::new(&read_patterns(&text));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(IgnoreError::Read { path: c, source }),
            }
        }
        Ok(Self::default())
    }

    /// Whether there are `!` patterns (then ignored directories must still be walked).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative, `/`-separated) is ignored: the last pattern
    /// matching it or one of its parents decides.
    pub fn matches(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(&path);
            if !hit {
                hit = (1..=parents.len()).any(|n| p.matches(&parents[..n].join("/")));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::new(&read_patterns(text)).unwrap()
    }

    #[test]
    fn reading() {
        let p = read_patterns(
            "\u{feff}# comment\n  \n/abs/path\n ! keep \n./a/../b/\n**/*.log\n #not a comment\n!\n",
        );
        assert_eq!(
            p,
            ["abs/path", "!keep", "b", "**/*.log", "#not a comment", "!"]
        );
        assert!(matches!(Ignore::new(&p), Err(IgnoreError::LoneBang)));
    }

    #[test]
    fn docker_doc_examples() {
        // From the .dockerignore section of the Dockerfile reference.
        let i = ig("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(i.matches("somedir/temporary.txt"));
        assert!(i.matches("somedir/temp"));
        assert!(i.matches("somedir/subdir/temporary.txt"));
        assert!(i.matches("tempa"));
        assert!(i.matches("tempb/inner"));
        assert!(!i.matches("temporary.txt"));
        assert!(!i.matches("a/b/c/temp"));
        let i = ig("*.md\n!README.md\n");
        assert!(i.matches("CHANGES.md"));
        assert!(!i.matches("README.md"));
        let i = ig("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(i.matches("README-secret.md"));
        assert!(!i.matches("README-public.md"));
        let i = ig("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!i.matches("README-secret.md"));
    }

    #[test]
    fn double_star_and_parents() {
        let i = ig("**/*.go\n");
        assert!(i.matches("a.go") && i.matches("x/y/z.go"));
        assert!(!i.matches("a.golang"));
        let i = ig("node_modules\n");
        assert!(i.matches("node_modules/x/index.js"));
        assert!(!i.matches("src/node_modules"));
        let i = ig("**/node_modules\n");
        assert!(i.matches("src/node_modules/x"));
        let i = ig("build/**\n");
        assert!(i.matches("build/a/b"));
        // As in docker, `build/**` does not match the directory itself.
        assert!(!i.matches("build"));
        let i = ig("**\n!src\n");
        assert!(i.matches("Dockerfile"));
        assert!(!i.matches("src/main.rs"));
    }

    #[test]
    fn exceptions_inside_ignored_dirs() {
        let i = ig("dir\n!dir/keep\n");
        assert!(i.matches("dir/other"));
        assert!(!i.matches("dir/keep"));
        assert!(!i.matches("dir/keep/inner"));
        assert!(i.has_exclusions());
        assert!(!ig("x").has_exclusions());
    }

    #[test]
    fn last_match_wins_and_cleaning() {
        let i = ig("a\n!a\na\n");
        assert!(i.matches("a"));
        let i = ig("/a/./b/\n");
        assert!(i.matches("a/b/c"));
        assert!(i.matches("./a/b"));
        let i = ig("a\\*b\n");
        assert!(i.matches("a*b") && !i.matches("axb"));
        let i = ig("**foo\n");
        assert!(i.matches("xfoo"));
    }

    #[test]
    fn bad_pattern() {
        assert!(matches!(
            Ignore::new(&["[z-a"]),
            Err(IgnoreError::Pattern { .. })
        ));
    }

    #[test]
    fn dockerfile_specific_ignore_wins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::write(d.path().join("app.Dockerfile.dockerignore"), "b\n").unwrap();
        let i = Ignore::for_build(d.path(), Some(&d.path().join("app.Dockerfile"))).unwrap();
        assert!(i.matches("b") && !i.matches("a"));
        let i = Ignore::for_build(d.path(), Some(&d.path().join("Dockerfile"))).unwrap();
        assert!(i.matches("a") && !i.matches("b"));
        let i = Ignore::for_build(&d.path().join("none"), None).unwrap();
        assert!(i.is_empty());
    }
}
