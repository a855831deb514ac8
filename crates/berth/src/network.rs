//! `berth network …`, through the daemon's API, and the network
//! flags of `run`/`create` ([`NetArgs`]).

use crate::format::{inspect_each, print_docs, remove_each, table};
use anyhow::{bail, Context};
use berth_client::{enc, Client};
use berth_engine::network::{parse_mode, parse_publish};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The network flags of `run` and `create`.
#[derive(Args, Debug, Clone, Default)]
pub struct NetArgs {
    /// Connect a container to a network: bridge (the default), none, host,
    /// container:NAME, or the name of a user network
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    /// IPv4 address on the user network (e.g. 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Add a network-scoped alias for the container
    #[arg(long, alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Publish a container's port(s) to the host ([IP:][HOST:]CONTAINER[/tcp|udp])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Expose a port or a range of ports (80, 80/udp, 8000-8010)
    #[arg(long)]
    pub expose: Vec<String>,
}

impl NetArgs {
    /// `--expose` values as `PORT/PROTO`, ranges expanded.
    fn exposed(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in &self.expose {
            for m in parse_publish(e).with_context(|| format!("--expose {e:?}"))? {
                out.push(format!("{}/{}", m.container_port, m.proto));
            }
        }
        Ok(out)
    }

    /// The flags into a docker create body: `HostConfig.NetworkMode`, `PortBindings`,
    /// `PublishAllPorts`, `Dns*`, `ExtraHosts`, `ExposedPorts` and
    /// `NetworkingConfig.EndpointsConfig`.
    pub fn to_body(&self, body: &mut Value) -> anyhow::Result<()> {
        let (_, net) = parse_mode(&self.network)?;
        let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut exposed: Map<String, Value> = Map::new();
        for p in &self.publish {
            for m in parse_publish(p)? {
                let key = format!("{}/{}", m.container_port, m.proto);
                exposed.insert(key.clone(), json!({}));
                bindings.entry(key).or_default().push(json!({
                    "HostIp": m.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                    "HostPort": if m.host_port == 0 { String::new() } else { m.host_port.to_string() },
                }));
            }
        }
        for e in self.exposed()? {
            exposed.insert(e, json!({}));
        }
        if !exposed.is_empty() {
            body["ExposedPorts"] = Value::Object(exposed);
        }
        let hc = &mut body["HostConfig"];
        if !hc.is_object() {
            *hc = json!({});
        }
        hc["NetworkMode"] = json!(self.network);
        hc["PortBindings"] = json!(bindings);
        hc["PublishAllPorts"] = json!(self.publish_all);
        hc["Dns"] = json!(self.dns);
        hc["DnsSearch"] = json!(self.dns_search);
        hc["DnsOptions"] = json!(self.dns_option);
        hc["ExtraHosts"] = json!(self.add_host);
        match net {
            Some(net) => {
                let mut ep = json!({"Aliases": self.network_alias});
                if let Some(ip) = &self.ip {
                    ep["IPAMConfig"] = json!({"IPv4Address": ip});
                }
                body["NetworkingConfig"] = json!({"EndpointsConfig": {net: ep}});
            }
            None if self.ip.is_some() || !self.network_alias.is_empty() => {
                bail!("--ip and --network-alias need a bridge network (--network NAME)")
            }
            None => {}
        }
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network (bridge only)
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    gateway: Option<String>,
    /// Allocate container ip from a sub-range
    #[arg(long)]
    ip_range: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network (key=value)
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options (com.docker.network.driver.mtu=N)
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// Enable manual container attachment (every berth network takes `connect`)
    #[arg(long)]
    attachable: bool,
    /// Auxiliary IPv4 addresses used by Network driver (name=ip; never given to
    /// containers)
    #[arg(long)]
    aux_address: Vec<String>,
    /// IP Address Management Driver (default only)
    #[arg(long, default_value = "default")]
    ipam_driver: String,
    /// Set IPAM driver specific options (key=value)
    #[arg(long)]
    ipam_opt: Vec<String>,
    /// Enable or disable IPv4 address assignment
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ipv4: bool,
    /// Enable or disable IPv6 address assignment (not supported)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ipv6: bool,
    /// Create a configuration only network (swarm: not supported)
    #[arg(long)]
    config_only: bool,
    /// The network from which to copy the configuration (swarm: not supported)
    #[arg(long)]
    config_from: Option<String>,
    /// Create swarm routing-mesh network (not supported)
    #[arg(long)]
    ingress: bool,
    /// Control the network's scope (local only)
    #[arg(long)]
    scope: Option<String>,
    name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "name=web", "label=a=b", "type=custom")
    #[arg(short, long)]
    filter: Vec<String>,
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a Go-template subset ({{.ID}}, {{.Name}}, ...)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go-template subset
    #[arg(short, long)]
    format: Option<String>,
    /// Verbose output for diagnostics (a local network has nothing more to show)
    #[arg(short, long)]
    verbose: bool,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (label=key[=value])
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (not supported: berth networks are IPv4 only)
    #[arg(long)]
    ip6: Option<String>,
    /// Add link to another container (NAME[:ALIAS])
    #[arg(long)]
    link: Vec<String>,
    /// Add a link-local address for the container (not supported)
    #[arg(long)]
    link_local_ip: Vec<String>,
    /// driver options for the network (none for berth's bridge)
    #[arg(long)]
    driver_opt: Vec<String>,
    /// Highest gw-priority provides the default gateway (0 only)
    #[arg(long, allow_hyphen_values = true)]
    gw_priority: Option<i64>,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    network: String,
    container: String,
}

/// docker's `filters` query value from `key=value` flags.
fn filters_query(flags: &[String]) -> anyhow::Result<String> {
    let mut m: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter {f:?} (expected name=value)"))?;
        m.entry(k.to_string())
            .or_default()
            .insert(v.to_string(), true);
    }
    Ok(if m.is_empty() {
        String::new()
    } else {
        format!("?filters={}", enc(&serde_json::to_string(&m)?))
    })
}

/// Runs a `network` subcommand; returns the exit code.
pub fn run(data_root: &Path, cmd: NetworkCmd) -> anyhow::Result<i32> {
    let c = crate::daemon::client(data_root)?;
    match cmd {
        NetworkCmd::Create(a) => create(&c, &a),
        NetworkCmd::Ls(a) => ls(&c, &a),
        NetworkCmd::Inspect(a) => {
            let q = if a.verbose { "?verbose=true" } else { "" };
            let (docs, code) = inspect_each(&a.networks, |n| {
                c.get_json(&format!("/networks/{}{q}", enc(n)))
            });
            Ok(print_docs(&docs, a.format.as_deref(), code))
        }
        NetworkCmd::Rm(a) => Ok(remove_each(&a.networks, |n| {
            match c.delete(&format!("/networks/{}", enc(n))) {
                // docker's `network rm -f`: a missing network is not an error
                Err(berth_client::Error::Api { status: 404, .. }) if a.force => Ok(false),
                r => r.map(|_| true),
            }
        })),
        NetworkCmd::Prune(a) => {
            if !a.force
                && !crate::image::confirm("all custom networks not used by at least one container")?
            {
                return Ok(0);
            }
            let v = c.post_json(
                &format!("/networks/prune{}", filters_query(&a.filter)?),
                None,
            )?;
            let deleted: Vec<&str> = v["NetworksDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                for d in deleted {
                    println!("{d}");
                }
            }
            Ok(0)
        }
        NetworkCmd::Connect(a) => {
            let mut ep = json!({"Aliases": a.alias, "Links": a.link});
            let mut ipam = Map::new();
            if let Some(ip) = &a.ip {
                ipam.insert("IPv4Address".into(), json!(ip));
            }
            if let Some(ip) = &a.ip6 {
                ipam.insert("IPv6Address".into(), json!(ip));
            }
            if !a.link_local_ip.is_empty() {
                ipam.insert("LinkLocalIPs".into(), json!(a.link_local_ip));
            }
            if !ipam.is_empty() {
                ep["IPAMConfig"] = Value::Object(ipam);
            }
            if !a.driver_opt.is_empty() {
                let opts = a
                    .driver_opt
                    .iter()
                    .map(|o| match o.split_once('=') {
                        Some((k, v)) => Ok((k.to_string(), v.to_string())),
                        None => bail!("--driver-opt {o:?}: use key=value"),
                    })
                    .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
                ep["DriverOpts"] = json!(opts);
            }
            if let Some(p) = a.gw_priority {
                ep["GwPriority"] = json!(p);
            }
            let body = json!({"Container": a.container, "EndpointConfig": ep});
            c.post_json(
                &format!("/networks/{}/connect", enc(&a.network)),
                Some(&body),
            )?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            c.post_json(
                &format!("/networks/{}/disconnect", enc(&a.network)),
                Some(&body),
            )?;
            Ok(0)
        }
    }
}

fn create(c: &Client, a: &CreateArgs) -> anyhow::Result<i32> {
    if a.driver != "bridge" {
        bail!(
            "--driver {}: berth supports the bridge driver only",
            a.driver
        );
    }
    let mut ipam = Map::new();
    for (k, v) in [
        ("Subnet", &a.subnet),
        ("Gateway", &a.gateway),
        ("IPRange", &a.ip_range),
    ] {
        if let Some(v) = v {
            ipam.insert(k.into(), json!(v));
        }
    }
    let kv = |items: &[String], what: &str| -> anyhow::Result<BTreeMap<String, String>> {
        items
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None if what == "label" => Ok((l.clone(), String::new())),
                None => bail!("--{what} {l:?}: use key=value"),
            })
            .collect()
    };
    let aux = kv(&a.aux_address, "aux-address")?;
    if !aux.is_empty() {
        ipam.insert("AuxiliaryAddresses".into(), json!(aux));
    }
    let config = if ipam.is_empty() {
        json!([])
    } else {
        json!([ipam])
    };
    let mut body = json!({
        "Name": a.name, "CheckDuplicate": true, "Driver": "bridge", "Internal": a.internal,
        "Attachable": a.attachable, "Ingress": a.ingress, "ConfigOnly": a.config_only,
        "EnableIPv4": a.ipv4, "EnableIPv6": a.ipv6,
        "IPAM": {"Driver": a.ipam_driver, "Config": config, "Options": kv(&a.ipam_opt, "ipam-opt")?},
        "Labels": kv(&a.label, "label")?, "Options": kv(&a.opt, "opt")?,
    });
    if let Some(from) = &a.config_from {
        body["ConfigFrom"] = json!({"Network": from});
    }
    if let Some(scope) = &a.scope {
        body["Scope"] = json!(scope);
    }
    let v = c.post_json("/networks/create", Some(&body))?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(0)
}

fn ls(c: &Client, a: &LsArgs) -> anyhow::Result<i32> {
    let nets = c.get_json(&format!("/networks{}", filters_query(&a.filter)?))?;
    let nets = nets.as_array().cloned().unwrap_or_default();
    let id = |n: &Value| {
        let id = n["Id"].as_str().unwrap_or_default().to_string();
        if a.no_trunc {
            id
        } else {
            id.chars().take(12).collect()
        }
    };
    if a.quiet {
        for n in &nets {
            println!("{}", id(n));
        }
        return Ok(0);
    }
    if let Some(f) = &a.format {
        for n in &nets {
            let mut row = n.clone();
            row["ID"] = json!(id(n));
            println!("{}", crate::format::render(f, &row)?);
        }
        return Ok(0);
    }
    let mut rows = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
        .map(String::from)
        .to_vec()];
    for n in &nets {
        rows.push(vec![
            id(n),
            n["Name"].as_str().unwrap_or_default().to_string(),
            n["Driver"].as_str().unwrap_or_default().to_string(),
            n["Scope"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_into_a_create_body() {
        let a = NetArgs {
            network: "web".into(),
            ip: Some("10.233.0.5".into()),
            network_alias: vec!["api".into()],
            publish: vec!["127.0.0.1:8080:80".into(), "53/udp".into()],
            expose: vec!["9000-9001".into()],
            dns: vec!["10.0.0.2".into()],
            ..Default::default()
        };
        let mut body = json!({"Image": "x"});
        a.to_body(&mut body).unwrap();
        assert_eq!(body["HostConfig"]["NetworkMode"], "web");
        assert_eq!(
            body["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert_eq!(
            body["HostConfig"]["PortBindings"]["53/udp"][0]["HostPort"],
            ""
        );
        assert!(body["ExposedPorts"]["9001/tcp"].is_object());
        let ep = &body["NetworkingConfig"]["EndpointsConfig"]["web"];
        assert_eq!(ep["Aliases"][0], "api");
        assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.233.0.5");
        let bad = NetArgs {
            network: "none".into(),
            ip: Some("10.0.0.1".into()),
            ..Default::default()
        };
        assert!(bad.to_body(&mut json!({})).is_err());
        assert!(filters_query(&["name".into()]).is_err());
        assert!(filters_query(&["name=a".into()])
            .unwrap()
            .starts_with("?filters="));
    }
}
