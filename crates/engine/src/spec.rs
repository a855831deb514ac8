//! The OCI runtime spec of a container, built from the image config and the run
//! flags. Pure: no file is read or written here, so every rule is unit-tested.
//!
//! Starts from oci-spec's `Spec::default()` (runc's defaults: namespaces, /proc,
//! /dev, /sys mounts, masked and read-only paths) and applies docker's choices on
//! top: its default capability set, an extra masked path or two, a read-only cgroup
//! mount, `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` bound from the
//! container directory, and the user's flags.

use crate::error::{Error, Result};
use crate::record::{CreateOptions, NetworkMode};
use crate::user::ResolvedUser;
use berth_runtime::spec::mount;
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capability, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNamespaceType, LinuxPids, Mount,
    Spec,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// docker's default capabilities.
pub use berth_runtime::features::DOCKER_DEFAULT_CAPS as DEFAULT_CAPS;

/// Paths docker masks beyond runc's defaults.
const EXTRA_MASKED: [&str; 2] = ["/proc/interrupts", "/sys/devices/virtual/powercap"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The program and arguments: docker's Entrypoint/Cmd rules. `--entrypoint` replaces
/// the image's entrypoint and drops its Cmd; a command after the image replaces Cmd.
pub fn command(image: Option<&ImageConfig>, opts: &CreateOptions) -> Result<Vec<String>> {
    let image_ep = image
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let ep = match &opts.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => image_ep,
    };
    let cmd = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        vec![]
    } else {
        image_cmd
    };
    let args: Vec<String> = ep.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::Invalid(format!(
            "no command specified: image {} has no Entrypoint or Cmd; give a command after the image name",
            opts.image
        )));
    }
    Ok(args)
}

/// The environment: PATH, HOSTNAME, TERM (with a tty), HOME, then the image's, then
/// `-e` (a later key replaces an earlier one).
pub fn environment(
    image: Option<&ImageConfig>,
    opts: &CreateOptions,
    hostname: &str,
    home: Option<&str>,
) -> Vec<String> {
    let mut env: Vec<String> = vec![DEFAULT_PATH.into(), format!("HOSTNAME={hostname}")];
    if opts.tty {
        env.push("TERM=xterm".into());
    }
    let later = image
        .and_then(|c| c.env().clone())
        .unwrap_or_default()
        .into_iter()
        .chain(opts.env.iter().cloned());
    for e in later {
        set_env(&mut env, e);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home.unwrap_or("/")));
    }
    env
}

fn set_env(env: &mut Vec<String>, e: String) {
    let key = e.split('=').next().unwrap_or("").to_string();
    env.retain(|x| x.split('=').next() != Some(key.as_str()));
    env.push(e);
}

/// Everything [`build`] needs besides the image config and flags.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// container id
    pub id: &'a str,
    /// the container directory (holds hostname, hosts, resolv.conf)
    pub dir: &'a Path,
    /// the mounted rootfs
    pub rootfs: &'a Path,
    /// the resolved user
    pub user: ResolvedUser,
    /// the program and arguments (from [`command`])
    pub args: Vec<String>,
    /// the container's hostname
    pub hostname: String,
}

/// The hostname: `--hostname`, else the first 12 hex digits of the id.
pub fn hostname(opts: &CreateOptions, id: &str) -> String {
    opts.hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect())
}

/// Where `--init`'s init is mounted in the container (docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The static init `--init` runs: `BERTH_INIT_PATH`, else tini-static as Debian's
/// tini package installs it (docker-init is the same binary).
pub fn init_binary() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("BERTH_INIT_PATH")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/bin/tini-static",
                "/usr/bin/docker-init",
                "/usr/libexec/docker/docker-init",
            ]
            .map(PathBuf::from),
        )
        .collect();
    candidates
        .iter()
        .find_map(|p| std::fs::canonicalize(p).ok().filter(|p| p.is_file()))
        .ok_or_else(|| {
            Error::Invalid(
                "--init needs a static init binary: apt-get install tini (it provides /usr/bin/tini-static) or set BERTH_INIT_PATH".into(),
            )
        })
}

/// Builds the complete runtime spec.
pub fn build(image: Option<&ImageConfig>, opts: &CreateOptions, ctx: &Context<'_>) -> Result<Spec> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(ctx.hostname.clone()));
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(ctx.rootfs.to_path_buf());
    root.set_readonly(Some(opts.read_only));
    spec.set_root(Some(root));
    spec.set_process(Some(process(image, opts, ctx)?));
    let mut m = mounts(opts, ctx.dir);
    if opts.init {
        m.push(mount(
            INIT_PATH,
            "bind",
            &init_binary()?,
            &["rbind", "rprivate", "ro"],
        ));
    }
    spec.set_mounts(Some(m));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut ns = linux.namespaces().clone().unwrap_or_default();
    if opts.network == NetworkMode::Host {
        ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
    }
    linux.set_namespaces(Some(ns));
    linux.set_cgroups_path(Some(PathBuf::from(format!("berth/{}", ctx.id))));
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    masked.extend(EXTRA_MASKED.iter().map(|s| s.to_string()));
    linux.set_masked_paths(Some(masked));
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_access(Some("rwm".into()));
    res.set_devices(Some(vec![deny_all]));
    if let Some(m) = opts.memory {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(m));
        res.set_memory(Some(mem));
    }
    if let Some(swap) = opts.memory_swap {
        let mut mem = res.memory().unwrap_or_default();
        if opts.memory.is_none() {
            return Err(Error::Invalid(
                "--memory-swap needs --memory as well: set both".into(),
            ));
        }
        mem.set_swap(Some(swap));
        res.set_memory(Some(mem));
    }
    if opts.cpus.is_some() || opts.cpu_shares.is_some() || opts.cpuset_cpus.is_some() {
        let mut cpu = LinuxCpu::default();
        if let Some(c) = opts.cpus {
            if c <= 0.0 {
                return Err(Error::Invalid(format!("--cpus {c}: use a positive number")));
            }
            cpu.set_period(Some(100_000));
            cpu.set_quota(Some((c * 100_000.0).round() as i64));
        }
        cpu.set_shares(opts.cpu_shares);
        cpu.set_cpus(opts.cpuset_cpus.clone());
        res.set_cpu(Some(cpu));
    }
    if let Some(p) = opts.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if p <= 0 { -1 } else { p });
        res.set_pids(Some(pids));
    }
    linux.set_resources(Some(res));
    if !opts.seccomp_unconfined {
        linux.set_seccomp(Some(
            berth_runtime::default_seccomp::default_profile().map_err(Error::Invalid)?,
        ));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn process(
    image: Option<&ImageConfig>,
    opts: &CreateOptions,
    ctx: &Context<'_>,
) -> Result<oci_spec::runtime::Process> {
    let mut p = oci_spec::runtime::Process::default();
    p.set_terminal(Some(opts.tty));
    let args = if opts.init {
        [INIT_PATH.to_string(), "--".to_string()]
            .into_iter()
            .chain(ctx.args.iter().cloned())
            .collect()
    } else {
        ctx.args.clone()
    };
    p.set_args(Some(args));
    p.set_env(Some(environment(
        image,
        opts,
        &ctx.hostname,
        ctx.user.home.as_deref(),
    )));
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!(
            "the working directory {cwd:?} is invalid: it needs to be an absolute path"
        )));
    }
    p.set_cwd(PathBuf::from(cwd));
    let mut u = oci_spec::runtime::User::default();
    u.set_uid(ctx.user.uid);
    u.set_gid(ctx.user.gid);
    if !ctx.user.additional_gids.is_empty() {
        u.set_additional_gids(Some(ctx.user.additional_gids.clone()));
    }
    p.set_user(u);
    p.set_capabilities(Some(berth_runtime::spec::capabilities(capabilities(opts)?)));
    p.set_no_new_privileges(Some(opts.no_new_privileges));
    // other rlimits are inherited from the engine, as docker's come from its daemon
    let rl = opts
        .ulimits
        .iter()
        .map(|u| ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    p.set_rlimits(Some(rl).filter(|r| !r.is_empty()));
    Ok(p)
}

fn mounts(opts: &CreateOptions, dir: &Path) -> Vec<Mount> {
    let mut v = oci_spec::runtime::get_default_mounts();
    // runc's defaults may already carry /sys/fs/cgroup; mounting it twice costs a
    // tmpfs and a bind per controller for nothing
    if !v
        .iter()
        .any(|m| m.destination() == Path::new("/sys/fs/cgroup"))
    {
        v.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ));
    }
    for f in ["hostname", "hosts", "resolv.conf"] {
        let ro = if opts.read_only { "ro" } else { "rw" };
        v.push(mount(
            &format!("/etc/{f}"),
            "bind",
            &dir.join(f),
            &["rbind", "rprivate", ro],
        ));
    }
    for t in &opts.tmpfs {
        let (dest, extra) = t.split_once(':').unwrap_or((t.as_str(), ""));
        let mut o = vec!["nosuid", "nodev", "noexec"];
        o.extend(extra.split(',').filter(|x| !x.is_empty()));
        v.push(mount(dest, "tmpfs", Path::new("tmpfs"), &o));
    }
    for b in &opts.binds {
        let mut o = vec!["rbind", "rprivate"];
        if b.readonly {
            o.push("ro");
        }
        v.push(mount(&b.target.to_string_lossy(), "bind", &b.source, &o));
    }
    v
}

/// Every capability Linux has (`--cap-add ALL`), as oci-spec names them.
const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn capability(name: &str) -> Result<Capability> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    serde_json::from_value(serde_json::Value::String(full)).map_err(|_| {
        Error::Invalid(format!(
            "unknown capability {name:?}: use a name like NET_ADMIN (see capabilities(7))"
        ))
    })
}

fn cap_set(names: &[String]) -> Result<HashSet<Capability>> {
    let mut set = HashSet::new();
    for n in names {
        if n.eq_ignore_ascii_case("ALL") {
            // docker's "all": those we have (a set-up without one, e.g. SYS_RESOURCE
            // dropped, could not grant it)
            let ours = bounding_set();
            for (i, c) in ALL_CAPS.iter().enumerate() {
                if ours.is_some_and(|m| m & (1 << i) == 0) {
                    continue;
                }
                if let Ok(c) = capability(c) {
                    set.insert(c);
                }
            }
        } else {
            set.insert(capability(n)?);
        }
    }
    Ok(set)
}

/// Our bounding set (`CapBnd` of /proc/self/status), bit n for capability n.
fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// docker's default set, plus `--cap-add`, minus `--cap-drop` (drop wins).
pub fn capabilities(opts: &CreateOptions) -> Result<HashSet<Capability>> {
    let mut caps: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
    caps.extend(cap_set(&opts.cap_add)?);
    for c in cap_set(&opts.cap_drop)? {
        caps.remove(&c);
    }
    Ok(caps)
}

/// `--ulimit name=soft[:hard]` (docker's names: nofile, nproc, core, ...).
pub fn ulimit(spec: &str) -> Result<oci_spec::runtime::PosixRlimit> {
    let bad = |why: &str| Error::Invalid(format!("--ulimit {spec:?}: {why}"));
    let (name, vals) = spec
        .split_once('=')
        .ok_or_else(|| bad("use name=soft[:hard], e.g. nofile=1024:2048"))?;
    let typ: oci_spec::runtime::PosixRlimitType = serde_json::from_value(
        serde_json::Value::String(format!("RLIMIT_{}", name.to_ascii_uppercase())),
    )
    .map_err(|_| bad("unknown limit name (nofile, nproc, core, memlock, stack, ...)"))?;
    let num = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse().map_err(|_| bad("limits are whole numbers"))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard limit"));
    }
    oci_spec::runtime::PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| bad(&e.to_string()))
}

/// The contents of `/etc/hosts` for a container.
pub fn hosts_file(hostname: &str, network: &NetworkMode) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if network.own_namespace() {
        s.push_str(&format!("127.0.0.1\t{hostname}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(ep: &[&str], cmd: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        c.set_entrypoint(if ep.is_empty() { None } else { v(ep) });
        c.set_cmd(if cmd.is_empty() { None } else { v(cmd) });
        c.set_env(v(&["PATH=/custom", "A=1"]));
        c.set_working_dir(Some("/srv".into()));
        c
    }

    fn opts() -> CreateOptions {
        CreateOptions {
            image: "someapp:1.0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = image(&["/ep"], &["a", "b"]);
        assert_eq!(
            command(Some(&img), &opts()).expect("image"),
            ["/ep", "a", "b"]
        );
        let o = CreateOptions {
            cmd: vec!["x".into()],
            ..opts()
        };
        assert_eq!(command(Some(&img), &o).expect("cmd"), ["/ep", "x"]);
        let o = CreateOptions {
            entrypoint: Some("/other".into()),
            ..opts()
        };
        assert_eq!(command(Some(&img), &o).expect("ep drops cmd"), ["/other"]);
        let o = CreateOptions {
            entrypoint: Some(String::new()),
            cmd: vec!["sh".into()],
            ..opts()
        };
        assert_eq!(command(Some(&img), &o).expect("cleared"), ["sh"]);
        assert!(command(None, &opts()).is_err());
    }

    #[test]
    fn env_layers_and_overrides() {
        let img = image(&[], &["sh"]);
        let o = CreateOptions {
            env: vec!["A=2".into(), "B=3".into()],
            tty: true,
            ..opts()
        };
        let env = environment(Some(&img), &o, "h", Some("/root"));
        assert!(env.contains(&"PATH=/custom".to_string()));
        assert!(!env.iter().any(|e| e.starts_with("PATH=/usr")));
        assert!(env.contains(&"A=2".to_string()) && !env.contains(&"A=1".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
        assert!(env.contains(&"HOME=/root".to_string()));
    }

    #[test]
    fn spec_has_docker_defaults_and_flags() {
        let img = image(&[], &["sh"]);
        let o = CreateOptions {
            memory: Some(64 << 20),
            pids_limit: Some(50),
            network: NetworkMode::Host,
            read_only: true,
            binds: vec!["/data:/mnt:ro".parse().expect("bind")],
            ..opts()
        };
        let id = "0123456789abcdef";
        let ctx = Context {
            id,
            dir: Path::new("/c"),
            rootfs: Path::new("/c/rootfs"),
            user: ResolvedUser::default(),
            args: vec!["sh".into()],
            hostname: hostname(&o, id),
        };
        let s = build(Some(&img), &o, &ctx).expect("spec");
        assert_eq!(s.hostname().as_deref(), Some("0123456789ab"));
        let root = s.root().as_ref().expect("root");
        assert_eq!(root.path(), Path::new("/c/rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let p = s.process().as_ref().expect("process");
        assert_eq!(p.cwd(), Path::new("/srv"));
        let caps = p.capabilities().as_ref().expect("caps");
        assert_eq!(caps.bounding().as_ref().map(|c| c.len()), Some(14));
        let linux = s.linux().as_ref().expect("linux");
        let ns = linux.namespaces().as_ref().expect("ns");
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        let r = linux.resources().as_ref().expect("resources");
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(64 << 20));
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(50));
        let masked = linux.masked_paths().as_ref().expect("masked");
        assert!(masked.iter().any(|m| m == "/proc/kcore"));
        assert!(masked.iter().any(|m| m == "/proc/interrupts"));
        let mounts = s.mounts().as_ref().expect("mounts");
        let bind = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/mnt"))
            .expect("bind");
        assert!(bind
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "ro")));
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new("/etc/hosts")));
    }

    #[test]
    fn caps_add_and_drop() {
        let o = CreateOptions {
            cap_add: vec!["net_admin".into(), "CAP_SYS_TIME".into()],
            cap_drop: vec!["CHOWN".into(), "NET_ADMIN".into()],
            ..opts()
        };
        let c = capabilities(&o).expect("caps");
        assert!(c.contains(&Capability::SysTime));
        assert!(!c.contains(&Capability::NetAdmin) && !c.contains(&Capability::Chown));
        let all = CreateOptions {
            cap_add: vec!["ALL".into()],
            ..opts()
        };
        assert!(capabilities(&all).expect("all").len() >= 40);
        let none = CreateOptions {
            cap_drop: vec!["all".into()],
            ..opts()
        };
        assert!(capabilities(&none).expect("none").is_empty());
        let bad = CreateOptions {
            cap_add: vec!["FLY".into()],
            ..opts()
        };
        assert!(capabilities(&bad).is_err());
    }

    #[test]
    fn ulimits_parse() {
        let r = ulimit("nofile=1024:2048").expect("nofile");
        assert_eq!((r.soft(), r.hard()), (1024, 2048));
        assert_eq!(ulimit("nproc=-1").expect("unlimited").hard(), u64::MAX);
        for bad in ["nofile", "nope=1", "nofile=2:1", "nofile=x"] {
            assert!(ulimit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_and_swap() {
        let o = CreateOptions {
            cpus: Some(1.5),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            tmpfs: vec!["/run:size=1m".into()],
            ..opts()
        };
        let ctx = Context {
            id: "x",
            dir: Path::new("/c"),
            rootfs: Path::new("/c/rootfs"),
            user: ResolvedUser::default(),
            args: vec!["sh".into()],
            hostname: "x".into(),
        };
        let s = build(None, &o, &ctx).expect("spec");
        let r = s
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .expect("res");
        let cpu = r.cpu().clone().expect("cpu");
        assert_eq!(
            (cpu.quota(), cpu.period(), cpu.shares()),
            (Some(150_000), Some(100_000), Some(512))
        );
        assert_eq!(r.memory().and_then(|m| m.swap()), Some(128 << 20));
        let t = s
            .mounts()
            .as_ref()
            .and_then(|m| {
                m.iter()
                    .find(|m| m.destination() == Path::new("/run"))
                    .cloned()
            })
            .expect("tmpfs");
        assert!(t
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "size=1m")));
        let swap_alone = CreateOptions {
            memory_swap: Some(1),
            ..opts()
        };
        assert!(build(None, &swap_alone, &ctx).is_err());
    }

    #[test]
    fn relative_workdir_is_refused() {
        let o = CreateOptions {
            workdir: Some("rel".into()),
            ..opts()
        };
        let ctx = Context {
            id: "x",
            dir: Path::new("/c"),
            rootfs: Path::new("/c/rootfs"),
            user: ResolvedUser::default(),
            args: vec!["sh".into()],
            hostname: "x".into(),
        };
        assert!(build(None, &o, &ctx).is_err());
    }
}
