//! Corpus tests: real-world-style Dockerfiles with their expected parse
//! and evaluation, plus table-driven expansion and error cases.
//!
//! Expected files live next to each Dockerfile (`<name>.parse.json`,
//! `<name>.eval.json`). After an intended change, regenerate them with
//! `BLESS=1 cargo test -p berth-build --test fixtures` and review the diff.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_build::config::ImageConfig;
use berth_build::eval::{BuildOptions, Platform};
use berth_build::plan::Plan;
use berth_build::shell::Lexer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn check_golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, actual).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (run with BLESS=1)", path.display()))?;
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "{} differs at line {}:\n  expected: {}\n  actual:   {}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<eof>"),
            actual.lines().nth(line).unwrap_or("<eof>")
        ));
    }
    Ok(())
}

fn opts() -> BuildOptions {
    BuildOptions {
        platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        created: Some(1_700_000_000),
        ..Default::default()
    }
}

/// A stand-in base image: its config only names the image.
fn fake_base(image: &str, _platform: Option<&str>) -> Result<ImageConfig, String> {
    let mut c = ImageConfig::default();
    c.config.env = vec![
        "PATH=/usr/local/bin:/usr/bin:/bin".into(),
        format!("BASE_IMAGE={image}"),
    ];
    Ok(c)
}

#[test]
fn dockerfile_corpus() {
    let dir = fixtures().join("dockerfiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus too small: {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let df = berth_build::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let parsed = serde_json::to_string_pretty(&df).unwrap() + "\n";
        if let Err(e) = check_golden(&f.with_extension("parse.json"), &parsed) {
            failures.push(e);
        }
        let plan = Plan::new(&src, opts(), None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let stages = plan
            .eval_all(fake_base)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let out = serde_json::json!({
            "order": plan.order(),
            "waves": plan.waves(),
            "stages": stages,
            "warnings": plan.warnings(),
        });
        let evaluated = serde_json::to_string_pretty(&out).unwrap() + "\n";
        if let Err(e) = check_golden(&f.with_extension("eval.json"), &evaluated) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `tests/fixtures/expansion.table`: `input | expected` with the variables
/// declared in `# env:` lines; `<empty>` is the empty string, `error: x`
/// expects an error containing x, and a `words:` prefix checks word splitting
/// (expected words written as `[w1] [w2]`); `# escape: c` switches the
/// escape character for the lines after it.
#[test]
fn expansion_table() {
    let text = std::fs::read_to_string(fixtures().join("expansion.table")).unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut lexer = Lexer::default();
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        if let Some(e) = line.strip_prefix("# escape: ") {
            lexer = Lexer::new(e.chars().next().unwrap());
            continue;
        }
        if let Some(kv) = line.strip_prefix("# env: ") {
            let (k, v) = kv.split_once('=').unwrap();
            env.insert(k.to_string(), v.trim_matches('"').to_string());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (input, expected) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("line {}: no ' | '", n + 1));
        count += 1;
        let (words, input) = match input.strip_prefix("words: ") {
            Some(i) => (true, i),
            None => (false, input),
        };
        let actual = if words {
            lexer.process_words(input, &env).map(|w| {
                w.iter()
                    .map(|w| format!("[{w}]"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        } else {
            lexer.process_word(input, &env)
        };
        let ok = match (expected.strip_prefix("error: "), &actual) {
            (Some(msg), Err(e)) => e.to_string().contains(msg),
            (None, Ok(v)) => v == if expected == "<empty>" { "" } else { expected },
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {input:?}: expected {expected:?}, got {actual:?}",
                n + 1
            ));
        }
    }
    assert!(count >= 50, "only {count} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `tests/fixtures/errors.table`: `dockerfile | line N: message` where the
/// Dockerfile is written on one line with `\n` for newlines; `//` starts a comment.
#[test]
fn error_table() {
    let text = std::fs::read_to_string(fixtures().join("errors.table")).unwrap();
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("//") || line.trim().is_empty() {
            continue;
        }
        let (src, expected) = line
            .rsplit_once(" | ")
            .unwrap_or_else(|| panic!("line {}: no ' | '", n + 1));
        let src = if src == "<empty file>" {
            String::new()
        } else {
            src.replace("\\n", "\n").replace("\\t", "\t")
        };
        let (want_line, want_msg) = expected
            .strip_prefix("line ")
            .and_then(|r| r.split_once(": "))
            .unwrap();
        match Plan::new(&src, opts(), None) {
            Ok(_) => failures.push(format!(
                "line {}: {src:?} parsed, expected {expected:?}",
                n + 1
            )),
            Err(e) => {
                let s = e.to_string();
                // Line 0: errors about the whole file carry no line.
                let line_ok = want_line == "0" || s.contains(&format!("line {want_line}:"));
                if !line_ok || !s.contains(want_msg) {
                    failures.push(format!(
                        "line {}: {src:?}: expected {expected:?}, got {s:?}",
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `tests/fixtures/instructions.table`: `instruction | expected`, each
/// instruction evaluated after a fixed preamble (see the table's header).
#[test]
fn instruction_table() {
    use berth_build::eval::StepKind;
    const PRE: &str = "FROM scratch\nARG A=va\nENV E=ve S=\"a b\" P=8080 D=/dst\n";
    let config_of = |src: &str| {
        let plan = Plan::new(src, opts(), None).map_err(|e| e.to_string())?;
        let mut stages = plan.eval_all(fake_base).map_err(|e| e.to_string())?;
        Ok::<_, String>(stages.remove(&plan.target).unwrap())
    };
    let base = config_of(PRE).unwrap();
    let base_cfg = serde_json::to_value(&base.config.config).unwrap();
    let text = std::fs::read_to_string(fixtures().join("instructions.table")).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (instr, expected) = line
            .rsplit_once(" | ")
            .unwrap_or_else(|| panic!("line {}: no ' | '", n + 1));
        count += 1;
        let actual = match config_of(&format!("{PRE}{instr}\n")) {
            Err(e) => format!("error: {e}"),
            Ok(sp) => {
                let mut parts = Vec::new();
                for s in sp.steps.iter().filter(|s| s.line == 4) {
                    parts.push(match &s.kind {
                        StepKind::Run(r) => {
                            let mut p = format!("run: {}", serde_json::to_string(&r.args).unwrap());
                            for m in &r.mounts {
                                let kind = format!("{:?}", m.kind).to_lowercase();
                                p += &format!(
                                    " mounts: {kind}:{}",
                                    m.target.clone().unwrap_or_default()
                                );
                            }
                            if r.network != berth_build::ast::NetworkMode::Default {
                                p += &format!(
                                    " network: {}",
                                    format!("{:?}", r.network).to_lowercase()
                                );
                            }
                            p
                        }
                        StepKind::Copy(c) => {
                            let mut p = format!(
                                "copy: {} -> {}",
                                serde_json::to_string(&c.sources).unwrap(),
                                c.dest
                            );
                            if c.add {
                                p += " add";
                            }
                            if let Some(o) = &c.chown {
                                p += &format!(" chown={o}");
                            }
                            if let Some(m) = c.chmod {
                                p += &format!(" chmod={m:o}");
                            }
                            if let Some(s) = &c.checksum {
                                p += &format!(" checksum={s}");
                            }
                            p
                        }
                        StepKind::Workdir(d) => format!("workdir: {d}"),
                    });
                }
                let cfg = serde_json::to_value(&sp.config.config).unwrap();
                for (k, v) in cfg.as_object().unwrap() {
                    if base_cfg.get(k) == Some(v) {
                        continue;
                    }
                    if k == "Env" {
                        let old = base_cfg[k].as_array().unwrap();
                        let new: Vec<&serde_json::Value> = v
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|e| !old.contains(e))
                            .collect();
                        parts.push(format!("Env+={}", serde_json::to_string(&new).unwrap()));
                    } else {
                        parts.push(format!("{k}={v}"));
                    }
                }
                if parts.is_empty() {
                    "<nothing>".to_string()
                } else {
                    parts.join(" ")
                }
            }
        };
        let ok = match expected.strip_prefix("error: ") {
            Some(msg) => actual.starts_with("error: ") && actual.contains(msg),
            None => actual == expected,
        };
        if !ok {
            failures.push(format!(
                "line {}: {instr}\n  expected: {expected}\n  actual:   {actual}",
                n + 1
            ));
        }
    }
    assert!(count >= 30, "only {count} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
