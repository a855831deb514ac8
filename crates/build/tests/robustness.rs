//! The front end must never panic, whatever it is fed: every prefix of the
//! corpus files and many pseudo-random mutations of them either parse and
//! evaluate or fail with an error.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use berth_build::eval::BuildOptions;
use berth_build::ignore::{read_patterns, Ignore};
use berth_build::plan::Plan;
use berth_build::shell::Lexer;

fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dockerfiles");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    out
}

fn exercise(src: &str) {
    if let Ok(plan) = Plan::new(src, BuildOptions::default(), None) {
        let _ = plan.eval_all(|_, _| Ok(Default::default()));
        let _ = plan.waves();
    }
    let _ = Lexer::default().process_words(src, &berth_build::shell::NoVars);
    let _ = Ignore::new(&read_patterns(src)).map(|i| i.matches(src));
}

#[test]
fn every_prefix() {
    for src in corpus() {
        for (i, _) in src.char_indices() {
            exercise(&src[..i]);
        }
    }
}

/// A tiny deterministic generator (no extra crate needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn random_mutations() {
    const PIECES: [&str; 24] = [
        "\\", "`", "\n", "\"", "'", "$", "${", "}", "<<", "<<-", "EOF", "--", "=", "[", "]", ",",
        " ", "\t", "#", "**", "!", "/", "..", "é",
    ];
    let mut rng = Lcg(0x5eed);
    for src in corpus() {
        for _ in 0..300 {
            let mut s = src.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let mut at = rng.next() % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                if matches!(rng.next() % 3, 0) && at < s.len() {
                    let mut end = at + 1;
                    while !s.is_char_boundary(end) {
                        end += 1;
                    }
                    s.replace_range(at..end, "");
                } else {
                    s.insert_str(at, PIECES[rng.next() % PIECES.len()]);
                }
            }
            exercise(&s);
        }
    }
}
