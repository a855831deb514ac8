//! The build plan: parse, split into stages, resolve references, pick the
//! target and evaluate the stages it needs.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::{Dockerfile, Instruction, Warning};
use crate::config::ImageConfig;
use crate::eval::{
    eval_stage, global_args, BuildOptions, EvalError, GlobalArgs, StagePlan, PROXY_ARGS,
};
use crate::parser::ParseError;
use crate::shell::Lexer;
use crate::stages::{split, Base, StageError, StageGraph, StageRefs, StageSet};

/// Errors of planning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The stages are inconsistent.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A stage cannot be evaluated.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The base image of a stage could not be resolved.
    #[error("stage {stage}: cannot resolve base image {image:?}: {message}")]
    Base {
        /// Stage name or index.
        stage: String,
        /// The image reference.
        image: String,
        /// The resolver's message.
        message: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, PlanError>;

/// A parsed and resolved Dockerfile, ready to evaluate and execute.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The parsed file.
    pub dockerfile: Dockerfile,
    /// Global ARGs and stages.
    pub stages: StageSet,
    /// Stage dependencies.
    pub graph: StageGraph,
    /// Global ARG values.
    pub globals: GlobalArgs,
    /// Expanded reference of each stage's FROM.
    pub refs: Vec<StageRefs>,
    /// Expanded `FROM --platform` of each stage.
    pub platforms: Vec<Option<String>>,
    /// The stage to build.
    pub target: usize,
    /// The options.
    pub opts: BuildOptions,
}

impl Plan {
    /// Parse `src` and plan a build of `target` (the last stage when `None`).
    pub fn new(src: &str, opts: BuildOptions, target: Option<&str>) -> Result<Self> {
        let dockerfile = crate::parse(src)?;
        let stages = split(&dockerfile)?;
        let globals = global_args(&stages, &opts)?;
        let mut refs = Vec::new();
        let mut platforms = Vec::new();
        for s in &stages.stages {
            let (r, p) = stage_refs(s, stages.escape, &globals, &opts)?;
            refs.push(r);
            platforms.push(p);
        }
        add_onbuild_refs(&stages, &mut refs);
        let graph = StageGraph::new(&stages, &refs)?;
        let target = graph.target(&stages, target)?;
        Ok(Self {
            dockerfile,
            stages,
            graph,
            globals,
            refs,
            platforms,
            target,
            opts,
        })
    }

    /// The stages the target needs, in build order.
    pub fn order(&self) -> Vec<usize> {
        self.graph.required(self.target)
    }

    /// The needed stages in waves of independent stages.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        self.graph.waves(self.target)
    }

    /// What stage `i` starts from.
    pub fn base(&self, i: usize) -> &Base {
        &self.graph.nodes[i].base
    }

    /// Evaluate stage `i` on top of `base` (None for scratch).
    pub fn eval(&self, i: usize, base: Option<&ImageConfig>) -> Result<StagePlan> {
        Ok(eval_stage(
            &self.stages,
            i,
            base,
            &self.globals,
            &self.opts,
        )?)
    }

    /// Evaluate every needed stage in order; `resolve(image, platform)`
    /// gives the config of an image base (pulling it if need be).
    pub fn eval_all(
        &self,
        mut resolve: impl FnMut(&str, Option<&str>) -> std::result::Result<ImageConfig, String>,
    ) -> Result<BTreeMap<usize, StagePlan>> {
        let mut done: BTreeMap<usize, StagePlan> = BTreeMap::new();
        for i in self.order() {
            let base = match self.base(i) {
                Base::Scratch => None,
                Base::Stage(s) => done.get(s).map(|p| p.config.clone()),
                Base::Image(img) => Some(resolve(img, self.platforms[i].as_deref()).map_err(
                    |message| PlanError::Base {
                        stage: self.stages.stages[i].display_name(),
                        image: img.clone(),
                        message,
                    },
                )?),
            };
            let mut plan = self.eval(i, base.as_ref())?;
            if i == self.target {
                plan.config.config.labels.extend(self.opts.labels.clone());
            }
            done.insert(i, plan);
        }
        Ok(done)
    }

    /// Build args no ARG of the file (nor docker's predefined set) consumes.
    pub fn unused_build_args(&self) -> Vec<String> {
        let mut declared: BTreeSet<&str> =
            self.globals.declared.iter().map(String::as_str).collect();
        for s in &self.stages.stages {
            for n in &s.commands {
                if let Instruction::Arg(decls) = &n.instruction {
                    declared.extend(decls.iter().map(|d| d.name.as_str()));
                }
            }
        }
        self.opts
            .build_args
            .keys()
            .filter(|k| !declared.contains(k.as_str()) && !PROXY_ARGS.contains(&k.as_str()))
            // (BuildKit's own switches, such as BUILDKIT_INLINE_CACHE)
            .filter(|k| !k.starts_with("BUILDKIT_"))
            .cloned()
            .collect()
    }

    /// Non-fatal remarks (parser warnings, unused build args).
    pub fn warnings(&self) -> Vec<Warning> {
        let mut w = self.dockerfile.warnings.clone();
        let unused = self.unused_build_args();
        if !unused.is_empty() {
            w.push(Warning {
                line: 0,
                message: format!("one or more build-args {unused:?} were not consumed"),
            });
        }
        w
    }
}

/// A stage built FROM another stage runs that stage's ONBUILD triggers:
/// their `COPY --from` and `RUN --mount=from=` (as written) are its references too.
fn add_onbuild_refs(set: &StageSet, refs: &mut [StageRefs]) {
    for (stage, r) in set.stages.iter().zip(refs.iter_mut()) {
        let Some(base) = set.by_name(&r.base) else {
            continue;
        };
        for n in &set.stages[base].commands {
            let Instruction::Onbuild(o) = &n.instruction else {
                continue;
            };
            let froms: Vec<String> = match o.trigger.as_ref() {
                Instruction::Copy(c) => c.from.iter().cloned().collect(),
                Instruction::Run(run) => run.mounts.iter().filter_map(|m| m.from.clone()).collect(),
                _ => Vec::new(),
            };
            r.from_refs
                .extend(froms.into_iter().map(|f| (stage.line, f)));
        }
    }
}

/// A stage's FROM reference and `--from` values, expanded with the global
/// ARGs (FROM) and the stage's own ARG/ENV values as written in the file.
fn stage_refs(
    stage: &crate::stages::Stage,
    escape: char,
    globals: &GlobalArgs,
    opts: &BuildOptions,
) -> std::result::Result<(StageRefs, Option<String>), EvalError> {
    let lexer = Lexer::new(escape);
    let ex = |line: usize, w: &str, vars: &BTreeMap<String, String>| {
        lexer
            .process_word(w, vars)
            .map_err(|source| EvalError::Expand {
                line,
                word: w.to_string(),
                source,
            })
    };
    let base = ex(stage.line, &stage.from.image, &globals.values)?;
    let platform = stage
        .from
        .platform
        .as_deref()
        .map(|p| ex(stage.line, p, &globals.values))
        .transpose()?;
    let mut refs = StageRefs {
        base,
        from_refs: Vec::new(),
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for n in &stage.commands {
        match &n.instruction {
            Instruction::Arg(decls) => {
                for d in decls {
                    let v = match (opts.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(ex(n.line, def, &vars)?),
                        (None, None) => globals.values.get(&d.name).cloned(),
                    };
                    if let Some(v) = v {
                        vars.insert(d.name.clone(), v);
                    }
                }
            }
            Instruction::Env(kvs) => {
                let before = vars.clone();
                for kv in kvs {
                    vars.insert(
                        ex(n.line, &kv.key, &before)?,
                        ex(n.line, &kv.value, &before)?,
                    );
                }
            }
            Instruction::Copy(c) => {
                if let Some(f) = &c.from {
                    refs.from_refs.push((n.line, ex(n.line, f, &vars)?));
                }
            }
            Instruction::Run(r) => {
                for f in r.mounts.iter().filter_map(|m| m.from.as_ref()) {
                    refs.from_refs.push((n.line, ex(n.line, f, &vars)?));
                }
            }
            _ => {}
        }
    }
    Ok((refs, platform))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str =
        "ARG GO=1.22\nFROM golang:${GO} AS build\nARG STAGE=assets\nCOPY --from=$STAGE /a /a\n\
                       FROM node AS assets\nRUN build\nFROM scratch AS unused\nRUN false\n\
                       FROM alpine\nCOPY --from=build /out /bin/app\n";

    #[test]
    fn plan_picks_needed_stages() {
        let p = Plan::new(SRC, BuildOptions::default(), None).unwrap();
        assert_eq!(p.refs[0].base, "golang:1.22");
        assert_eq!(p.graph.nodes[0].deps, BTreeSet::from([1]));
        assert_eq!(p.order(), vec![1, 0, 3]);
        assert_eq!(p.waves(), vec![vec![1], vec![0], vec![3]]);
        let p = Plan::new(SRC, BuildOptions::default(), Some("unused")).unwrap();
        assert_eq!(p.order(), vec![2]);
    }

    #[test]
    fn eval_all_resolves_bases() {
        let p = Plan::new(SRC, BuildOptions::default(), None).unwrap();
        let mut asked = Vec::new();
        let plans = p
            .eval_all(|img, _| {
                asked.push(img.to_string());
                let mut c = ImageConfig::default();
                c.config.env.push(format!("FROM_IMAGE={img}"));
                Ok(c)
            })
            .unwrap();
        assert_eq!(asked, ["node", "golang:1.22", "alpine"]);
        assert_eq!(plans.len(), 3);
        assert_eq!(
            plans[&3].config.config.env_get("FROM_IMAGE"),
            Some("alpine")
        );
        let e = p
            .eval_all(|_, _| Err("pull access denied".into()))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot resolve base image \"node\": pull access denied"),
            "{e}"
        );
    }

    #[test]
    fn onbuild_triggers_of_a_base_stage_add_dependencies() {
        let src = "FROM scratch AS assets\nFROM scratch AS base\nONBUILD COPY --from=assets / /\nFROM base\n";
        let p = Plan::new(src, BuildOptions::default(), None).unwrap();
        assert_eq!(p.order(), vec![0, 1, 2]);
        let plans = p.eval_all(|_, _| Ok(ImageConfig::default())).unwrap();
        assert!(matches!(
            plans[&2].steps[0].kind,
            crate::eval::StepKind::Copy(_)
        ));
    }

    #[test]
    fn cli_labels_go_to_the_target_only() {
        let mut o = BuildOptions::default();
        o.labels.insert("team".into(), "core".into());
        let p = Plan::new(SRC, o, None).unwrap();
        let plans = p.eval_all(|_, _| Ok(ImageConfig::default())).unwrap();
        assert_eq!(plans[&3].config.config.labels["team"], "core");
        assert!(plans[&0].config.config.labels.is_empty());
    }

    #[test]
    fn unused_build_args_reported() {
        let mut o = BuildOptions::default();
        for k in ["GO", "STAGE", "NOPE", "HTTP_PROXY"] {
            o.build_args.insert(k.into(), "x".into());
        }
        let p = Plan::new("ARG GO\nFROM scratch\nARG STAGE\n", o, None).unwrap();
        assert_eq!(p.unused_build_args(), ["NOPE"]);
        assert!(p.warnings().iter().any(|w| w.message.contains("NOPE")));
    }

    #[test]
    fn errors_pass_through() {
        assert!(matches!(
            Plan::new("", BuildOptions::default(), None),
            Err(PlanError::Parse(_))
        ));
        assert!(matches!(
            Plan::new("FROM a\n", BuildOptions::default(), Some("x")),
            Err(PlanError::Stage(_))
        ));
        assert!(matches!(
            Plan::new("FROM ${X:?no}\n", BuildOptions::default(), None),
            Err(PlanError::Eval(_))
        ));
    }
}
