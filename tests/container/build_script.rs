//! scripts/build-image.sh, short of building: its errors.

use std::process::{Command, Stdio};

use crate::common::{TempDir, workspace_root};

/// Building the image before its artifacts exist names what is missing and the command that
/// makes it, instead of a buildah error about a build context.
#[test]
fn without_artifacts_names_them_and_the_command() {
    let empty_target = TempDir::new();
    let out = Command::new(workspace_root().join("scripts/build-image.sh"))
        .arg("--prebuilt")
        .env("CARGO_TARGET_DIR", empty_target.path())
        .env("IMAGE", "localhost/ion-mentoring:never-built")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("scripts/build-image.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("x86_64-unknown-linux-musl/dist/ion-host is missing")
            && stderr.contains("./scripts/build-image.sh (without --prebuilt)"),
        "the error should name the missing artifact and the command that builds it:\n{stderr}"
    );
    let bad_flag = Command::new(workspace_root().join("scripts/build-image.sh"))
        .arg("--no-such-flag")
        .current_dir(workspace_root())
        .output()
        .expect("scripts/build-image.sh runs");
    assert_eq!(bad_flag.status.code(), Some(2), "{bad_flag:?}");
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("usage:"));
}
