//! `berth build` end to end through the binary, on a busybox image imported into a
//! temporary data root, with a temporary runtime root: COPY + RUN + ENV + CMD, cache
//! hits on rebuilds (also after a .dockerignored change), a failing RUN, FROM scratch,
//! multi-stage COPY --from and reproducible ids. Needs root (mounts, namespaces,
//! cgroups) and Debian's busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary data root and runtime root with `base:latest` imported. Dropping it
/// force-removes containers and unmounts whatever is left under it.
struct Berth {
    /// Taken in turns: concurrent container deletions race with creations on the
    /// shared `berth` parent cgroup (a runtime issue), so the tests here run one
    /// at a time. Declared first: released after the cleanup in `drop`.
    _turn: std::sync::MutexGuard<'static, ()>,
    /// The data and runtime roots and the daemon the CLI starts for them.
    kit: berth_testkit::Berth,
    /// Short ids of the RUN containers our builds reported.
    runs: std::cell::RefCell<Vec<String>>,
    /// `BERTH_SNAPSHOTTER` for the data root (None: berth's choice).
    snapshotter: Option<&'static str>,
}

impl Berth {
    fn new() -> Self {
        Self::with_snapshotter(None)
    }

    fn with_snapshotter(snapshotter: Option<&'static str>) -> Self {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            berth_testkit::is_root(),
            "the build tests mount, clone namespaces and create cgroups: run them as root"
        );
        let b = Berth {
            _turn: turn,
            kit: berth_testkit::Berth::empty(env!("CARGO_BIN_EXE_berth"), "berth-test-build-"),
            runs: Default::default(),
            snapshotter,
        };
        let tar = rootfs_tar(b.kit.root.path());
        b.ok(&[
            "image",
            "import",
            tar.to_str().expect("utf-8"),
            "base:latest",
        ]);
        b
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.kit.root.path().join(rel)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--data-root")
            .arg(self.path("data"))
            .env("BERTH_RUNTIME_ROOT", self.path("runtime"))
            .env_remove("BERTH_DATA_ROOT")
            .env_remove("SOURCE_DATE_EPOCH");
        match self.snapshotter {
            Some(s) => c.env("BERTH_SNAPSHOTTER", s),
            None => c.env_remove("BERTH_SNAPSHOTTER"),
        };
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run berth")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}): {}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A context directory `name` with these files.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(name);
        for (f, data) in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, data).expect("write");
        }
        dir
    }

    fn build(&self, ctx: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().expect("utf-8"));
        let out = self.run(&args);
        for l in text(&out.stdout).lines() {
            if let Some(id) = l.strip_prefix(" ---> Running in ") {
                self.runs.borrow_mut().push(id.to_string());
            }
        }
        out
    }

    /// Mounts whose path lies under our temporary root.
    fn mounts(&self) -> Vec<String> {
        let root = self.kit.root.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&root))
            .collect()
    }

    /// What a build may leave behind by mistake: mounts, runtime state, scratch
    /// directories, build cgroups.
    fn leftovers(&self) -> Vec<String> {
        let mut left = self.mounts();
        for d in ["runtime", "data/tmp"] {
            if let Ok(rd) = std::fs::read_dir(self.path(d)) {
                left.extend(rd.flatten().map(|e| e.path().display().to_string()));
            }
        }
        left.extend(build_cgroups(&self.runs.borrow()));
        left
    }

    fn inspect(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", image]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Ok(out) = self.command().args(["ps", "-aq", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.command().args(["rm", "--force", id]).output();
            }
        }
        self.kit.stop_daemon();
        for m in self.mounts().into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// Cgroups of our build containers (`berth/berth-build-<id>…`).
fn build_cgroups(ids: &[String]) -> Vec<String> {
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup/berth")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        bases.extend(rd.flatten().map(|e| e.path().join("berth")));
    }
    let mut out = Vec::new();
    for b in bases {
        if let Ok(rd) = std::fs::read_dir(&b) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if ids
                    .iter()
                    .any(|id| n.starts_with(&format!("berth-build-{id}")))
                {
                    out.push(e.path().display().to_string());
                }
            }
        }
    }
    out
}

/// A busybox-static rootfs with an `app` user (uid 1000) as a tar.
fn rootfs_tar(dir: &Path) -> PathBuf {
    berth_testkit::rootfs_tar_with(
        dir,
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        "root:x:0:\napp:x:1000:\n",
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const APP: &str = "FROM base\nCOPY app.txt /app/\nRUN echo hi > /f && cat /app/app.txt\n\
                   ENV GREETING=hello\nCMD [\"cat\", \"/f\"]\n";

#[test]
fn build_copy_run_env_cmd_makes_a_runnable_image() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[("Dockerfile", APP), ("app.txt", "from the context\n")],
    );
    let out = b.build(&ctx, &["-t", "someapp:1.0", "-t", "someapp:latest"]);
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}\n{so}", text(&out.stderr));
    for want in [
        "Step 1/5 : FROM base",
        "Step 2/5 : COPY app.txt /app/",
        "Step 3/5 : RUN echo hi > /f && cat /app/app.txt",
        " ---> Running in ",
        "from the context",
        "Step 5/5 : CMD [\"cat\", \"/f\"]",
        "Successfully built ",
        "Successfully tagged someapp:1.0",
        "Successfully tagged someapp:latest",
    ] {
        assert!(so.contains(want), "missing {want:?} in:\n{so}");
    }
    let img = b.inspect("someapp:1.0");
    let env = img["Config"]["Env"].to_string();
    assert!(env.contains("GREETING=hello"), "{env}");
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["cat", "/f"]));
    assert_eq!(img["Created"], "1970-01-01T00:00:00Z");
    assert_eq!(img["RootFS"]["Layers"].as_array().map(Vec::len), Some(3));
    let hist = b.ok(&["history", "--no-trunc", "someapp:1.0"]);
    for want in [
        "COPY app.txt /app/",
        "RUN /bin/sh -c echo hi > /f",
        "ENV GREETING=hello",
    ] {
        assert!(hist.contains(want), "missing {want:?} in history:\n{hist}");
    }
    assert_eq!(b.ok(&["run", "--rm", "someapp:1.0"]), "hi\n");
    assert_eq!(
        b.ok(&["run", "--rm", "someapp:latest", "cat", "/app/app.txt"]),
        "from the context\n"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn rebuilds_hit_the_cache_unless_a_used_file_changes() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[
            ("Dockerfile", APP),
            ("app.txt", "v1\n"),
            ("notes.md", "ignored\n"),
            (".dockerignore", "*.md\n"),
        ],
    );
    let first = b.build(&ctx, &["-t", "someapp:1.0"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let id = |o: &Output| {
        text(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Successfully built ").map(String::from))
    };
    let again = b.build(&ctx, &["-t", "someapp:1.0"]);
    let so = text(&again.stdout);
    assert_eq!(so.matches(" ---> Using cache").count(), 2, "{so}");
    assert!(!so.contains("Running in"), "{so}");
    assert_eq!(id(&first), id(&again));
    std::fs::write(ctx.join("notes.md"), "changed, but ignored\n").expect("write");
    let ignored = b.build(&ctx, &["-t", "someapp:1.0"]);
    let so = text(&ignored.stdout);
    assert_eq!(so.matches(" ---> Using cache").count(), 2, "{so}");
    std::fs::write(ctx.join("app.txt"), "v2\n").expect("write");
    let changed = b.build(&ctx, &["-t", "someapp:1.0"]);
    let so = text(&changed.stdout);
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    assert_eq!(so.matches(" ---> Using cache").count(), 0, "{so}");
    assert!(so.contains("v2"), "{so}");
    let nocache = b.build(&ctx, &["--no-cache", "-q"]);
    let so = text(&nocache.stdout);
    assert!(
        so.trim().starts_with("sha256:") && so.lines().count() == 1,
        "{so}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn failing_run_reports_docker_message_and_leaves_nothing() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN echo before > /x\nRUN echo failing; exit 3\nCMD [\"true\"]\n",
        )],
    );
    let out = b.build(&ctx, &["-t", "broken:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let se = text(&out.stderr);
    assert!(
        se.contains("The command '/bin/sh -c echo failing; exit 3' returned a non-zero code: 3"),
        "{se}"
    );
    assert!(text(&out.stdout).contains("failing"));
    assert!(b.run(&["image", "inspect", "broken:1"]).status.code() != Some(0));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn from_scratch_copy_of_a_static_busybox() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nWORKDIR /work\nENTRYPOINT [\"/bin/busybox\"]\n",
        )],
    );
    std::fs::copy("/bin/busybox", ctx.join("busybox")).expect("copy busybox");
    // `image build` is the same command as `build`.
    let out = b.run(&[
        "image",
        "build",
        "-t",
        "tiny:1",
        "--iidfile",
        b.path("iid").to_str().expect("utf-8"),
        ctx.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let iid = std::fs::read_to_string(b.path("iid")).expect("iidfile");
    assert_eq!(b.inspect("tiny:1")["Id"], iid.as_str());
    assert_eq!(b.ok(&["run", "--rm", "tiny:1", "echo", "ok"]), "ok\n");
    assert_eq!(b.ok(&["run", "--rm", "tiny:1", "pwd"]), "/work\n");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn multi_stage_copy_from_with_args_labels_and_target() {
    let b = Berth::new();
    let df = "FROM base AS build\nARG WHO=world\nRUN mkdir /out && echo \"hello $WHO\" > /out/msg\n\
              FROM base AS unused\nRUN exit 9\n\
              FROM base\nCOPY --from=build /out/msg /msg\nRUN chmod 1777 /tmp\nUSER app\nRUN id -u > /tmp/uid\nCMD [\"cat\", \"/msg\"]\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let out = b.build(
        &ctx,
        &[
            "-t",
            "multi:1",
            "--build-arg",
            "WHO=berth",
            "--label",
            "team=x",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_eq!(b.ok(&["run", "--rm", "multi:1"]), "hello berth\n");
    assert_eq!(
        b.ok(&["run", "--rm", "multi:1", "cat", "/tmp/uid"]),
        "1000\n"
    );
    assert_eq!(b.inspect("multi:1")["Config"]["Labels"]["team"], "x");
    let t = b.build(
        &ctx,
        &[
            "-t",
            "stage:1",
            "--target",
            "build",
            "--build-arg",
            "WHO=berth",
        ],
    );
    assert!(t.status.success(), "{}", text(&t.stderr));
    assert_eq!(
        b.ok(&["run", "--rm", "stage:1", "cat", "/out/msg"]),
        "hello berth\n"
    );
    let bad = b.build(&ctx, &["--platform", "linux/arm64"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("linux/amd64"),
        "{}",
        text(&bad.stderr)
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn same_inputs_and_source_date_epoch_give_the_same_image_id() {
    let dir = tempfile::Builder::new()
        .prefix("berth-test-build-ctx-")
        .tempdir()
        .expect("tempdir");
    let ctx = dir.path().to_path_buf();
    for (f, data) in [
        ("Dockerfile", "FROM scratch\nCOPY . /srv/\nLABEL v=1\n"),
        ("x/y.txt", "y\n"),
        ("z.txt", "z\n"),
    ] {
        std::fs::create_dir_all(ctx.join(f).parent().expect("parent")).expect("mkdir");
        std::fs::write(ctx.join(f), data).expect("write");
    }
    let build = |b: &Berth| {
        let out = b
            .command()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", ctx.to_str().expect("utf-8")])
            .output()
            .expect("run berth");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // One data root at a time (the tests take turns, see `Berth`).
    let id_a = build(&Berth::new());
    let id_b = build(&Berth::new());
    assert_eq!(id_a, id_b);
    assert!(id_a.starts_with("sha256:"), "{id_a}");
}

#[test]
fn copy_flags_add_archive_heredoc_cache_mount_and_deletions() {
    let b = Berth::new();
    let df = "FROM base\n\
              COPY --chown=app:app --chmod=750 tool.sh /opt/tool.sh\n\
              ADD files.tar.gz /unpacked/\n\
              COPY <<EOF /etc/motd\nwelcome\nEOF\n\
              RUN --mount=type=cache,target=/cache echo run >> /cache/log && cp /cache/log /runs\n\
              RUN rm /etc/group && mkdir -p /gone && rm -r /gone\n\
              RUN <<EOT\nset -e\necho heredoc > /heredoc\nEOT\n\
              RUN <<EOT\n#!/bin/sh\necho shebang > /shebang\nEOT\n";
    let ctx = b.context(
        "ctx",
        &[
            ("Dockerfile", df),
            ("tool.sh", "#!/bin/sh\necho tool\n"),
            ("in/a.txt", "A\n"),
        ],
    );
    let st = Command::new("tar")
        .arg("-C")
        .arg(ctx.join("in"))
        .arg("-czf")
        .arg(ctx.join("files.tar.gz"))
        .arg("a.txt")
        .status()
        .expect("tar");
    assert!(st.success());
    let out = b.build(&ctx, &["-t", "flags:1"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let ls = b.ok(&[
        "run",
        "--rm",
        "flags:1",
        "stat",
        "-c",
        "%u:%g %a",
        "/opt/tool.sh",
    ]);
    assert_eq!(ls, "1000:1000 750\n");
    assert_eq!(
        b.ok(&["run", "--rm", "flags:1", "cat", "/unpacked/a.txt"]),
        "A\n"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "flags:1", "cat", "/etc/motd"]),
        "welcome\n"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "flags:1", "cat", "/heredoc"]),
        "heredoc\n"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "flags:1", "cat", "/shebang"]),
        "shebang\n"
    );
    assert_eq!(b.ok(&["run", "--rm", "flags:1", "cat", "/runs"]), "run\n");
    let gone = b.run(&["run", "--rm", "flags:1", "ls", "/etc/group"]);
    assert_ne!(
        gone.status.code(),
        Some(0),
        "/etc/group survived its deletion"
    );
    // The cache mount persists: a --no-cache rebuild appends to the same log.
    let again = b.build(&ctx, &["-t", "flags:2", "--no-cache"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        b.ok(&["run", "--rm", "flags:2", "cat", "/runs"]),
        "run\nrun\n"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn native_snapshotter_layers_hold_only_the_changes() {
    let b = Berth::with_snapshotter(Some("native"));
    let df = "FROM base\nRUN echo hi > /f && rm /etc/group\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let out = b.build(&ctx, &["-t", "native:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let img = b.inspect("native:1");
    let layers = img["RootFS"]["Layers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(layers.len(), 2);
    let top = layers[1]
        .as_str()
        .expect("digest")
        .trim_start_matches("sha256:");
    let blob = b.path("data/content/blobs/sha256").join(top);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&blob)
        .output()
        .expect("tar -t");
    let names = text(&list.stdout);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["etc/", "etc/.wh.group", "f"]);
    assert_eq!(b.ok(&["run", "--rm", "native:1", "cat", "/f"]), "hi\n");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn ctrl_c_during_run_fails_the_build_and_cleans_up() {
    use std::io::BufRead;
    let b = Berth::new();
    let df = "FROM base\nRUN echo started && sleep 1000 && echo berth-test-never\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let mut child = b
        .command()
        .args(["build", "-t", "interrupted:1", ctx.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn berth build");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    for l in lines.by_ref() {
        let l = l.expect("read");
        if let Some(id) = l.strip_prefix(" ---> Running in ") {
            b.runs.borrow_mut().push(id.to_string());
        }
        if l == "started" {
            break;
        }
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{rest:?}");
    assert!(
        text(&out.stderr).contains("build interrupted by SIGINT"),
        "{}",
        text(&out.stderr)
    );
    assert!(b.run(&["image", "inspect", "interrupted:1"]).status.code() != Some(0));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// The build runs in the daemon: a client that dies (SIGKILL, no Ctrl-C handling)
/// closes its connection, which stops the build; the daemon cleans up and keeps
/// serving, and its shared RUN helper serves the next build.
#[test]
fn a_client_killed_mid_build_stops_it_in_the_daemon() {
    use std::io::BufRead;
    let b = Berth::new();
    let df = "FROM base\nRUN echo started && sleep 1000 && echo berth-test-never\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let mut child = b
        .command()
        .args(["build", "-t", "orphan:1", ctx.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn berth build");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    for l in lines.by_ref() {
        let l = l.expect("read");
        if let Some(id) = l.strip_prefix(" ---> Running in ") {
            b.runs.borrow_mut().push(id.to_string());
        }
        if l == "started" {
            break;
        }
    }
    let daemon = b.kit.daemon_pid().expect("the daemon runs");
    child.kill().expect("kill the client");
    child.wait().expect("reap");
    berth_testkit::eventually("the build's cleanup", || b.leftovers().is_empty());
    assert_eq!(b.kit.daemon_pid(), Some(daemon), "the daemon kept running");
    assert!(b.run(&["image", "inspect", "orphan:1"]).status.code() != Some(0));
    let next = b.context("next", &[("Dockerfile", "FROM base\nRUN echo again\n")]);
    let out = b.build(&next, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("again"));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// Two clients build at once in one daemon: both RUN through its one shared helper,
/// and the same step reached by both is recorded once without a clash.
#[test]
fn concurrent_builds_share_the_daemon() {
    let b = Berth::new();
    let mut children = Vec::new();
    for n in 0..2 {
        let df = format!("FROM base\nRUN echo same > /same\nRUN echo build-{n} > /n\n");
        let ctx = b.context(&format!("ctx{n}"), &[("Dockerfile", &df)]);
        let child = b
            .command()
            .args([
                "build",
                "-q",
                "-t",
                &format!("both:{n}"),
                ctx.to_str().expect("utf-8"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn berth build");
        children.push(child);
    }
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for n in 0..2 {
        let got = b.ok(&["run", "--rm", &format!("both:{n}"), "cat", "/same", "/n"]);
        assert_eq!(got, format!("same\nbuild-{n}\n"));
    }
    // The helper dies (killed): the next build's RUN starts another.
    let daemon = b.kit.daemon_pid().expect("the daemon runs").to_string();
    let helpers: Vec<String> = berth_testkit::processes_with("build-spawner")
        .into_iter()
        .filter_map(|p| p.split(':').next().map(str::to_string))
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat
                .rsplit_once(')')
                .map(|(_, r)| r.to_string())
                .unwrap_or_default();
            after.split_whitespace().nth(1) == Some(daemon.as_str())
        })
        .collect();
    assert_eq!(helpers.len(), 1, "one RUN helper per daemon: {helpers:?}");
    assert!(Command::new("kill")
        .args(["-KILL", &helpers[0]])
        .status()
        .expect("kill")
        .success());
    // (dead once a zombie: its descriptors are closed; the daemon reaps it on replacing it)
    berth_testkit::eventually("the helper's death", || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", helpers[0]));
        stat.map_or(true, |s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                == Some("Z")
        })
    });
    let again = b.context(
        "again",
        &[("Dockerfile", "FROM base\nRUN echo once more\n")],
    );
    let out = b.build(&again, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("once more"));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn run_has_no_network_unless_network_host() {
    let b = Berth::new();
    let df = "FROM base\nRUN ls /sys/class/net > /isolated\nRUN --network=host ls /sys/class/net > /host\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let out = b.build(&ctx, &["-t", "net:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.ok(&["run", "--rm", "net:1", "cat", "/isolated"]), "lo\n");
    // The host's interfaces (other tests may add some meanwhile: no exact list).
    let seen = b.ok(&["run", "--rm", "net:1", "cat", "/host"]);
    let any_host_nic = seen
        .lines()
        .any(|n| n != "lo" && Path::new("/sys/class/net").join(n).exists());
    assert!(any_host_nic, "--network=host saw {seen:?}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn context_from_stdin_tar_dockerfile_elsewhere_and_onbuild_triggers() {
    let b = Berth::new();
    let parent =
        "FROM base\nONBUILD COPY trigger.txt /from-trigger\nONBUILD RUN echo ran > /onbuild\n";
    let pctx = b.context("parent", &[("Dockerfile", parent)]);
    let out = b.build(&pctx, &["-t", "parent:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The child's context arrives as a tar on stdin.
    let cctx = b.context(
        "child",
        &[
            (
                "Dockerfile",
                "FROM parent:1\nCMD [\"cat\", \"/from-trigger\"]\n",
            ),
            ("trigger.txt", "t\n"),
        ],
    );
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&cctx)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    let mut child = b
        .command()
        .args(["build", "-t", "child:1", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &tar.stdout).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_eq!(b.ok(&["run", "--rm", "child:1"]), "t\n");
    assert_eq!(
        b.ok(&["run", "--rm", "child:1", "cat", "/onbuild"]),
        "ran\n"
    );
    // -f names a Dockerfile outside the context.
    let df = b.path("elsewhere.Dockerfile");
    std::fs::write(&df, "FROM base\nCOPY trigger.txt /t\n").expect("write");
    let out = b.build(&cctx, &["-f", df.to_str().expect("utf-8"), "-t", "other:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.ok(&["run", "--rm", "other:1", "cat", "/t"]), "t\n");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// The context directory goes to the daemon as a descriptor and is read in place: no
/// copy of it under the data root, `.dockerignore` applied, and symlinks resolved
/// inside the context (one pointing at a host file copies as a link, never the file).
#[test]
fn a_context_directory_is_read_in_place_and_links_stay_inside() {
    use std::io::BufRead;
    let b = Berth::new();
    let host = b.path("host-secret.txt");
    std::fs::write(&host, "host secret\n").expect("write");
    let host_rel = host
        .to_str()
        .expect("utf-8")
        .trim_start_matches('/')
        .to_string();
    let df = "FROM base\nCOPY . /ctx/\nRUN echo started && sleep 3\n";
    let ctx = b.context(
        "ctx",
        &[
            ("Dockerfile", df),
            (".dockerignore", "ignored.txt\ndocs\n"),
            ("kept.txt", "kept\n"),
            ("ignored.txt", "ignored\n"),
            ("docs/a.md", "a\n"),
        ],
    );
    std::os::unix::fs::symlink(&host, ctx.join("leak")).expect("symlink");
    std::os::unix::fs::symlink("/", ctx.join("slash")).expect("symlink");
    let mut child = b
        .command()
        .args(["build", "-t", "inplace:1", ctx.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn berth build");
    let mut copies = Vec::new();
    for l in std::io::BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let l = l.expect("read");
        if let Some(id) = l.strip_prefix(" ---> Running in ") {
            b.runs.borrow_mut().push(id.to_string());
        }
        if l == "started" {
            // mid-build: the daemon's scratch directory for this build holds no copy of
            // the context (the steps' own directories are `berth-build-*`)
            let scratch = std::fs::read_dir(b.path("data/tmp")).into_iter().flatten();
            for e in scratch
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
            {
                copies.extend(
                    std::fs::read_dir(e.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|f| f.path().display().to_string()),
                );
            }
        }
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        copies,
        Vec::<String>::new(),
        "nothing unpacked under data/tmp"
    );
    let ls = b.ok(&["run", "--rm", "inplace:1", "ls", "-a", "/ctx"]);
    let names: Vec<&str> = ls.split_whitespace().collect();
    for want in ["kept.txt", "leak", "slash", ".dockerignore", "Dockerfile"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    for gone in ["ignored.txt", "docs"] {
        assert!(
            !names.contains(&gone),
            "{gone} is .dockerignored: {names:?}"
        );
    }
    // the link came as a link; the host file behind it did not
    assert_eq!(
        b.ok(&["run", "--rm", "inplace:1", "readlink", "/ctx/leak"])
            .trim(),
        host.to_str().expect("utf-8")
    );
    let cat = b.run(&["run", "--rm", "inplace:1", "cat", "/ctx/leak"]);
    assert!(!text(&cat.stdout).contains("host secret"));
    // A source through a link resolves inside the context: the host file is not found.
    for src in ["leak".to_string(), format!("slash/{host_rel}")] {
        let c = b.context(
            &format!("through-{}", src.len()),
            &[("Dockerfile", &format!("FROM base\nCOPY {src} /x\n"))],
        );
        std::os::unix::fs::symlink(&host, c.join("leak")).expect("symlink");
        std::os::unix::fs::symlink("/", c.join("slash")).expect("symlink");
        let out = b.build(&c, &["-t", "through:1"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "COPY {src}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains("not found"),
            "{}",
            text(&out.stderr)
        );
        assert!(!text(&out.stdout).contains("host secret"));
    }
    // Nor can the Dockerfile itself be a link out of the context.
    let c = b.context("df-link", &[("x", "x")]);
    std::os::unix::fs::symlink(&host, c.join("Dockerfile")).expect("symlink");
    let out = b.build(&c, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Cannot locate specified Dockerfile"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// `-f` outside the context: the Dockerfile's text travels in the request, and its own
/// `<Dockerfile>.dockerignore` wins over the context's `.dockerignore`.
#[test]
fn a_dockerfile_outside_the_context_brings_its_ignore_file() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[
            ("Dockerfile", "FROM base\nRUN exit 9\n"),
            (".dockerignore", "b.txt\n"),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let df = b.path("other/build.Dockerfile");
    std::fs::create_dir_all(df.parent().expect("parent")).expect("mkdir");
    std::fs::write(&df, "FROM base\nCOPY . /c/\n").expect("write");
    let out = b.build(
        &ctx,
        &["-f", df.to_str().expect("utf-8"), "-t", "outside:1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = b.ok(&["run", "--rm", "outside:1", "ls", "/c"]);
    assert!(ls.contains("a.txt") && !ls.contains("b.txt"), "{ls}");
    std::fs::write(b.path("other/build.Dockerfile.dockerignore"), "a.txt\n").expect("write");
    let out = b.build(
        &ctx,
        &["-f", df.to_str().expect("utf-8"), "-t", "outside:2"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = b.ok(&["run", "--rm", "outside:2", "ls", "/c"]);
    assert!(!ls.contains("a.txt") && ls.contains("b.txt"), "{ls}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn secrets_reach_run_but_no_layer() {
    let b = Berth::new();
    let df = "FROM base\n\
              RUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = berth-test-s3''cret && echo file-ok > /checked\n\
              RUN --mount=type=secret,id=tok,env=TOK test \"$TOK\" = berth-test-s3''cret && echo env-ok >> /checked\n\
              RUN --mount=type=secret,id=absent echo optional-ok >> /checked\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let secret = b.path("secret.txt");
    std::fs::write(&secret, "berth-test-s3cret").expect("write");
    let arg = format!("id=tok,src={}", secret.display());
    let out = b.build(&ctx, &["-t", "secret:1", "--secret", &arg]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_eq!(
        b.ok(&["run", "--rm", "secret:1", "cat", "/checked"]),
        "file-ok\nenv-ok\noptional-ok\n"
    );
    let ls = b.run(&["run", "--rm", "secret:1", "ls", "/run"]);
    assert_ne!(
        ls.status.code(),
        Some(0),
        "the secret's mount point stayed: {}",
        text(&ls.stdout)
    );
    for blob in std::fs::read_dir(b.path("data/content/blobs/sha256"))
        .expect("blobs")
        .flatten()
    {
        let data = std::fs::read(blob.path()).expect("read blob");
        let hit = data.windows(b"s3cret".len()).any(|w| w == b"s3cret");
        assert!(!hit, "the secret is in blob {}", blob.path().display());
    }
    let missing = b.build(&ctx, &["-t", "secret:2"]);
    assert!(missing.status.success(), "an absent secret is not required");
    let req = b.context(
        "req",
        &[(
            "Dockerfile",
            "FROM base\nRUN --mount=type=secret,id=need,required=true true\n",
        )],
    );
    let out = b.build(&req, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("secret \"need\" is required"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn run_bind_mounts_from_context_stage_and_rw_leave_sources_alone() {
    let b = Berth::new();
    let df = "FROM base AS tools\nRUN mkdir /t && echo tool-data > /t/data\n\
              FROM base\n\
              RUN --mount=type=bind,target=/src cat /src/in.txt > /copied\n\
              RUN --mount=type=bind,from=tools,source=/t,target=/tools cat /tools/data >> /copied\n\
              RUN --mount=type=bind,target=/src,rw echo scribble > /src/in.txt && cat /src/in.txt >> /copied\n";
    let ctx = b.context("ctx", &[("Dockerfile", df), ("in.txt", "context-data\n")]);
    let out = b.build(&ctx, &["-t", "binds:1"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_eq!(
        b.ok(&["run", "--rm", "binds:1", "cat", "/copied"]),
        "context-data\ntool-data\nscribble\n"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.join("in.txt")).expect("read"),
        "context-data\n"
    );
    let src = b.run(&["run", "--rm", "binds:1", "ls", "/src"]);
    assert_ne!(
        src.status.code(),
        Some(0),
        "the bind's mount point stayed in the image"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn a_killed_build_is_cleaned_up_by_the_next_one() {
    use std::io::BufRead;
    let b = Berth::new();
    let df = "FROM base\nRUN echo started && sleep 1000\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let mut child = b
        .command()
        .args(["build", ctx.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn berth build");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    for l in lines.by_ref() {
        let l = l.expect("read");
        if let Some(id) = l.strip_prefix(" ---> Running in ") {
            b.runs.borrow_mut().push(id.to_string());
        }
        if l == "started" {
            break;
        }
    }
    // The build runs in the daemon: SIGKILL that, as a crash would (its RUN helper
    // then kills the RUN container; the build's mounts and snapshots stay behind).
    let pid = b.kit.daemon_pid().expect("the daemon runs");
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let out = child.wait_with_output().expect("reap");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the client reports the failed build"
    );
    assert!(
        !b.leftovers().is_empty(),
        "a killed build leaves its mounts"
    );
    let next = b.context("next", &[("Dockerfile", "FROM base\nRUN true\n")]);
    let out = b.build(&next, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.leftovers(), Vec::<String>::new());
    let snaps = std::fs::read_to_string(b.path("data/snapshots/overlayfs/metadata.json"))
        .expect("snapshot metadata");
    assert!(!snaps.contains("berth-build-"), "{snaps}");
}

#[test]
fn copy_from_an_image_and_a_missing_one_is_pulled() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY --from=base /bin/busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        )],
    );
    let out = b.build(&ctx, &["-t", "fromimg:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.ok(&["run", "--rm", "fromimg:1", "echo", "ok"]), "ok\n");
    // An image the store lacks is pulled first (here from a registry that is not there).
    let missing = b.context(
        "missing",
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY --from=127.0.0.1:1/berth-test/none:1 /x /x\n",
        )],
    );
    let out = b.build(&missing, &[]);
    assert_eq!(out.status.code(), Some(1));
    let se = text(&out.stderr);
    assert!(
        se.contains("cannot pull the image 127.0.0.1:1/berth-test/none:1"),
        "{se}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// A loopback HTTP server answering every request with `body`.
fn serve(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body.as_bytes());
        }
    });
    port
}

#[test]
fn add_downloads_urls_with_checksums() {
    let b = Berth::new();
    let port = serve("downloaded\n");
    // sha256 of "downloaded\n"
    let sum = Command::new("sh")
        .args(["-c", "printf 'downloaded\\n' | sha256sum | cut -d' ' -f1"])
        .output()
        .expect("sha256sum");
    let sum = text(&sum.stdout).trim().to_string();
    let df = format!(
        "FROM base\nADD http://127.0.0.1:{port}/files/hello.txt /dl/\n\
         ADD --checksum=sha256:{sum} http://127.0.0.1:{port}/x /checked.txt\n\
         RUN cat /dl/hello.txt > /ran\n"
    );
    let ctx = b.context("ctx", &[("Dockerfile", df.as_str())]);
    let out = b.build(&ctx, &["-t", "dl:1"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_eq!(
        b.ok(&["run", "--rm", "dl:1", "cat", "/dl/hello.txt"]),
        "downloaded\n"
    );
    let st = b.ok(&["run", "--rm", "dl:1", "stat", "-c", "%a", "/checked.txt"]);
    assert_eq!(st, "600\n");
    assert_eq!(
        b.ok(&["run", "--rm", "dl:1", "cat", "/ran"]),
        "downloaded\n"
    );
    let bad = df.replace(&sum, &"0".repeat(64));
    let ctx = b.context("bad", &[("Dockerfile", bad.as_str())]);
    let out = b.build(&ctx, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("checksum mismatch"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn dockerfile_on_stdin() {
    let b = Berth::new();
    let ctx = b.context("ctx", &[("f.txt", "from stdin build\n")]);
    let mut child = b
        .command()
        .args([
            "build",
            "-q",
            "-t",
            "stdin:1",
            "-f",
            "-",
            ctx.to_str().expect("utf-8"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        b"FROM base\nCOPY f.txt /f.txt\n",
    )
    .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        b.ok(&["run", "--rm", "stdin:1", "cat", "/f.txt"]),
        "from stdin build\n"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn progress_modes_come_through_the_daemon() {
    let b = Berth::new();
    let ctx = b.context(
        "ctx",
        &[("Dockerfile", "FROM base\nRUN echo berth-test-out\n")],
    );
    let plain = b.build(&ctx, &["--progress", "plain", "--no-cache"]);
    let out = text(&plain.stdout);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(
        out.contains("] RUN echo berth-test-out") && out.contains("berth-test-out\n"),
        "{out}"
    );
    assert!(
        !out.contains("Step 1/2"),
        "plain is BuildKit's display, not the classic one: {out}"
    );
    let tty = b.build(&ctx, &["--progress", "tty", "--no-cache"]);
    let out = text(&tty.stdout);
    assert!(tty.status.success(), "{}", text(&tty.stderr));
    assert!(
        out.contains("[+] Building") && out.contains("\u{1b}["),
        "{out:?}"
    );
    let classic = b.build(&ctx, &["--no-cache"]);
    let out = text(&classic.stdout);
    assert!(out.contains("Step 2/2 : RUN echo berth-test-out"), "{out}");
    assert_eq!(out.matches("Successfully built").count(), 1, "{out}");
    let q = b.build(&ctx, &["-q"]);
    assert!(text(&q.stdout).trim().starts_with("sha256:") && text(&q.stdout).lines().count() == 1);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// A cgroup parent the builds of a test use (`--cgroup-parent`), removed from every
/// hierarchy when dropped.
struct CgroupParent(&'static str);

impl CgroupParent {
    /// The parent's directories (one per v1 controller, or the unified one).
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out = vec![Path::new("/sys/fs/cgroup").join(self.0)];
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            out.extend(rd.flatten().map(|e| e.path().join(self.0)));
        }
        out.retain(|d| d.is_dir());
        out
    }

    /// Cgroups left under the parent (the RUN containers' must be gone).
    fn children(&self) -> Vec<PathBuf> {
        self.dirs()
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()))
            .collect()
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for d in self.children().into_iter().chain(self.dirs()) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A RUN that records what its container sees: /etc/hosts, interfaces, its cgroup's
/// limits (found through /proc/self/cgroup), /dev/shm, rlimits, no_new_privs.
const PROBE: &str = r#"cg() { p=$(grep -E "^[0-9]+:([a-z_]+,)?$1(,[a-z_]+)?:" /proc/self/cgroup | cut -d: -f3); cat /sys/fs/cgroup/$1$p/$2 2>/dev/null || cat /sys/fs/cgroup$(grep '^0::' /proc/self/cgroup | cut -d: -f3)/$3; }; \
    mkdir /probe && cd /probe && cat /etc/hosts > hosts; ls /sys/class/net > nets; \
    cg memory memory.limit_in_bytes memory.max > mem; cg memory memory.memsw.limit_in_bytes memory.swap.max > swap; \
    cg cpu cpu.shares cpu.weight > shares; cg cpu cpu.cfs_quota_us cpu.max > quota; \
    cg cpu cpu.cfs_period_us cpu.max > period; cg cpuset cpuset.cpus cpuset.cpus > cpus; \
    grep ' /dev/shm ' /proc/mounts > shm; ulimit -n > nofile; ulimit -Hn > nofile-hard; \
    grep NoNewPrivs /proc/self/status > nnp; grep ":memory:" /proc/self/cgroup > cgroup"#;

#[test]
fn container_flags_reach_every_run_but_not_the_image() {
    let b = Berth::new();
    let parent = CgroupParent("berth-test-build-parent");
    let df = format!(
        "FROM base AS runs\nRUN {PROBE}\nRUN --network=host ls /sys/class/net > /probe/host-nets\n\
         FROM base\nCOPY --from=runs /probe /probe\nCOPY --from=runs /etc /image-etc\n"
    );
    let ctx = b.context("ctx", &[("Dockerfile", &df)]);
    #[rustfmt::skip]
    let flags = [
        "-t", "flags:1", "--add-host", "db.internal:10.1.2.3", "--add-host", "v6.internal=[fd00::7]",
        "--network", "none", "-m", "64m", "--memory-swap", "128m", "--cpu-shares", "512",
        "--cpu-period", "50000", "--cpu-quota", "25000", "--cpuset-cpus", "0", "--shm-size", "8m",
        "--ulimit", "nofile=512:1024", "--security-opt", "no-new-privileges",
        "--cgroup-parent", parent.0,
    ];
    let out = b.build(&ctx, &flags);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let probe = |f: &str| b.ok(&["run", "--rm", "flags:1", "cat", &format!("/probe/{f}")]);
    let hosts = probe("hosts");
    assert!(hosts.contains("10.1.2.3\tdb.internal\n"), "{hosts}");
    assert!(hosts.contains("fd00::7\tv6.internal\n"), "{hosts}");
    assert_eq!(probe("nets"), "lo\n", "--network none");
    let host_nets = probe("host-nets");
    assert!(
        host_nets.lines().any(|n| n != "lo"),
        "a RUN's own --network=host wins: {host_nets}"
    );
    assert_eq!(probe("mem"), format!("{}\n", 64 << 20));
    assert_eq!(probe("swap"), format!("{}\n", 128 << 20));
    assert_eq!(probe("shares"), "512\n");
    let (quota, period) = (probe("quota"), probe("period"));
    assert!(quota.starts_with("25000"), "{quota}");
    assert!(
        period.starts_with("50000") || period.ends_with(" 50000\n"),
        "{period}"
    );
    assert_eq!(probe("cpus"), "0\n");
    let shm = probe("shm");
    assert!(shm.contains("size=8192k"), "{shm}");
    assert_eq!(
        (probe("nofile"), probe("nofile-hard")),
        ("512\n".into(), "1024\n".into())
    );
    assert_eq!(probe("nnp").split_whitespace().last(), Some("1"));
    // the RUN ran in the parent's cgroup (with a cgroup namespace: seen as its root)
    assert!(probe("cgroup").contains(":memory:"));
    // the image has no /etc/hosts of its own, and certainly not the extra lines
    let image_hosts = b.run(&["run", "--rm", "flags:1", "cat", "/image-etc/hosts"]);
    assert!(
        !image_hosts.status.success(),
        "{}",
        text(&image_hosts.stdout)
    );
    assert_eq!(
        parent.children(),
        Vec::<PathBuf>::new(),
        "RUN cgroups left under the parent"
    );
    assert!(
        !parent.dirs().is_empty(),
        "the RUNs did not use --cgroup-parent"
    );

    // --network host for every RUN, except one with its own --network=none; the
    // extra host goes into the host's hosts file as the RUN sees it
    let df = "FROM base\nRUN ls /sys/class/net > /nets && cat /etc/hosts > /hosts\n\
              RUN --network=none ls /sys/class/net > /none-nets\n";
    let ctx = b.context("ctx-host", &[("Dockerfile", df)]);
    let out = b.build(
        &ctx,
        &[
            "-t",
            "flags:2",
            "--network",
            "host",
            "--add-host",
            "db:10.9.9.9",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let nets = b.ok(&["run", "--rm", "flags:2", "cat", "/nets"]);
    assert!(nets.lines().any(|n| n != "lo"), "{nets}");
    assert_eq!(
        b.ok(&["run", "--rm", "flags:2", "cat", "/none-nets"]),
        "lo\n"
    );
    let hosts = b.ok(&["run", "--rm", "flags:2", "cat", "/hosts"]);
    let host_file = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(
        hosts.starts_with(host_file.trim_end()) && hosts.ends_with("10.9.9.9\tdb\n"),
        "{hosts}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn squash_makes_one_layer_on_the_base_and_keeps_history() {
    let b = Berth::new();
    let df = "FROM base\nRUN echo a > /a && echo keep > /keep\nRUN rm /a /etc/group\n\
              ENV SQUASHED=1\nRUN echo b > /b\n";
    let ctx = b.context("ctx", &[("Dockerfile", df)]);
    let plain = b.build(&ctx, &["-t", "plain:1"]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let out = b.build(&ctx, &["-t", "squashed:1", "--squash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layers = |img: &str| {
        b.inspect(img)["RootFS"]["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let (base, plain, squashed) = (layers("base"), layers("plain:1"), layers("squashed:1"));
    assert_eq!(plain.len(), base.len() + 3);
    assert_eq!(squashed.len(), base.len() + 1, "{squashed:?}");
    assert_eq!(squashed[..base.len()], base[..], "the base's layers stay");
    let hist = b.ok(&["history", "--no-trunc", "squashed:1"]);
    let plain_id = b.inspect("plain:1")["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let base_id = b.inspect("base")["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        hist.contains(&format!("merge {plain_id} to {base_id}")),
        "{base_id}\n{hist}"
    );
    for want in [
        "RUN /bin/sh -c echo a > /a",
        "ENV SQUASHED=1",
        "RUN /bin/sh -c echo b > /b",
    ] {
        assert!(hist.contains(want), "missing {want:?} in:\n{hist}");
    }
    // a rebuild takes the merged layer from the build cache: the same image
    let again = b.build(&ctx, &["-t", "squashed:2", "--squash"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(b.inspect("squashed:2")["Id"], b.inspect("squashed:1")["Id"]);
    let run = |c: &str| b.ok(&["run", "--rm", "squashed:1", "sh", "-c", c]);
    assert_eq!(
        run("cat /keep /b; ls /a /etc/group 2>&1 | wc -l; echo $SQUASHED"),
        "keep\nb\n2\n1\n"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn seccomp_profiles_and_accepted_flags() {
    let b = Berth::new();
    let profile = b.path("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]}],
           "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"comment":"docker's format"}]}"#,
    )
    .expect("profile");
    let ctx = b.context("ctx", &[("Dockerfile", "FROM base\nRUN mkdir /made\n")]);
    let sec = format!("seccomp={}", profile.display());
    let out = b.build(&ctx, &["-t", "sec:1", "--security-opt", &sec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("returned a non-zero code: 1"),
        "{}",
        text(&out.stderr)
    );
    assert!(b.run(&["image", "inspect", "sec:1"]).status.code() != Some(0));
    // unconfined, and the flags accepted for docker's sake
    #[rustfmt::skip]
    let flags = [
        "-t", "sec:2", "--security-opt", "seccomp=unconfined", "--cache-from", "missing:1",
        "--rm=false", "--force-rm", "--compress", "--disable-content-trust=false",
        "--isolation", "default",
    ];
    let out = b.build(&ctx, &flags);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(
        so.contains("--cache-from missing:1: no such image here, not used"),
        "{so}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn run_steps_get_the_default_seccomp_profile_unless_unconfined() {
    let b = Berth::new();
    // mode 2: a filter is installed (the engine's default profile, as docker's
    // classic builder gives RUN containers docker's default)
    let ctx = b.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN grep -q 'Seccomp:.2' /proc/self/status\n",
        )],
    );
    let out = b.build(&ctx, &["-t", "sec:default"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ctx = b.context(
        "ctx2",
        &[(
            "Dockerfile",
            "FROM base\nRUN grep -q 'Seccomp:.0' /proc/self/status\n",
        )],
    );
    let out = b.build(&ctx, &["-t", "sec:none"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without unconfined there is a filter"
    );
    let out = b.build(
        &ctx,
        &["-t", "sec:none", "--security-opt", "seccomp=unconfined"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn bad_build_flag_values_fail_before_the_build_and_leave_nothing() {
    let b = Berth::new();
    let ctx = b.context("ctx", &[("Dockerfile", "FROM base\nRUN echo ran\n")]);
    // (bad syntax: docker's flag error status 125; refused by the daemon: 1)
    let mut cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["-m", "lots"], 125, "invalid size"),
        (vec!["-m", "1k"], 125, "minimum memory limit"),
        (vec!["--shm-size", "x"], 125, "invalid size"),
        (vec!["--add-host", "nohost"], 125, "bad format for add-host"),
        (vec!["--add-host", "h:999.1.1.1"], 125, "invalid IP address"),
        (vec!["--ulimit", "nofile"], 125, "name=soft"),
        (vec!["--ulimit", "nofile=10:5"], 125, "soft limit is above"),
        (vec!["--ulimit", "bogus=1"], 125, "unknown limit name"),
        (vec!["--cpu-shares", "many"], 125, "invalid value"),
        (
            vec!["-m", "64m", "--memory-swap", "10m"],
            1,
            "below --memory",
        ),
        (vec!["--memory-swap", "100m"], 1, "needs --memory"),
        (vec!["--cpu-period", "10"], 1, "CPU CFS period"),
        (vec!["--cpuset-cpus", "4000"], 1, "not available"),
        (vec!["--cpuset-cpus", "0-"], 1, "--cpuset-cpus"),
        (vec!["--network", "bridge"], 1, "use default, none or host"),
        (
            vec!["--isolation", "hyperv"],
            1,
            "linux only supports 'default'",
        ),
        (
            vec!["--security-opt", "apparmor=unconfined"],
            1,
            "not supported for builds",
        ),
        (
            vec!["--security-opt", "seccomp=/nonexistent/profile.json"],
            1,
            "cannot read the profile",
        ),
        (vec!["--cgroup-parent", "../escape"], 1, "--cgroup-parent"),
    ];
    let caps = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    if eff & (1 << 24) == 0 {
        // no CAP_SYS_RESOURCE: a hard limit above ours is refused, clearly
        cases.push((vec!["--ulimit", "nofile=1024:-1"], 1, "CAP_SYS_RESOURCE"));
    }
    for (flags, code, msg) in cases {
        let mut args = vec!["-t", "never:1"];
        args.extend(flags.iter().copied());
        let out = b.build(&ctx, &args);
        let (so, se) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{flags:?}: {se}{so}");
        assert!(se.contains(msg), "{flags:?}: want {msg:?} in {se}");
        assert!(!so.contains("Step 1"), "{flags:?} started the build: {so}");
    }
    assert!(b.run(&["image", "inspect", "never:1"]).status.code() != Some(0));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn cache_from_reuses_an_images_steps_only_where_all_below_matches() {
    let b = Berth::new();
    let df = "FROM base\nRUN echo one > /one\nWORKDIR /w\nCOPY f /w/f\nRUN cat /w/f > /two\n";
    let ctx = b.context("ctx", &[("Dockerfile", df), ("f", "v1\n")]);
    // (mtimes clamped: a COPY into /w gives the same layer at any time)
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=0"];
    let build = |args: &[&str]| b.build(&ctx, &[args, &epoch[..]].concat());
    let out = build(&["-t", "hist:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // a machine without this build cache: only the image is left
    let forget = || {
        for e in std::fs::read_dir(b.path("data/build-cache"))
            .expect("cache")
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "json") {
                std::fs::remove_file(e.path()).expect("rm");
            }
        }
    };
    let counts = |o: &Output| {
        let so = text(&o.stdout);
        assert!(o.status.success(), "{}\n{so}", text(&o.stderr));
        (
            so.matches(" ---> Using cache").count(),
            so.matches(" ---> Running in ").count(),
        )
    };
    let layers = |img: &str| b.inspect(img)["RootFS"]["Layers"].clone();
    forget();
    // from the history: RUN and WORKDIR are taken; COPY runs (its history does not
    // say what it read), made the same layer, so the RUN after it is taken too
    let out = build(&["-t", "again:1", "--cache-from", "hist:1"]);
    assert_eq!(counts(&out), (3, 0), "{}", text(&out.stdout));
    assert_eq!(b.inspect("again:1")["Id"], b.inspect("hist:1")["Id"]);
    // a changed file: COPY makes another layer, and nothing above it is taken
    forget();
    std::fs::write(ctx.join("f"), "v2\n").expect("write");
    let out = build(&["-t", "changed:1", "--cache-from", "hist:1"]);
    assert_eq!(counts(&out), (2, 1), "{}", text(&out.stdout));
    assert_eq!(b.ok(&["run", "--rm", "changed:1", "cat", "/two"]), "v2\n");
    // with BUILDKIT_INLINE_CACHE=1 the image carries its steps' cache keys: a
    // touched file (same content, another mtime, so another COPY layer) still takes
    // every step, COPY included
    let inline = ["--build-arg", "BUILDKIT_INLINE_CACHE=1"];
    let mut args = vec!["-t", "inline:1"];
    args.extend(inline);
    let out = b.build(&ctx, &args);
    assert!(
        !text(&out.stdout).contains("not consumed"),
        "{}",
        text(&out.stdout)
    );
    forget();
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(ctx.join("f"))
        .and_then(|f| f.set_modified(t))
        .expect("touch");
    let mut args = vec!["-t", "inline:2", "--cache-from", "inline:1"];
    args.extend(inline);
    let out = b.build(&ctx, &args);
    assert_eq!(counts(&out), (4, 0), "{}", text(&out.stdout));
    assert_eq!(layers("inline:2"), layers("inline:1"));
    // without --cache-from a forgotten cache takes nothing
    forget();
    let out = b.build(&ctx, &["-t", "plain:1"]);
    assert_eq!(counts(&out), (0, 2));
    assert_eq!(b.leftovers(), Vec::<String>::new());
}
