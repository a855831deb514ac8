//! What the engine stores per container under `<data-root>/containers/<id>/`:
//! `config.json` (the [`Record`]), `bundle/config.json` (the OCI spec), `rootfs/` (the
//! mounted snapshot), `logs/<id>-json.log`, `exit.json` (the [`ExitStatus`], written
//! by the supervisor) and `lock`.

use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// How the container's network is set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// a new network namespace with only loopback
    #[default]
    None,
    /// the host's network namespace
    Host,
    /// a new network namespace connected to the bridge networks in
    /// [`CreateOptions::endpoints`] (docker's default; without a networking
    /// service, as in a CLI that runs containers itself, loopback only)
    Bridge,
    /// the network namespace of another container (`container:NAME`)
    Container(String),
}

impl NetworkMode {
    /// Whether the container gets a network namespace of its own.
    pub fn own_namespace(&self) -> bool {
        matches!(self, NetworkMode::None | NetworkMode::Bridge)
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = Error;
    /// `none`, `host`, `bridge`/`default`, `container:NAME`; any other value names a
    /// user network, which is bridge mode (see [`crate::network::parse_mode`] to keep
    /// the name).
    fn from_str(s: &str) -> Result<Self> {
        Ok(crate::network::parse_mode(s)?.0)
    }
}

/// A bind mount from `-v /host:/ctr[:ro]`, or a named volume from `-v name:/ctr[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// host path (absolute; for a volume, its mount point once created)
    pub source: PathBuf,
    /// the named volume, if this is one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// path in the container (absolute)
    pub target: PathBuf,
    /// mounted read-only
    pub readonly: bool,
}

impl std::str::FromStr for Bind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [a, b] => (*a, *b, ""),
            [a, b, m] => (*a, *b, *m),
            _ => {
                return Err(Error::Invalid(format!(
                "-v {s:?}: use /host/path:/container/path[:ro] or volume-name:/container/path[:ro]"
            )))
            }
        };
        if !dst.starts_with('/') {
            return Err(Error::Invalid(format!(
                "-v {s:?}: the path in the container must be absolute"
            )));
        }
        let volume = if src.starts_with('/') {
            None
        } else {
            Some(crate::names::validate(src)?.to_string())
        };
        let readonly = match mode {
            "" | "rw" => false,
            "ro" => true,
            m => {
                return Err(Error::Invalid(format!(
                    "-v {s:?}: unknown mode {m:?}: use ro or rw"
                )))
            }
        };
        Ok(Bind {
            source: if volume.is_some() {
                PathBuf::new()
            } else {
                src.into()
            },
            volume,
            target: dst.into(),
            readonly,
        })
    }
}

/// What the user asked for on `run`/`create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateOptions {
    /// image reference as typed
    pub image: String,
    /// `--name`
    pub name: Option<String>,
    /// the command after the image (replaces the image's Cmd)
    pub cmd: Vec<String>,
    /// `--entrypoint` (an empty string clears the image's)
    pub entrypoint: Option<String>,
    /// `-e KEY=VALUE`
    pub env: Vec<String>,
    /// `-w`
    pub workdir: Option<String>,
    /// `-u user[:group]`
    pub user: Option<String>,
    /// `--hostname`
    pub hostname: Option<String>,
    /// `--memory` in bytes
    pub memory: Option<i64>,
    /// `--pids-limit`
    pub pids_limit: Option<i64>,
    /// `--network`
    pub network: NetworkMode,
    /// `--read-only`
    pub read_only: bool,
    /// `-v`
    pub binds: Vec<Bind>,
    /// `--rm`
    pub auto_remove: bool,
    /// `-t`
    pub tty: bool,
    /// `-i`
    pub interactive: bool,
    /// log rotation (`--log-opt max-size=…,max-file=…`)
    #[serde(default)]
    pub log: LogOptions,
    /// `--security-opt seccomp=unconfined`: no seccomp profile
    #[serde(default)]
    pub seccomp_unconfined: bool,
    /// `--security-opt no-new-privileges`
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `--cap-add` (names with or without `CAP_`, or `ALL`)
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--tmpfs /path[:options]`
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// `--ulimit name=soft[:hard]`
    #[serde(default)]
    pub ulimits: Vec<String>,
    /// `--cpus` (fraction of CPUs)
    #[serde(default)]
    pub cpus: Option<f64>,
    /// `--cpu-shares`
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// `--memory-swap` in bytes (memory plus swap; -1 unlimited)
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// `--stop-signal`
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `-l key=value`
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// the networks of bridge mode, the first carrying the default route
    /// (`--network NAME`, `--network-alias`, `--ip`, `network connect`)
    #[serde(default)]
    pub endpoints: Vec<crate::network::EndpointConfig>,
    /// `-p` (host port 0: picked free at each start) and, resolved at create, `-P`
    #[serde(default)]
    pub publish: Vec<crate::network::PortMapping>,
    /// `-P`: every exposed port is published
    #[serde(default)]
    pub publish_all: bool,
    /// `--expose` and the image's EXPOSE, as `80/tcp`
    #[serde(default)]
    pub expose: Vec<String>,
    /// `--dns`
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--dns-search`
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option`
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host name:ip`
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--restart` (`HostConfig.RestartPolicy`)
    #[serde(default)]
    pub restart: crate::restart::RestartPolicy,
    /// `--health-*` / `--no-healthcheck` (`Config.Healthcheck`); after create, merged
    /// with the image's
    #[serde(default)]
    pub healthcheck: Option<crate::health::HealthConfig>,
    /// the terminal's size (rows, columns) at creation, for a `-t` container's pty
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// close the container's stdin when the attached client closes its own
    /// (docker's `StdinOnce`, set by `run -i`)
    #[serde(default)]
    pub stdin_once: bool,
    /// `--init`: a small init (tini) runs as pid 1, forwards signals and reaps
    #[serde(default)]
    pub init: bool,
    /// `--group-add` (group names of the image's /etc/group, or numbers)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `--sysctl key=value` (namespaced ones only)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `--shm-size` in bytes (docker's default: 64 MiB)
    #[serde(default)]
    pub shm_size: Option<i64>,
    /// `--pid`: `host`, `container:NAME`, or private (None)
    #[serde(default)]
    pub pid_mode: Option<String>,
    /// `--ipc`: `host`, `private`, `shareable`, `none`, `container:NAME` (None: private)
    #[serde(default)]
    pub ipc_mode: Option<String>,
    /// `--uts host`
    #[serde(default)]
    pub uts_mode: Option<String>,
    /// `--cgroupns host|private` (None: the engine's default, private)
    #[serde(default)]
    pub cgroupns_mode: Option<String>,
    /// `--cgroup-parent` (the container's cgroup is `<parent>/<id>`)
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    /// `--domainname`
    #[serde(default)]
    pub domainname: Option<String>,
    /// `--oom-score-adj`
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// `--oom-kill-disable`
    #[serde(default)]
    pub oom_kill_disable: bool,
    /// `--memory-reservation` in bytes
    #[serde(default)]
    pub memory_reservation: Option<i64>,
    /// `--memory-swappiness` (0 to 100)
    #[serde(default)]
    pub memory_swappiness: Option<u64>,
    /// `--cpu-period` in microseconds
    #[serde(default)]
    pub cpu_period: Option<u64>,
    /// `--cpu-quota` in microseconds
    #[serde(default)]
    pub cpu_quota: Option<i64>,
    /// `--cpu-rt-period` in microseconds
    #[serde(default)]
    pub cpu_rt_period: Option<u64>,
    /// `--cpu-rt-runtime` in microseconds
    #[serde(default)]
    pub cpu_rt_runtime: Option<i64>,
    /// `--cpuset-mems`
    #[serde(default)]
    pub cpuset_mems: Option<String>,
    /// `--blkio-weight` (10 to 1000)
    #[serde(default)]
    pub blkio_weight: Option<u16>,
    /// `--blkio-weight-device PATH:WEIGHT`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blkio_weight_device: Vec<DeviceRate>,
    /// `--device-read-bps PATH:RATE`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<DeviceRate>,
    /// `--device-write-bps PATH:RATE`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<DeviceRate>,
    /// `--device-read-iops PATH:RATE`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<DeviceRate>,
    /// `--device-write-iops PATH:RATE`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<DeviceRate>,
    /// `--device HOST[:CONTAINER[:PERMISSIONS]]`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// `--device-cgroup-rule 'c 1:3 rwm'`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// `--annotation key=value` (into the OCI spec's annotations)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `--log-driver`: `json-file` (None), `local` (the same files) or `none`
    #[serde(default)]
    pub log_driver: Option<String>,
    /// `--link NAME[:ALIAS]` as `NAME:ALIAS` (docker's legacy links: /etc/hosts
    /// entries for the linked container)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// A host device given to the container (`--device`, docker's `DeviceMapping`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    /// the device node (or a directory of them) on the host
    pub path_on_host: String,
    /// where it appears in the container
    pub path_in_container: String,
    /// `r`, `w`, `m` or a mix
    pub permissions: String,
}

/// A per-device rate or weight (`--device-read-bps /dev/sda:1mb`,
/// `--blkio-weight-device /dev/sda:200`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRate {
    /// the block device on the host
    pub path: String,
    /// bytes or operations per second, or the weight
    pub rate: u64,
}

impl CreateOptions {
    /// Applies one `--security-opt` (`seccomp=unconfined`, `no-new-privileges`).
    pub fn security_opt(&mut self, opt: &str) -> Result<()> {
        let (k, v) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (k, v) {
            ("seccomp", Some("unconfined")) => self.seccomp_unconfined = true,
            ("no-new-privileges", None | Some("true")) => self.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => self.no_new_privileges = false,
            _ => {
                return Err(Error::Invalid(format!(
                    "--security-opt {opt:?}: supported are seccomp=unconfined and no-new-privileges[=true|false] (profiles from files, apparmor and labels are not yet)"
                )))
            }
        }
        Ok(())
    }
}

/// Rotation of the json-file log: at most `max_files` files of `max_size` bytes, so
/// a container's output never fills the disk; and the label and environment keys
/// whose values `logs --details` shows before each line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// bytes after which the log is rotated
    pub max_size: u64,
    /// files kept, the current one included
    pub max_files: u32,
    /// `--log-opt labels=a,b`: container labels shown by `logs --details`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// `--log-opt env=A,B`: environment variables shown by `logs --details`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

impl Default for LogOptions {
    /// docker's `local` log driver defaults: 20 MB, 5 files.
    fn default() -> Self {
        LogOptions {
            max_size: 20 << 20,
            max_files: 5,
            labels: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl LogOptions {
    /// Applies one `--log-opt key=value`.
    pub fn set(&mut self, opt: &str) -> Result<()> {
        let (k, v) = opt.split_once('=').ok_or_else(|| {
            Error::Invalid(format!(
                "--log-opt {opt:?}: use key=value (max-size, max-file, labels, env)"
            ))
        })?;
        match k {
            "max-size" => self.max_size = parse_size(v)?,
            "max-file" => {
                self.max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    Error::Invalid(format!("--log-opt max-file={v}: use a whole number of at least 1"))
                })?
            }
            "labels" | "env" => {
                let keys = v.split(',').map(str::trim).filter(|k| !k.is_empty());
                let list = if k == "labels" {
                    &mut self.labels
                } else {
                    &mut self.env
                };
                list.extend(keys.map(String::from));
            }
            "labels-regex" | "env-regex" => {
                return Err(Error::Invalid(format!(
                    "--log-opt {k}: not supported by berth: list the keys with --log-opt {}=KEY1,KEY2",
                    k.trim_end_matches("-regex")
                )))
            }
            other => {
                return Err(Error::Invalid(format!(
                    "--log-opt {other}: unknown option for the json-file driver: use max-size, max-file, labels or env"
                )))
            }
        }
        Ok(())
    }
}

/// docker's sizes: bytes, or a number with b, k, m, g, t (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| !x.is_empty()).unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok().filter(|n: &f64| *n > 0.0).ok_or_else(|| {
        Error::Invalid(format!(
            "invalid size {s:?}: use a number with an optional unit (b, k, m, g), e.g. 64m"
        ))
    })?;
    Ok((n * mul as f64) as u64)
}

/// The engine's record of one container (`config.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits
    pub id: String,
    /// unique name
    pub name: String,
    /// RFC 3339 creation time
    pub created: String,
    /// the program run (after entrypoint/cmd resolution)
    pub path: String,
    /// its arguments
    pub args: Vec<String>,
    /// the options the container was created with
    pub options: CreateOptions,
    /// signal `stop` sends first (image StopSignal, default SIGTERM)
    pub stop_signal: String,
    /// pid of the supervisor (shim or foreground CLI) while it runs
    #[serde(default)]
    pub shim_pid: Option<i32>,
    /// the container's init pid once started
    #[serde(default)]
    pub pid: Option<i32>,
    /// RFC 3339 start time
    #[serde(default)]
    pub started_at: Option<String>,
    /// volumes the container uses (named and anonymous)
    #[serde(default)]
    pub volumes: Vec<String>,
    /// the id (`sha256:…`) of the image it was created from (docker's `Image`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

/// How a container ended (`exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// exit code, or 128 + signal
    pub code: i32,
    /// RFC 3339 time of the exit
    pub finished_at: String,
}

/// The directory of one container and its files.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    /// `<data-root>/containers/<id>`
    pub dir: PathBuf,
    id: String,
}

impl ContainerDir {
    /// The directory of container `id` under `containers` (`<data-root>/containers`).
    pub fn new(containers: &Path, id: &str) -> Self {
        ContainerDir {
            dir: containers.join(id),
            id: id.to_string(),
        }
    }

    /// The record file.
    pub fn record_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// The OCI bundle directory.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    /// Where the rootfs is mounted.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// The json-file log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("logs").join(format!("{}-json.log", self.id))
    }
    /// The exit status file.
    pub fn exit_path(&self) -> PathBuf {
        self.dir.join("exit.json")
    }

    /// Whether the directory exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Reads the record.
    pub fn load(&self) -> Result<Record> {
        read_json(&self.record_path())
    }

    /// Writes the record atomically.
    pub fn save(&self, r: &Record) -> Result<()> {
        write_json(&self.record_path(), r)
    }

    /// The exit status, if the container has exited.
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        match read_json(&self.exit_path()) {
            Ok(s) => Ok(Some(s)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Records the exit status atomically.
    pub fn save_exit(&self, s: &ExitStatus) -> Result<()> {
        write_json(&self.exit_path(), s)
    }

    /// Takes the container's exclusive lock (held while removing it).
    pub fn lock(&self) -> Result<Flock<File>> {
        lock_file(&self.dir.join("lock"))
    }
}

/// Opens (creating) `path` and locks it exclusively.
pub(crate) fn lock_file(path: &Path) -> Result<Flock<File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open lock", path, e))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::sys(format!("lock {}", path.display()), e))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let b = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_slice(&b).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `v` as JSON through a temporary file and a rename.
pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let b = serde_json::to_vec_pretty(v).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &b)
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("rename", path, e)
    })
}

/// Now, RFC 3339 with nanoseconds (docker's timestamps).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let b: Bind = "/a:/b:ro".parse().expect("parse");
        assert!(b.readonly);
        assert_eq!(b.target, PathBuf::from("/b"));
        let b: Bind = "/a:/b".parse().expect("parse");
        assert!(!b.readonly);
        let v: Bind = "vol:/b".parse().expect("volume");
        assert_eq!(v.volume.as_deref(), Some("vol"));
        assert!("/a:rel".parse::<Bind>().is_err());
        assert!("bad name:/b".parse::<Bind>().is_err());
        assert!("/a:/b:zz".parse::<Bind>().is_err());
    }

    #[test]
    fn sizes_and_log_opts() {
        assert_eq!(parse_size("64m").expect("64m"), 64 << 20);
        assert_eq!(parse_size("1.5g").expect("1.5g"), 3 << 29);
        assert_eq!(parse_size("100").expect("bytes"), 100);
        assert!(parse_size("lots").is_err() && parse_size("0").is_err());
        let mut l = LogOptions::default();
        l.set("max-size=1k").expect("size");
        l.set("max-file=2").expect("files");
        l.set("labels=team,tier").expect("labels");
        l.set("env=A").expect("env");
        assert_eq!(
            l,
            LogOptions {
                max_size: 1024,
                max_files: 2,
                labels: vec!["team".into(), "tier".into()],
                env: vec!["A".into()],
            }
        );
        assert!(l.set("max-file=0").is_err() && l.set("compress=true").is_err());
        assert!(l.set("env-regex=^A").is_err());
    }

    #[test]
    fn security_opts() {
        let mut o = CreateOptions::default();
        o.security_opt("seccomp=unconfined").expect("unconfined");
        o.security_opt("no-new-privileges").expect("nnp");
        assert!(o.seccomp_unconfined && o.no_new_privileges);
        assert!(o.security_opt("seccomp=/some/profile.json").is_err());
        assert!(o.security_opt("apparmor=x").is_err());
    }

    #[test]
    fn network_modes() {
        assert_eq!(
            "host".parse::<NetworkMode>().expect("host"),
            NetworkMode::Host
        );
        assert_eq!(
            "mynet".parse::<NetworkMode>().expect("user network"),
            NetworkMode::Bridge
        );
        assert!("container:".parse::<NetworkMode>().is_err());
    }

    #[test]
    fn record_round_trips() {
        let d = tempfile::tempdir().expect("tempdir");
        let cd = ContainerDir::new(d.path(), "abc");
        std::fs::create_dir_all(&cd.dir).expect("mkdir");
        assert!(cd.exit_status().expect("none").is_none());
        let s = ExitStatus {
            code: 3,
            finished_at: now(),
        };
        cd.save_exit(&s).expect("save");
        assert_eq!(cd.exit_status().expect("read"), Some(s));
    }
}
