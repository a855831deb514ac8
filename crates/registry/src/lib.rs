//! berth-registry: a distribution v2 client over the image store.
//!
//! [`Client::pull`] fetches a manifest (following an index to the host platform),
//! downloads missing blobs in parallel straight into the verified content store
//! (a killed pull leaves only an invisible partial file, and the next pull starts the
//! blob over), registers the image and unpacks it. [`Client::push`] uploads blobs in
//! parallel, skipping ones the registry has and mounting ones another repository of
//! the same registry has, then the manifest. Bearer-token and basic auth answer the
//! registry's `WWW-Authenticate` challenge with credentials from `berth login`
//! ([`auth::Credentials`]). HTTPS by default; plain HTTP for loopback registries and
//! ones listed as insecure.
//!
//! ```no_run
//! use berth_registry::{Client, Options};
//! let images = berth_image::Images::open("/var/lib/berth")?;
//! let client = Client::new(Options::default());
//! let pulled = client.pull(&images, "127.0.0.1:5000/app:1", &berth_content::NoProgress)?;
//! println!("{} {}", pulled.id, pulled.digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
mod client;
mod pull;
mod push;

pub use auth::Credentials;
pub use client::{is_loopback, Client, Options};
pub use pull::Pulled;

use std::path::PathBuf;

/// Errors from registry operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection or transfer failed.
    #[error("cannot reach {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        source: ureq::Error,
    },
    /// The registry answered with an error status.
    #[error("registry error {status} on {url}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The registry wants credentials we do not have, or refused them.
    #[error("{}", if *.had_credentials { format!("access to {host} denied: the stored credentials were refused; run `berth login {host}` again") } else { format!("authentication required by {host}: run `berth login {host}` first") })]
    Unauthorized {
        /// The registry.
        host: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// The image or blob does not exist in the registry.
    #[error("{0}: not found in the registry; check the name and tag")]
    NotFound(String),
    /// The credentials file is unusable.
    #[error("credentials file {path}: {why}")]
    Credentials {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The registry sent something berth refuses.
    #[error("{0}")]
    Invalid(String),
    /// From the image store.
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    /// From the content store.
    #[error(transparent)]
    Content(#[from] berth_content::Error),
    /// From manifest parsing.
    #[error(transparent)]
    Manifest(#[from] berth_image::manifest::Error),
    /// From reference parsing.
    #[error(transparent)]
    Reference(#[from] berth_image::reference::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Client {
    fn auth_for(&self, r: &berth_image::Reference) -> Option<String> {
        self.cached_auth(&format!("{}/{}:pull,push", r.domain, r.path))
    }
}
