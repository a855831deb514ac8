//! RUN: a container on the mounted snapshot, with the stage's environment,
//! user, working directory and argv, no network unless `--network=host` (the
//! RUN's or the build's), the build's container options ([`RunOptions`]:
//! limits, extra hosts, security), its output streamed to the build output.
//!
//! The container is created, reaped and deleted by the build's
//! [`Spawner`] (a single-threaded helper process), so [`run`] may be called
//! from any thread.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec, User};

use crate::ast::{MountType, NetworkMode};
use crate::eval::{CopyFrom, RunMount, RunStep, Step};

use super::fsutil::{mkdir_all, resolve_user};
use super::runopts::{hosts_file, RunOptions};
use super::spawner::Spawner;
use super::{io_err, ExecError, Result};

/// docker's default capabilities (one list for the engine and the builder).
use berth_runtime::features::DOCKER_DEFAULT_CAPS as CAPS;
use berth_runtime::spec::mount;

/// Where a RUN executes.
pub struct RunEnv<'a> {
    /// Creates the container.
    pub spawner: &'a Spawner,
    /// Container id.
    pub id: &'a str,
    /// A scratch directory for the bundle (config.json, heredoc scripts).
    pub bundle: &'a Path,
    /// The mounted snapshot.
    pub rootfs: &'a Path,
    /// `<data-root>/build-cache/mounts` (for `--mount=type=cache`).
    pub cache_dir: &'a Path,
    /// Readable when the build is cancelled (the container is then killed).
    pub cancel: BorrowedFd<'a>,
    /// `--secret` values by id.
    pub secrets: &'a std::collections::BTreeMap<String, Vec<u8>>,
    /// Host directories of the bind mounts, by mount index.
    pub binds: &'a std::collections::BTreeMap<usize, PathBuf>,
    /// The build's container options.
    pub opts: &'a RunOptions,
}

/// Run `r` (of `step`) and stream its output to `out`; a non-zero exit fails
/// with docker's message.
pub fn run(env: &RunEnv<'_>, step: &Step, r: &RunStep, out: &mut dyn Write) -> Result<()> {
    let (uid, gid) = resolve_user(env.rootfs, &step.user)?;
    mkdir_all(env.rootfs, &step.workdir, Some((uid, gid)))?;
    let stubs = missing_targets(env.rootfs, r, !env.opts.extra_hosts.is_empty())?;
    let spec = spec(env, step, r, (uid, gid))?;
    let cfg = env.bundle.join("config.json");
    let json = serde_json::to_vec(&spec).map_err(|e| ExecError::Invalid(e.to_string()))?;
    std::fs::write(&cfg, json).map_err(io_err("write", &cfg))?;
    let code = execute(env, out)?;
    remove_stubs(&stubs);
    if code != 0 {
        return Err(ExecError::RunFailed {
            command: r.args.join(" "),
            code,
        });
    }
    Ok(())
}

fn execute(env: &RunEnv<'_>, out: &mut dyn Write) -> Result<i32> {
    let (rd, wr): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|error| ExecError::Sys {
            op: "create a pipe".into(),
            error,
        })?;
    let null = std::fs::File::open("/dev/null").map_err(io_err("open", Path::new("/dev/null")))?;
    let mut job = env
        .spawner
        .run(env.id, env.bundle, [null.as_fd(), wr.as_fd(), wr.as_fd()])?;
    drop(wr);
    drop(null);
    relay(env, std::fs::File::from(rd), out)?;
    job.wait(env.cancel, || ExecError::Cancelled)
}

/// Copy the container's output to `out` until it closes; fail when the build
/// is cancelled.
fn relay(env: &RunEnv<'_>, mut rd: std::fs::File, out: &mut dyn Write) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            PollFd::new(rd.as_fd(), PollFlags::POLLIN),
            PollFd::new(env.cancel, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(error) => {
                return Err(ExecError::Sys {
                    op: "wait for the RUN output".into(),
                    error,
                })
            }
            Ok(_) => {}
        }
        if fds[1].any() == Some(true) {
            return Err(ExecError::Cancelled);
        }
        match rd.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read the output of", Path::new(env.id))(e)),
        }
    }
}

fn spec(env: &RunEnv<'_>, step: &Step, r: &RunStep, (uid, gid): (u32, u32)) -> Result<Spec> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("buildkitsandbox".into()));
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(env.rootfs.to_path_buf());
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    let mut p = Process::default();
    p.set_terminal(Some(false));
    p.set_args(Some(r.args.clone()));
    let (extra_mounts, extra_env) = run_mounts(env, r)?;
    let mut e = step.env.clone();
    e.extend(r.proxy_env.iter().cloned());
    e.extend(extra_env);
    p.set_env(Some(e));
    p.set_cwd(PathBuf::from(&step.workdir));
    let mut u = User::default();
    u.set_uid(uid);
    u.set_gid(gid);
    p.set_user(u);
    p.set_capabilities(Some(berth_runtime::spec::capabilities(
        CAPS.into_iter().collect(),
    )));
    spec.set_process(Some(p));
    let mut mounts = oci_spec::runtime::get_default_mounts();
    // The RUN's own cgroup, read-only, as in docker's containers: tools that size
    // themselves by their limits (`--memory`, `--cpu-quota`) find them there.
    if !mounts
        .iter()
        .any(|m| m.destination() == Path::new("/sys/fs/cgroup"))
    {
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ));
    }
    mounts.extend(extra_mounts);
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut ns = linux.namespaces().clone().unwrap_or_default();
    if env.opts.network_for(r.network) == NetworkMode::Host {
        ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
    }
    linux.set_namespaces(Some(ns));
    linux.set_cgroups_path(Some(env.opts.cgroups_path(env.id)));
    spec.set_linux(Some(linux));
    env.opts.apply(&mut spec)?;
    Ok(spec)
}

/// Mount points a RUN's mounts need that the rootfs lacks (and their missing
/// parents), outermost first (`hosts`: /etc/hosts too): the runtime creates
/// them, [`remove_stubs`] takes them out of the layer again.
fn missing_targets(rootfs: &Path, r: &RunStep, hosts: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let targets = r.mounts.iter().filter_map(|m| m.target.as_deref());
    for t in targets.chain(hosts.then_some("/etc/hosts")) {
        let mut prefix = String::new();
        for c in t.split('/').filter(|c| !c.is_empty()) {
            prefix = format!("{prefix}/{c}");
            let host = super::fsutil::secure_join(rootfs, &prefix, false)?;
            if std::fs::symlink_metadata(&host).is_err() && !out.contains(&host) {
                out.push(host);
            }
        }
    }
    Ok(out)
}

/// Remove the empty mount points listed by [`missing_targets`], innermost first.
fn remove_stubs(stubs: &[PathBuf]) {
    for p in stubs.iter().rev() {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
}

fn run_mounts(env: &RunEnv<'_>, r: &RunStep) -> Result<(Vec<Mount>, Vec<String>)> {
    let mut out = Vec::new();
    let mut extra_env = Vec::new();
    for f in &r.files {
        let host = env.bundle.join(format!("file-{}", out.len()));
        std::fs::write(&host, &f.data).map_err(io_err("write", &host))?;
        let perm = std::os::unix::fs::PermissionsExt::from_mode(f.mode);
        std::fs::set_permissions(&host, perm).map_err(io_err("chmod", &host))?;
        out.push(mount(&f.path, "bind", &host, &["rbind", "ro"]));
    }
    let host_net = env.opts.network_for(r.network) == NetworkMode::Host;
    let extra_hosts = !env.opts.extra_hosts.is_empty();
    if host_net {
        // The host's name resolution, bound over files the image already has
        // (a mount point created here would end up in the layer).
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            let inside = super::fsutil::secure_join(env.rootfs, f, true)?;
            if Path::new(f).is_file() && inside.is_file() && !(extra_hosts && f == "/etc/hosts") {
                out.push(mount(f, "bind", Path::new(f), &["rbind", "ro"]));
            }
        }
    }
    if extra_hosts {
        out.push(hosts_mount(env, host_net)?);
    }
    for (i, m) in r.mounts.iter().enumerate() {
        let mount = match m.kind {
            MountType::Secret => secret_mount(env, m, i, &mut extra_env)?,
            _ => run_mount(env, m, i)?,
        };
        out.extend(mount);
    }
    Ok((out, extra_env))
}

/// `--add-host`: the RUN's own /etc/hosts (the host's with the host's
/// network, else the image's) with the extra lines, bound over the image's
/// file, so that the lines never reach a layer.
fn hosts_mount(env: &RunEnv<'_>, host_net: bool) -> Result<Mount> {
    let base = if host_net {
        std::fs::read_to_string("/etc/hosts").ok()
    } else {
        let inside = super::fsutil::secure_join(env.rootfs, "/etc/hosts", true)?;
        std::fs::read_to_string(inside).ok()
    };
    let host = env.bundle.join("hosts");
    std::fs::write(&host, hosts_file(base, &env.opts.extra_hosts))
        .map_err(io_err("write", &host))?;
    Ok(mount("/etc/hosts", "bind", &host, &["rbind", "rw"]))
}

/// A `--mount=type=secret`: the value as a read-only file (in the bundle
/// directory, never in the rootfs) and/or an environment variable.
fn secret_mount(
    env: &RunEnv<'_>,
    m: &RunMount,
    i: usize,
    extra_env: &mut Vec<String>,
) -> Result<Option<Mount>> {
    let id = m.id.clone().unwrap_or_default();
    let Some(data) = env.secrets.get(&id) else {
        if m.required {
            return Err(ExecError::Invalid(format!(
                "secret {id:?} is required but was not given: pass --secret id={id},src=FILE"
            )));
        }
        return Ok(None);
    };
    if let Some(var) = &m.env {
        extra_env.push(format!("{var}={}", String::from_utf8_lossy(data)));
    }
    let Some(target) = &m.target else {
        return Ok(None);
    };
    let host = env.bundle.join(format!("secret-{i}"));
    std::fs::write(&host, data).map_err(io_err("write", &host))?;
    std::os::unix::fs::chown(&host, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
        .map_err(io_err("chown", &host))?;
    let perm = std::os::unix::fs::PermissionsExt::from_mode(m.mode.unwrap_or(0o400));
    std::fs::set_permissions(&host, perm).map_err(io_err("chmod", &host))?;
    Ok(Some(mount(target, "bind", &host, &["rbind", "ro"])))
}

fn run_mount(env: &RunEnv<'_>, m: &RunMount, i: usize) -> Result<Option<Mount>> {
    let target = m.target.clone().unwrap_or_default();
    match m.kind {
        MountType::Tmpfs => Ok(Some(mount(&target, "tmpfs", Path::new("tmpfs"), &["nosuid", "nodev"]))),
        MountType::Bind => {
            let host = env.binds.get(&i).ok_or_else(|| {
                ExecError::Invalid(format!("no source prepared for the bind mount on {target}"))
            })?;
            let ro = if m.read_only { "ro" } else { "rw" };
            Ok(Some(mount(&target, "bind", host, &["rbind", ro])))
        }
        MountType::Cache if m.from == CopyFrom::Context => {
            let id = m.id.clone().unwrap_or_else(|| target.clone());
            let name = hex::encode(sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), id.as_bytes())));
            let host = env.cache_dir.join(name);
            if !host.exists() {
                std::fs::create_dir_all(&host).map_err(io_err("create", &host))?;
                std::os::unix::fs::chown(&host, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                    .map_err(io_err("chown", &host))?;
                let perm = std::os::unix::fs::PermissionsExt::from_mode(m.mode.unwrap_or(0o755));
                std::fs::set_permissions(&host, perm).map_err(io_err("chmod", &host))?;
            }
            Ok(Some(mount(&target, "bind", &host, &["rbind", "rw"])))
        }
        MountType::Ssh if !m.required => Ok(None),
        _ => Err(ExecError::Unsupported(format!(
            "RUN --mount=type={:?} with these options (target {target:?}): use a bind, cache (from the context), tmpfs or secret mount",
            m.kind
        ))),
    }
}
