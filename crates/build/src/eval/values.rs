//! Values checked or parsed after expansion: platforms, ports, signals,
//! permission bits, ADD source kinds.

use serde::Serialize;

/// A platform (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub arch: String,
    /// `v7`, `v8`, ... or empty.
    pub variant: String,
}

impl Platform {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self::new(os, arch, "")),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() => Ok(Self::new(os, arch, v)),
            _ => Err(format!(
                "invalid platform {s:?}: use os/arch[/variant], as in linux/amd64"
            )),
        }
    }

    fn new(os: &str, arch: &str, variant: &str) -> Self {
        Self {
            os: os.to_ascii_lowercase(),
            arch: arch.to_ascii_lowercase(),
            variant: variant.to_string(),
        }
    }

    /// The platform this program runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            a => a,
        };
        Self::new("linux", arch, "")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}
/// Whether an ADD source is a URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Whether an ADD source is fetched rather than read from the context
/// (a URL, or a git repository such as `git@host:repo` or `https://host/repo.git#ref`).
pub fn is_url_or_git(s: &str) -> bool {
    is_url(s) || s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://")
}

/// Parse `--chmod`: octal digits up to 07777.
pub fn parse_chmod(s: &str) -> std::result::Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!(
            "--chmod={s} is invalid: use octal permission bits such as 0755"
        )),
    }
}

/// Expand an EXPOSE word (`80`, `80/udp`, `8000-8002/tcp`) into `port/proto` keys.
pub fn parse_port_spec(spec: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid proto {proto:?} in EXPOSE {spec}: use tcp, udp or sctp"
        ));
    }
    if ports.contains(':') {
        return Err(format!("EXPOSE {spec}: publishing ports belongs to `run -p`, EXPOSE takes container ports only"));
    }
    let bad = || {
        format!("invalid port {ports:?} in EXPOSE: use a number from 1 to 65535 or a range such as 8000-8010")
    };
    let num = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(ports)?, num(ports)?),
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: [&str; 33] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CLD", "CONT", "STOP", "TSTP", "TTIN",
    "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR",
];

/// Whether `s` names a Linux signal (`SIGTERM`, `term`, `15`, `SIGRTMIN+3`).
pub fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if SIGNALS.contains(&name) || name == "SYS" || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let rt = |p: &str| {
        name.strip_prefix(p)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=30).contains(&n))
    };
    rt("RTMIN+") || rt("RTMAX-")
}
