//! berth-runtime: the OCI runtime as a library.
