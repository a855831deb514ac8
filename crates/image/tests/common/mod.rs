//! Helpers for building layer tarballs, including hostile ones the `tar` crate's
//! safe API refuses to write.
#![allow(dead_code)]

use std::path::Path;

/// Builds a tarball entry by entry, with raw names.
pub struct TarBuf {
    b: tar::Builder<Vec<u8>>,
}

impl Default for TarBuf {
    fn default() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }
}

impl TarBuf {
    fn raw(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        assert!(name.len() < 100, "test names must be short");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.b.append(&h, data).expect("append");
        self
    }
    pub fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Regular, None, 0o644, data.as_bytes())
    }
    pub fn file_mode(
        &mut self,
        name: &str,
        data: &str,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_500_000_000);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.b.append(&h, data.as_bytes()).expect("append");
        self
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Directory, None, 0o755, b"")
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Symlink, Some(target), 0o777, b"")
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Link, Some(target), 0o644, b"")
    }
    pub fn chardev(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o666);
        h.set_size(0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_cksum();
        self.b.append(&h, &b""[..]).expect("append");
        self
    }
    pub fn fifo(&mut self, name: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Fifo, None, 0o600, b"")
    }
    /// A PAX header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = 1 + k.len() + 1 + v.len() + 1;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.raw("PaxHeader", tar::EntryType::XHeader, None, 0o644, &body)
    }
    pub fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().expect("finish tar")
    }
    pub fn gzip(&mut self) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&self.bytes()).expect("gzip");
        e.finish().expect("gzip")
    }
}

/// Every path under `dir` with a short description, for before/after comparison.
pub fn snapshot_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let desc = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).expect("readlink"))
            } else {
                format!("file {:?}", std::fs::read(&p).unwrap_or_default())
            };
            out.push(format!(
                "{} {desc}",
                p.strip_prefix(dir).expect("prefix").display()
            ));
        }
    }
    out.sort();
    out
}

/// A rootfs tarball with busybox-static and a few applet symlinks.
pub fn busybox_rootfs() -> Vec<u8> {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "these tests need Debian's busybox-static package (apt-get install busybox-static)"
    );
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir("bin", "/bin").expect("dir");
    b.append_path_with_name(bb, "bin/busybox").expect("busybox");
    for applet in ["sh", "ls", "cat", "echo"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("link");
    }
    b.append_dir("etc", "/etc").expect("dir");
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "etc/hostname", &b"base\n"[..])
        .expect("file");
    b.into_inner().expect("tar")
}
