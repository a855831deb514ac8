//! Container names: docker's rule (but one character is enough), reservation under
//! a lock in `<data-root>/containers/names/<name>` (the file holds the id), and
//! docker-style generated names.

use crate::error::{Error, Result};
use crate::record::lock_file;
use std::path::{Path, PathBuf};

/// Checks `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (a leading `/`, as docker prints names, is
/// accepted and dropped).
pub fn validate(name: &str) -> Result<&str> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok && n.len() <= 255 {
        Ok(n)
    } else {
        Err(Error::Invalid(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* are allowed"
        )))
    }
}

/// The name registry.
#[derive(Debug, Clone)]
pub struct Names {
    dir: PathBuf,
}

impl Names {
    /// The registry under `containers` (`<data-root>/containers`).
    pub fn new(containers: &Path) -> Self {
        Names {
            dir: containers.join("names"),
        }
    }

    fn ensure(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("create directory", &self.dir, e))
    }

    /// Reserves `name` for `id`, failing when another container holds it.
    pub fn reserve(&self, name: &str, id: &str) -> Result<()> {
        self.ensure()?;
        let _lock = lock_file(&self.dir.join(".lock"))?;
        let p = self.dir.join(name);
        match std::fs::read_to_string(&p) {
            Ok(holder) => {
                return Err(Error::NameInUse {
                    name: name.into(),
                    id: holder.trim().into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &p, e)),
        }
        crate::record::write_atomic(&p, id.as_bytes())
    }

    /// Releases `name` if `id` holds it.
    pub fn release(&self, name: &str, id: &str) -> Result<()> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        let _lock = lock_file(&self.dir.join(".lock"))?;
        let p = self.dir.join(name);
        match std::fs::read_to_string(&p) {
            Ok(holder) if holder.trim() == id => {
                std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))
            }
            _ => Ok(()),
        }
    }

    /// The id holding `name`.
    pub fn lookup(&self, name: &str) -> Option<String> {
        let n = validate(name).ok()?;
        std::fs::read_to_string(self.dir.join(n))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Reserves a generated `adjective_surname` name for `id`.
    pub fn reserve_generated(&self, id: &str) -> Result<String> {
        let mut last = None;
        for attempt in 0..16u8 {
            let r = random_bytes::<2>()?;
            let mut name = format!(
                "{}_{}",
                LEFT[r[0] as usize % LEFT.len()],
                RIGHT[r[1] as usize % RIGHT.len()]
            );
            if attempt > 4 {
                name.push_str(&(r[1] % 10).to_string());
            }
            match self.reserve(&name, id) {
                Ok(()) => return Ok(name),
                Err(e @ Error::NameInUse { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid("cannot generate a container name".into())))
    }
}

/// `N` random bytes from the kernel.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(b)
}

/// A new container id: 64 random hex digits.
pub fn new_id() -> Result<String> {
    let b = random_bytes::<32>()?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

const LEFT: &[&str] = &[
    "admiring",
    "bold",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "elegant",
    "festive",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
];

const RIGHT: &[&str] = &[
    "babbage", "curie", "darwin", "euclid", "fermi", "galileo", "hopper", "hypatia", "johnson",
    "kepler", "lamarr", "lovelace", "meitner", "newton", "noether", "pascal", "ritchie", "shannon",
    "tesla", "thompson", "turing", "wozniak",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_with_one_letter_allowed() {
        assert_eq!(validate("X").expect("one letter"), "X");
        assert_eq!(validate("/web-1.a_b").expect("slash"), "web-1.a_b");
        for bad in ["", "-x", "_x", "a b", "a/b", "é"] {
            assert!(validate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reservation_is_exclusive_until_released() {
        let d = tempfile::tempdir().expect("tempdir");
        let n = Names::new(d.path());
        n.reserve("X", "id1").expect("reserve");
        assert!(matches!(
            n.reserve("X", "id2"),
            Err(Error::NameInUse { .. })
        ));
        assert_eq!(n.lookup("X").as_deref(), Some("id1"));
        n.release("X", "id2").expect("not the holder");
        assert_eq!(n.lookup("X").as_deref(), Some("id1"));
        n.release("X", "id1").expect("release");
        n.reserve("X", "id2").expect("free again");
        let g = n.reserve_generated("id3").expect("generated");
        assert!(validate(&g).is_ok());
    }

    #[test]
    fn ids_are_64_hex() {
        let id = new_id().expect("id");
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
