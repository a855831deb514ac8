//! The HTTP side: URLs, the auth challenge/retry loop, error mapping.

use crate::auth::{basic, parse_challenge, Credentials};
use crate::{Error, Result};
use berth_image::Reference;
use std::collections::HashMap;
use std::sync::Mutex;
use ureq::http::Response;
use ureq::Body;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registries (`host:port`) reached over plain HTTP; loopback ones always are.
    pub insecure: Vec<String>,
    /// Where `berth login` keeps credentials.
    pub credentials: Credentials,
    /// Parallel layer transfers.
    pub parallel: usize,
}

impl Default for Options {
    fn default() -> Self {
        let insecure = std::env::var("BERTH_INSECURE_REGISTRIES")
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            insecure,
            credentials: Credentials::new(Credentials::default_path()),
            parallel: 4,
        }
    }
}

/// Builds and sends one request, given the Authorization header to use.
pub(crate) type Build<'a> =
    &'a dyn Fn(Option<&str>) -> std::result::Result<Response<Body>, ureq::Error>;

/// A registry client. Cheap to share between threads.
pub struct Client {
    pub(crate) agent: ureq::Agent,
    pub(crate) opts: Options,
    tokens: Mutex<HashMap<String, String>>,
}

/// True for `localhost`, `127.x.x.x` and `[::1]`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let h = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    h == "localhost"
        || h == "::1"
        || h.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// A client with `opts`.
    pub fn new(opts: Options) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .user_agent("berth/0.1")
            .max_idle_connections_per_host(16)
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            opts,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn cached_auth(&self, key: &str) -> Option<String> {
        self.tokens.lock().ok().and_then(|t| t.get(key).cloned())
    }

    /// `https://host` or, for loopback and insecure registries, `http://host`.
    pub fn base_url(&self, domain: &str) -> String {
        let host = if domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            domain
        };
        let scheme = if is_loopback(host) || self.opts.insecure.iter().any(|i| i == host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// `<base>/v2/<repo>/<rest>`.
    pub(crate) fn url(&self, r: &Reference, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base_url(&r.domain), r.path)
    }

    /// Sends a request built by `build` (given the Authorization header, if any),
    /// answering an auth challenge once. `actions` is `pull` or `pull,push`.
    pub(crate) fn send(
        &self,
        r: &Reference,
        actions: &str,
        url: &str,
        build: Build<'_>,
    ) -> Result<Response<Body>> {
        let key = format!("{}/{}:{actions}", r.domain, r.path);
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let resp = build(cached.as_deref()).map_err(|e| Error::Http {
            url: url.to_string(),
            source: e,
        })?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge);
        let creds = self.opts.credentials.get(&r.domain)?;
        let header = match challenge {
            Some(c) if c.scheme == "bearer" => self.token(r, actions, &c.params, creds.as_ref())?,
            Some(c) if c.scheme == "basic" => match &creds {
                Some((u, p)) => basic(u, p),
                None => {
                    return Err(Error::Unauthorized {
                        host: r.domain.clone(),
                        had_credentials: false,
                    })
                }
            },
            _ => {
                return Err(Error::Unauthorized {
                    host: r.domain.clone(),
                    had_credentials: creds.is_some(),
                })
            }
        };
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(key, header.clone());
        }
        let resp = build(Some(&header)).map_err(|e| Error::Http {
            url: url.to_string(),
            source: e,
        })?;
        if resp.status() == 401 {
            return Err(Error::Unauthorized {
                host: r.domain.clone(),
                had_credentials: creds.is_some(),
            });
        }
        Ok(resp)
    }

    fn token(
        &self,
        r: &Reference,
        actions: &str,
        params: &std::collections::BTreeMap<String, String>,
        creds: Option<&(String, String)>,
    ) -> Result<String> {
        let realm = params.get("realm").ok_or_else(|| {
            Error::Invalid(format!(
                "registry {} sent a bearer challenge without a realm",
                r.domain
            ))
        })?;
        let mut req = self
            .agent
            .get(realm.as_str())
            .query("scope", format!("repository:{}:{actions}", r.path));
        if let Some(s) = params.get("service") {
            req = req.query("service", s);
        }
        if let Some((u, p)) = creds {
            req = req.header("Authorization", basic(u, p));
        }
        let mut resp = req.call().map_err(|e| Error::Http {
            url: realm.clone(),
            source: e,
        })?;
        if resp.status() == 401 || resp.status() == 403 {
            return Err(Error::Unauthorized {
                host: r.domain.clone(),
                had_credentials: creds.is_some(),
            });
        }
        if !resp.status().is_success() {
            return Err(status_error(realm, &mut resp));
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| Error::Http {
                url: realm.clone(),
                source: e,
            })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("token service {realm} sent invalid JSON: {e}")))?;
        let tok = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str());
        let tok = tok.ok_or_else(|| {
            Error::Invalid(format!("token service {realm} answered without a token"))
        })?;
        Ok(format!("Bearer {tok}"))
    }

    /// Checks that `host` accepts the stored (or given) credentials: `GET /v2/`.
    pub fn check_login(&self, host: &str, user: &str, password: &str) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(host));
        let mut resp = self.agent.get(&url).call().map_err(|e| Error::Http {
            url: url.clone(),
            source: e,
        })?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != 401 {
            return Err(status_error(&url, &mut resp));
        }
        let c = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge);
        let creds = (user.to_string(), password.to_string());
        let header = match c {
            Some(c) if c.scheme == "bearer" => {
                let probe = Reference {
                    domain: host.to_string(),
                    path: "berth/login-probe".into(),
                    tag: None,
                    digest: None,
                };
                self.token(&probe, "pull", &c.params, Some(&creds))?
            }
            _ => basic(user, password),
        };
        let resp = self
            .agent
            .get(&url)
            .header("Authorization", &header)
            .call()
            .map_err(|e| Error::Http {
                url: url.clone(),
                source: e,
            })?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(Error::Unauthorized {
                host: host.to_string(),
                had_credentials: true,
            }),
        }
    }
}

/// Adds the Authorization header when there is one.
pub(crate) fn with_auth<B>(
    req: ureq::RequestBuilder<B>,
    auth: Option<&str>,
) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

/// The body of a reply that is a small document (a manifest, a tag list): at most
/// 8 MiB.
pub(crate) fn small_body(url: &str, resp: &mut Response<Body>) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(8 << 20)
        .read_to_vec()
        .map_err(|e| Error::Http {
            url: url.to_string(),
            source: e,
        })
}

/// Turns a non-success response into an error carrying the registry's message.
pub(crate) fn status_error(url: &str, resp: &mut Response<Body>) -> Error {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let msg = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Error::Status {
        url: url.to_string(),
        status,
        message: msg,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn https_unless_loopback_or_insecure() {
        let o = Options {
            insecure: vec!["reg.lan:5000".into()],
            ..Options::default()
        };
        let c = Client::new(o);
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(c.base_url("quay.io"), "https://quay.io");
    }
}
