//! Media types, manifest and index parsing for OCI and Docker v2 schema 2, chain ids
//! and platform selection.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Errors from manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is not valid JSON of the expected shape.
    #[error("cannot parse {what}: {source}")]
    Parse {
        /// What was parsed.
        what: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The media type is not one berth understands.
    #[error("unsupported media type {0:?}: only OCI and Docker v2 schema 2 images are supported")]
    MediaType(String),
    /// The index has no entry for the wanted platform.
    #[error("no image for platform {want} in the index (available: {available}); pick an image built for {want}")]
    Platform {
        /// The platform asked for.
        want: String,
        /// What the index has.
        available: String,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A single-platform image manifest.
    Manifest(Box<ImageManifest>),
    /// A multi-platform index / manifest list.
    Index(Box<ImageIndex>),
}

/// Media types of a manifest document (including the docker list and OCI index).
pub fn is_manifest_type(mt: &str) -> bool {
    matches!(mt, DOCKER_MANIFEST | DOCKER_LIST | OCI_MANIFEST | OCI_INDEX)
}

/// Parses a manifest or index; `hint` is the media type it was announced with.
pub fn parse(bytes: &[u8], hint: Option<&str>) -> Result<Parsed> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| Error::Parse {
        what: "manifest",
        source,
    })?;
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .or(hint)
        .unwrap_or("");
    let is_index = match mt {
        DOCKER_LIST | OCI_INDEX => true,
        DOCKER_MANIFEST | OCI_MANIFEST => false,
        "" => v.get("manifests").is_some(),
        other => return Err(Error::MediaType(other.to_string())),
    };
    if is_index {
        serde_json::from_value(v)
            .map(Parsed::Index)
            .map_err(|source| Error::Parse {
                what: "image index",
                source,
            })
    } else {
        let m: ImageManifest = serde_json::from_value(v).map_err(|source| Error::Parse {
            what: "image manifest",
            source,
        })?;
        for l in m.layers() {
            let t = l.media_type().to_string();
            if !LAYER_TYPES.contains(&t.as_str()) {
                return Err(Error::MediaType(t));
            }
        }
        Ok(Parsed::Manifest(Box::new(m)))
    }
}

/// The platform berth runs images for.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    ("linux", arch)
}

/// Picks the entry of `index` for `os/arch`.
pub fn select_platform(index: &ImageIndex, os: &str, arch: &str) -> Result<Descriptor> {
    let mut available = Vec::new();
    for d in index.manifests() {
        let Some(p) = d.platform() else { continue };
        let (o, a) = (p.os().to_string(), p.architecture().to_string());
        if o == os && a == arch {
            return Ok(d.clone());
        }
        if o != "unknown" {
            available.push(format!("{o}/{a}"));
        }
    }
    // An index without platforms (e.g. a single-image OCI layout) means "this image".
    if let [only] = index.manifests().as_slice() {
        if only.platform().is_none() {
            return Ok(only.clone());
        }
    }
    Err(Error::Platform {
        want: format!("{os}/{arch}"),
        available: available.join(", "),
    })
}

/// Chain ids of a list of diff ids: `chain[0] = diff[0]`,
/// `chain[i] = sha256(chain[i-1] + " " + diff[i])`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => berth_content::Digest::of(format!("{prev} {d}").as_bytes()).to_string(),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(
            c[1],
            berth_content::Digest::of(format!("{a} {b}").as_bytes()).to_string()
        );
    }

    #[test]
    fn picks_platform_or_explains() {
        let idx: ImageIndex = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","size":1,"digest":"sha256:{}","platform":{{"architecture":"arm64","os":"linux"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","size":1,"digest":"sha256:{}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            "1".repeat(64),
            "2".repeat(64)
        ))
        .unwrap();
        assert!(select_platform(&idx, "linux", "amd64")
            .unwrap()
            .digest()
            .to_string()
            .ends_with(&"2".repeat(64)));
        let e = select_platform(&idx, "linux", "s390x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/arm64, linux/amd64"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_layer_types() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","size":2,"digest":"sha256:{}"}},
            "layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","size":1,"digest":"sha256:{}"}}]}}"#,
            "1".repeat(64),
            "2".repeat(64)
        );
        assert!(matches!(
            parse(m.as_bytes(), None),
            Err(Error::MediaType(_))
        ));
    }
}
