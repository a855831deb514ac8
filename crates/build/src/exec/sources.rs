//! Where COPY --from and RUN bind mounts read from: the context, or a
//! stage's or image's snapshot mounted read-only; rw binds over a
//! throw-away overlay.

use std::collections::BTreeMap;
use std::path::Path;

use berth_snapshot::Mount;

use super::copy;
use super::fsutil::{self, random_id, Mounted};
use super::guards::{BindSources, Snap, SourceRoot};
use super::{base_image, io_err, Executor, Result, StageState};
use crate::context::Context;
use crate::eval::{CopyFrom, CopyStep, RunStep};
use crate::ignore::Ignore;

impl<'a> Executor<'a> {
    pub(super) fn copy(
        &mut self,
        c: &CopyStep,
        rootfs: &Path,
        work: &Path,
        done: &BTreeMap<usize, StageState>,
        share: Option<&super::share::Share>,
    ) -> Result<()> {
        if c.from == CopyFrom::Context {
            return copy::copy(c, self.context, rootfs, share);
        }
        let src = self.source_root(&c.from, &work.join("from"), done)?;
        let ctx = Context::new(&src.path, Ignore::new::<&str>(&[])?);
        copy::copy(c, &ctx, rootfs, share)
    }

    /// The root of a stage's or image's files, mounted read-only on `dir`
    /// (the context's directory for the context).
    fn source_root(
        &self,
        from: &CopyFrom,
        dir: &Path,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<SourceRoot<'a>> {
        let chain = match from {
            CopyFrom::Context => {
                return Ok(SourceRoot {
                    path: self.context.root().to_path_buf(),
                    _mount: None,
                    _view: None,
                })
            }
            CopyFrom::Stage(i) => done.get(i).and_then(|s| s.chain.clone()),
            CopyFrom::Image(r) => base_image(self.images, r)?.chain,
        };
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let Some(chain) = chain else {
            return Ok(SourceRoot {
                path: dir.to_path_buf(),
                _mount: None,
                _view: None,
            });
        };
        // Named after the step's scratch directory, for the sweep of dead builds.
        let step = dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("berth-build-{}", &random_id()[..24]));
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let key = format!("{step}-{}", name.unwrap_or_default());
        let view = Snap::prepare(self.images, key, Some(&chain), true)?;
        let mount = Mounted::new(&view.mounts, dir)?;
        Ok(SourceRoot {
            path: dir.to_path_buf(),
            _mount: Some(mount),
            _view: Some(view),
        })
    }

    /// Host directories for the RUN's bind mounts, by mount index: the
    /// source inside the context, a stage or an image; `rw` binds get a
    /// throw-away overlay so writes never reach the source.
    pub(super) fn bind_sources(
        &self,
        r: &RunStep,
        work: &Path,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<BindSources<'a>> {
        let mut b = BindSources {
            overlays: Vec::new(),
            roots: Vec::new(),
            map: BTreeMap::new(),
        };
        for (i, m) in r.mounts.iter().enumerate() {
            if m.kind != crate::ast::MountType::Bind {
                continue;
            }
            let root = self.source_root(&m.from, &work.join(format!("bind-{i}")), done)?;
            let src = fsutil::secure_join(&root.path, m.source.as_deref().unwrap_or("/"), true)?;
            b.roots.push(root);
            if m.read_only {
                b.map.insert(i, src);
                continue;
            }
            let (up, wk, at) = (
                work.join(format!("bind-{i}-upper")),
                work.join(format!("bind-{i}-work")),
                work.join(format!("bind-{i}-rw")),
            );
            for d in [&up, &wk] {
                std::fs::create_dir_all(d).map_err(io_err("create", d))?;
            }
            let o = Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options: vec![
                    format!("lowerdir={}", src.display()),
                    format!("upperdir={}", up.display()),
                    format!("workdir={}", wk.display()),
                ],
            };
            b.overlays.push(Mounted::new(&[o], &at)?);
            b.map.insert(i, at);
        }
        Ok(b)
    }
}
