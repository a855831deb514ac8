//! End-to-end tests as root: network namespaces as containers on real
//! bridges, real nftables rules, real traffic (only on loopback and inside
//! the namespaces these tests create). Each test ends with a leak check.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use berth_network::exec::System;
use berth_network::ipam::PoolSpec;
use berth_network::ports::{PortMapping, Proto};
use berth_network::{Manager, NetworkSpec};
use common::{assert_free_subnet, can_run, Env};

fn pool(s: &str) -> PoolSpec {
    assert_free_subnet(s);
    PoolSpec {
        subnet: Some(s.parse().unwrap()),
        ..Default::default()
    }
}

fn net(name: &str, bridge: &str, internal: bool) -> NetworkSpec {
    NetworkSpec {
        internal,
        ..NetworkSpec::new(name, bridge)
    }
}

#[test]
fn same_network_reaches_other_network_does_not() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("iso");
    let m = Manager::new(env.dir.path().join("state"), System, &env.table).unwrap();
    let (ba, bb) = (env.bridge(0), env.bridge(1));
    m.create_network(&net("a", &ba, false), &pool("10.231.1.0/24"))
        .unwrap();
    m.create_network(&net("b", &bb, false), &pool("10.231.2.0/24"))
        .unwrap();
    let mut ips = Vec::new();
    for (n, network) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        let ns = env.netns(n);
        let ep = m.connect(network, n, &ns, None).unwrap();
        env.veths.push(ep.host_veth.clone());
        ips.push(ep.ip);
    }
    assert_eq!(ips[0], Ipv4Addr::new(10, 231, 1, 2));
    env.httpd("a1", 80, "hello from a1");
    let url = format!("http://{}/", ips[0]);
    assert_eq!(env.wget_retry("a2", &url).as_deref(), Some("hello from a1"));
    assert_eq!(
        env.wget("b1", &url),
        None,
        "another network must not reach a1"
    );
    // b1 still reaches its own gateway: the failure is isolation, not a broken stack
    assert!(
        env.exec("b1", &["busybox", "ping", "-c1", "-W2", "10.231.2.1"])
            .0
    );

    for (n, network) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        m.disconnect(network, n).unwrap();
    }
    m.remove_network("a").unwrap();
    m.remove_network("b").unwrap();
    env.assert_no_leaks();
}

#[test]
fn internal_network_has_no_way_out() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("int");
    let m = Manager::new(env.dir.path().join("state"), System, &env.table).unwrap();
    let (bi, bo) = (env.bridge(0), env.bridge(1));
    m.create_network(&net("in", &bi, true), &pool("10.231.3.0/24"))
        .unwrap();
    m.create_network(&net("out", &bo, false), &pool("10.231.4.0/24"))
        .unwrap();
    let ns_i = env.netns("i1");
    let ep_i = m.connect("in", "i1", &ns_i, None).unwrap();
    env.veths.push(ep_i.host_veth.clone());
    let ns_o = env.netns("o1");
    let ep_o = m.connect("out", "o1", &ns_o, None).unwrap();
    env.veths.push(ep_o.host_veth.clone());
    env.httpd("o1", 80, "outside");
    env.httpd("i1", 80, "inside");
    let (_, routes) = env.exec("i1", &["ip", "route"]);
    assert!(
        !routes.contains("default"),
        "internal network got a default route: {routes}"
    );
    let url_o = format!("http://{}/", ep_o.ip);
    assert_eq!(env.wget("i1", &url_o), None);
    // even with a default route added by hand, nftables drops the way out and in
    assert!(
        env.exec(
            "i1",
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &ep_i.gateway.to_string()
            ]
        )
        .0
    );
    // both servers are up (seen from inside their own namespaces)
    assert!(env.wget_retry("o1", "http://127.0.0.1/").is_some());
    assert!(env.wget_retry("i1", "http://127.0.0.1/").is_some());
    assert_eq!(
        env.wget("i1", &url_o),
        None,
        "internal network reached another network"
    );
    assert_eq!(
        env.wget("o1", &format!("http://{}/", ep_i.ip)),
        None,
        "internal network reachable from outside"
    );

    m.disconnect("in", "i1").unwrap();
    m.disconnect("out", "o1").unwrap();
    m.remove_network("in").unwrap();
    m.remove_network("out").unwrap();
    env.assert_no_leaks();
}

fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn http_get_retry(addr: SocketAddr) -> String {
    for _ in 0..25 {
        if let Ok(b) = http_get(addr) {
            if b.contains("200 OK") {
                return b;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no answer from {addr}");
}

fn udp_ask(addr: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let c = UdpSocket::bind("0.0.0.0:0").ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut b = [0u8; 512];
    for _ in 0..6 {
        c.send_to(msg, addr).ok()?;
        if let Ok((n, _)) = c.recv_from(&mut b) {
            return Some(b[..n].to_vec());
        }
    }
    None
}

#[test]
fn published_ports_answer_on_loopback_gateway_and_other_networks() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("pub");
    let m = Manager::new(env.dir.path().join("state"), System, &env.table).unwrap();
    let (bw, bc) = (env.bridge(0), env.bridge(1));
    let pw = m
        .create_network(&net("web", &bw, false), &pool("10.231.5.0/24"))
        .unwrap();
    let pc = m
        .create_network(&net("cli", &bc, false), &pool("10.231.6.0/24"))
        .unwrap();
    let ns = env.netns("w1");
    let ep = m.connect("web", "w1", &ns, None).unwrap();
    env.veths.push(ep.host_veth.clone());
    let ns_c = env.netns("c1");
    let ep_c = m.connect("cli", "c1", &ns_c, None).unwrap();
    env.veths.push(ep_c.host_veth.clone());
    env.httpd("w1", 80, "published");
    env.udp_echo(ns.clone(), 53);

    // -p 80 (host port picked, like -P) and -p 0:53/udp
    let maps = [
        PortMapping {
            host_ip: None,
            host_port: 0,
            container_port: 80,
            proto: Proto::Tcp,
        },
        PortMapping {
            host_ip: None,
            host_port: 0,
            container_port: 53,
            proto: Proto::Udp,
        },
    ];
    let published = m.publish("w1", ep.ip, &maps).unwrap();
    let (tcp, udp) = (
        published.mappings[0].host_port,
        published.mappings[1].host_port,
    );
    assert!(tcp != 0 && udp != 0);
    assert_eq!(published.proxies(), 2);

    // host -> 127.0.0.1 (userland proxy) and -> bridge gateway (output DNAT)
    assert!(http_get_retry(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp))).ends_with("published"));
    assert!(http_get_retry(SocketAddr::from((pw.gateway, tcp))).ends_with("published"));
    // another network's namespace -> its gateway address (prerouting DNAT)
    let got = env.wget_retry("c1", &format!("http://{}:{tcp}/", pc.gateway));
    assert_eq!(got.as_deref(), Some("published"));
    // but not the container directly
    assert_eq!(env.wget("c1", &format!("http://{}/", ep.ip)), None);

    // UDP both ways
    let lo = udp_ask(SocketAddr::from((Ipv4Addr::LOCALHOST, udp)), b"lo");
    assert_eq!(lo.as_deref(), Some(&b"echo:lo"[..]));
    let gw = udp_ask(SocketAddr::from((pw.gateway, udp)), b"gw");
    assert_eq!(gw.as_deref(), Some(&b"echo:gw"[..]));

    // removal closes the port
    m.unpublish("w1").unwrap();
    drop(published);
    assert!(http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp))).is_err());
    assert!(env
        .wget("c1", &format!("http://{}:{tcp}/", pc.gateway))
        .is_none());

    m.disconnect("web", "w1").unwrap();
    m.disconnect("cli", "c1").unwrap();
    m.remove_network("web").unwrap();
    m.remove_network("cli").unwrap();
    env.assert_no_leaks();
}

#[test]
fn thirty_parallel_connects_get_distinct_addresses_and_resolve_each_other() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("par");
    let m = Manager::new(env.dir.path().join("state"), System, &env.table).unwrap();
    let b = env.bridge(0);
    let spec = NetworkSpec {
        dns: true,
        ..net("p", &b, false)
    };
    let gw = m
        .create_network(&spec, &pool("10.231.7.0/24"))
        .unwrap()
        .gateway;
    let paths: Vec<_> = (0..30).map(|i| env.netns(&format!("n{i}"))).collect();
    let eps: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let m = &m;
                s.spawn(move || {
                    let name = format!("n{i}");
                    let ep = m.connect("p", &name, p, None).unwrap();
                    m.set_names("p", &name, std::slice::from_ref(&name))
                        .unwrap();
                    ep
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    env.veths.extend(eps.iter().map(|e| e.host_veth.clone()));
    let mut ips: Vec<_> = eps.iter().map(|e| e.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 30);
    // a restart keeps addresses: the same owner gets the same one back
    let m2 = Manager::new(env.dir.path().join("state"), System, &env.table).unwrap();
    assert_eq!(m2.ipam().allocate("p", "n7", None).unwrap(), eps[7].ip);
    // and they talk to each other
    for i in [1, 15, 29] {
        let (ok, _) = env.exec(
            "n0",
            &["busybox", "ping", "-c1", "-W2", &eps[i].ip.to_string()],
        );
        assert!(ok, "n0 cannot reach n{i}");
    }
    // and resolve each other by name through the embedded DNS
    let gw = gw.to_string();
    for (from, to) in [(0, 29), (29, 0), (14, 15)] {
        let (_, out) = env.exec(
            &format!("n{from}"),
            &["busybox", "nslookup", &format!("n{to}"), &gw],
        );
        assert!(
            out.contains(&eps[to].ip.to_string()),
            "n{from} cannot resolve n{to}: {out}"
        );
    }
    let disconnects: Vec<_> = (0..30)
        .map(|i| m.disconnect("p", &format!("n{i}")))
        .collect();
    assert!(disconnects.iter().all(Result::is_ok));
    assert!(m.ipam().pool("p").unwrap().unwrap().allocations.is_empty());
    m.remove_network("p").unwrap();
    env.assert_no_leaks();
}

#[test]
fn embedded_dns_resolves_names_aliases_and_forwards() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("dns");
    // a fake upstream resolver on loopback answers every name with 192.0.2.77
    let up = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = up.recv_from(&mut b) {
            if let Some(q) = berth_network::dns::parse_question(&b[..n]) {
                let ips = if q.qtype == 1 {
                    vec![Ipv4Addr::new(192, 0, 2, 77)]
                } else {
                    vec![]
                };
                let _ = up.send_to(&berth_network::dns::answer(&b[..n], &q, &ips), from);
            }
        }
    });
    let m = Manager::new(env.dir.path().join("state"), System, &env.table)
        .unwrap()
        .with_upstreams(vec![up_addr]);
    let (bd, be) = (env.bridge(0), env.bridge(1));
    let dspec = NetworkSpec {
        dns: true,
        ..net("d", &bd, false)
    };
    let pd = m.create_network(&dspec, &pool("10.231.8.0/24")).unwrap();
    let espec = NetworkSpec {
        dns: true,
        ..net("e", &be, false)
    };
    m.create_network(&espec, &pool("10.231.9.0/24")).unwrap();
    assert_eq!(m.dns_address("d"), Some(SocketAddr::from((pd.gateway, 53))));
    let mut ips = Vec::new();
    for (n, network, names) in [
        ("web", "d", ["web", "svc"]),
        ("cli", "d", ["cli", "svc"]),
        ("x", "e", ["x", "x"]),
    ] {
        let ns = env.netns(n);
        let ep = m.connect(network, n, &ns, None).unwrap();
        env.veths.push(ep.host_veth.clone());
        m.set_names(network, n, &names.map(String::from)).unwrap();
        env.resolv_conf(n, &format!("nameserver {}\n", ep.gateway));
        ips.push(ep.ip);
    }
    env.httpd("web", 80, "by name");
    let gw = pd.gateway.to_string();
    let (ok, out) = env.exec("cli", &["busybox", "nslookup", "web", &gw]);
    assert!(ok && out.contains(&ips[0].to_string()), "{out}");
    // an alias shared by two containers returns both
    let (_, out) = env.exec("cli", &["busybox", "nslookup", "svc", &gw]);
    assert!(
        out.contains(&ips[0].to_string()) && out.contains(&ips[1].to_string()),
        "{out}"
    );
    // other names go upstream
    let (_, out) = env.exec("cli", &["busybox", "nslookup", "elsewhere.test", &gw]);
    assert!(out.contains("192.0.2.77"), "{out}");
    // by name over HTTP, through the namespace's resolv.conf
    assert_eq!(
        env.wget_retry("cli", "http://web/").as_deref(),
        Some("by name")
    );
    // another network cannot use this network's resolver
    let (ok, out) = env.exec("x", &["busybox", "nslookup", "web", &gw]);
    assert!(!ok || !out.contains(&ips[0].to_string()), "{out}");

    // container exit: the namespace goes, the kernel removes the veth
    for (n, network) in [("web", "d"), ("cli", "d"), ("x", "e")] {
        m.release(network, n).unwrap();
    }
    env.stop_containers();
    m.remove_network("d").unwrap();
    m.remove_network("e").unwrap();
    env.assert_no_leaks();
}

#[test]
fn restart_restores_and_reconcile_removes_the_dead() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("rst");
    let b = env.bridge(0);
    let state = env.dir.path().join("state");
    let (ip_alive, ip_dead, port);
    {
        let m = Manager::new(&state, System, &env.table).unwrap();
        m.create_network(&net("r", &b, false), &pool("10.231.10.0/24"))
            .unwrap();
        let mut ips = Vec::new();
        for n in ["alive", "dead"] {
            let ns = env.netns(n);
            let ep = m.connect("r", n, &ns, None).unwrap();
            env.veths.push(ep.host_veth.clone());
            ips.push(ep.ip);
        }
        (ip_alive, ip_dead) = (ips[0], ips[1]);
        let maps = [PortMapping {
            host_ip: None,
            host_port: 0,
            container_port: 80,
            proto: Proto::Tcp,
        }];
        let p = m.publish("alive", ip_alive, &maps).unwrap();
        port = p.mappings[0].host_port;
        std::mem::forget(p); // a crash: nothing runs its destructors
    }
    env.httpd("alive", 80, "survived");
    // the daemon restarts; one container died meanwhile (its netns is kept,
    // so its veth stays on the bridge until reconcile removes it)
    let m = Manager::new(&state, System, &env.table).unwrap();
    assert_eq!(m.restore().unwrap(), vec!["r"]);
    m.reconcile(&[("r", "alive")]).unwrap();
    let (_, ports) = env.exec("dead", &["ip", "-o", "link", "show", "eth0"]);
    assert!(
        ports.is_empty(),
        "dead container's veth not removed: {ports}"
    );
    let gw = m.ipam().pool("r").unwrap().unwrap().gateway;
    // the restored DNAT rule works (the gateway path does not need the proxy)
    assert!(http_get_retry(SocketAddr::from((gw, port))).ends_with("survived"));
    // the alive container kept its address; the dead one's is free again
    assert_eq!(m.ipam().allocate("r", "alive", None).unwrap(), ip_alive);
    assert!(!m
        .ipam()
        .pool("r")
        .unwrap()
        .unwrap()
        .allocations
        .contains_key(&ip_dead));

    m.unpublish("alive").unwrap();
    m.disconnect("r", "alive").unwrap();
    m.remove_network("r").unwrap();
    env.assert_no_leaks();
}

#[test]
fn network_none_sees_only_loopback() {
    if !can_run() {
        return;
    }
    let mut env = Env::new("none");
    let m = Manager::new(env.dir.path().join("state"), System, &env.table).unwrap();
    let ns = env.netns("n1");
    m.loopback_only(&ns).unwrap();
    let (_, links) = env.exec("n1", &["ip", "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:") && links.contains("UP"), "{links}");
    env.httpd("n1", 80, "alone");
    assert_eq!(
        env.wget_retry("n1", "http://127.0.0.1/").as_deref(),
        Some("alone")
    );
    env.assert_no_leaks();
}
