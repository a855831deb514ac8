//! Runs the shared conformance suite against both snapshotters (needs root).

use berth_snapshot::conformance::{self, require_root};
use berth_snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-test-snap-")
        .tempdir()
        .expect("tempdir")
}

macro_rules! suite {
    ($module:ident, $ty:ty) => {
        mod $module {
            use super::*;
            fn run(check: fn(&dyn Snapshotter)) {
                require_root();
                let t = scratch();
                let sn = <$ty>::new(t.path()).expect("open snapshotter");
                check(&sn);
            }
            #[test]
            fn layering() {
                run(conformance::check_layering)
            }
            #[test]
            fn siblings_isolated() {
                run(conformance::check_siblings_isolated)
            }
            #[test]
            fn lifecycle_errors() {
                run(conformance::check_lifecycle_errors)
            }
            #[test]
            fn usage() {
                run(conformance::check_usage)
            }
            #[test]
            fn deferred_removal() {
                run(conformance::check_deferred_removal)
            }
            #[test]
            fn deep_chain() {
                run(conformance::check_deep_chain)
            }
        }
    };
}

suite!(overlay, OverlaySnapshotter);
suite!(copy, CopySnapshotter);
