//! berth-content: a digest-addressed blob store.
//!
//! Every blob is written to a locked temporary file under `ingest/`, hashed on the
//! way in, fsynced, verified against the digest and size it was announced with, and
//! only then renamed into `blobs/sha256/<hex>`. A failed or interrupted write never
//! leaves a visible blob; abandoned temporaries are removed by [`Store::clean_partials`]
//! and [`Store::gc`]. [`Lease`]s name sets of digests that garbage collection keeps
//! (an in-flight pull holds a temporary lease, a container a permanent one).
//!
//! ```no_run
//! use berth_content::{Digest, Store};
//! let store = Store::open("/var/lib/berth/content")?;
//! let d = store.put(b"{}", Some(&Digest::of(b"{}")))?;
//! assert_eq!(store.read(&d)?, b"{}");
//! # Ok::<(), berth_content::Error>(())
//! ```

pub mod digest;
mod lease;
pub mod progress;
pub mod store;

pub use digest::{Digest, Hasher, HashingReader};
pub use progress::{NoProgress, Progress, ProgressReader};
pub use store::{Error, GcStats, Lease, Result, Store, Writer};
