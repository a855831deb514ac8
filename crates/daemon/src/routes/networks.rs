//! Network routes (list, inspect, create, remove, connect, disconnect, prune) in
//! docker's shapes, and the network part of container create, inspect and list.

use super::{engine_error, Ctx, Reply};
use crate::http::Request;
use berth_engine::network::{
    mode_name, parse_mode, EndpointConfig, NetworkCreate, NetworkInfo, PortMapping,
};
use berth_engine::{CreateOptions, Record};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this module serves; `{id}` stands for a network's name or id.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/networks"),
    ("GET", "/networks/{id}"),
    ("POST", "/networks/create"),
    ("DELETE", "/networks/{id}"),
    ("POST", "/networks/{id}/connect"),
    ("POST", "/networks/{id}/disconnect"),
    ("POST", "/networks/prune"),
];

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(ctx: &Arc<Ctx>, req: &Request, parts: &[&str]) -> Option<Reply> {
    let reply = match (req.method.as_str(), parts) {
        ("GET", ["networks"]) => list(ctx, req),
        ("POST", ["networks", "create"]) => create(ctx, req),
        ("POST", ["networks", "prune"]) => prune(ctx, req),
        ("GET", ["networks", id]) => inspect(ctx, id),
        ("DELETE", ["networks", id]) => remove(ctx, id),
        ("POST", ["networks", id, "connect"]) => connect(ctx, id, req),
        ("POST", ["networks", id, "disconnect"]) => disconnect(ctx, id, req),
        _ => return None,
    };
    Some(reply)
}

fn networking(ctx: &Ctx) -> Result<&Arc<berth_engine::Networking>, Reply> {
    ctx.engine.networking().ok_or_else(|| {
        Reply::error(
            503,
            "networking is not enabled in this daemon: check berthd's log",
        )
    })
}

fn body(req: &Request) -> Result<Value, Reply> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| Reply::error(400, format!("invalid JSON body: {e}")))
}

/// docker's `filters` query: `{"name":{"x":true}}` or the older `{"name":["x"]}`.
fn filters(req: &Request) -> Result<BTreeMap<String, Vec<String>>, Reply> {
    let Some(raw) = req.query.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| Reply::error(400, format!("invalid filters {raw:?}: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        let list: Vec<String> = match vals {
            Value::Object(m) => m.keys().cloned().collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

fn matches(n: &NetworkInfo, f: &BTreeMap<String, Vec<String>>) -> Result<bool, Reply> {
    for (k, vals) in f {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.spec.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.spec.id.starts_with(v.as_str())),
            "label" => vals.iter().all(|v| label_matches(&n.spec.labels, v)),
            "driver" => vals.iter().any(|v| v == "bridge"),
            "scope" => vals.iter().any(|v| v == "local"),
            "type" => vals.iter().any(|v| match v.as_str() {
                "builtin" => n.is_default(),
                "custom" => !n.is_default(),
                _ => false,
            }),
            "dangling" => vals
                .iter()
                .any(|v| (v == "true" || v == "1") == n.pool.allocations.is_empty()),
            other => {
                return Err(Reply::error(
                    400,
                    format!("invalid filter '{other}': use name, id, label, driver, scope, type or dangling"),
                ))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A network in docker's shape; `containers` fills `Containers` (inspect).
fn network_json(ctx: &Ctx, n: &NetworkInfo, containers: bool) -> Value {
    let mut ipam = Map::new();
    ipam.insert("Subnet".into(), json!(n.pool.subnet.to_string()));
    ipam.insert("Gateway".into(), json!(n.pool.gateway.to_string()));
    if n.pool.ip_range != n.pool.subnet {
        ipam.insert("IPRange".into(), json!(n.pool.ip_range.to_string()));
    }
    if !n.pool.aux.is_empty() {
        ipam.insert("AuxiliaryAddresses".into(), json!(n.pool.aux));
    }
    let mut conts = Map::new();
    if containers {
        for (ip, id) in &n.pool.allocations {
            let name = ctx
                .engine
                .inspect(id)
                .map(|s| s.record.name)
                .unwrap_or_default();
            conts.insert(
                id.clone(),
                json!({"Name": name, "EndpointID": endpoint_id(&n.spec.id, id), "MacAddress": "",
                    "IPv4Address": format!("{ip}/{}", n.pool.subnet.prefix()), "IPv6Address": ""}),
            );
        }
    }
    let mut options = Map::new();
    options.insert(
        "com.docker.network.bridge.name".into(),
        json!(n.spec.bridge),
    );
    options.insert(
        "com.docker.network.driver.mtu".into(),
        json!(n.spec.mtu.to_string()),
    );
    if n.is_default() {
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            json!("true"),
        );
    }
    json!({
        "Name": n.spec.name, "Id": n.spec.id, "Created": n.spec.created, "Scope": "local",
        "Driver": "bridge", "EnableIPv6": false,
        "IPAM": {"Driver": "default",
            "Options": if n.spec.ipam_options.is_empty() { Value::Null } else { json!(n.spec.ipam_options) },
            "Config": [Value::Object(ipam)]},
        "Internal": n.spec.internal, "Attachable": n.spec.attachable, "Ingress": false,
        "EnableIPv4": true,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": Value::Object(conts), "Options": Value::Object(options),
        "Labels": n.spec.labels,
    })
}

/// A stable endpoint id for (network, container).
fn endpoint_id(net: &str, container: &str) -> String {
    let mut out = String::new();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..4u8 {
        for b in net.bytes().chain([round]).chain(container.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn list(ctx: &Ctx, req: &Request) -> Reply {
    let run = || -> Result<Value, Reply> {
        let f = filters(req)?;
        let all = networking(ctx)?.networks().map_err(engine_error)?;
        let mut out = Vec::new();
        for n in &all {
            if matches(n, &f)? {
                out.push(network_json(ctx, n, false));
            }
        }
        Ok(Value::Array(out))
    };
    match run() {
        Ok(v) => Reply::json(200, &v),
        Err(r) => r,
    }
}

fn inspect(ctx: &Ctx, id: &str) -> Reply {
    let n = match networking(ctx) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match n.find(id) {
        Ok(info) => Reply::json(200, &network_json(ctx, &info, true)),
        Err(e) => engine_error(e),
    }
}

/// The create body → what the engine needs.
fn create_request(b: &Value) -> Result<NetworkCreate, String> {
    let name = b["Name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("Name: required (the network's name)")?;
    if let Some(d) = b["Driver"]
        .as_str()
        .filter(|d| !d.is_empty() && *d != "bridge")
    {
        return Err(format!(
            "Driver {d:?}: berth supports the bridge driver only"
        ));
    }
    if b["EnableIPv6"].as_bool() == Some(true) {
        return Err(
            "EnableIPv6: IPv6 networks are not supported: berth networks are IPv4 only (leave --ipv6 out)".into(),
        );
    }
    if b["EnableIPv4"].as_bool() == Some(false) {
        return Err("EnableIPv4: an IPv4-less network is not supported: berth networks are IPv4 only (leave --ipv4=false out)".into());
    }
    let swarm = "is a swarm feature, which berth does not run";
    if b["Ingress"].as_bool() == Some(true) {
        return Err(format!("Ingress: the ingress network {swarm}"));
    }
    if b["ConfigOnly"].as_bool() == Some(true) {
        return Err(format!("ConfigOnly: a configuration-only network {swarm}"));
    }
    if let Some(from) = b["ConfigFrom"]["Network"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        return Err(format!(
            "ConfigFrom {from:?}: a network from a configuration-only network {swarm}"
        ));
    }
    if let Some(scope) = b["Scope"]
        .as_str()
        .filter(|s| !s.is_empty() && *s != "local")
    {
        return Err(format!(
            "Scope {scope:?}: the {scope} scope {swarm}; use local (the default)"
        ));
    }
    if let Some(d) = b["IPAM"]["Driver"]
        .as_str()
        .filter(|d| !d.is_empty() && *d != "default")
    {
        return Err(format!(
            "IPAM.Driver {d:?}: berth has the default IPAM driver only (leave --ipam-driver out)"
        ));
    }
    let configs = b["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    if configs.len() > 1 {
        return Err("IPAM.Config: one subnet per network is supported".into());
    }
    let c = configs.first().cloned().unwrap_or(Value::Null);
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let labels = strings(&b["Labels"]);
    let mtu = match b["Options"]["com.docker.network.driver.mtu"].as_str() {
        Some(m) => Some(
            m.parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| format!("option com.docker.network.driver.mtu={m}: use 68-65535"))?,
        ),
        None => None,
    };
    Ok(NetworkCreate {
        name: name.to_string(),
        subnet: s(&c["Subnet"]),
        gateway: s(&c["Gateway"]),
        ip_range: s(&c["IPRange"]),
        internal: b["Internal"].as_bool().unwrap_or(false),
        labels,
        mtu,
        aux_addresses: strings(&c["AuxiliaryAddresses"]),
        ipam_options: strings(&b["IPAM"]["Options"]),
        attachable: b["Attachable"].as_bool().unwrap_or(false),
    })
}

fn create(ctx: &Ctx, req: &Request) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let n = networking(ctx)?;
        let b = body(req)?;
        let r = create_request(&b).map_err(|m| Reply::error(400, m))?;
        let info = n.create_network(&r).map_err(engine_error)?;
        event(ctx, "create", &info, None);
        Ok(Reply::json(
            201,
            &json!({"Id": info.spec.id, "Warning": ""}),
        ))
    };
    run().unwrap_or_else(|r| r)
}

fn remove(ctx: &Ctx, id: &str) -> Reply {
    let n = match networking(ctx) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match n.remove_network(id) {
        Ok(info) => {
            event(ctx, "destroy", &info, None);
            Reply::empty(204)
        }
        Err(e @ berth_engine::Error::Conflict(_)) => Reply::error(403, e),
        Err(e) => engine_error(e),
    }
}

fn prune(ctx: &Ctx, req: &Request) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let f = super::system::PruneFilter::parse(req, &["until"])?;
        let n = networking(ctx)?;
        let mut deleted = Vec::new();
        for info in n.networks().map_err(engine_error)? {
            if info.is_default() || !info.pool.allocations.is_empty() {
                continue;
            }
            let created =
                Some(super::unix(&info.spec.created)).filter(|_| !info.spec.created.is_empty());
            if f.matches(created, &info.spec.labels) && n.remove_network(&info.spec.name).is_ok() {
                event(ctx, "destroy", &info, None);
                deleted.push(info.spec.name);
            }
        }
        Ok(Reply::json(200, &json!({"NetworksDeleted": deleted})))
    };
    run().unwrap_or_else(|r| r)
}

/// A network event for `GET /events`, in docker's shape.
fn event(ctx: &Ctx, action: &str, n: &NetworkInfo, container: Option<&str>) {
    let mut attrs = vec![
        ("name", n.spec.name.clone()),
        ("type", "bridge".to_string()),
    ];
    if let Some(c) = container {
        attrs.push(("container", c.to_string()));
    }
    ctx.events.publish("network", action, &n.spec.id, attrs);
}

fn container_event(ctx: &Ctx, action: &str, network: &str, container: &str) {
    let (Some(n), Ok(s)) = (ctx.engine.networking(), ctx.engine.inspect(container)) else {
        return;
    };
    if let Ok(info) = n.find(network) {
        event(ctx, action, &info, Some(&s.record.id));
    }
}

/// `EndpointConfig` of a connect body or of `NetworkingConfig.EndpointsConfig`.
fn endpoint(network: &str, v: &Value) -> Result<EndpointConfig, String> {
    let ip = match v["IPAMConfig"]["IPv4Address"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(s) => Some(
            s.parse()
                .map_err(|_| format!("IPv4Address {s:?}: not an IPv4 address"))?,
        ),
        None => None,
    };
    let aliases = v["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mac = v["MacAddress"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    let ep = EndpointConfig {
        network: network.to_string(),
        aliases,
        ip,
        mac,
    };
    ep.mac_bytes().map_err(|e| e.to_string())?;
    Ok(ep)
}

/// The parts of a `connect` endpoint berth's bridge cannot honour, refused clearly:
/// IPv6 and link-local addresses, endpoint driver options, a gateway priority; a
/// legacy link is taken only where it maps (the linked container's own name, which
/// resolves on a user network anyway).
fn connect_checks(ctx: &Ctx, container: &str, v: &Value) -> Result<(), String> {
    if let Some(ip6) = v["IPAMConfig"]["IPv6Address"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        return Err(format!(
            "--ip6 {ip6}: IPv6 addresses are not supported: berth networks are IPv4 only"
        ));
    }
    if v["IPAMConfig"]["LinkLocalIPs"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(
            "--link-local-ip: link-local addresses are not supported by berth's bridge driver"
                .into(),
        );
    }
    if v["DriverOpts"].as_object().is_some_and(|o| !o.is_empty()) {
        return Err("--driver-opt: berth's bridge driver takes no endpoint options (leave --driver-opt out)".into());
    }
    if v["GwPriority"].as_i64().is_some_and(|p| p != 0) {
        return Err("--gw-priority: berth routes through the container's first network; only 0 (the default) is supported".into());
    }
    for link in v["Links"].as_array().into_iter().flatten() {
        let l = link.as_str().unwrap_or_default();
        let (name, alias) = l.split_once(':').unwrap_or((l, l));
        let linked = ctx
            .engine
            .inspect(name)
            .map_err(|_| format!("--link {l}: no such container {name:?}"))?;
        let alias = alias.trim_start_matches('/');
        if alias != linked.record.name && alias != name {
            return Err(format!(
                "--link {l}: a link alias is not supported on berth networks (container {container} reaches {name:?} by its name; give {name:?} a network alias with --alias instead)"
            ));
        }
    }
    Ok(())
}

fn connect(ctx: &Ctx, id: &str, req: &Request) -> Reply {
    let run = || -> Result<Reply, Reply> {
        networking(ctx)?;
        let b = body(req)?;
        let c = b["Container"]
            .as_str()
            .ok_or_else(|| Reply::error(400, "Container: required"))?;
        connect_checks(ctx, c, &b["EndpointConfig"]).map_err(|m| Reply::error(400, m))?;
        let ep = endpoint(id, &b["EndpointConfig"]).map_err(|m| Reply::error(400, m))?;
        ctx.engine.connect_network(c, ep).map_err(engine_error)?;
        container_event(ctx, "connect", id, c);
        Ok(Reply::empty(200))
    };
    run().unwrap_or_else(|r| r)
}

fn disconnect(ctx: &Ctx, id: &str, req: &Request) -> Reply {
    let run = || -> Result<Reply, Reply> {
        networking(ctx)?;
        let b = body(req)?;
        let c = b["Container"]
            .as_str()
            .ok_or_else(|| Reply::error(400, "Container: required"))?;
        ctx.engine.disconnect_network(c, id).map_err(engine_error)?;
        container_event(ctx, "disconnect", id, c);
        Ok(Reply::empty(200))
    };
    run().unwrap_or_else(|r| r)
}

/// `"80/tcp"` → (80, tcp).
fn port_key(k: &str) -> Result<(u16, berth_engine::network::Proto), String> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let m = berth_network_publish(&format!("{p}/{proto}"))?;
    Ok((m[0].container_port, m[0].proto))
}

fn berth_network_publish(spec: &str) -> Result<Vec<PortMapping>, String> {
    berth_engine::network::parse_publish(spec).map_err(|e| e.to_string())
}

/// The network part of a container create body (`HostConfig.NetworkMode`,
/// `PortBindings`, `PublishAllPorts`, `Dns*`, `ExtraHosts`, `ExposedPorts`,
/// `NetworkingConfig.EndpointsConfig`) into the engine's options.
pub fn apply_create_body(body: &Value, o: &mut CreateOptions) -> Result<(), String> {
    let hc = &body["HostConfig"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mode = hc["NetworkMode"].as_str().unwrap_or("default");
    let (m, net) = parse_mode(mode).map_err(|e| format!("HostConfig.NetworkMode: {e}"))?;
    o.network = m;
    let eps = body["NetworkingConfig"]["EndpointsConfig"].as_object();
    if let Some(net) = net {
        let cfg = eps
            .and_then(|m| {
                m.get(&net)
                    .or_else(|| (net == "bridge").then(|| m.get("default")).flatten())
            })
            .cloned()
            .unwrap_or(Value::Null);
        let mut ep = endpoint(&net, &cfg).map_err(|e| format!("NetworkingConfig: {e}"))?;
        // API < 1.44 clients send the MAC address in the config
        if ep.mac.is_none() {
            ep.mac = body["MacAddress"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from);
            ep.mac_bytes().map_err(|e| e.to_string())?;
        }
        o.endpoints = vec![ep];
    } else if body["MacAddress"].as_str().is_some_and(|s| !s.is_empty())
        || eps
            .into_iter()
            .flat_map(|m| m.values())
            .any(|e| e["MacAddress"].as_str().is_some_and(|s| !s.is_empty()))
    {
        return Err(format!(
            "--mac-address: the container has no network interface of its own to give it (--network {mode}): use a bridge network"
        ));
    }
    if let Some(m) = eps {
        if m.keys()
            .any(|k| !o.endpoints.iter().any(|e| &e.network == k) && k != "default")
        {
            return Err("NetworkingConfig.EndpointsConfig: a container can be created on one network; connect it to more with `network connect`".into());
        }
    }
    for (k, v) in hc["PortBindings"].as_object().into_iter().flatten() {
        let (cport, proto) = port_key(k).map_err(|e| format!("HostConfig.PortBindings: {e}"))?;
        let bindings = v.as_array().cloned().unwrap_or_default();
        let bindings = if bindings.is_empty() {
            vec![json!({})]
        } else {
            bindings
        };
        for b in bindings {
            let ip = b["HostIp"].as_str().unwrap_or("");
            let hp = b["HostPort"].as_str().unwrap_or("");
            let spec = format!("{ip}:{hp}:{cport}/{proto}");
            let spec = if ip.is_empty() {
                format!("{hp}:{cport}/{proto}")
            } else {
                spec
            };
            let spec = if ip.is_empty() && hp.is_empty() {
                format!("{cport}/{proto}")
            } else {
                spec
            };
            o.publish.extend(
                berth_network_publish(&spec)
                    .map_err(|e| format!("HostConfig.PortBindings: {e}"))?,
            );
        }
    }
    o.publish_all = hc["PublishAllPorts"].as_bool().unwrap_or(false);
    o.expose = body["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    o.dns = strings(&hc["Dns"]);
    o.dns_search = strings(&hc["DnsSearch"]);
    o.dns_options = strings(&hc["DnsOptions"]);
    o.extra_hosts = strings(&hc["ExtraHosts"]);
    Ok(())
}

/// `HostConfig.NetworkMode` of a container.
pub fn network_mode(r: &Record) -> String {
    mode_name(&r.options.network, &r.options.endpoints)
}

/// The network fields of a container's `HostConfig` (inspect).
pub fn host_config(r: &Record) -> Value {
    let o = &r.options;
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in &o.publish {
        bindings
            .entry(format!("{}/{}", m.container_port, m.proto))
            .or_default()
            .push(json!({
                "HostIp": m.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": if m.host_port == 0 { String::new() } else { m.host_port.to_string() },
            }));
    }
    json!({
        "NetworkMode": network_mode(r), "PortBindings": bindings,
        "PublishAllPorts": o.publish_all, "Dns": o.dns, "DnsSearch": o.dns_search,
        "DnsOptions": o.dns_options, "ExtraHosts": o.extra_hosts,
    })
}

/// `NetworkSettings` of a container (inspect; `Networks` is what `list` shows too).
pub fn settings(ctx: &Ctx, r: &Record) -> Value {
    let net = ctx.engine.container_network(r);
    let mut networks = Map::new();
    for a in &net.attachments {
        networks.insert(
            a.network.clone(),
            json!({
                "IPAMConfig": r.options.endpoints.iter().find(|e| e.network == a.network)
                    .and_then(|e| e.ip).map(|ip| json!({"IPv4Address": ip.to_string()})),
                "Links": null, "Aliases": if a.aliases.is_empty() { Value::Null } else { json!(a.aliases) },
                "NetworkID": a.network_id, "EndpointID": endpoint_id(&a.network_id, &r.id),
                "Gateway": a.gateway.to_string(),
                "IPAddress": a.ip.map(|i| i.to_string()).unwrap_or_default(),
                "IPPrefixLen": a.prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DNSNames": null,
                "MacAddress": r.options.endpoints.iter().find(|e| e.network == a.network)
                    .and_then(|e| e.mac.clone()).unwrap_or_default(),
            }),
        );
    }
    let mut ports: BTreeMap<String, Value> = BTreeMap::new();
    for e in &r.options.expose {
        ports.insert(e.clone(), Value::Null);
    }
    for m in &net.ports {
        let k = format!("{}/{}", m.container_port, m.proto);
        let b = json!({"HostIp": m.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
            "HostPort": m.host_port.to_string()});
        match ports.get_mut(&k) {
            Some(Value::Array(a)) => a.push(b),
            _ => {
                ports.insert(k, json!([b]));
            }
        }
    }
    let first = net.attachments.first();
    json!({
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": false,
        "Ports": ports, "Networks": networks,
        "IPAddress": first.and_then(|a| a.ip).map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map_or(0, |a| a.prefix),
        "Gateway": first.filter(|a| a.ip.is_some()).map(|a| a.gateway.to_string()).unwrap_or_default(),
        "MacAddress": "", "EndpointID": "",
    })
}

/// The network fields of a container in `GET /containers/json`: `Ports` and
/// `NetworkSettings.Networks`.
pub fn summary_fields(ctx: &Ctx, r: &Record, v: &mut Value) {
    v["Ports"] = port_list(ctx, r);
    v["NetworkSettings"] = json!({"Networks": settings(ctx, r)["Networks"]});
}

/// `Ports` of a container in `GET /containers/json`.
pub fn port_list(ctx: &Ctx, r: &Record) -> Value {
    let net = ctx.engine.container_network(r);
    Value::Array(
        net.ports
            .iter()
            .map(|m| {
                json!({"IP": m.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "PrivatePort": m.container_port, "PublicPort": m.host_port, "Type": m.proto.to_string()})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::NetworkMode;

    #[test]
    fn create_body_maps_network_fields() {
        let b = json!({
            "Image": "x", "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"NetworkMode": "web", "PortBindings": {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "", "HostPort": ""}]},
                "PublishAllPorts": true, "Dns": ["10.0.0.2"], "ExtraHosts": ["db:10.0.0.3"]},
            "NetworkingConfig": {"EndpointsConfig": {"web": {"Aliases": ["api"],
                "IPAMConfig": {"IPv4Address": "10.233.0.9"}}}}
        });
        let mut o = CreateOptions::default();
        apply_create_body(&b, &mut o).expect("maps");
        assert_eq!(o.network, NetworkMode::Bridge);
        assert_eq!(o.endpoints[0].network, "web");
        assert_eq!(o.endpoints[0].aliases, vec!["api"]);
        assert_eq!(o.endpoints[0].ip, Some("10.233.0.9".parse().expect("ip")));
        assert_eq!(o.publish.len(), 2);
        assert!(o
            .publish
            .iter()
            .any(|m| m.host_port == 8080 && m.container_port == 80));
        assert!(o
            .publish
            .iter()
            .any(|m| m.host_port == 0 && m.container_port == 53));
        assert!(o.publish_all);
        assert_eq!(o.dns, vec!["10.0.0.2"]);
        assert_eq!(o.expose, vec!["80/tcp"]);
        let mut d = CreateOptions::default();
        apply_create_body(&json!({"Image": "x"}), &mut d).expect("default");
        assert_eq!(d.network, NetworkMode::Bridge);
        assert_eq!(d.endpoints[0].network, "bridge");
        let bad = json!({"HostConfig": {"PortBindings": {"x/tcp": []}}});
        assert!(apply_create_body(&bad, &mut d).is_err());
    }

    #[test]
    fn network_create_body() {
        let r = create_request(&json!({"Name": "n", "Internal": true,
            "IPAM": {"Config": [{"Subnet": "10.233.1.0/24", "Gateway": "10.233.1.254"}]},
            "Labels": {"a": "b"}}))
        .expect("ok");
        assert!(r.internal);
        assert_eq!(r.subnet.as_deref(), Some("10.233.1.0/24"));
        assert_eq!(r.labels.get("a").map(String::as_str), Some("b"));
        assert!(create_request(&json!({"Name": "n", "Driver": "overlay"})).is_err());
        assert!(create_request(&json!({})).is_err());
    }
}
