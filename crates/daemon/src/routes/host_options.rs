//! The create body's finer `HostConfig` fields (namespaces, devices, sysctls,
//! /dev/shm, cgroup limits, annotations) to engine options and back for inspect,
//! and the fields berth refuses with a message naming the docker flag.

use berth_engine::{CreateOptions, DeviceMapping, DeviceRate};
use serde_json::{json, Map, Value};

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

fn string_map(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

fn rates(v: &Value, field: &str, key: &str) -> Result<Vec<DeviceRate>, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            Ok(DeviceRate {
                path: text(&d["Path"]).ok_or(format!("HostConfig.{field}: Path is required"))?,
                rate: d[key]
                    .as_u64()
                    .ok_or(format!("HostConfig.{field}: {key} must be a whole number"))?,
            })
        })
        .collect()
}

fn positive(v: &Value) -> Option<i64> {
    v.as_i64().filter(|n| *n > 0)
}

/// HostConfig (and `Config.Domainname`) → engine options; the refused fields fail
/// here, before anything is created.
pub fn apply(body: &Value, o: &mut CreateOptions) -> Result<(), String> {
    let hc = &body["HostConfig"];
    refuse_unsupported(body)?;
    o.domainname = text(&body["Domainname"]);
    o.group_add = strings(&hc["GroupAdd"]);
    o.sysctls = string_map(&hc["Sysctls"]);
    o.annotations = string_map(&hc["Annotations"]);
    o.shm_size = hc["ShmSize"].as_i64().filter(|n| *n != 0);
    o.pid_mode = text(&hc["PidMode"]);
    o.ipc_mode = text(&hc["IpcMode"]);
    o.uts_mode = text(&hc["UTSMode"]);
    o.cgroupns_mode = text(&hc["CgroupnsMode"]);
    o.cgroup_parent = text(&hc["CgroupParent"]);
    o.oom_score_adj = hc["OomScoreAdj"]
        .as_i64()
        .filter(|n| *n != 0)
        .map(|n| n.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
    o.oom_kill_disable = hc["OomKillDisable"].as_bool().unwrap_or(false);
    o.memory_reservation = positive(&hc["MemoryReservation"]);
    o.memory_swappiness = match hc["MemorySwappiness"].as_i64() {
        None | Some(-1) => None,
        Some(n) if n < 0 => {
            return Err(format!(
                "--memory-swappiness {n}: invalid value, the range is 0-100"
            ))
        }
        Some(n) => Some(n as u64),
    };
    o.cpu_period = positive(&hc["CpuPeriod"]).map(|n| n as u64);
    o.cpu_quota = hc["CpuQuota"].as_i64().filter(|n| *n != 0);
    o.cpu_rt_period = positive(&hc["CpuRealtimePeriod"]).map(|n| n as u64);
    o.cpu_rt_runtime = hc["CpuRealtimeRuntime"].as_i64().filter(|n| *n != 0);
    o.cpuset_mems = text(&hc["CpusetMems"]);
    o.blkio_weight = hc["BlkioWeight"]
        .as_u64()
        .filter(|n| *n != 0)
        .map(|n| n.min(u16::MAX as u64) as u16);
    o.blkio_weight_device = rates(&hc["BlkioWeightDevice"], "BlkioWeightDevice", "Weight")?;
    o.device_read_bps = rates(&hc["BlkioDeviceReadBps"], "BlkioDeviceReadBps", "Rate")?;
    o.device_write_bps = rates(&hc["BlkioDeviceWriteBps"], "BlkioDeviceWriteBps", "Rate")?;
    o.device_read_iops = rates(&hc["BlkioDeviceReadIOps"], "BlkioDeviceReadIOps", "Rate")?;
    o.device_write_iops = rates(&hc["BlkioDeviceWriteIOps"], "BlkioDeviceWriteIOps", "Rate")?;
    for d in hc["Devices"].as_array().into_iter().flatten() {
        let host = text(&d["PathOnHost"]).ok_or("HostConfig.Devices: PathOnHost is required")?;
        o.devices.push(DeviceMapping {
            path_in_container: text(&d["PathInContainer"]).unwrap_or_else(|| host.clone()),
            permissions: text(&d["CgroupPermissions"]).unwrap_or_else(|| "rwm".into()),
            path_on_host: host,
        });
    }
    o.device_cgroup_rules = strings(&hc["DeviceCgroupRules"]);
    o.log_driver = text(&hc["LogConfig"]["Type"]).filter(|t| t != "json-file");
    // legacy links: HostConfig.Links, or (user networks) the endpoint's Links
    o.links = strings(&hc["Links"]);
    let eps = body["NetworkingConfig"]["EndpointsConfig"].as_object();
    for ep in eps.into_iter().flat_map(|m| m.values()) {
        for l in strings(&ep["Links"]) {
            if !o.links.contains(&l) {
                o.links.push(l);
            }
        }
    }
    // docker's stored form `/name:/container/alias` back to `name:alias`
    for l in &mut o.links {
        if let Some((n, a)) = l.split_once(':') {
            let n = n.trim_start_matches('/');
            let a = a.rsplit('/').next().unwrap_or(a);
            *l = format!("{n}:{a}");
        } else {
            *l = l.trim_start_matches('/').to_string();
        }
    }
    Ok(())
}

/// docker's warnings that berth's checks do not produce themselves.
pub fn warnings(body: &Value) -> Vec<String> {
    let mut w = Vec::new();
    if body["HostConfig"]["KernelMemory"]
        .as_i64()
        .is_some_and(|k| k != 0)
    {
        w.push("Specifying a kernel memory limit is deprecated and will be removed in a future release.".into());
    }
    w
}

/// What berth cannot do, named by the docker flag that asks for it.
fn refuse_unsupported(body: &Value) -> Result<(), String> {
    let hc = &body["HostConfig"];
    match hc["Runtime"].as_str().unwrap_or("") {
        "" | "runc" | "berth-runtime" => {}
        r => return Err(format!("--runtime {r}: unknown or invalid runtime name: berth runs containers with its own runtime, named runc (the default): drop --runtime")),
    }
    match hc["Isolation"].as_str().unwrap_or("") {
        "" | "default" => {}
        i => {
            return Err(format!(
                "--isolation {i}: invalid isolation: linux only supports 'default'"
            ))
        }
    }
    match hc["UsernsMode"].as_str().unwrap_or("") {
        "" | "host" => {}
        u => return Err(format!("--userns {u}: user-namespace remapping is not supported yet: use --userns host or drop the flag")),
    }
    match hc["VolumeDriver"].as_str().unwrap_or("") {
        "" | "local" => {}
        d => return Err(format!("--volume-driver {d}: only the local volume driver is available: drop the flag or use local")),
    }
    if hc["DeviceRequests"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err("--gpus: could not select device driver \"\" with capabilities: [[gpu]]: berth has no GPU support (no NVIDIA container toolkit here): drop --gpus".into());
    }
    if hc["StorageOpt"].as_object().is_some_and(|m| !m.is_empty()) {
        return Err("--storage-opt: not supported by berth's overlay snapshots (per-container size quotas need xfs with pquota): drop the flag".into());
    }
    let nonzero = |k: &str| hc[k].as_i64().is_some_and(|n| n != 0);
    if nonzero("IOMaximumBandwidth") || nonzero("IOMaximumIOps") {
        return Err("--io-maxbandwidth/--io-maxiops: invalid QoS settings: linux does not support maximum IO bandwidth or IOps (they are Windows-only); use --device-read-bps/--device-write-bps/--device-read-iops/--device-write-iops".into());
    }
    if nonzero("CpuCount") || nonzero("CpuPercent") {
        return Err("--cpu-count/--cpu-percent: invalid QoS settings: linux does not support CPU count or percent (they are Windows-only); use --cpus".into());
    }
    let eps = body["NetworkingConfig"]["EndpointsConfig"].as_object();
    for ep in eps.into_iter().flat_map(|m| m.values()) {
        if text(&ep["IPAMConfig"]["IPv6Address"]).is_some() {
            return Err(
                "--ip6: IPv6 addresses are not supported by berth's networks yet: drop --ip6"
                    .into(),
            );
        }
        if ep["IPAMConfig"]["LinkLocalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return Err("--link-local-ip: link-local addresses are not supported by berth's networks yet: drop the flag".into());
        }
    }
    Ok(())
}

/// `platform` of a create: the host's platform only.
pub fn check_platform(p: Option<&String>) -> Result<(), String> {
    let Some(p) = p.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let mut parts = p.split('/');
    let os = parts.next().unwrap_or("");
    let a = parts.next();
    if os == "linux" && a.is_none_or(|a| a == arch) {
        return Ok(());
    }
    Err(format!(
        "--platform {p}: berth runs linux/{arch} containers only (no emulation): drop --platform or use linux/{arch}"
    ))
}

fn rates_json(v: &[DeviceRate], key: &str) -> Value {
    Value::Array(
        v.iter()
            .map(|d| json!({"Path": d.path, key: d.rate}))
            .collect(),
    )
}

/// The fields of inspect's `HostConfig` kept here (`name`: the container's).
pub fn inspect(o: &CreateOptions, name: &str, hc: &mut Map<String, Value>) {
    let links: Vec<String> = o
        .links
        .iter()
        .map(|l| {
            let (n, a) = l.split_once(':').unwrap_or((l, l));
            format!("/{n}:/{name}/{a}")
        })
        .collect();
    let fields = json!({
        "Links": (!links.is_empty()).then_some(links),
        "GroupAdd": (!o.group_add.is_empty()).then_some(&o.group_add),
        "Sysctls": (!o.sysctls.is_empty()).then_some(&o.sysctls),
        "Annotations": (!o.annotations.is_empty()).then_some(&o.annotations),
        "ShmSize": o.shm_size.unwrap_or(berth_engine::hostconfig::DEFAULT_SHM_SIZE),
        "PidMode": o.pid_mode.clone().unwrap_or_default(),
        "IpcMode": o.ipc_mode.clone().unwrap_or_else(|| "private".into()),
        "UTSMode": o.uts_mode.clone().unwrap_or_default(),
        "CgroupnsMode": o.cgroupns_mode.clone().unwrap_or_else(|| "private".into()),
        "CgroupParent": o.cgroup_parent.clone().unwrap_or_default(),
        "OomScoreAdj": o.oom_score_adj.unwrap_or(0),
        "OomKillDisable": o.oom_kill_disable,
        "MemoryReservation": o.memory_reservation.unwrap_or(0),
        "MemorySwappiness": o.memory_swappiness,
        "CpuPeriod": o.cpu_period.unwrap_or(0), "CpuQuota": o.cpu_quota.unwrap_or(0),
        "CpuRealtimePeriod": o.cpu_rt_period.unwrap_or(0),
        "CpuRealtimeRuntime": o.cpu_rt_runtime.unwrap_or(0),
        "CpusetMems": o.cpuset_mems.clone().unwrap_or_default(),
        "BlkioWeight": o.blkio_weight.unwrap_or(0),
        "BlkioWeightDevice": rates_json(&o.blkio_weight_device, "Weight"),
        "BlkioDeviceReadBps": rates_json(&o.device_read_bps, "Rate"),
        "BlkioDeviceWriteBps": rates_json(&o.device_write_bps, "Rate"),
        "BlkioDeviceReadIOps": rates_json(&o.device_read_iops, "Rate"),
        "BlkioDeviceWriteIOps": rates_json(&o.device_write_iops, "Rate"),
        "Devices": o.devices.iter().map(|d| json!({"PathOnHost": d.path_on_host,
            "PathInContainer": d.path_in_container, "CgroupPermissions": d.permissions})).collect::<Vec<_>>(),
        "DeviceCgroupRules": (!o.device_cgroup_rules.is_empty()).then_some(&o.device_cgroup_rules),
        "Runtime": "runc", "Isolation": "", "UsernsMode": "", "VolumeDriver": "",
    });
    if let Value::Object(m) = fields {
        hc.extend(m);
    }
    if let Some(d) = &o.log_driver {
        hc.insert("LogConfig".into(), json!({"Type": d, "Config": {}}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_config_fields_map_to_options() {
        let body = json!({"Image": "i", "Domainname": "example.org", "HostConfig": {
            "GroupAdd": ["audio", "1234"], "Sysctls": {"net.ipv4.ip_forward": "1"},
            "ShmSize": 1048576, "PidMode": "host", "IpcMode": "shareable", "OomScoreAdj": 100,
            "MemorySwappiness": -1, "CpuPeriod": 50000, "CpuQuota": 25000,
            "Devices": [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z", "CgroupPermissions": "rw"}],
            "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1048576}],
            "Annotations": {"a": "b"}, "LogConfig": {"Type": "none", "Config": {}}}});
        let mut o = CreateOptions::default();
        apply(&body, &mut o).expect("apply");
        assert_eq!(o.domainname.as_deref(), Some("example.org"));
        assert_eq!(o.group_add, ["audio", "1234"]);
        assert_eq!(o.shm_size, Some(1 << 20));
        assert_eq!(o.memory_swappiness, None);
        assert_eq!((o.cpu_period, o.cpu_quota), (Some(50000), Some(25000)));
        assert_eq!(o.devices[0].path_in_container, "/dev/z");
        assert_eq!(o.device_read_bps[0].rate, 1 << 20);
        assert_eq!(o.log_driver.as_deref(), Some("none"));
        let mut hc = Map::new();
        inspect(&o, "c", &mut hc);
        assert_eq!(hc["ShmSize"], 1048576);
        assert_eq!(hc["IpcMode"], "shareable");
    }

    #[test]
    fn unsupported_fields_name_their_flag() {
        for (hc, flag) in [
            (json!({"Runtime": "kata"}), "--runtime"),
            (json!({"Isolation": "hyperv"}), "--isolation"),
            (json!({"UsernsMode": "private"}), "--userns"),
            (json!({"VolumeDriver": "nfs"}), "--volume-driver"),
            (json!({"DeviceRequests": [{"Count": -1}]}), "--gpus"),
            (json!({"StorageOpt": {"size": "1G"}}), "--storage-opt"),
            (json!({"IOMaximumIOps": 5}), "--io-maxiops"),
            (json!({"CpuCount": 2}), "--cpu-count"),
        ] {
            let e =
                apply(&json!({"HostConfig": hc}), &mut CreateOptions::default()).expect_err(flag);
            assert!(e.contains(flag), "{e}");
        }
        let ok = json!({"HostConfig": {"Runtime": "runc", "Isolation": "default", "UsernsMode": "host"}});
        apply(&ok, &mut CreateOptions::default()).expect("defaults");
        assert!(
            check_platform(Some(&"linux/amd64".to_string())).is_ok()
                || std::env::consts::ARCH != "x86_64"
        );
        assert!(check_platform(Some(&"windows/amd64".to_string())).is_err());
        assert!(check_platform(None).is_ok());
    }
}
