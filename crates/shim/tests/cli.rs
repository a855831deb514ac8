//! The berth-shim program refuses to run without the arguments berth's supervisor
//! passes (it is never started by hand). Building this test also builds the binary
//! next to `berth`, where berth's supervisor finds it.

use std::process::Command;

#[test]
fn bad_arguments_exit_125_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .arg("--pid")
        .output()
        .expect("run berth-shim");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("berth's supervisor"));
}
