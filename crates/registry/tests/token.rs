//! The Bearer token flow against docker-registry configured for token auth, with a
//! small token server in the test (RS256 JWTs signed by a throwaway key via the
//! openssl command).

mod common;

use base64::Engine;
use berth_content::NoProgress;
use berth_image::Images;
use berth_registry::{Client, Credentials, Options};
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct TokenServer {
    realm: String,
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    assert!(
        Path::new("/usr/bin/openssl").exists(),
        "the token test needs the openssl package"
    );
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl TokenServer {
    /// Issues tokens for any scope to `berth`/`berth-test-pass` (basic auth); 401 otherwise.
    fn start(dir: &Path) -> Self {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "1",
                "-subj",
                "/CN=berth-test-token",
            ],
            dir,
        );
        let der = openssl(&["x509", "-in", "cert.pem", "-outform", "DER"], dir);
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let realm = format!("http://{}/token", l.local_addr().expect("addr"));
        let dir = dir.to_path_buf();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
        );
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut r = BufReader::new(c.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let mut authorized = false;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if h.to_ascii_lowercase().starts_with("authorization:")
                        && h[14..].trim() == good
                    {
                        authorized = true;
                    }
                }
                let scope = line
                    .split(['?', '&', ' '])
                    .find_map(|p| p.strip_prefix("scope="))
                    .unwrap_or("")
                    .replace("%3A", ":")
                    .replace("%2C", ",")
                    .replace("%2F", "/");
                if !authorized {
                    let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let jwt = sign(&dir, &x5c, &scope);
                let body = format!("{{\"token\":\"{jwt}\"}}");
                let _ = c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
            }
        });
        Self { realm }
    }
}

fn sign(dir: &Path, x5c: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let access: Vec<serde_json::Value> = scope
        .split(' ')
        .filter_map(|s| {
            let mut p = s.splitn(3, ':');
            let (t, n, a) = (p.next()?, p.next()?, p.next()?);
            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({"iss": "berth-test-issuer", "sub": USER, "aud": "berth-test-registry",
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{}", scope.len()), "access": access});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let tmp = tempfile::NamedTempFile::new_in(dir).expect("tmp");
    std::fs::write(tmp.path(), &input).expect("write");
    let sig = openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            "key.pem",
            tmp.path().to_str().expect("utf8"),
        ],
        dir,
    );
    format!("{input}.{}", b64url(&sig))
}

#[test]
fn bearer_token_flow_with_login() {
    let root = data_root();
    let tokdir = tempfile::Builder::new()
        .prefix("berth-test-token-")
        .tempdir()
        .expect("tempdir");
    let ts = TokenServer::start(tokdir.path());
    let cert = tokdir.path().join("cert.pem");
    let reg = Registry::start_with(false, |_| {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
            ts.realm,
            cert.display()
        )
    });
    let images = Images::open(root.path()).expect("open");
    let name = format!("{}/berth-test/tok:1", reg.host);
    images
        .import(&rootfs(1 << 14, 9)[..], Some(&name), &[], "")
        .expect("import");
    let creds = Credentials::new(root.path().join("auth.json"));
    let client = || {
        Client::new(Options {
            insecure: vec![],
            credentials: creds.clone(),
            parallel: 4,
        })
    };
    let e = client()
        .push(&images, &name, &NoProgress)
        .expect_err("push without login");
    assert!(
        e.to_string().contains(&format!("berth login {}", reg.host)),
        "{e}"
    );
    assert!(client().check_login(&reg.host, USER, "nope").is_err());
    client()
        .check_login(&reg.host, USER, PASS)
        .expect("login through the token service");
    creds.set(&reg.host, USER, PASS).expect("store");
    let (digest, _) = client()
        .push(&images, &name, &NoProgress)
        .expect("push with a bearer token");
    images.remove(&name, true).expect("remove");
    assert_eq!(
        client()
            .pull(&images, &name, &NoProgress)
            .expect("pull with a bearer token")
            .digest,
        digest
    );
}
