//! End-to-end builds through the library (`berth_build::exec`): real image
//! store, overlay snapshots and RUN containers (root and busybox-static
//! needed). The CLI's build tests live in crates/berth/tests/build.rs.
//!
//! `harness = false`: RUN containers come from a helper process forked when a
//! build starts, and forking is only safe in a single-threaded process, so
//! these tests run one after another on the main thread (libtest would run
//! each on a thread of its own). Arguments filter tests by name, as libtest's do.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_build::context::Context;
use berth_build::exec::progress::{self, Collect, Event, StepKind};
use berth_build::exec::spawner::{self, Spawner};
use berth_build::exec::{build_using, build_with, Built, ExecError, Request};
use berth_image::Images;

/// A data root with `base:1` (busybox-static) imported; everything under a
/// temporary directory that is unmounted and removed on drop.
struct Env {
    dir: tempfile::TempDir,
    images: Images,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-build-exec-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let tar = berth_testkit::rootfs_tar(dir.path());
        let images = Images::open(dir.path().join("data")).unwrap();
        images
            .import(std::fs::File::open(tar).unwrap(), Some("base:1"), &[], "")
            .unwrap();
        Self { dir, images }
    }

    fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// A context directory `name` with `files`.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = self.dir.path().join(name);
        for (p, text) in files {
            let f = d.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        d
    }

    fn build_req(&self, ctx: &Path, req: &Request) -> (Result<Built, ExecError>, Vec<Event>) {
        let c = Context::open(ctx, Some(&ctx.join("Dockerfile"))).unwrap();
        let mut events = Collect::default();
        let r = build_with(&self.images, &self.runtime_root(), &c, req, &mut events);
        (r, events.0)
    }

    fn build(&self, ctx: &Path, tag: &str) -> (Result<Built, ExecError>, Vec<Event>) {
        let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
        self.build_req(ctx, &Request::new(df, vec![tag.into()]))
    }

    fn ok(&self, ctx: &Path, tag: &str) -> (Built, Vec<Event>) {
        let (r, ev) = self.build(ctx, tag);
        match r {
            Ok(b) => (b, ev),
            Err(e) => panic!("build failed: {e}\n{}", output(&ev)),
        }
    }

    /// The files of an image: its layers applied in order (path -> entry).
    fn files(&self, name: &str) -> BTreeMap<String, FileEntry> {
        let img = self.images.resolve(name).unwrap();
        let mut out = BTreeMap::new();
        for l in img.manifest.layers() {
            let d = berth_content::Digest::parse(l.digest().as_ref()).unwrap();
            let data = self.images.content().read(&d).unwrap();
            let reader: Box<dyn Read> = if data.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(&data[..]))
            } else {
                Box::new(&data[..])
            };
            let mut ar = tar::Archive::new(reader);
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let path = e
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string();
                let h = e.header().clone();
                let mut text = String::new();
                let _ = e.read_to_string(&mut text);
                out.insert(
                    format!("/{}", path.trim_start_matches("./")),
                    FileEntry {
                        mode: h.mode().unwrap() & 0o7777,
                        uid: h.uid().unwrap(),
                        gid: h.gid().unwrap(),
                        text,
                    },
                );
            }
        }
        out
    }

    /// Every blob of the content store contains `needle` nowhere.
    fn blobs_without(&self, needle: &[u8]) {
        for (d, _) in self.images.content().list().unwrap() {
            let data = self.images.content().read(&d).unwrap();
            assert!(
                !data.windows(needle.len()).any(|w| w == needle),
                "{} found in blob {d}",
                String::from_utf8_lossy(needle)
            );
        }
    }

    /// Mounts, containers and scratch directories builds left behind.
    fn leftovers(&self) -> Vec<String> {
        let mut out = berth_testkit::mounts_under(self.dir.path());
        let tmp = self.dir.path().join("data/tmp");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            out.extend(rd.flatten().map(|e| e.path().display().to_string()));
        }
        if let Ok(rd) = std::fs::read_dir(self.runtime_root()) {
            out.extend(rd.flatten().map(|e| e.path().display().to_string()));
        }
        out.extend(berth_testkit::processes_with(
            &self.dir.path().display().to_string(),
        ));
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for m in berth_testkit::mounts_under(self.dir.path()).iter().rev() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(m)
                .status();
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileEntry {
    mode: u32,
    uid: u64,
    gid: u64,
    text: String,
}

/// The RUN output of a build, as text.
fn output(ev: &[Event]) -> String {
    let mut s = String::new();
    for e in ev {
        match e {
            Event::Output { data, .. } => s.push_str(&String::from_utf8_lossy(data)),
            Event::Failed { message, .. } => s.push_str(&format!("[failed: {message}]\n")),
            _ => {}
        }
    }
    s
}

/// The texts of the steps that ran (not cached), Exec steps only.
fn executed(ev: &[Event]) -> Vec<String> {
    let cached: Vec<usize> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Cached { id } => Some(*id),
            _ => None,
        })
        .collect();
    ev.iter()
        .filter_map(|e| match e {
            Event::Start(s) if s.kind == StepKind::Exec && !cached.contains(&s.id) => {
                Some(s.text.clone())
            }
            _ => None,
        })
        .collect()
}

/// A RUN that marks `me` in the shared cache mount `/sync` and waits for
/// `other`'s mark: it fails (exit 7) after ~60 s, which only happens when the
/// two stages do not run at the same time.
fn rendezvous(me: &str, other: &str) -> String {
    format!(
        "RUN --mount=type=cache,id=sync,target=/sync sh -c 'touch /sync/{me}; i=0; \
         while [ ! -e /sync/{other} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 7; sleep 0.1; done; \
         echo {me} > /{me}'"
    )
}

fn parallel_stages_run_at_the_same_time() {
    let env = Env::new();
    let df = format!(
        "FROM base:1 AS left\n{}\n\nFROM base:1 AS right\n{}\n\n\
         FROM base:1\nCOPY --from=left /left /out/\nCOPY --from=right /right /out/\n",
        rendezvous("left", "right"),
        rendezvous("right", "left"),
    );
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let (built, ev) = env.ok(&ctx, "par:1");
    assert_eq!(built.executed, 4, "{ev:#?}");
    let files = env.files("par:1");
    assert_eq!(files["/out/left"].text, "left\n");
    assert_eq!(files["/out/right"].text, "right\n");
    // Both RUN steps started before either finished.
    let pos = |f: &dyn Fn(&Event) -> bool| ev.iter().position(f).unwrap();
    let run_start = |stage: &'static str| move |e: &Event| matches!(e, Event::Start(s) if s.stage == stage && s.text.starts_with("RUN"));
    let id_of = |stage: &'static str| match &ev[pos(&run_start(stage))] {
        Event::Start(s) => s.id,
        _ => unreachable!(),
    };
    let (l, r) = (id_of("left"), id_of("right"));
    let first_done = pos(&|e: &Event| matches!(e, Event::Done { id, .. } if *id == l || *id == r));
    assert!(pos(&run_start("left")) < first_done && pos(&run_start("right")) < first_done);
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

fn unused_failing_stage_is_not_built_and_target_picks_one() {
    let env = Env::new();
    let df = "FROM base:1 AS broken\nRUN echo broken-ran; exit 3\n\n\
              FROM base:1 AS tool\nRUN echo tool > /tool\n\n\
              FROM base:1\nCOPY --from=tool /tool /tool\nCMD [\"cat\", \"/tool\"]\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    let (_, ev) = env.ok(&ctx, "unused:1");
    assert!(!output(&ev).contains("broken-ran"));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Event::Start(s) if s.stage == "broken")));
    assert_eq!(
        ev.iter().find_map(|e| match e {
            Event::Plan { stages, .. } => Some(*stages),
            _ => None,
        }),
        Some(2)
    );
    let mut req = Request::new(df.into(), vec!["broken:1".into()]);
    req.target = Some("broken".into());
    let (r, ev) = env.build_req(&ctx, &req);
    let e = r.unwrap_err();
    assert!(
        e.to_string().contains(
            "The command '/bin/sh -c echo broken-ran; exit 3' returned a non-zero code: 3"
        ),
        "{e}"
    );
    assert!(output(&ev).contains("broken-ran"));
    assert!(ev.iter().any(|e| matches!(e, Event::Failed { .. })));
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

fn a_failing_stage_cancels_the_others_and_cleans_up() {
    let env = Env::new();
    let df = "FROM base:1 AS slow\n\
              RUN --mount=type=cache,id=sync,target=/sync sh -c 'touch /sync/slow-started; sleep 300; touch /sync/slow-finished'\n\n\
              FROM base:1 AS bad\n\
              RUN --mount=type=cache,id=sync,target=/sync sh -c 'while [ ! -e /sync/slow-started ]; do sleep 0.1; done; exit 4'\n\n\
              FROM base:1\nCOPY --from=slow /etc/passwd /a\nCOPY --from=bad /etc/passwd /b\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    let (r, ev) = env.build(&ctx, "cancel:1");
    let e = r.unwrap_err();
    assert!(e.to_string().contains("returned a non-zero code: 4"), "{e}");
    let failed: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Failed { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.contains(&progress::CANCELLED),
        "the slow step is marked cancelled: {failed:?}"
    );
    let sync = std::fs::read_dir(env.dir.path().join("data/build-cache/mounts"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(sync.join("slow-started").exists());
    assert!(
        !sync.join("slow-finished").exists(),
        "the slow stage was not cancelled"
    );
    assert_eq!(env.leftovers(), Vec::<String>::new());
    assert!(berth_testkit::processes_with("slow-finished").is_empty());
}

fn rebuilds_are_cache_hits_and_marked_cached() {
    let env = Env::new();
    let df = "FROM base:1 AS a\nWORKDIR /src\nCOPY a.txt ./\nRUN cat a.txt > /a.out\n\n\
              FROM base:1 AS b\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b.out\n\n\
              FROM base:1\nCOPY --from=a /a.out /out/\nCOPY --from=b /b.out /out/\nENV X=1\n";
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", df),
            ("a.txt", "a1\n"),
            ("b.txt", "b1\n"),
            ("notes.md", "x"),
        ],
    );
    let (first, _) = env.ok(&ctx, "cache:1");
    assert_eq!((first.cached, first.executed), (0, 7));
    std::fs::write(ctx.join("notes.md"), "unrelated change").unwrap();
    let (again, ev) = env.ok(&ctx, "cache:1");
    assert_eq!(
        (again.id.as_str(), again.cached, again.executed),
        (first.id.as_str(), 7, 0)
    );
    let cached = ev
        .iter()
        .filter(|e| matches!(e, Event::Cached { .. }))
        .count();
    assert_eq!(cached, 7);
    // Touching a file without changing it keeps the cache (content, not mtime).
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(ctx.join("b.txt"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(env.ok(&ctx, "cache:1").0.executed, 0);
    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let (third, ev) = env.ok(&ctx, "cache:2");
    assert_eq!(
        executed(&ev),
        [
            "COPY b.txt /b.txt",
            "RUN cat /b.txt > /b.out",
            "COPY --from=b /b.out /out/"
        ]
    );
    assert_eq!(env.files("cache:2")["/out/b.out"].text, "b2\n");
    assert_ne!(third.id, first.id);
    let mut req = Request::new(df.into(), vec!["cache:3".into()]);
    req.no_cache = true;
    let (r, _) = env.build_req(&ctx, &req);
    assert_eq!(r.unwrap().cached, 0);
}

fn same_inputs_give_the_same_digest_in_two_clean_data_roots() {
    // The base comes from the context (an imported image's history records
    // when it was imported, which differs between the data roots).
    let df = "FROM scratch AS base\nADD rootfs.tar /\n\
              FROM base AS gen\nRUN echo generated > /g && mkdir -p /d && touch /d/x\n\
              FROM base\nCOPY f.txt /f.txt\nCOPY --from=gen /g /d /out/\nLABEL a=b\n";
    let ids: Vec<String> = (0..2)
        .map(|n| {
            let env = Env::new();
            let ctx = env.context("ctx", &[("Dockerfile", df), ("f.txt", "same\n")]);
            std::fs::rename(env.dir.path().join("rootfs.tar"), ctx.join("rootfs.tar")).unwrap();
            if n == 1 {
                // Later files (other mtimes) give the same image.
                std::thread::sleep(std::time::Duration::from_millis(1100));
                std::fs::write(ctx.join("f.txt"), "same\n").unwrap();
            }
            let mut req = Request::new(df.into(), vec!["repro:1".into()]);
            req.options.created = Some(1_700_000_000);
            let (r, ev) = env.build_req(&ctx, &req);
            let id = r.unwrap_or_else(|e| panic!("{e}\n{}", output(&ev))).id;
            let img = env.images.resolve("repro:1").unwrap();
            assert_eq!(img.raw_config["created"], "2023-11-14T22:13:20Z");
            assert_eq!(env.files("repro:1")["/out/g"].text, "generated\n");
            id
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
}

fn args_scoping_onbuild_heredocs_and_copy_flags() {
    let env = Env::new();
    let parent = "FROM base:1\nONBUILD COPY trigger.txt /from-trigger.txt\n\
                  ONBUILD RUN echo onbuild-ran > /onbuild\n";
    let pctx = env.context("parent", &[("Dockerfile", parent)]);
    let (_, ev) = env.ok(&pctx, "parent:1");
    assert!(
        !output(&ev).contains("onbuild-ran"),
        "triggers run in children only"
    );
    let df = r#"ARG V=global
FROM base:1 AS first
ARG V
RUN echo "first=$V" > /first
FROM parent:1 AS child
RUN echo "child=${V:-unset}" > /child
FROM child
ARG V=own
COPY --from=first /first /first
RUN <<EOT sh
echo "heredoc=$V" > /heredoc
EOT
COPY <<EOF /etc/motd
hello ${V}
EOF
COPY --chown=65534:65534 --chmod=0640 secret.txt /owned.txt
COPY keep/ /keep/
"#;
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", df),
            ("trigger.txt", "triggered\n"),
            ("secret.txt", "x\n"),
            ("keep/a.log", "a"),
            ("keep/b.log", "b"),
            ("keep/c.txt", "c"),
            (".dockerignore", "**/*.log\n!keep/b.log\n"),
        ],
    );
    env.ok(&ctx, "child:1");
    let f = env.files("child:1");
    assert_eq!(f["/first"].text, "first=global\n");
    assert_eq!(
        f["/child"].text, "child=unset\n",
        "a global ARG needs a redeclaration"
    );
    assert_eq!(f["/heredoc"].text, "heredoc=own\n");
    assert_eq!(f["/etc/motd"].text, "hello own\n");
    assert_eq!(f["/from-trigger.txt"].text, "triggered\n");
    assert_eq!(f["/onbuild"].text, "onbuild-ran\n");
    let owned = &f["/owned.txt"];
    assert_eq!((owned.mode, owned.uid, owned.gid), (0o640, 65534, 65534));
    assert!(f.contains_key("/keep/b.log") && f.contains_key("/keep/c.txt"));
    assert!(!f.contains_key("/keep/a.log"), "ignored by **/*.log");
}

fn cache_mounts_persist_and_secrets_stay_out_of_layers() {
    let env = Env::new();
    let secret = "berth-exec-s3cr3t";
    let df = "FROM base:1\nARG N\n\
              RUN --mount=type=cache,target=/cache echo \"$N\" >> /cache/runs && cat /cache/runs > /seen\n\
              RUN --mount=type=secret,id=tok cp /run/secrets/tok /tmp/copy && rm /tmp/copy && wc -c < /run/secrets/tok > /len\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    for n in ["1", "2"] {
        let mut req = Request::new(df.into(), vec![format!("cm:{n}")]);
        req.options.build_args.insert("N".into(), n.into());
        req.secrets.insert("tok".into(), secret.as_bytes().to_vec());
        let (r, ev) = env.build_req(&ctx, &req);
        r.unwrap_or_else(|e| panic!("{e}\n{}", output(&ev)));
    }
    let f = env.files("cm:2");
    assert_eq!(
        f["/seen"].text, "1\n2\n",
        "the cache mount kept the first build's file"
    );
    assert_eq!(f["/len"].text.trim(), secret.len().to_string());
    assert!(!f.contains_key("/run/secrets/tok") && !f.contains_key("/cache/runs"));
    env.blobs_without(secret.as_bytes());
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

fn copy_from_an_image() {
    let env = Env::new();
    let df = "FROM scratch\nCOPY --from=base:1 /bin/busybox /bin/busybox\nCOPY --from=base:1 /etc/passwd /etc/\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    env.ok(&ctx, "fromimg:1");
    let f = env.files("fromimg:1");
    assert!(f["/etc/passwd"].text.starts_with("root:x:0:0"));
    assert_eq!(f["/bin/busybox"].mode & 0o111, 0o111);
}

/// Upper-directory copies of image file `path` in the overlay snapshots, with
/// their link counts.
fn snapshot_copies(env: &Env, path: &str) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let dir = env.dir.path().join("data/snapshots/overlayfs/snapshots");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::symlink_metadata(e.path().join("fs").join(path)).ok())
        .map(|m| m.nlink())
        .collect()
}

fn unchanged_files_of_a_copy_are_linked_not_copied() {
    let env = Env::new();
    if env.images.snapshotter().name() != "overlayfs" {
        println!("(not overlayfs: nothing is shared) ");
        return;
    }
    let df = "FROM base:1\nCOPY src/ /app/\nRUN cat /app/a /app/b /app/c > /all\n";
    let files = [
        ("Dockerfile", df),
        ("src/a", "a1\n"),
        ("src/b", "b1\n"),
        ("src/c", "c1\n"),
    ];
    let ctx = env.context("ctx", &files);
    env.ok(&ctx, "share:1");
    std::fs::write(ctx.join("src/b"), "b2\n").unwrap();
    // Directories get the build's time: clamp it to compare layers below.
    let clamped = |tag: &str| {
        let mut req = Request::new(df.into(), vec![tag.into()]);
        req.options.created = Some(1_700_000_000);
        req
    };
    let (r, ev) = env.build_req(&ctx, &clamped("share:2"));
    r.unwrap();
    assert_eq!(
        executed(&ev),
        ["COPY src/ /app/", "RUN cat /app/a /app/b /app/c > /all"]
    );
    let f = env.files("share:2");
    assert_eq!(f["/all"].text, "a1\nb2\nc1\n");
    assert_eq!(
        snapshot_copies(&env, "app/a"),
        [2, 2],
        "a is one inode in both COPY results"
    );
    let mut b = snapshot_copies(&env, "app/b");
    b.sort();
    assert_eq!(b, [1, 1], "b changed: copied");
    // The layers are what a clean data root makes from the same context.
    let clean = Env::new();
    let cctx = clean.context("ctx", &files);
    std::fs::write(cctx.join("src/b"), "b2\n").unwrap();
    for n in ["a", "c"] {
        let t = std::fs::metadata(ctx.join("src").join(n))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(cctx.join("src").join(n))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let t = std::fs::metadata(ctx.join("src/b"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(cctx.join("src/b"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    clean.build_req(&cctx, &clamped("share:2")).0.unwrap();
    let layers = |e: &Env| -> Vec<String> {
        let img = e.images.resolve("share:2").unwrap();
        img.manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string())
            .collect()
    };
    assert_eq!(layers(&env)[1], layers(&clean)[1], "the COPY layer");
    // A --no-cache rebuild shares every file.
    let mut req = Request::new(df.into(), vec!["share:3".into()]);
    req.no_cache = true;
    let (r, _) = env.build_req(&ctx, &req);
    r.unwrap();
    assert_eq!(env.files("share:3")["/all"].text, "a1\nb2\nc1\n");
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

fn a_threaded_caller_runs_the_helper_as_a_program() {
    let env = Env::new();
    let df =
        "FROM base:1 AS a\nRUN echo from-a > /a\nFROM base:1\nCOPY --from=a /a /a\nRUN cat /a\n";
    let ctx = env.context("ctx", &[("Dockerfile", df)]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Another thread busy allocating: this process must not fork.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::black_box(vec![0u8; 4096]);
            }
        });
        let c = Context::open(&ctx, Some(&ctx.join("Dockerfile"))).unwrap();
        let req = Request::new(df.into(), vec!["threaded:1".into()]);
        let mut events = Collect::default();
        let root = env.runtime_root();
        let r = build_using(&env.images, &root, &c, &req, &mut events, || {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.arg("--serve-spawner");
            Spawner::spawn(&root, cmd)
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r.unwrap_or_else(|e| panic!("{e}\n{}", output(&events.0)));
        assert!(output(&events.0).contains("from-a"));
    });
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "parallel_stages_run_at_the_same_time",
        parallel_stages_run_at_the_same_time,
    ),
    (
        "unused_failing_stage_is_not_built_and_target_picks_one",
        unused_failing_stage_is_not_built_and_target_picks_one,
    ),
    (
        "a_failing_stage_cancels_the_others_and_cleans_up",
        a_failing_stage_cancels_the_others_and_cleans_up,
    ),
    (
        "rebuilds_are_cache_hits_and_marked_cached",
        rebuilds_are_cache_hits_and_marked_cached,
    ),
    (
        "same_inputs_give_the_same_digest_in_two_clean_data_roots",
        same_inputs_give_the_same_digest_in_two_clean_data_roots,
    ),
    (
        "args_scoping_onbuild_heredocs_and_copy_flags",
        args_scoping_onbuild_heredocs_and_copy_flags,
    ),
    (
        "cache_mounts_persist_and_secrets_stay_out_of_layers",
        cache_mounts_persist_and_secrets_stay_out_of_layers,
    ),
    ("copy_from_an_image", copy_from_an_image),
    (
        "unchanged_files_of_a_copy_are_linked_not_copied",
        unchanged_files_of_a_copy_are_linked_not_copied,
    ),
    (
        "a_threaded_caller_runs_the_helper_as_a_program",
        a_threaded_caller_runs_the_helper_as_a_program,
    ),
];

fn main() {
    // The RUN helper of `a_threaded_caller_runs_the_helper_as_a_program`.
    if std::env::args().any(|a| a == "--serve-spawner") {
        std::process::exit(spawner::serve_stdin());
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let listing = std::env::args().any(|a| a == "--list");
    let chosen: Vec<&Test> = TESTS
        .iter()
        .filter(|(n, _)| args.is_empty() || args.iter().any(|a| n.contains(a.as_str())))
        .collect();
    if listing {
        for (n, _) in &chosen {
            println!("{n}: test");
        }
        return;
    }
    berth_testkit::require_root();
    let mut failed = Vec::new();
    for (name, f) in &chosen {
        print!("test {name} ... ");
        match std::panic::catch_unwind(f) {
            Ok(()) => println!("ok"),
            Err(_) => {
                println!("FAILED");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}
