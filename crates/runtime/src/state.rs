//! Container state kept under the runtime root: `<root>/<id>/state.json`, the exec fifo,
//! and an exclusive lock so two commands on one container never race.

use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Lifecycle status as the OCI spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// being created (init not yet ready)
    Creating,
    /// init waits for `start`
    Created,
    /// the user process runs
    Running,
    /// frozen by `pause`
    Paused,
    /// the process has exited
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What we persist per container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// container id
    pub id: String,
    /// pid of the init process (host pid namespace)
    pub pid: i32,
    /// start time of that pid (field 22 of /proc/pid/stat) to detect pid reuse
    pub pid_start: u64,
    /// bundle directory
    pub bundle: PathBuf,
    /// rootfs directory
    pub rootfs: PathBuf,
    /// creation time, RFC 3339
    pub created: String,
    /// cgroup path relative to the hierarchy roots
    pub cgroup_path: PathBuf,
    /// whether `start` has been called (kept for readers; status comes from the fifo).
    /// Derived from the fifo's absence when the state is loaded: `start` does not
    /// rewrite the file, since on a disk filesystem (a /run that is no tmpfs) that
    /// replace makes ext4 write the new file out at once, and the `delete` that
    /// follows a short-lived container then waits for that write (about 1 ms).
    pub started: bool,
    /// annotations from the spec
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// the spec the container was created with (resources updated by `update`)
    pub spec: oci_spec::runtime::Spec,
}

/// The OCI state document (`runc state` output shape).
#[derive(Debug, Clone, Serialize)]
pub struct OciState {
    /// runtime spec version
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// id
    pub id: String,
    /// pid (0 when stopped)
    pub pid: i32,
    /// status
    pub status: Status,
    /// bundle
    pub bundle: PathBuf,
    /// rootfs
    pub rootfs: PathBuf,
    /// created
    pub created: String,
    /// owner (empty: the runtime's user)
    pub owner: String,
    /// annotations
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// Container ids are path components: keep them boring.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// The state directory of one container.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// `<root>/<id>`
    pub dir: PathBuf,
}

/// An exclusive lock on a container's state directory, released on drop.
pub struct Lock {
    _lock: Flock<File>,
}

impl StateDir {
    /// Path for container `id` under `root`.
    pub fn new(root: &Path, id: &str) -> Result<Self> {
        check_id(id)?;
        Ok(StateDir { dir: root.join(id) })
    }

    /// Create the directory; fails with `Exists` if it is there already.
    pub fn create(&self, id: &str) -> Result<()> {
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create runtime root", parent, e))?;
        }
        match std::fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.into()))
            }
            Err(e) => Err(Error::io("create state dir", &self.dir, e)),
        }
    }

    /// Whether the container exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Take the exclusive lock (blocks while another command holds it).
    pub fn lock(&self, id: &str) -> Result<Lock> {
        let f = File::open(&self.dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(id.into())
            } else {
                Error::io("open state dir", &self.dir, e)
            }
        })?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::sys(format!("lock {}", self.dir.display()), e))?;
        Ok(Lock { _lock: lock })
    }

    /// `<dir>/exec.fifo`
    pub fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Read the persisted state.
    pub fn load(&self, id: &str) -> Result<Persisted> {
        let p = self.state_file();
        let text = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(id.into())
            } else {
                Error::io("read state", &p, e)
            }
        })?;
        let mut st: Persisted = serde_json::from_slice(&text)
            .map_err(|e| Error::Invalid(format!("corrupt state file {}: {e}", p.display())))?;
        // `start` removes the fifo and does not rewrite the file (see `started`)
        st.started = st.started || !self.fifo().exists();
        Ok(st)
    }

    /// Write the state atomically (temp file + rename). No fsync: the state lives on
    /// /run, a tmpfs that does not survive the power loss fsync would guard against.
    pub fn save(&self, st: &Persisted) -> Result<()> {
        let p = self.state_file();
        let tmp = self.dir.join(".state.json.tmp");
        let data =
            serde_json::to_vec(st).map_err(|e| Error::Invalid(format!("encode state: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| Error::io("write state", &tmp, e))?;
        f.write_all(&data)
            .map_err(|e| Error::io("write state", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io("rename state", &p, e))
    }

    /// Remove the directory and everything in it.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove state dir", &self.dir, e)),
        }
    }
}

/// Start time of `pid` (clock ticks since boot), or None if it does not exist.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the init recorded in `st` is still the same live process.
pub fn init_alive(st: &Persisted) -> bool {
    st.pid > 0 && pid_start_time(st.pid) == Some(st.pid_start)
}

/// Current time as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        check_id("abc-1.2_x").expect("valid");
        check_id("X").expect("one letter is fine");
        assert!(check_id("../etc").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id("-a").is_err());
    }

    #[test]
    fn civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn started_is_the_fifo_gone() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = StateDir::new(root.path(), "c1").expect("dir");
        d.create("c1").expect("create");
        let st = Persisted {
            id: "c1".into(),
            pid: 1,
            pid_start: 0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            cgroup_path: "berth/c1".into(),
            started: false,
            annotations: HashMap::new(),
            spec: oci_spec::runtime::Spec::default(),
        };
        d.save(&st).expect("save");
        std::fs::write(d.fifo(), "").expect("fifo stand-in");
        assert!(
            !d.load("c1").expect("load").started,
            "created: the fifo is there"
        );
        std::fs::remove_file(d.fifo()).expect("start removes it");
        assert!(
            d.load("c1").expect("load").started,
            "started: the fifo is gone"
        );
    }

    #[test]
    fn own_start_time_is_found() {
        assert!(pid_start_time(std::process::id() as i32).is_some());
    }
}
