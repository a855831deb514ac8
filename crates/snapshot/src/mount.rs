//! Mount descriptions returned by snapshotters.

use std::path::PathBuf;

/// One mount to perform, in the shape of an OCI runtime-spec mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Filesystem type: `bind` or `overlay`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source path (`overlay` for overlay mounts).
    pub source: String,
    /// Target inside the rootfs; empty for a snapshot's root mount.
    pub target: String,
    /// Mount options (`rbind`, `ro`, `lowerdir=...`, ...).
    pub options: Vec<String>,
}

/// How deletions are recorded in a writable directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutStyle {
    /// The directory is a full tree: delete files for real.
    Delete,
    /// The directory is an overlayfs upper dir: record deletions as 0/0 character
    /// devices and opaque directories as `trusted.overlay.opaque=y`.
    Overlay,
}

impl Mount {
    /// A bind mount of `source`, read-only when `ro`.
    pub fn bind(source: impl Into<PathBuf>, ro: bool) -> Self {
        Self {
            kind: "bind".into(),
            source: source.into().to_string_lossy().into_owned(),
            target: String::new(),
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        }
    }

    /// The mount(2) flags and data string that perform this mount (a bind mount is
    /// recursive; `ro`/`rw` become flags; the other options are the data).
    pub fn flags_and_data(&self) -> (nix::mount::MsFlags, String) {
        use nix::mount::MsFlags;
        if self.kind == "bind" {
            return (MsFlags::MS_BIND | MsFlags::MS_REC, String::new());
        }
        let data: Vec<&str> = self
            .options
            .iter()
            .map(String::as_str)
            .filter(|o| *o != "ro" && *o != "rw")
            .collect();
        let fl = if self.is_readonly() {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        (fl, data.join(","))
    }

    /// True when the mount is read-only.
    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// The value of a `key=value` option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
    }

    /// The directory where a layer can be written directly without mounting anything,
    /// and how it records deletions: the source of a writable bind mount, or the upper
    /// dir of an overlay mount. `None` when the mounts are read-only or not one mount.
    pub fn writable_dir(mounts: &[Mount]) -> Option<(PathBuf, WhiteoutStyle)> {
        let [m] = mounts else { return None };
        if m.is_readonly() {
            return None;
        }
        match m.kind.as_str() {
            "bind" => Some((PathBuf::from(&m.source), WhiteoutStyle::Delete)),
            "overlay" => m
                .option("upperdir")
                .map(|u| (PathBuf::from(u), WhiteoutStyle::Overlay)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writable_dir_of_bind_and_overlay() {
        assert_eq!(
            Mount::writable_dir(&[Mount::bind("/a", false)]),
            Some((PathBuf::from("/a"), WhiteoutStyle::Delete))
        );
        assert_eq!(Mount::writable_dir(&[Mount::bind("/a", true)]), None);
        let o = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "lowerdir=/l".into(),
                "upperdir=/u".into(),
                "workdir=/w".into(),
            ],
        };
        assert_eq!(
            Mount::writable_dir(&[o]),
            Some((PathBuf::from("/u"), WhiteoutStyle::Overlay))
        );
    }
}
