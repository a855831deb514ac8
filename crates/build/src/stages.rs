//! Build stages and the graph between them.
//!
//! [`split`] cuts a [`Dockerfile`] into global ARGs and stages;
//! [`StageGraph`] records which stage needs which (FROM another stage,
//! `COPY --from`, `RUN --mount=from=`), picks the `--target`, lists the
//! stages a target needs in build order and groups them into waves of
//! stages that can build in parallel.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ast::{self, Dockerfile, Instruction, Node};

/// Errors about stages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// Two stages share a name.
    #[error("line {line}: duplicate stage name {name:?}: give each stage its own AS name")]
    DuplicateName {
        /// The second FROM.
        line: usize,
        /// The name.
        name: String,
    },
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found: use one of the AS names in the Dockerfile")]
    UnknownTarget(String),
    /// A numeric `--from` pointing at this stage or a later one.
    #[error("line {line}: invalid --from={value}: refers to the current or a later build stage")]
    ForwardIndex {
        /// The instruction.
        line: usize,
        /// The value as given.
        value: String,
    },
    /// Stages that depend on each other.
    #[error("circular dependency detected on stage {0:?}: break the cycle between the stages")]
    Cycle(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StageError>;

/// One build stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position among stages (0-based).
    pub index: usize,
    /// `AS` name, lower-cased.
    pub name: Option<String>,
    /// The FROM instruction.
    pub from: ast::From,
    /// Line of the FROM.
    pub line: usize,
    /// Instructions after FROM, up to the next FROM.
    pub commands: Vec<Node>,
}

impl Stage {
    /// The name, or the index as text when the stage has none.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// Global ARGs and stages of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageSet {
    /// ARG instructions before the first FROM.
    pub global_args: Vec<Node>,
    /// Stages in file order.
    pub stages: Vec<Stage>,
    /// The escape character of the file (`# escape=`), used for expansion.
    pub escape: char,
}

/// Cut a Dockerfile into global ARGs and stages.
pub fn split(df: &Dockerfile) -> Result<StageSet> {
    let mut set = StageSet {
        escape: df.directives.escape,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    for node in &df.instructions {
        match (&node.instruction, set.stages.last_mut()) {
            (Instruction::From(f), _) => {
                if let Some(name) = &f.name {
                    if set.stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        return Err(StageError::DuplicateName {
                            line: node.line,
                            name: name.clone(),
                        });
                    }
                }
                set.stages.push(Stage {
                    index: set.stages.len(),
                    name: f.name.clone(),
                    from: f.clone(),
                    line: node.line,
                    commands: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.commands.push(node.clone()),
            (_, None) => set.global_args.push(node.clone()),
        }
    }
    Ok(set)
}

impl StageSet {
    /// Index of the stage called `name` (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Resolve a `--from` value seen in stage `current`: a stage name, an
    /// earlier stage's index, or (None) an image reference.
    pub fn resolve_from(&self, value: &str, current: usize, line: usize) -> Result<Option<usize>> {
        if let Some(i) = self.by_name(value) {
            return Ok(Some(i));
        }
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return match value.parse::<usize>() {
                Ok(i) if i < current => Ok(Some(i)),
                _ => Err(StageError::ForwardIndex {
                    line,
                    value: value.to_string(),
                }),
            };
        }
        Ok(None)
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Base {
    /// The empty image.
    Scratch,
    /// Another stage.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// A stage's edges in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageNode {
    /// What the stage starts from.
    pub base: Base,
    /// Stages it needs (base included).
    pub deps: BTreeSet<usize>,
    /// Images it copies or mounts from.
    pub images: BTreeSet<String>,
}

/// The dependency graph of stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageGraph {
    /// One node per stage, by index.
    pub nodes: Vec<StageNode>,
    /// Stage names, by index.
    pub names: Vec<String>,
}

/// The references a stage makes, with their values already expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageRefs {
    /// The FROM image or stage name.
    pub base: String,
    /// `--from` values of COPY and `from=` of RUN mounts, with their lines.
    pub from_refs: Vec<(usize, String)>,
}

impl StageGraph {
    /// Build the graph from each stage's expanded references.
    pub fn new(set: &StageSet, refs: &[StageRefs]) -> Result<Self> {
        let mut nodes = Vec::new();
        for (i, (stage, r)) in set.stages.iter().zip(refs).enumerate() {
            let mut node = StageNode {
                base: Base::Scratch,
                deps: BTreeSet::new(),
                images: BTreeSet::new(),
            };
            node.base = match set.by_name(&r.base) {
                Some(s) => {
                    node.deps.insert(s);
                    Base::Stage(s)
                }
                None if r.base.eq_ignore_ascii_case("scratch") => Base::Scratch,
                None => Base::Image(r.base.clone()),
            };
            for (line, value) in &r.from_refs {
                match set.resolve_from(value, i, *line)? {
                    Some(s) => node.deps.insert(s),
                    None => node.images.insert(value.clone()),
                };
            }
            if node.deps.contains(&i) {
                return Err(StageError::Cycle(stage.display_name()));
            }
            nodes.push(node);
        }
        let graph = Self {
            nodes,
            names: set.stages.iter().map(Stage::display_name).collect(),
        };
        graph.check_cycles()?;
        Ok(graph)
    }

    fn check_cycles(&self) -> Result<()> {
        // 0 = unvisited, 1 = on the stack, 2 = done.
        fn visit(g: &StageGraph, i: usize, state: &mut [u8]) -> Result<()> {
            match state[i] {
                1 => return Err(StageError::Cycle(g.names[i].clone())),
                2 => return Ok(()),
                _ => {}
            }
            state[i] = 1;
            for &d in &g.nodes[i].deps {
                visit(g, d, state)?;
            }
            state[i] = 2;
            Ok(())
        }
        let mut state = vec![0u8; self.nodes.len()];
        (0..self.nodes.len()).try_for_each(|i| visit(self, i, &mut state))
    }

    /// The stage `--target` selects; the last stage when none is given.
    pub fn target(&self, set: &StageSet, target: Option<&str>) -> Result<usize> {
        match target {
            None => Ok(self.nodes.len().saturating_sub(1)),
            Some(t) => set
                .by_name(t)
                .ok_or_else(|| StageError::UnknownTarget(t.to_string())),
        }
    }

    /// The stages `target` needs, itself included, in a valid build order.
    pub fn required(&self, target: usize) -> Vec<usize> {
        fn visit(g: &StageGraph, i: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
            if !seen.insert(i) {
                return;
            }
            for &d in &g.nodes[i].deps {
                visit(g, d, seen, out);
            }
            out.push(i);
        }
        let mut out = Vec::new();
        visit(self, target, &mut BTreeSet::new(), &mut out);
        out
    }

    /// The needed stages grouped in waves: every stage of a wave depends
    /// only on earlier waves, so the stages of one wave can build in parallel.
    pub fn waves(&self, target: usize) -> Vec<Vec<usize>> {
        let needed = self.required(target);
        let mut level: BTreeMap<usize, usize> = BTreeMap::new();
        for &i in &needed {
            let l = self.nodes[i]
                .deps
                .iter()
                .map(|d| level[d] + 1)
                .max()
                .unwrap_or(0);
            level.insert(i, l);
        }
        let depth = level.values().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for (i, l) in level {
            waves[l].push(i);
        }
        waves
    }

    /// Whether stages `a` and `b` can build at the same time (neither needs the other).
    pub fn independent(&self, a: usize, b: usize) -> bool {
        a != b && !self.required(a).contains(&b) && !self.required(b).contains(&a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn plain_refs(set: &StageSet) -> Vec<StageRefs> {
        set.stages
            .iter()
            .map(|s| {
                let mut r = StageRefs {
                    base: s.from.image.clone(),
                    from_refs: Vec::new(),
                };
                for n in &s.commands {
                    match &n.instruction {
                        Instruction::Copy(c) => {
                            r.from_refs.extend(c.from.clone().map(|f| (n.line, f)))
                        }
                        Instruction::Run(run) => r.from_refs.extend(
                            run.mounts
                                .iter()
                                .filter_map(|m| m.from.clone().map(|f| (n.line, f))),
                        ),
                        _ => {}
                    }
                }
                r
            })
            .collect()
    }

    fn graph(src: &str) -> (StageSet, StageGraph) {
        let set = split(&parse(src).unwrap()).unwrap();
        let g = StageGraph::new(&set, &plain_refs(&set)).unwrap();
        (set, g)
    }

    const MULTI: &str = "ARG V=1\nFROM alpine AS base\nRUN a\nFROM base AS deps\nRUN b\nFROM golang AS tools\nRUN c\n\
                          FROM scratch AS broken\nRUN false\nFROM base AS final\nCOPY --from=deps /x /x\n\
                          RUN --mount=type=bind,from=tools,target=/t t\nCOPY --from=nginx:1 /etc/nginx /n\n";

    #[test]
    fn split_stages() {
        let set = split(&parse(MULTI).unwrap()).unwrap();
        assert_eq!(set.global_args.len(), 1);
        assert_eq!(set.stages.len(), 5);
        assert_eq!(set.stages[1].name.as_deref(), Some("deps"));
        assert_eq!(set.stages[4].commands.len(), 3);
        assert_eq!(set.stages[3].line, 8);
    }

    #[test]
    fn edges_and_target() {
        let (set, g) = graph(MULTI);
        assert_eq!(g.nodes[0].base, Base::Image("alpine".into()));
        assert_eq!(g.nodes[1].base, Base::Stage(0));
        assert_eq!(g.nodes[3].base, Base::Scratch);
        assert_eq!(g.nodes[4].deps, BTreeSet::from([0, 1, 2]));
        assert_eq!(g.nodes[4].images, BTreeSet::from(["nginx:1".to_string()]));
        let t = g.target(&set, None).unwrap();
        assert_eq!(t, 4);
        // The failing "broken" stage is not needed by the default target.
        assert_eq!(g.required(t), vec![0, 1, 2, 4]);
        assert_eq!(
            g.required(g.target(&set, Some("DEPS")).unwrap()),
            vec![0, 1]
        );
        assert_eq!(
            g.target(&set, Some("nope")),
            Err(StageError::UnknownTarget("nope".into()))
        );
    }

    #[test]
    fn parallel_waves() {
        let (_, g) = graph(MULTI);
        assert_eq!(g.waves(4), vec![vec![0, 2], vec![1], vec![4]]);
        assert!(g.independent(1, 2));
        assert!(!g.independent(1, 0));
        assert!(!g.independent(4, 2));
    }

    #[test]
    fn numeric_from() {
        let (_, g) = graph("FROM a\nRUN x\nFROM b\nCOPY --from=0 /x /x\n");
        assert_eq!(g.nodes[1].deps, BTreeSet::from([0]));
        let set = split(&parse("FROM a\nCOPY --from=1 /x /x\nFROM b\n").unwrap()).unwrap();
        let e = StageGraph::new(&set, &plain_refs(&set)).unwrap_err();
        assert_eq!(
            e,
            StageError::ForwardIndex {
                line: 2,
                value: "1".into()
            }
        );
    }

    #[test]
    fn cycles_and_duplicates() {
        let set = split(&parse("FROM b AS a\nFROM a AS b\n").unwrap()).unwrap();
        assert!(matches!(
            StageGraph::new(&set, &plain_refs(&set)),
            Err(StageError::Cycle(_))
        ));
        let set = split(&parse("FROM x AS a\nCOPY --from=a /x /y\n").unwrap()).unwrap();
        assert_eq!(
            StageGraph::new(&set, &plain_refs(&set)),
            Err(StageError::Cycle("a".into()))
        );
        let e = split(&parse("FROM x AS a\nFROM y AS A\n").unwrap()).unwrap_err();
        assert_eq!(
            e,
            StageError::DuplicateName {
                line: 2,
                name: "a".into()
            }
        );
    }
}
