//! `-u user[:group]` and the image's `User` resolved against the rootfs's
//! `/etc/passwd` and `/etc/group`, as docker does.

use crate::error::{Error, Result};
use std::path::Path;

/// The ids a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    /// user id
    pub uid: u32,
    /// primary group id
    pub gid: u32,
    /// supplementary groups (from /etc/group membership)
    pub additional_gids: Vec<u32>,
    /// home directory from passwd, if any
    pub home: Option<String>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

/// (name, gid, members) of each group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`) against the text of
/// passwd and group files.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = passwd_entries(passwd).find(|e| e.name == u || u.parse() == Ok(e.uid));
    let mut out = match (&entry, u.parse::<u32>()) {
        (Some(e), _) => ResolvedUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: vec![],
            home: Some(e.home.to_string()).filter(|h| !h.is_empty()),
        },
        (None, Ok(uid)) => ResolvedUser {
            uid,
            ..Default::default()
        },
        (None, Err(_)) => {
            return Err(Error::Invalid(format!(
                "unable to find user {u}: no matching entries in the image's /etc/passwd: use a numeric uid or a user the image has"
            )))
        }
    };
    match g {
        Some(g) if !g.is_empty() => {
            out.gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_entries(group)
                    .find(|(n, ..)| *n == g)
                    .map(|(_, id, _)| id)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "unable to find group {g}: no matching entries in the image's /etc/group"
                        ))
                    })?,
            };
        }
        _ => {
            if let Some(e) = &entry {
                out.additional_gids = group_entries(group)
                    .filter(|(_, id, m)| m.contains(&e.name) && *id != e.gid)
                    .map(|(_, id, _)| id)
                    .collect();
            }
        }
    }
    Ok(out)
}

/// Reads a small file of the rootfs, refusing symlinks (they could point at host
/// files while the rootfs is seen from the host). Missing files read as empty.
pub fn read_rootfs_file(rootfs: &Path, rel: &str) -> String {
    let p = rootfs.join(rel.trim_start_matches('/'));
    let mut cur = rootfs.to_path_buf();
    for c in Path::new(rel.trim_start_matches('/')).components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if !m.file_type().is_symlink() => {}
            _ => return String::new(),
        }
    }
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Resolves `spec` against the files of `rootfs`.
pub fn resolve_in(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    resolve(
        spec,
        &read_rootfs_file(rootfs, "etc/passwd"),
        &read_rootfs_file(rootfs, "etc/group"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:34:\nextra:x:50:www,other\n";

    #[test]
    fn default_is_root() {
        let u = resolve("", PASSWD, GROUP).expect("root");
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.home.as_deref(), Some("/root"));
    }

    #[test]
    fn names_and_groups() {
        let u = resolve("www", PASSWD, GROUP).expect("www");
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (33, 34, vec![50])
        );
        let u = resolve("www:extra", PASSWD, GROUP).expect("www:extra");
        assert_eq!((u.uid, u.gid), (33, 50));
        let u = resolve("33", PASSWD, GROUP).expect("numeric known");
        assert_eq!(u.gid, 34);
    }

    #[test]
    fn numeric_unknown_user_gets_gid_0() {
        let u = resolve("1234:5", PASSWD, GROUP).expect("numeric");
        assert_eq!((u.uid, u.gid), (1234, 5));
        let u = resolve("1234", "", "").expect("no passwd");
        assert_eq!((u.uid, u.gid), (1234, 0));
    }

    #[test]
    fn unknown_names_fail() {
        assert!(resolve("nobody", PASSWD, GROUP).is_err());
        assert!(resolve("www:nogroup", PASSWD, GROUP).is_err());
    }

    #[test]
    fn rootfs_symlinks_are_not_followed() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("etc/passwd")).expect("ln");
        assert_eq!(read_rootfs_file(d.path(), "/etc/passwd"), "");
    }
}
