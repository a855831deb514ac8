//! End to end through the front end, as an executor would drive it: plan,
//! evaluate, select context files, chain cache keys; then check which
//! keys survive which changes (no execution: keys only).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use berth_build::cache::{cache_key, step_inputs, KeySource};
use berth_build::context::Context;
use berth_build::eval::{BuildOptions, StepKind};
use berth_build::plan::Plan;
use berth_build::stages::Base;

const DOCKERFILE: &str = "\
FROM alpine:3.20 AS deps
WORKDIR /app
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

FROM deps AS build
COPY --exclude=*_test.go src/ ./src/
RUN --mount=type=bind,source=tools,target=/tools go build -o /out/app ./src

FROM alpine:3.20 AS docs
COPY docs/ /docs/

FROM scratch
COPY --from=build /out/app /app
COPY <<EOF /etc/motd
built from the front end
EOF
ENTRYPOINT [\"/app\"]
";

struct Keys(BTreeMap<usize, String>);

impl KeySource for Keys {
    fn stage_key(&self, stage: usize) -> Option<String> {
        self.0.get(&stage).cloned()
    }
    fn image_digest(&self, reference: &str) -> String {
        format!("digest-of:{reference}")
    }
}

/// Every step key of the build, in plan order, as `stage:line -> key`.
fn build_keys(dir: &Path) -> Vec<(String, String)> {
    let src = fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let plan = Plan::new(&src, BuildOptions::default(), None).unwrap();
    let stages = plan.eval_all(|_, _| Ok(Default::default())).unwrap();
    let ctx = Context::open(dir, Some(&dir.join("Dockerfile"))).unwrap();
    let mut keys = Keys(BTreeMap::new());
    let mut out = Vec::new();
    for i in plan.order() {
        let mut parent = match plan.base(i) {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => keys.image_digest(r),
            Base::Stage(s) => keys.0[s].clone(),
        };
        for step in &stages[&i].steps {
            let inputs = step_inputs(step, &ctx, &keys).unwrap();
            parent = cache_key(&parent, step, &inputs);
            out.push((format!("{i}:{}", step.line), parent.clone()));
        }
        keys.0.insert(i, parent);
    }
    out
}

fn context() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in [
        ("Dockerfile", DOCKERFILE),
        ("go.mod", "module x"),
        ("go.sum", ""),
        ("src/main.go", "package main"),
        ("src/main_test.go", "package main // test"),
        ("tools/gen.sh", "#!/bin/sh"),
        ("docs/index.md", "docs"),
        ("README.md", "readme"),
        ("secret.env", "TOKEN=1"),
        (".dockerignore", "secret.env\n*.log\n"),
    ] {
        let p = d.path().join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    d
}

fn changed(a: &[(String, String)], b: &[(String, String)]) -> Vec<String> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| x.0.clone())
        .collect()
}

#[test]
fn the_unused_stage_is_not_built_and_steps_are_keyed() {
    let d = context();
    let keys = build_keys(d.path());
    let stages: Vec<&str> = keys
        .iter()
        .map(|(s, _)| s.split(':').next().unwrap())
        .collect();
    assert!(
        !stages.contains(&"2"),
        "the unused docs stage must not be built: {keys:?}"
    );
    // deps: WORKDIR, COPY, RUN; build: COPY, RUN; final: COPY, COPY.
    assert_eq!(keys.len(), 7);
}

#[test]
fn nothing_changed_means_identical_keys() {
    let d = context();
    assert_eq!(build_keys(d.path()), build_keys(d.path()));
}

#[test]
fn unrelated_and_ignored_changes_keep_the_cache() {
    let d = context();
    let before = build_keys(d.path());
    fs::write(d.path().join("README.md"), "changed").unwrap();
    fs::write(d.path().join("secret.env"), "TOKEN=2").unwrap();
    fs::write(d.path().join("build.log"), "new ignored file").unwrap();
    fs::write(
        d.path().join("docs/index.md"),
        "only the unused stage reads this",
    )
    .unwrap();
    fs::write(d.path().join("src/main_test.go"), "excluded by --exclude").unwrap();
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(42);
    let f = fs::File::options()
        .write(true)
        .open(d.path().join("src/main.go"))
        .unwrap();
    f.set_modified(t).unwrap();
    assert_eq!(
        changed(&before, &build_keys(d.path())),
        Vec::<String>::new()
    );
}

#[test]
fn a_source_change_invalidates_from_its_copy_on() {
    let d = context();
    let before = build_keys(d.path());
    fs::write(d.path().join("src/main.go"), "package main // v2").unwrap();
    let after = build_keys(d.path());
    assert_eq!(changed(&before, &after), ["1:7", "1:8", "3:14", "3:15"]);
    // A bind-mounted file is an input of its RUN as well.
    fs::write(d.path().join("tools/gen.sh"), "#!/bin/sh\necho v2").unwrap();
    assert_eq!(
        changed(&after, &build_keys(d.path())),
        ["1:8", "3:14", "3:15"]
    );
}

#[test]
fn a_dependency_change_invalidates_everything_after() {
    let d = context();
    let before = build_keys(d.path());
    fs::write(d.path().join("go.mod"), "module y").unwrap();
    let all = ["0:2", "0:3", "0:4", "1:7", "1:8", "3:14", "3:15"];
    assert_eq!(changed(&before, &build_keys(d.path())), all[1..]);
}

#[test]
fn heredoc_contents_are_inputs() {
    let d = context();
    let before = build_keys(d.path());
    let df = DOCKERFILE.replace("built from the front end", "built again");
    fs::write(d.path().join("Dockerfile"), df).unwrap();
    assert_eq!(changed(&before, &build_keys(d.path())), ["3:15"]);
}

#[test]
fn missing_sources_are_reported_with_their_line() {
    let d = context();
    fs::remove_file(d.path().join("go.sum")).unwrap();
    let src = fs::read_to_string(d.path().join("Dockerfile")).unwrap();
    let plan = Plan::new(&src, BuildOptions::default(), Some("deps")).unwrap();
    let stages = plan.eval_all(|_, _| Ok(Default::default())).unwrap();
    let ctx = Context::open(d.path(), None).unwrap();
    let copy = stages[&0]
        .steps
        .iter()
        .find(|s| matches!(s.kind, StepKind::Copy(_)))
        .unwrap();
    let e = step_inputs(copy, &ctx, &Keys(BTreeMap::new())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3: source \"go.sum\" not found in the build context (or excluded by .dockerignore): check the path"
    );
}
