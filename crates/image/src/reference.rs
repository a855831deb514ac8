//! Image references, normalized the way docker does:
//! `busybox` → `docker.io/library/busybox:latest`.

use std::fmt;

/// Errors from parsing a reference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not follow the grammar.
    #[error("invalid reference {input:?}: {why}")]
    Invalid {
        /// What was given.
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// The default registry.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalized image reference: registry, repository path, tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub path: String,
    /// Tag, `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Digest `sha256:…` when pinned.
    pub digest: Option<String>,
}

/// Whether `name` as typed gives a tag or a digest (`repo:tag`, `repo@sha256:…`)
/// rather than a bare repository (a registry's `host:port/` is not a tag): docker's
/// test for "every tag" in pull and push.
pub fn names_tag(name: &str) -> bool {
    name.contains('@')
        || name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
}

fn invalid(input: &str, why: &'static str) -> Error {
    Error::Invalid {
        input: input.to_string(),
        why,
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
        && b.iter()
            .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(&x))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.starts_with('_'))
        && t.bytes()
            .all(|x| x.is_ascii_alphanumeric() || b"._-".contains(&x))
}

impl Reference {
    /// Parses and normalizes `s`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() || s.len() > 4096 {
            return Err(invalid(s, "empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                berth_content::Digest::parse(d)
                    .map_err(|_| invalid(s, "the digest must be sha256:<64 hex digits>"))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(invalid(
                    s,
                    "tags are up to 128 letters, digits, '.', '_' or '-'",
                ));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((d, p)) if d.contains('.') || d.contains(':') || d == "localhost" => {
                (d.to_string(), p.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.split('/').any(|c| !valid_component(c)) {
            return Err(invalid(
                s,
                "repository names are lowercase letters, digits and separators '.', '_', '-', '/'",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short name docker prints: `busybox`, `user/app`, `127.0.0.1:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The same reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The familiar form: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s = format!("{s}:{t}");
        }
        if let Some(d) = &self.digest {
            s = format!("{s}@{d}");
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_tag_tells_a_tag_or_digest_from_a_bare_repository() {
        for (name, tagged) in [
            ("busybox", false),
            ("busybox:1", true),
            ("127.0.0.1:5000/x", false),
            ("127.0.0.1:5000/x:1", true),
            ("x@sha256:0123", true),
        ] {
            assert_eq!(names_tag(name), tagged, "{name}");
        }
    }

    #[test]
    fn docker_normalization() {
        let d = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1"),
            ("quay.io/x/y", "quay.io/x/y:latest"),
        ];
        for (i, want) in cases {
            assert_eq!(Reference::parse(i).unwrap().to_string(), want, "{i}");
        }
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.familiar(), format!("busybox:1@{d}"));
        assert_eq!(
            Reference::parse("127.0.0.1:5000/app").unwrap().familiar(),
            "127.0.0.1:5000/app:latest"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:12",
            "a//b",
            "-a",
            "busybox:bad tag",
        ] {
            assert!(Reference::parse(s).is_err(), "{s}");
        }
    }
}
