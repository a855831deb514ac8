//! Time networking adds to a container start: `connect` + `disconnect` of a
//! fresh network namespace to a bridge (needs root), against creating the
//! namespace alone (the `--network none` baseline). Prints medians and the
//! ratio. Run: `cargo bench -p berth-network --bench connect`.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use berth_network::exec::System;
use berth_network::ipam::PoolSpec;
use berth_network::{Manager, NetworkSpec};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ip(args: &[&str]) {
    let _ = Command::new("ip").args(args).status();
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::new(dir.path(), System, "berthbench").unwrap();
    let pool = PoolSpec {
        subnet: Some("10.231.20.0/24".parse().unwrap()),
        ..Default::default()
    };
    m.create_network(&NetworkSpec::new("bench", "berthtestbench"), &pool)
        .unwrap();
    let (mut none, mut bridge, mut teardown) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..30 {
        let ns = format!("berthtest-bench-{i}");
        let t = Instant::now();
        ip(&["netns", "add", &ns]);
        none.push(t.elapsed());
        let path = std::path::PathBuf::from(format!("/run/netns/{ns}"));
        let t = Instant::now();
        m.connect("bench", &ns, &path, None).unwrap();
        bridge.push(t.elapsed());
        let t = Instant::now();
        m.disconnect("bench", &ns).unwrap();
        teardown.push(t.elapsed());
        ip(&["netns", "del", &ns]);
    }
    m.remove_network("bench").unwrap();
    let other = PoolSpec {
        subnet: Some("10.231.21.0/24".parse().unwrap()),
        ..Default::default()
    };
    m.ipam().add_pool("ipam-only", &other, &[]).unwrap();
    let alloc: Vec<Duration> = (0..30)
        .map(|i| {
            let t = Instant::now();
            m.ipam()
                .allocate("ipam-only", &format!("c{i}"), None)
                .unwrap();
            t.elapsed()
        })
        .collect();
    m.ipam().remove_pool("ipam-only").unwrap();
    let (n, b, d) = (median(none), median(bridge), median(teardown));
    println!(
        "of which IPAM allocate (lock, read, rename): {:?}",
        median(alloc)
    );
    println!("netns alone (--network none baseline): {n:?}");
    println!(
        "bridge connect (added by networking):  {b:?}  ({:.1}x the baseline)",
        b.as_secs_f64() / n.as_secs_f64()
    );
    println!("disconnect:                            {d:?}");
}
