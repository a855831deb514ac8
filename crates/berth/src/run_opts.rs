//! The finer flags of `run`/`create` (docker's HostConfig beyond the basics:
//! namespaces, devices, sysctls, /dev/shm, cgroup limits, annotations, and the
//! client-side ones: `--cidfile`, `--label-file`, `--pull`, `--platform`,
//! `--use-api-socket`), into the create request as docker's CLI sends them.

use anyhow::{anyhow, bail, Context};
use berth_client::{enc, Body, Client};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// The flags, flattened into `RunArgs`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunOpts {
    /// Add an annotation to the container (passed through to the OCI runtime)
    #[arg(long, value_name = "KEY=VALUE")]
    annotation: Vec<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// Block IO weight (relative device weight) (PATH:WEIGHT)
    #[arg(long)]
    blkio_weight_device: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    cgroupns: Option<String>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// CPU count (Windows only)
    #[arg(long)]
    cpu_count: Option<i64>,
    /// CPU percent (Windows only)
    #[arg(long)]
    cpu_percent: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// Limit CPU real-time period in microseconds
    #[arg(long)]
    cpu_rt_period: Option<i64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long)]
    cpu_rt_runtime: Option<i64>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMISSIONS]])
    #[arg(long)]
    device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ('c 1:3 mr')
    #[arg(long)]
    device_cgroup_rule: Vec<String>,
    /// Limit read rate (bytes per second) from a device (PATH:RATE, e.g. /dev/sda:1mb)
    #[arg(long)]
    device_read_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device (PATH:RATE)
    #[arg(long)]
    device_read_iops: Vec<String>,
    /// Limit write rate (bytes per second) to a device (PATH:RATE)
    #[arg(long)]
    device_write_bps: Vec<String>,
    /// Limit write rate (IO per second) to a device (PATH:RATE)
    #[arg(long)]
    device_write_iops: Vec<String>,
    /// Skip image verification (default true: berth has no content trust)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    disable_content_trust: bool,
    /// Container NIS domain name
    #[arg(long)]
    domainname: Option<String>,
    /// GPU devices to add to the container ('all' to pass all GPUs)
    #[arg(long)]
    gpus: Option<String>,
    /// Add additional groups to join (names of the image's /etc/group, or numbers)
    #[arg(long)]
    group_add: Vec<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long, allow_hyphen_values = true)]
    pub health_start_interval: Option<String>,
    /// Maximum IO bandwidth limit for the system drive (Windows only)
    #[arg(long)]
    io_maxbandwidth: Option<String>,
    /// Maximum IOps limit for the system drive (Windows only)
    #[arg(long)]
    io_maxiops: Option<u64>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    ip6: Option<String>,
    /// IPC mode to use (private, shareable, none, host, container:NAME)
    #[arg(long)]
    ipc: Option<String>,
    /// Container isolation technology (default only)
    #[arg(long)]
    isolation: Option<String>,
    /// Kernel memory limit (ignored, as docker does)
    #[arg(long)]
    kernel_memory: Option<String>,
    /// Read in a line delimited file of labels
    #[arg(long)]
    pub label_file: Vec<PathBuf>,
    /// Add link to another container
    #[arg(long)]
    link: Vec<String>,
    /// Container IPv4/IPv6 link-local addresses
    #[arg(long)]
    link_local_ip: Vec<String>,
    /// Logging driver for the container (json-file, local, none)
    #[arg(long)]
    log_driver: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long)]
    mac_address: Option<String>,
    /// Memory soft limit (e.g. 32m)
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    memory_swappiness: i64,
    /// Disable OOM Killer
    #[arg(long)]
    oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long, allow_hyphen_values = true)]
    oom_score_adj: Option<i64>,
    /// PID namespace to use (host, container:NAME)
    #[arg(long)]
    pid: Option<String>,
    /// Set platform if server is multi-platform capable (linux/amd64)
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long)]
    pub pull: Option<String>,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// Runtime to use for this container (runc, the default)
    #[arg(long)]
    runtime: Option<String>,
    /// Size of /dev/shm (default 64m)
    #[arg(long)]
    shm_size: Option<String>,
    /// Storage driver options for the container
    #[arg(long)]
    storage_opt: Vec<String>,
    /// Sysctl options (namespaced ones: net.*, fs.mqueue.*, kernel.msg*/sem/shm*)
    #[arg(long, value_name = "KEY=VALUE")]
    sysctl: Vec<String>,
    /// Bind mount the daemon's API socket at /var/run/docker.sock
    #[arg(long)]
    use_api_socket: bool,
    /// User namespace to use (host)
    #[arg(long)]
    userns: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    uts: Option<String>,
    /// Optional volume driver for the container (local)
    #[arg(long)]
    volume_driver: Option<String>,
}

fn size(flag: &str, v: &str) -> anyhow::Result<i64> {
    berth_engine::record::parse_size(v)
        .map(|n| n as i64)
        .map_err(|_| anyhow!("invalid argument {v:?} for \"{flag}\" flag: use a size like 64m, 1g or a number of bytes"))
}

fn key_values(flag: &str, list: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for kv in list {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| anyhow!("invalid argument {kv:?} for \"{flag}\" flag: use KEY=VALUE"))?;
        m.insert(k.to_string(), json!(v));
    }
    Ok(m)
}

/// `PATH:RATE` of the blkio flags (docker's ValidateThrottle*/ValidateWeightDevice).
fn device_rates(flag: &str, list: &[String], key: &str, bytes: bool) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    for d in list {
        let (path, rate) = d.rsplit_once(':').ok_or_else(|| {
            anyhow!(
                "{flag} {d:?}: bad format: use DEVICE-PATH:{}",
                key.to_uppercase()
            )
        })?;
        if !path.starts_with("/dev/") {
            bail!("{flag} {d:?}: bad format for device path: it starts with /dev/");
        }
        let n: u64 = if bytes {
            berth_engine::record::parse_size(rate).map_err(|_| {
                anyhow!("{flag} {d:?}: invalid rate: use <device-path>:<number>[<unit>], a positive number with an optional unit kb, mb or gb")
            })?
        } else {
            rate.parse().map_err(|_| {
                anyhow!(
                    "{flag} {d:?}: invalid {}: use <device-path>:<number>",
                    key.to_lowercase()
                )
            })?
        };
        if key == "Weight" && n != 0 && !(10..=1000).contains(&n) {
            bail!("{flag} {d:?}: invalid weight for device: use 10 to 1000");
        }
        out.push(json!({"Path": path, key: n}));
    }
    Ok(Value::Array(out))
}

/// `--device HOST[:CONTAINER[:PERMISSIONS]]` as docker parses it.
fn device(spec: &str) -> anyhow::Result<Value> {
    let valid_mode =
        |m: &str| !m.is_empty() && m.len() <= 3 && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, mut dst, mut perms) = (parts[0], "", "rwm");
    match parts.len() {
        1 => {}
        2 if valid_mode(parts[1]) => perms = parts[1],
        2 => dst = parts[1],
        3 => {
            dst = parts[1];
            perms = parts[2];
        }
        _ => bail!(
            "--device {spec:?}: invalid device specification: use HOST[:CONTAINER[:PERMISSIONS]]"
        ),
    }
    if !valid_mode(perms) {
        bail!("--device {spec:?}: invalid device mode {perms:?}: use a combination of r, w and m");
    }
    let dst = if dst.is_empty() { src } else { dst };
    if !src.starts_with('/') || !dst.starts_with('/') {
        bail!("--device {spec:?}: bad format for path: device paths must be absolute");
    }
    Ok(json!({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}))
}

/// Labels of `--label-file` (one `key=value` a line; `#` comments), then `-l`.
pub fn labels(files: &[PathBuf], flags: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut put = |l: &str| {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        out.insert(k.to_string(), json!(v));
    };
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--label-file {}: cannot read it", f.display()))?;
        for l in text.lines().map(str::trim) {
            if !l.is_empty() && !l.starts_with('#') {
                put(l);
            }
        }
    }
    for l in flags {
        put(l);
    }
    Ok(out)
}

impl RunOpts {
    /// Checks made before anything is asked of the daemon.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(p) = &self.pull {
            if !matches!(p.as_str(), "always" | "missing" | "never") {
                bail!("--pull {p:?}: invalid pull option: use always, missing or never");
            }
        }
        if self.memory_swappiness != -1 && !(0..=100).contains(&self.memory_swappiness) {
            bail!(
                "--memory-swappiness {}: invalid value, the range is 0-100",
                self.memory_swappiness
            );
        }
        if let Some(f) = &self.cidfile {
            if f.exists() {
                bail!(
                    "container ID file found, make sure the other container isn't running or delete {}",
                    f.display()
                );
            }
        }
        Ok(())
    }

    /// The limits: memory, CPU, block I/O, devices (HostConfig fields).
    fn limits(&self) -> anyhow::Result<Vec<(&'static str, Value)>> {
        let sz = |flag: &str, v: &Option<String>| -> anyhow::Result<i64> {
            Ok(v.as_deref()
                .map(|v| size(flag, v))
                .transpose()?
                .unwrap_or(0))
        };
        let rates = |flag, list: &[String], key, bytes| device_rates(flag, list, key, bytes);
        let devices: Vec<Value> = self
            .device
            .iter()
            .map(|d| device(d))
            .collect::<anyhow::Result<_>>()?;
        Ok(vec![
            ("BlkioWeight", json!(self.blkio_weight.unwrap_or(0))),
            (
                "BlkioWeightDevice",
                rates(
                    "--blkio-weight-device",
                    &self.blkio_weight_device,
                    "Weight",
                    false,
                )?,
            ),
            (
                "BlkioDeviceReadBps",
                rates("--device-read-bps", &self.device_read_bps, "Rate", true)?,
            ),
            (
                "BlkioDeviceWriteBps",
                rates("--device-write-bps", &self.device_write_bps, "Rate", true)?,
            ),
            (
                "BlkioDeviceReadIOps",
                rates("--device-read-iops", &self.device_read_iops, "Rate", false)?,
            ),
            (
                "BlkioDeviceWriteIOps",
                rates(
                    "--device-write-iops",
                    &self.device_write_iops,
                    "Rate",
                    false,
                )?,
            ),
            ("CpuCount", json!(self.cpu_count.unwrap_or(0))),
            ("CpuPercent", json!(self.cpu_percent.unwrap_or(0))),
            ("CpuPeriod", json!(self.cpu_period.unwrap_or(0))),
            ("CpuQuota", json!(self.cpu_quota.unwrap_or(0))),
            ("CpuRealtimePeriod", json!(self.cpu_rt_period.unwrap_or(0))),
            (
                "CpuRealtimeRuntime",
                json!(self.cpu_rt_runtime.unwrap_or(0)),
            ),
            (
                "CpusetMems",
                json!(self.cpuset_mems.clone().unwrap_or_default()),
            ),
            ("Devices", Value::Array(devices)),
            ("DeviceCgroupRules", json!(self.device_cgroup_rule)),
            (
                "IOMaximumBandwidth",
                json!(sz("--io-maxbandwidth", &self.io_maxbandwidth)?),
            ),
            ("IOMaximumIOps", json!(self.io_maxiops.unwrap_or(0))),
            (
                "KernelMemory",
                json!(sz("--kernel-memory", &self.kernel_memory)?),
            ),
            (
                "MemoryReservation",
                json!(sz("--memory-reservation", &self.memory_reservation)?),
            ),
            ("MemorySwappiness", json!(self.memory_swappiness)),
            ("OomKillDisable", json!(self.oom_kill_disable)),
            ("OomScoreAdj", json!(self.oom_score_adj.unwrap_or(0))),
            ("ShmSize", json!(sz("--shm-size", &self.shm_size)?)),
        ])
    }

    /// Namespaces, runtime and the maps (HostConfig fields).
    fn modes(&self) -> anyhow::Result<Vec<(&'static str, Value)>> {
        let s = |v: &Option<String>| json!(v.clone().unwrap_or_default());
        let mut v = vec![
            (
                "Annotations",
                json!(key_values("--annotation", &self.annotation)?),
            ),
            ("Sysctls", json!(key_values("--sysctl", &self.sysctl)?)),
            (
                "StorageOpt",
                json!(key_values("--storage-opt", &self.storage_opt)?),
            ),
            ("CgroupParent", s(&self.cgroup_parent)),
            ("CgroupnsMode", s(&self.cgroupns)),
            ("GroupAdd", json!(self.group_add)),
            ("IpcMode", s(&self.ipc)),
            ("Isolation", s(&self.isolation)),
            ("Links", json!(self.link)),
            ("PidMode", s(&self.pid)),
            ("Runtime", s(&self.runtime)),
            ("UsernsMode", s(&self.userns)),
            ("UTSMode", s(&self.uts)),
            ("VolumeDriver", s(&self.volume_driver)),
        ];
        if let Some(g) = &self.gpus {
            let count = if g == "all" { -1 } else { 0 };
            v.push((
                "DeviceRequests",
                json!([{"Driver": "", "Count": count, "Capabilities": [["gpu"]], "Options": {}}]),
            ));
        }
        Ok(v)
    }

    /// The flags into the create body, as docker's CLI sends them; `socket` is
    /// the daemon's, for `--use-api-socket`.
    pub fn to_body(&self, body: &mut Value, socket: &std::path::Path) -> anyhow::Result<()> {
        let mut hc = body["HostConfig"].as_object().cloned().unwrap_or_default();
        for (k, v) in self.limits()?.into_iter().chain(self.modes()?) {
            hc.insert(k.into(), v);
        }
        if let Some(d) = &self.log_driver {
            let mut lc = hc
                .get("LogConfig")
                .cloned()
                .unwrap_or_else(|| json!({"Config": {}}));
            lc["Type"] = json!(d);
            hc.insert("LogConfig".into(), lc);
        }
        if self.use_api_socket {
            // docker's: the credentials are copied in after create (api_socket_config)
            let env = &mut body["Env"];
            if !env.is_array() {
                *env = json!([]);
            }
            if let Some(a) = env.as_array_mut() {
                a.push(json!(format!("DOCKER_CONFIG={API_CONFIG_DIR}")));
            }
            // docker's path in the container, bound to our daemon's socket
            let mut mounts = hc
                .get("Mounts")
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default();
            mounts.push(json!({"Type": "bind", "Source": socket, "Target": "/var/run/docker.sock", "ReadOnly": false}));
            hc.insert("Mounts".into(), Value::Array(mounts));
        }
        body["HostConfig"] = Value::Object(hc);
        if let Some(d) = &self.domainname {
            body["Domainname"] = json!(d);
        }
        self.endpoint(body);
        Ok(())
    }

    /// `--mac-address`, `--ip6`, `--link-local-ip`: the endpoint of the network.
    fn endpoint(&self, body: &mut Value) {
        if self.mac_address.is_none() && self.ip6.is_none() && self.link_local_ip.is_empty() {
            return;
        }
        let net = body["HostConfig"]["NetworkMode"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let ep = &mut body["NetworkingConfig"]["EndpointsConfig"][net];
        if let Some(m) = &self.mac_address {
            ep["MacAddress"] = json!(m);
        }
        if let Some(ip) = &self.ip6 {
            ep["IPAMConfig"]["IPv6Address"] = json!(ip);
        }
        if !self.link_local_ip.is_empty() {
            ep["IPAMConfig"]["LinkLocalIPs"] = json!(self.link_local_ip);
        }
    }
}

/// Where `--use-api-socket` puts the client's registry credentials (docker's).
const API_CONFIG_DIR: &str = "/run/secrets/docker";

/// `--use-api-socket`, after create: the registry credentials of `berth login`
/// (already docker's `config.json` format) copied to `/run/secrets/docker`, so
/// that a docker client in the container pulls as the user does.
pub fn api_socket_config(c: &Client, opts: &RunOpts, id: &str) -> anyhow::Result<()> {
    if !opts.use_api_socket {
        return Ok(());
    }
    let path = berth_registry::Credentials::default_path();
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"{\"auths\":{}}".to_vec(),
        Err(e) => bail!(
            "--use-api-socket: cannot read the credentials {}: {e}",
            path.display()
        ),
    };
    let mut b = tar::Builder::new(Vec::new());
    let rel = API_CONFIG_DIR.trim_start_matches('/');
    let mut dir = String::new();
    for part in rel.split('/') {
        dir = if dir.is_empty() {
            part.to_string()
        } else {
            format!("{dir}/{part}")
        };
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o600, data.len() as u64);
    b.append_data(&mut h, format!("{rel}/config.json"), data.as_slice())?;
    let tar = b.into_inner()?;
    let copied = c
        .request(
            "PUT",
            &format!("/containers/{}/archive?path=%2F", enc(id)),
            Body::Bytes(&tar, "application/x-tar"),
        )
        .and_then(|r| r.ok().map(drop));
    if let Err(e) = copied {
        // half made: the container goes, as a failed create leaves none
        let _ = c.delete(&format!("/containers/{}?force=1", enc(id)));
        return Err(anyhow!(e)
            .context("--use-api-socket: copy the registry credentials into the container"));
    }
    Ok(())
}

/// A root-owned tar header.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h
}

/// The query of the create request (`name`, `platform`).
pub fn create_query(name: Option<&str>, platform: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(n) = name {
        q.push(format!("name={}", enc(n)));
    }
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        q.push(format!("platform={}", enc(p)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Pulls `image` through the daemon, showing its progress unless `quiet`
/// (docker's "Unable to find image … locally" first, on stderr, when `missing`).
pub fn pull(c: &Client, image: &str, quiet: bool) -> anyhow::Result<()> {
    let r = berth_image::Reference::parse(image)?;
    let resp = crate::registry::start_pull(c, &r, false)?;
    crate::progress::show_json_stream_to(resp.reader(), quiet, &mut std::io::stderr().lock())?;
    Ok(())
}

/// Writes the id to `--cidfile` (docker refuses an existing file: checked before).
pub fn write_cidfile(path: Option<&PathBuf>, id: &str) -> anyhow::Result<()> {
    let Some(p) = path else { return Ok(()) };
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .with_context(|| {
            format!(
                "--cidfile {}: cannot create the container ID file",
                p.display()
            )
        })?;
    f.write_all(id.as_bytes())
        .with_context(|| format!("--cidfile {}: cannot write the container ID", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_like_docker() {
        assert_eq!(
            device("/dev/zero").expect("one")["PathInContainer"],
            "/dev/zero"
        );
        let d = device("/dev/zero:r").expect("mode");
        assert_eq!(
            (
                d["PathInContainer"].as_str(),
                d["CgroupPermissions"].as_str()
            ),
            (Some("/dev/zero"), Some("r"))
        );
        let d = device("/dev/zero:/dev/z:rw").expect("three");
        assert_eq!(d["PathInContainer"], "/dev/z");
        assert!(device("/dev/zero:/dev/z:rwx").is_err());
        assert!(device("/dev/zero:rel").is_err());
    }

    #[test]
    fn rates_and_labels() {
        let v =
            device_rates("--device-read-bps", &["/dev/sda:1mb".into()], "Rate", true).expect("bps");
        assert_eq!(v[0]["Rate"], 1 << 20);
        assert!(device_rates("--device-read-iops", &["/dev/sda:x".into()], "Rate", false).is_err());
        assert!(device_rates("--device-read-iops", &["sda:1".into()], "Rate", false).is_err());
        assert!(device_rates(
            "--blkio-weight-device",
            &["/dev/sda:5".into()],
            "Weight",
            false
        )
        .is_err());
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("labels");
        std::fs::write(&f, "# c\na=1\nb=2\n").expect("write");
        let l = labels(&[f], &["b=3".into()]).expect("labels");
        assert_eq!((l["a"].as_str(), l["b"].as_str()), (Some("1"), Some("3")));
        assert_eq!(
            create_query(Some("x"), Some("linux/amd64")),
            "?name=x&platform=linux%2Famd64"
        );
    }
}
