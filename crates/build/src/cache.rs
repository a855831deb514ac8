//! Cache keys of build steps.
//!
//! `key(step) = sha256(parent key, the step after expansion, its inputs)`:
//! the step's kind with every word expanded, plus the environment, user and
//! working directory it runs with; the inputs are the content hashes of the
//! files it reads (context selection, source stage key or image digest).
//! Line numbers, history positions and proxy variables are left out, so
//! moving an unrelated LABEL or changing `http_proxy` keeps the cache.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ast::MountType;
use crate::context::{Context, ContextError};
use crate::eval::{CopyFrom, Step, StepKind};

/// Errors while computing cache inputs.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The context could not be read or a source is missing.
    #[error("line {line}: {source}")]
    Context {
        /// The instruction.
        line: usize,
        /// Why.
        source: ContextError,
    },
    /// A step reads a stage whose key is not known yet.
    #[error("line {line}: stage {stage} has no cache key yet: build the stages in plan order")]
    StageNotBuilt {
        /// The instruction.
        line: usize,
        /// The stage index.
        stage: usize,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, CacheError>;

/// What a step's inputs resolve to outside the step itself.
pub trait KeySource {
    /// The final cache key of an already built stage.
    fn stage_key(&self, stage: usize) -> Option<String>;
    /// The digest (or ID) of an image used by `--from` or a mount.
    fn image_digest(&self, reference: &str) -> String;
}

fn hash_str(s: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())))
}

/// The input hashes of a step: the content hash of the context files a
/// COPY/ADD selects (or of a context bind mount), the key of a source
/// stage, the digest of a source image, heredoc bodies and URLs. Cache,
/// tmpfs, secret and ssh mounts are not inputs (secrets never reach a key).
pub fn step_inputs(step: &Step, ctx: &Context, src: &dyn KeySource) -> Result<Vec<String>> {
    let line = step.line;
    let from_input = |from: &CopyFrom, sources: &[String], excludes: &[String]| -> Result<String> {
        match from {
            CopyFrom::Context => {
                let sel = ctx
                    .select(sources, excludes)
                    .map_err(|source| CacheError::Context { line, source })?;
                ctx.content_hash(&sel)
                    .map_err(|source| CacheError::Context { line, source })
            }
            CopyFrom::Stage(i) => src
                .stage_key(*i)
                .ok_or(CacheError::StageNotBuilt { line, stage: *i }),
            CopyFrom::Image(r) => Ok(src.image_digest(r)),
        }
    };
    let mut inputs = Vec::new();
    match &step.kind {
        StepKind::Copy(c) => {
            let (urls, paths): (Vec<String>, Vec<String>) = c
                .sources
                .iter()
                .cloned()
                .partition(|s| c.add && crate::eval::is_url_or_git(s));
            if !paths.is_empty() {
                inputs.push(from_input(&c.from, &paths, &c.excludes)?);
            }
            inputs.extend(urls.iter().map(|u| format!("url:{u}")));
            inputs.extend(c.inline.iter().map(|f| hash_str(&f.data)));
        }
        StepKind::Run(r) => {
            for m in r.mounts.iter().filter(|m| m.kind == MountType::Bind) {
                let source = m.source.clone().unwrap_or_else(|| ".".into());
                inputs.push(from_input(&m.from, &[source], &[])?);
            }
            for m in r.mounts.iter().filter(|m| m.kind == MountType::Cache) {
                if let CopyFrom::Stage(_) | CopyFrom::Image(_) = m.from {
                    inputs.push(from_input(&m.from, &[], &[])?);
                }
            }
            inputs.extend(r.files.iter().map(|f| hash_str(&f.data)));
        }
        StepKind::Workdir(_) => {}
    }
    Ok(inputs)
}

#[derive(Serialize)]
struct KeyView<'a> {
    kind: &'a StepKind,
    env: &'a [String],
    user: &'a str,
    workdir: &'a str,
}

/// The text a step contributes to its cache key (stable JSON).
pub fn step_text(step: &Step) -> String {
    let view = KeyView {
        kind: &step.kind,
        env: &step.env,
        user: &step.user,
        workdir: &step.workdir,
    };
    serde_json::to_string(&view).unwrap_or_default()
}

/// The cache key of a step: `sha256:<hex>`.
///
/// `parent` is the previous step's key (or the base image's digest, or
/// `scratch`); `inputs` are content hashes of what the step reads.
pub fn cache_key(parent: &str, step: &Step, inputs: &[String]) -> String {
    let mut h = Sha256::new();
    for part in [parent, step_text(step).as_str()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update((inputs.len() as u64).to_le_bytes());
    for i in inputs {
        h.update((i.len() as u64).to_le_bytes());
        h.update(i.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{eval_stage, global_args, BuildOptions};
    use crate::{parse, stages::split};

    fn steps(src: &str, o: &BuildOptions) -> Vec<Step> {
        let set = split(&parse(src).unwrap()).unwrap();
        let g = global_args(&set, o).unwrap();
        eval_stage(&set, 0, None, &g, o).unwrap().steps
    }

    fn keys(src: &str) -> Vec<String> {
        keys_with(src, &BuildOptions::default())
    }

    fn keys_with(src: &str, o: &BuildOptions) -> Vec<String> {
        let mut parent = "scratch".to_string();
        steps(src, o)
            .iter()
            .map(|s| {
                parent = cache_key(&parent, s, &["sha256:ctx".into()]);
                parent.clone()
            })
            .collect()
    }

    #[test]
    fn same_inputs_same_keys() {
        let src = "FROM scratch\nRUN a\nCOPY . /x\n";
        assert_eq!(keys(src), keys(src));
        assert!(keys(src)[0].starts_with("sha256:"));
    }

    #[test]
    fn unrelated_metadata_keeps_keys() {
        let a = keys("FROM scratch\nRUN a\n");
        let b = keys("FROM scratch\n\n# comment\nLABEL x=y\nRUN a\n");
        assert_eq!(a, b);
    }

    #[test]
    fn changes_that_matter() {
        let base = keys("FROM scratch\nRUN a\nRUN b\n");
        // A different command.
        assert_ne!(keys("FROM scratch\nRUN c\nRUN b\n")[1], base[1]);
        // The environment changes the key, and every later key.
        let env = keys("FROM scratch\nENV X=1\nRUN a\nRUN b\n");
        assert_ne!(env[0], base[0]);
        assert_ne!(env[1], base[1]);
        // So does the user.
        assert_ne!(
            keys("FROM scratch\nUSER nobody\nRUN a\nRUN b\n")[0],
            base[0]
        );
        // Build args in scope change RUN keys.
        let mut o = BuildOptions::default();
        o.build_args.insert("V".into(), "2".into());
        let with_arg = keys_with("FROM scratch\nARG V=1\nRUN a\n", &o);
        assert_ne!(with_arg, keys("FROM scratch\nARG V=1\nRUN a\n"));
    }

    #[test]
    fn proxies_do_not_change_keys() {
        let mut o = BuildOptions::default();
        o.build_args
            .insert("HTTP_PROXY".into(), "http://p:1".into());
        assert_eq!(
            keys_with("FROM scratch\nRUN a\n", &o),
            keys("FROM scratch\nRUN a\n")
        );
    }

    #[test]
    fn inputs_and_parent_matter() {
        let s = &steps("FROM scratch\nCOPY . /x\n", &BuildOptions::default())[0];
        assert_ne!(
            cache_key("p", s, &["sha256:1".into()]),
            cache_key("p", s, &["sha256:2".into()])
        );
        assert_ne!(cache_key("p1", s, &[]), cache_key("p2", s, &[]));
        // No ambiguity between parent and inputs.
        assert_ne!(
            cache_key("ab", s, &["c".into()]),
            cache_key("a", s, &["bc".into()])
        );
    }
}
