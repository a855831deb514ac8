//! Credentials (`berth login`) and the `WWW-Authenticate` challenge flow.

use base64::Engine;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The credentials file: `{"auths": {"host": {"auth": base64("user:password")}}}`,
/// like docker's `config.json`, always mode 0600.
#[derive(Debug, Clone)]
pub struct Credentials {
    path: PathBuf,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    auth: String,
}

impl Credentials {
    /// Uses `path` as the credentials file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `$BERTH_CONFIG/auth.json`, else `$HOME/.berth/auth.json`.
    pub fn default_path() -> PathBuf {
        match std::env::var_os("BERTH_CONFIG") {
            Some(d) => Path::new(&d).join("auth.json"),
            None => Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".berth/auth.json"),
        }
    }

    fn load(&self) -> Result<File> {
        match fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Credentials {
                path: self.path.clone(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(Error::Credentials {
                path: self.path.clone(),
                why: e.to_string(),
            }),
        }
    }

    fn save(&self, f: &File) -> Result<()> {
        let err = |e: std::io::Error| Error::Credentials {
            path: self.path.clone(),
            why: e.to_string(),
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        let tmp = self.path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(f).map_err(|e| Error::Credentials {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        out.write_all(&body)
            .and_then(|_| out.sync_all())
            .map_err(err)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)
    }

    /// The stored user and password for `host`.
    pub fn get(&self, host: &str) -> Result<Option<(String, String)>> {
        let f = self.load()?;
        let Some(e) = f.auths.get(host) else {
            return Ok(None);
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&e.auth)
            .map_err(|e| Error::Credentials {
                path: self.path.clone(),
                why: e.to_string(),
            })?;
        let s = String::from_utf8_lossy(&raw);
        Ok(s.split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string())))
    }

    /// Stores credentials for `host`.
    pub fn set(&self, host: &str, user: &str, password: &str) -> Result<()> {
        let mut f = self.load()?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        f.auths.insert(host.to_string(), Entry { auth });
        self.save(&f)
    }

    /// Forgets `host`; returns whether it was known.
    pub fn remove(&self, host: &str) -> Result<bool> {
        let mut f = self.load()?;
        let had = f.auths.remove(host).is_some();
        if had {
            self.save(&f)?;
        }
        Ok(had)
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lowercase).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, v) = s.split_once('=')?;
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (v[..end].trim().to_string(), &v[end..])
        };
        params.insert(k, val);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.params["realm"].as_str()),
            ("basic", "Registry Realm")
        );
    }

    #[test]
    fn credentials_are_private() {
        let t = tempfile::tempdir().unwrap();
        let c = Credentials::new(t.path().join("cfg/auth.json"));
        c.set("127.0.0.1:5000", "u", "p:w").unwrap();
        assert_eq!(
            c.get("127.0.0.1:5000").unwrap(),
            Some(("u".into(), "p:w".into()))
        );
        let mode = fs::metadata(t.path().join("cfg/auth.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(c.remove("127.0.0.1:5000").unwrap());
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), None);
    }
}
