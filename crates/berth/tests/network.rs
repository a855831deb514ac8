//! Networking end to end: berth's daemon with real bridges, veths, network namespaces,
//! nftables and its embedded DNS, driven by `berth network …`/`berth port` and by the
//! real docker CLI. Traffic goes only to loopback, to berth's own bridge addresses and
//! into network namespaces these tests create (the "outside" of the NAT tests is one).
//!
//! Needs root, busybox-static, iproute2, nftables and the docker CLI.

use berth_testkit::{eventually, stderr, stdout, Berth};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const IMAGE: &str = "netbox:1.0";

fn berth(prefix: &str) -> Berth {
    let b = Berth::with_busybox(env!("CARGO_BIN_EXE_berth"), prefix, IMAGE);
    b.ok(&["network", "ls"]); // starts the daemon
    b
}

/// The docker CLI against this berth's daemon.
fn docker(b: &Berth, args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", b.socket().display()))
        .env("DOCKER_CONFIG", b.root.path().join("docker-config"))
        .output()
        .expect("run docker: install the docker CLI (scripts/setup.sh does)")
}

fn docker_ok(b: &Berth, args: &[&str]) -> String {
    let o = docker(b, args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A detached container (`berth run -d`, through the daemon); its id.
fn run_d(b: &Berth, args: &[&str]) -> String {
    let mut v = vec!["run", "-d"];
    v.extend_from_slice(args);
    b.ok(&v).trim().to_string()
}

/// A foreground container (`berth run --rm`): (exit code, stdout).
fn run_fg(b: &Berth, args: &[&str]) -> (i32, String) {
    let mut v = vec!["run", "--rm"];
    v.extend_from_slice(args);
    let o = b.run(&v);
    (o.status.code().unwrap_or(-1), stdout(&o))
}

fn inspect(b: &Berth, what: &str, format: &str) -> String {
    b.ok(&["container", "inspect", "-f", format, what])
        .trim()
        .to_string()
}

/// `berth network inspect NET` as JSON.
fn net_json(b: &Berth, net: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["network", "inspect", net])).expect("inspect JSON");
    v[0].clone()
}

fn bridge_of(b: &Berth, net: &str) -> String {
    net_json(b, net)["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("bridge name")
        .to_string()
}

fn gateway_of(b: &Berth, net: &str) -> String {
    net_json(b, net)["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("gateway")
        .to_string()
}

/// GET `path` from `addr` over HTTP/1.0; the body.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    if !out.starts_with("HTTP/1.") || !out.contains(" 200 ") {
        return None;
    }
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn hostname_of(b: &Berth, c: &str) -> String {
    inspect(b, c, "{{.Id}}")[..12].to_string()
}

/// busybox httpd serving the container's /etc (so /hostname names who answered).
fn web(b: &Berth, extra: &[&str]) -> String {
    let mut v: Vec<&str> = extra.to_vec();
    v.extend_from_slice(&[IMAGE, "httpd", "-f", "-p", "80", "-h", "/etc"]);
    run_d(b, &v)
}

/// What must be gone once every container and user network is: veths on our
/// bridges, user bridges, their rules, leases and DNS responders.
fn assert_no_network_leaks(b: &Berth, user_bridges: &[String], user_gateways: &[String]) {
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let links = stdout(&links);
    for br in user_bridges {
        assert!(
            !links.contains(&format!(": {br}:")),
            "bridge {br} leaked:\n{links}"
        );
    }
    let default_bridge = bridge_of(b, "bridge");
    eventually("veths of removed containers to go", || {
        let o = Command::new("ip")
            .args(["-o", "link", "show", "master", &default_bridge])
            .output()
            .expect("ip link");
        stdout(&o).trim().is_empty()
    });
    let leases =
        std::fs::read_to_string(b.data_root().join("network/leases.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&leases).unwrap_or_default();
    for (net, l) in v.as_object().into_iter().flatten() {
        assert!(
            l["allocations"].as_object().is_none_or(|a| a.is_empty()),
            "leases of network {net} leaked: {leases}"
        );
    }
    let udp = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    for gw in user_gateways {
        let ip: Ipv4Addr = gw.parse().expect("gateway");
        let hex = format!("{:08X}:0035", u32::from_le_bytes(ip.octets()));
        assert!(!udp.contains(&hex), "DNS responder on {gw} leaked");
    }
    let tables = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    for br in user_bridges {
        assert!(
            !stdout(&tables).contains(br.as_str()),
            "rules of {br} leaked"
        );
    }
}

/// After the daemon's clean stop with nothing running: its default bridge and table
/// are gone too.
fn assert_daemon_stop_is_clean(b: &Berth) {
    let bridge = bridge_of(b, "bridge");
    b.stop_daemon();
    let links = stdout(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip"),
    );
    assert!(
        !links.contains(&format!(": {bridge}:")),
        "default bridge {bridge} left after the daemon stopped"
    );
    let tables = stdout(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .expect("nft"),
    );
    let table = format!("berth_{}", &bridge["berth".len()..]);
    assert!(
        !tables.contains(&table),
        "nft table {table} left after the daemon stopped: {tables}"
    );
}

#[test]
fn user_network_names_aliases_and_isolation() {
    let b = berth("net-dns-");
    b.ok(&["network", "create", "front"]);
    docker_ok(&b, &["network", "create", "back"]);
    let ls = b.ok(&["network", "ls"]);
    assert!(
        ls.contains("front") && ls.contains("back") && ls.contains("bridge"),
        "{ls}"
    );
    assert!(docker_ok(&b, &["network", "ls"]).contains("front"));
    let w = web(
        &b,
        &[
            "--name",
            "w1",
            "--network",
            "front",
            "--network-alias",
            "api",
        ],
    );
    let host = hostname_of(&b, &w);
    // by name and by alias, from a container on the same network
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "front",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://w1/hostname && break; sleep 0.3; done; wget -qO- http://api/hostname",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("{host}\n{host}\n"));
    // the other network reaches neither the name nor the address
    let ip = inspect(&b, "w1", "{{.NetworkSettings.Networks.front.IPAddress}}");
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "back",
            IMAGE,
            "sh",
            "-c",
            &format!("nslookup w1 || echo no-name; timeout 3 wget -qO- http://{ip}/hostname || echo no-route"),
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("no-name") && out.contains("no-route"), "{out}");
    // the default bridge, as docker's, resolves no container names
    let (_, out) = run_fg(
        &b,
        &[
            IMAGE,
            "sh",
            "-c",
            "nslookup w1 >/dev/null 2>&1 || echo no-name",
        ],
    );
    assert!(out.contains("no-name"), "{out}");
    // inspect shows the container on the network
    let conts = net_json(&b, "front")["Containers"].to_string();
    assert!(
        conts.contains(&w) && conts.contains(&format!("{ip}/")),
        "{conts}"
    );
    let bridges: Vec<String> = ["front", "back"].iter().map(|n| bridge_of(&b, n)).collect();
    let gateways: Vec<String> = ["front", "back"]
        .iter()
        .map(|n| gateway_of(&b, n))
        .collect();
    // a network in use cannot go
    let o = b.run(&["network", "rm", "front"]);
    assert!(
        !o.status.success() && stderr(&o).contains("active endpoints"),
        "{}",
        stderr(&o)
    );
    docker_ok(&b, &["rm", "-f", "w1"]);
    b.ok(&["network", "rm", "front"]);
    docker_ok(&b, &["network", "rm", "back"]);
    assert_no_network_leaks(&b, &bridges, &gateways);
    assert_daemon_stop_is_clean(&b);
}

/// An "outside" host: a network namespace linked to ours by a veth, on a /30 that no
/// route of the host uses, serving HTTP. Removed on drop.
struct Outside {
    ns: String,
    host_if: String,
    server: Option<std::process::Child>,
}

impl Outside {
    fn new(tag: &str, dir: &Path) -> Outside {
        let ns = format!("berthtest-out-{tag}");
        let host_if = format!("bto-{tag}");
        let sh = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        sh(&["netns", "add", &ns]);
        let mut o = Outside {
            ns: ns.clone(),
            host_if: host_if.clone(),
            server: None,
        };
        sh(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        sh(&["addr", "add", "10.233.99.1/30", "dev", &host_if]);
        sh(&["link", "set", &host_if, "up"]);
        sh(&["-n", &ns, "addr", "add", "10.233.99.2/30", "dev", "eth0"]);
        sh(&["-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["-n", &ns, "link", "set", "lo", "up"]);
        let www = dir.join("outside-www");
        std::fs::create_dir_all(&www).expect("mkdir");
        std::fs::write(www.join("index.html"), "outside\n").expect("write");
        o.server = Some(
            Command::new("ip")
                .args([
                    "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8000", "-h",
                ])
                .arg(&www)
                .spawn()
                .expect("httpd"),
        );
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn outbound_nat_and_internal_networks() {
    let b = berth("net-nat-");
    let outside = Outside::new("nat", b.root.path());
    b.ok(&["network", "create", "--internal", "sealed"]);
    // the outside has no route back to container subnets: an answer proves masquerade
    let fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -qO- http://10.233.99.2:8000/ && exit 0; sleep 0.3; done; exit 1";
    let (code, out) = run_fg(&b, &[IMAGE, "sh", "-c", fetch]);
    assert_eq!((code, out.as_str()), (0, "outside\n"));
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "sealed",
            IMAGE,
            "sh",
            "-c",
            "ip route; timeout 3 wget -qO- http://10.233.99.2:8000/ || echo no-way-out",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        !out.contains("default"),
        "internal network got a default route: {out}"
    );
    assert!(out.contains("no-way-out"), "{out}");
    drop(outside);
    b.ok(&["network", "rm", "sealed"]);
}

/// A UDP echo server bound inside the network namespace of process `pid`.
fn udp_echo_in(pid: &str, port: u16) {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("netns");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
        tx.send(()).expect("ready");
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from);
        }
    });
    rx.recv().expect("udp echo ready");
}

fn udp_ask(addr: SocketAddr) -> Option<String> {
    // unbound address: a socket bound to 127.0.0.1 cannot send to the bridge address
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.send_to(b"hi", addr).ok()?;
    let mut buf = [0u8; 64];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn published_ports_tcp_udp_and_publish_all() {
    let b = berth("net-ports-");
    let (tcp, udp) = (free_port(), free_port());
    let w = web(
        &b,
        &[
            "--name",
            "pub",
            "-p",
            &format!("{tcp}:80"),
            "-p",
            &format!("{udp}:7/udp"),
            "--expose",
            "8080",
            "-P",
        ],
    );
    let host = hostname_of(&b, &w);
    let gw: Ipv4Addr = gateway_of(&b, "bridge").parse().expect("gateway");
    // loopback (userland proxy) and the bridge-facing host address (DNAT)
    for ip in [Ipv4Addr::LOCALHOST, gw] {
        let addr = SocketAddr::from((ip, tcp));
        let mut got = None;
        eventually(&format!("http on {addr}"), || {
            got = http_get(addr, "/hostname");
            got.is_some()
        });
        assert_eq!(got.as_deref(), Some(format!("{host}\n").as_str()));
    }
    // UDP, through the proxy and through DNAT
    let pid = inspect(&b, "pub", "{{.State.Pid}}");
    udp_echo_in(&pid, 7);

    for ip in [Ipv4Addr::LOCALHOST, gw] {
        let mut got = None;
        eventually("udp echo", || {
            got = udp_ask(SocketAddr::from((ip, udp)));
            got.is_some()
        });
        assert_eq!(got.as_deref(), Some("echo:hi"));
    }
    // -P picked a free port for the exposed 8080, reported by `berth port`
    let p = b.ok(&["port", "pub", "8080"]);
    let picked: u16 = p
        .trim()
        .rsplit(':')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("berth port printed {p:?}"));
    assert_ne!(picked, 0);
    let all = b.ok(&["port", "pub"]);
    assert!(all.contains(&format!("80/tcp -> 0.0.0.0:{tcp}")), "{all}");
    assert!(all.contains(&format!("7/udp -> 0.0.0.0:{udp}")), "{all}");
    assert!(docker_ok(&b, &["port", "pub"]).contains(&format!(":{picked}")));
    // a taken port is refused with a clear message
    let o = docker(
        &b,
        &[
            "run",
            "-d",
            "-p",
            &format!("127.0.0.1:{tcp}:80"),
            IMAGE,
            "sleep",
            "1",
        ],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("port is taken"),
        "{}",
        stderr(&o)
    );
    // stopped: the ports are free again
    docker_ok(&b, &["stop", "-t", "1", "pub"]);
    eventually("the published port to close", || {
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], tcp))).is_err()
    });
    docker_ok(&b, &["rm", "-f", "pub"]);
    let rules = stdout(
        &Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .expect("nft"),
    );
    assert!(
        !rules.contains(&format!("dport {tcp} ")),
        "port rule leaked"
    );
}

#[test]
fn none_and_container_network_modes() {
    let b = berth("net-modes-");
    let (code, out) = run_fg(&b, &["--network", "none", IMAGE, "ip", "-o", "link"]);
    assert_eq!(code, 0);
    let links: Vec<&str> = out.lines().collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].contains(": lo:"), "{out}");
    let w = web(&b, &["--name", "stack"]);
    let host = hostname_of(&b, &w);
    let ip = inspect(&b, "stack", "{{.NetworkSettings.IPAddress}}");
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "container:stack",
            IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show eth0; for i in 1 2 3 4 5; do wget -qO- http://127.0.0.1/hostname && break; sleep 0.3; done",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("inet {ip}/")), "{out}");
    assert!(out.ends_with(&format!("{host}\n")), "{out}");
}

#[test]
fn thirty_parallel_containers_get_distinct_addresses_and_resolve() {
    let b = berth("net-par-");
    b.ok(&["network", "create", "swarm"]);
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..30)
            .map(|i| {
                let b = &b;
                s.spawn(move || {
                    run_d(
                        b,
                        &[
                            "--network",
                            "swarm",
                            "--name",
                            &format!("p{i}"),
                            IMAGE,
                            "sleep",
                            "1000",
                        ],
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut ips: Vec<String> = (0..30)
        .map(|i| {
            inspect(
                &b,
                &format!("p{i}"),
                "{{.NetworkSettings.Networks.swarm.IPAddress}}",
            )
        })
        .collect();
    let expected = ips.clone();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 30, "duplicate addresses: {expected:?}");
    let script = "for i in $(seq 0 29); do nslookup p$i | sed -n 's/^Address: //p' | tail -1 | sed \"s/^/p$i=/\"; done";
    let (code, out) = run_fg(&b, &["--network", "swarm", IMAGE, "sh", "-c", script]);
    assert_eq!(code, 0);
    for (i, ip) in expected.iter().enumerate() {
        assert!(
            out.contains(&format!("p{i}={ip}\n")),
            "p{i} should resolve to {ip}: {out}"
        );
    }
    let bridge = bridge_of(&b, "swarm");
    let gw = gateway_of(&b, "swarm");
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    b.ok(&rm);
    b.ok(&["network", "rm", "swarm"]);
    assert_no_network_leaks(&b, &[bridge], &[gw]);
}

#[test]
fn dns_forwards_to_upstream_and_honours_dns_flags() {
    let b = Berth::with_busybox(env!("CARGO_BIN_EXE_berth"), "net-fwd-", IMAGE);
    // a resolver on loopback stands in for the host's: it answers everything
    let up = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let up_addr = up.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = up.recv_from(&mut buf) {
            if let Some(q) = berth_network::dns::parse_question(&buf[..n]) {
                let a = berth_network::dns::answer(&buf[..n], &q, &[Ipv4Addr::new(10, 233, 77, 7)]);
                let _ = up.send_to(&a, from);
            }
        }
    });
    b.stop_daemon();
    std::fs::write(
        b.data_root().join("daemon.json"),
        format!(r#"{{"dns": ["{up_addr}"]}}"#),
    )
    .expect("daemon.json");
    b.ok(&["network", "create", "fwd"]);
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "fwd",
            IMAGE,
            "sh",
            "-c",
            "nslookup outside.test | sed -n 's/^Address: //p' | tail -1",
        ],
    );
    assert_eq!((code, out.trim()), (0, "10.233.77.7"));
    let (code, out) = run_fg(
        &b,
        &[
            "--dns",
            "10.233.0.53",
            "--dns-search",
            "corp.test",
            "--add-host",
            "db:10.233.1.2",
            "--hostname",
            "box",
            IMAGE,
            "sh",
            "-c",
            "cat /etc/resolv.conf /etc/hosts /etc/hostname",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("nameserver 10.233.0.53\n"), "{out}");
    assert!(out.contains("search corp.test\n"), "{out}");
    assert!(out.contains("10.233.1.2\tdb\n"), "{out}");
    assert!(out.contains("\tbox\n") && out.ends_with("box\n"), "{out}");
    b.ok(&["network", "rm", "fwd"]);
}

#[test]
fn daemon_crash_is_reconciled_on_restart() {
    let b = berth("net-crash-");
    b.ok(&[
        "network",
        "create",
        "--subnet",
        "10.233.42.0/24",
        "crashnet",
    ]);
    let port = free_port();
    let w = web(
        &b,
        &[
            "--name",
            "alive",
            "--network",
            "crashnet",
            "--ip",
            "10.233.42.42",
            "-p",
            &format!("127.0.0.1:{port}:80"),
        ],
    );
    run_d(
        &b,
        &[
            "--name",
            "doomed",
            "--network",
            "crashnet",
            IMAGE,
            "sleep",
            "1000",
        ],
    );
    let doomed_pid = inspect(&b, "doomed", "{{.State.Pid}}");
    let pid = b.daemon_pid().expect("daemon");
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    eventually("the daemon to die", || b.daemon_pid().is_none());
    // while no daemon runs, one container dies
    let _ = Command::new("kill").args(["-9", &doomed_pid]).status();
    eventually("doomed to exit", || {
        !Path::new(&format!("/proc/{doomed_pid}")).exists()
    });
    b.ok(&["network", "ls"]); // a new daemon reconciles
    assert_eq!(
        inspect(
            &b,
            "alive",
            "{{.NetworkSettings.Networks.crashnet.IPAddress}}"
        ),
        "10.233.42.42"
    );
    let host = hostname_of(&b, &w);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut got = None;
    eventually("the published port after the restart", || {
        got = http_get(addr, "/hostname");
        got.is_some()
    });
    assert_eq!(got, Some(format!("{host}\n")));
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "crashnet",
            IMAGE,
            "sh",
            "-c",
            "wget -qO- http://alive/hostname; nslookup doomed >/dev/null 2>&1 || echo doomed-gone",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out, format!("{host}\ndoomed-gone\n"));
    let bridge = bridge_of(&b, "crashnet");
    docker_ok(&b, &["rm", "-f", "alive", "doomed"]);
    b.ok(&["network", "prune", "-f"]);
    assert!(!b.ok(&["network", "ls"]).contains("crashnet"));
    assert_no_network_leaks(&b, &[bridge], &["10.233.42.1".into()]);
    assert_daemon_stop_is_clean(&b);
}

#[test]
fn bad_input_says_what_to_do() {
    let b = berth("net-bad-");
    let o = b.run(&["network", "create", "--subnet", "nonsense", "x"]);
    assert!(
        !o.status.success() && stderr(&o).contains("a.b.c.d/len"),
        "{}",
        stderr(&o)
    );
    b.ok(&["network", "create", "--subnet", "10.233.43.0/24", "one"]);
    let o = b.run(&["network", "create", "--subnet", "10.233.43.128/25", "two"]);
    assert!(
        !o.status.success() && stderr(&o).contains("overlaps"),
        "{}",
        stderr(&o)
    );
    let o = b.run(&["network", "rm", "bridge"]);
    assert!(
        !o.status.success() && stderr(&o).contains("pre-defined"),
        "{}",
        stderr(&o)
    );
    let o = docker(&b, &["run", "-d", "--network", "nosuch", IMAGE, "true"]);
    assert!(
        !o.status.success() && stderr(&o).contains("network nosuch"),
        "{}",
        stderr(&o)
    );
    // a start that fails in the network set-up (a host port taken): the supervisor,
    // spawned while the network was being prepared, goes with it
    let held = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a port");
    let port = held.local_addr().expect("port").port();
    let o = docker(
        &b,
        &["run", "-d", "-p", &format!("{port}:80"), IMAGE, "true"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("already in use"),
        "{}",
        stderr(&o)
    );
    let shims = format!("{} container-shim", b.data_root().display());
    eventually("no supervisor left after the failed start", || {
        berth_testkit::processes_with(&shims).is_empty()
    });
    let o = docker(&b, &["run", "-d", "-p", "99999:80", IMAGE, "true"]);
    assert!(!o.status.success(), "{}", stderr(&o));
    b.ok(&["network", "rm", "one"]);
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let b = berth("net-conn-");
    b.ok(&["network", "create", "--subnet", "10.233.44.0/24", "left"]);
    b.ok(&["network", "create", "--subnet", "10.233.45.0/24", "right"]);
    let w = web(&b, &["--name", "multi", "--network", "left"]);
    let host = hostname_of(&b, &w);
    // already on left: refused; connect to right with an alias instead
    let o = b.run(&["network", "connect", "left", "multi"]);
    assert!(
        !o.status.success() && stderr(&o).contains("already exists"),
        "{}",
        stderr(&o)
    );
    b.ok(&[
        "network",
        "connect",
        "--alias",
        "svc",
        "--ip",
        "10.233.45.200",
        "right",
        "multi",
    ]);
    let ip = inspect(&b, "multi", "{{.NetworkSettings.Networks.right.IPAddress}}");
    assert_eq!(ip, "10.233.45.200");
    let (code, out) = run_fg(
        &b,
        &[
            "--network",
            "right",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do wget -qO- http://svc/hostname && break; sleep 0.3; done",
        ],
    );
    assert_eq!((code, out), (0, format!("{host}\n")));
    b.ok(&["network", "disconnect", "right", "multi"]);
    let (_, out) = run_fg(
        &b,
        &[
            "--network",
            "right",
            IMAGE,
            "sh",
            "-c",
            "nslookup svc >/dev/null 2>&1 || echo gone",
        ],
    );
    assert_eq!(out, "gone\n");
    let o = b.run(&["network", "disconnect", "right", "multi"]);
    assert!(
        !o.status.success() && stderr(&o).contains("not connected"),
        "{}",
        stderr(&o)
    );
    docker_ok(&b, &["rm", "-f", "multi"]);
    b.ok(&["network", "rm", "left", "right"]);
}

#[test]
fn the_docker_cli_manages_networks_and_publishes() {
    let b = berth("net-docker-");
    docker_ok(
        &b,
        &[
            "network",
            "create",
            "--subnet",
            "10.233.46.0/24",
            "--label",
            "team=a",
            "dk",
        ],
    );
    let ls = docker_ok(
        &b,
        &[
            "network",
            "ls",
            "--filter",
            "label=team=a",
            "--format",
            "{{.Name}}",
        ],
    );
    assert_eq!(ls.trim(), "dk");
    let subnet = docker_ok(
        &b,
        &[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Subnet}}",
            "dk",
        ],
    );
    assert_eq!(subnet.trim(), "10.233.46.0/24");
    let port = free_port();
    let id = docker_ok(
        &b,
        &[
            "run",
            "-d",
            "--name",
            "dweb",
            "--network",
            "dk",
            "--ip",
            "10.233.46.9",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    let host = &id.trim()[..12];
    let mut got = None;
    eventually("the published port", || {
        got = http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/hostname");
        got.is_some()
    });
    assert_eq!(got, Some(format!("{host}\n")));
    assert_eq!(
        docker_ok(&b, &["port", "dweb", "80"]).trim(),
        format!("127.0.0.1:{port}")
    );
    let ip = docker_ok(
        &b,
        &[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.dk.IPAddress}}",
            "dweb",
        ],
    );
    assert_eq!(ip.trim(), "10.233.46.9");
    let conts = docker_ok(
        &b,
        &["network", "inspect", "-f", "{{len .Containers}}", "dk"],
    );
    assert_eq!(conts.trim(), "1");
    let o = docker(&b, &["network", "rm", "dk"]);
    assert!(!o.status.success(), "a network in use was removed");
    docker_ok(&b, &["rm", "-f", "dweb"]);
    docker_ok(&b, &["network", "rm", "dk"]);
    assert!(!docker_ok(&b, &["network", "ls"]).contains("dk"));
}
