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
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxMemory, LinuxNamespaceType, LinuxPids,
    Mount, Spec,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// docker's default capabilities.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

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

/// Builds the complete runtime spec.
pub fn build(image: Option<&ImageConfig>, opts: &CreateOptions, ctx: &Context<'_>) -> Result<Spec> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(ctx.hostname.clone()));
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(ctx.rootfs.to_path_buf());
    root.set_readonly(Some(opts.read_only));
    spec.set_root(Some(root));
    spec.set_process(Some(process(image, opts, ctx)?));
    spec.set_mounts(Some(mounts(opts, ctx.dir)));
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
    if let Some(p) = opts.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if p <= 0 { -1 } else { p });
        res.set_pids(Some(pids));
    }
    linux.set_resources(Some(res));
    if !opts.seccomp_unconfined {
        linux.set_seccomp(Some(crate::seccomp::default_profile()?));
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
    p.set_args(Some(ctx.args.clone()));
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
    let caps: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(caps.clone()));
    c.set_effective(Some(caps.clone()));
    c.set_permitted(Some(caps));
    c.set_inheritable(None);
    c.set_ambient(None);
    p.set_capabilities(Some(c));
    p.set_no_new_privileges(Some(opts.no_new_privileges));
    // rlimits are inherited from the engine, as docker's come from its daemon
    p.set_rlimits(None);
    Ok(p)
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn mounts(opts: &CreateOptions, dir: &Path) -> Vec<Mount> {
    let mut v = oci_spec::runtime::get_default_mounts();
    v.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        Path::new("cgroup"),
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ));
    for f in ["hostname", "hosts", "resolv.conf"] {
        let ro = if opts.read_only { "ro" } else { "rw" };
        v.push(mount(
            &format!("/etc/{f}"),
            "bind",
            &dir.join(f),
            &["rbind", "rprivate", ro],
        ));
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

/// The contents of `/etc/hosts` for a container.
pub fn hosts_file(hostname: &str, network: NetworkMode) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if network == NetworkMode::None {
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
