//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for a container,
//! as pure functions of the container's settings.

use std::net::IpAddr;

/// What the name files of one container depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameConfig {
    /// `--hostname` (docker defaults it to the short container id).
    pub hostname: String,
    /// `--domainname`, if any.
    pub domainname: Option<String>,
    /// The container's own addresses (first one carries hostname and aliases).
    pub addresses: Vec<IpAddr>,
    /// `--network-alias` values and the container name.
    pub aliases: Vec<String>,
    /// `--add-host name:ip` values.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// `--dns`; empty means "from the host" (or the embedded resolver).
    pub dns: Vec<IpAddr>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
}

/// `/etc/hostname`.
pub fn hostname_file(c: &NameConfig) -> String {
    format!("{}\n", c.hostname)
}

/// `/etc/hosts`: loopback and IPv6 entries as docker writes them, extra
/// hosts, then the container's own address with its names.
pub fn hosts_file(c: &NameConfig) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in &c.extra_hosts {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some(ip) = c.addresses.first() {
        let mut names = Vec::new();
        if let Some(d) = c.domainname.as_deref().filter(|d| !d.is_empty()) {
            names.push(format!("{}.{d}", c.hostname));
        }
        names.push(c.hostname.clone());
        for a in &c.aliases {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    s
}

/// `/etc/resolv.conf`. `host` is the host's resolv.conf; `embedded` is the
/// embedded resolver's address on user networks. `--dns` wins over both;
/// the embedded resolver wins over the host's servers. Loopback servers of
/// the host (systemd-resolved's 127.0.0.53) are unreachable from a container
/// and left out; when none is left the file says so in a comment.
pub fn resolv_conf(c: &NameConfig, host: &str, embedded: Option<IpAddr>) -> String {
    let (host_ns, host_search, host_opts) = parse_resolv(host);
    let servers: Vec<String> = if !c.dns.is_empty() {
        c.dns.iter().map(ToString::to_string).collect()
    } else if let Some(e) = embedded {
        vec![e.to_string()]
    } else {
        host_ns
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .map(|ip| ip.to_string())
            .collect()
    };
    let search = if c.dns_search.is_empty() {
        host_search
    } else {
        c.dns_search.clone()
    };
    let opts = if c.dns_options.is_empty() {
        host_opts
    } else {
        c.dns_options.clone()
    };
    let mut s = String::new();
    if servers.is_empty() {
        s.push_str("# no usable nameserver: the host's are on loopback; pass --dns\n");
    }
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() && search != ["."] {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !opts.is_empty() {
        s.push_str(&format!("options {}\n", opts.join(" ")));
    }
    s
}

/// The nameservers, search domains and options of a resolv.conf.
pub fn parse_resolv(text: &str) -> (Vec<IpAddr>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => ns.extend(w.next().and_then(|a| a.parse::<IpAddr>().ok())),
            Some("search") | Some("domain") => search = w.map(String::from).collect(),
            Some("options") => opts.extend(w.map(String::from)),
            _ => {}
        }
    }
    (ns, search, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NameConfig {
        NameConfig {
            hostname: "web".into(),
            addresses: vec!["10.88.0.2".parse().unwrap()],
            aliases: vec!["web".into(), "api".into()],
            extra_hosts: vec![("db.local".into(), "192.0.2.9".parse().unwrap())],
            ..Default::default()
        }
    }

    #[test]
    fn hosts_and_hostname() {
        let h = hosts_file(&cfg());
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("192.0.2.9\tdb.local\n"));
        assert!(h.ends_with("10.88.0.2\tweb api\n"));
        let d = NameConfig {
            domainname: Some("example.test".into()),
            ..cfg()
        };
        assert!(hosts_file(&d).ends_with("10.88.0.2\tweb.example.test web api\n"));
        assert_eq!(hostname_file(&cfg()), "web\n");
        let none = NameConfig {
            addresses: vec![],
            ..cfg()
        };
        assert!(!hosts_file(&none).contains("web"));
    }

    #[test]
    fn resolv() {
        let host =
            "# x\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.test\noptions edns0\n";
        assert_eq!(
            resolv_conf(&cfg(), host, None),
            "nameserver 192.0.2.53\nsearch corp.test\noptions edns0\n"
        );
        let emb = resolv_conf(&cfg(), host, Some("10.89.0.1".parse().unwrap()));
        assert!(emb.starts_with("nameserver 10.89.0.1\n"));
        let c = NameConfig {
            dns: vec!["192.0.2.1".parse().unwrap()],
            dns_search: vec!["a.test".into(), "b.test".into()],
            dns_options: vec!["ndots:2".into()],
            ..cfg()
        };
        assert_eq!(
            resolv_conf(&c, host, None),
            "nameserver 192.0.2.1\nsearch a.test b.test\noptions ndots:2\n"
        );
        assert!(resolv_conf(&cfg(), "nameserver 127.0.0.53\n", None).starts_with("# no usable"));
    }
}
