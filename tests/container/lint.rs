//! The Containerfile passes hadolint and the workflows pass actionlint (with shellcheck on
//! their `run:` scripts); each linter is first shown to fail on a known mistake.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::find_on_path;
use crate::common::{TempDir, workspace_root};

#[test]
fn containerfile_passes_hadolint() {
    let Some(hadolint) = linter("hadolint") else {
        return;
    };
    let run = |dir: &Path, file: &str| {
        Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "info", file])
            .current_dir(dir)
            .output()
            .expect("hadolint runs")
    };

    // The linter is live: a file with well-known mistakes fails.
    let scratch = TempDir::new();
    std::fs::write(
        scratch.path().join("Containerfile"),
        "FROM debian\nRUN apt-get install curl\n",
    )
    .unwrap();
    let bad = run(scratch.path(), "Containerfile");
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stdout).contains("DL3008"),
        "hadolint accepted a file with unpinned, unversioned packages: {bad:?}"
    );

    let out = run(&workspace_root(), "Containerfile");
    assert!(
        out.status.success(),
        "hadolint found problems in Containerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workflows_pass_actionlint() {
    let Some(actionlint) = linter("actionlint") else {
        return;
    };
    // actionlint checks `run:` scripts with shellcheck when it has one.
    let shellcheck = match find_on_path("shellcheck") {
        Some(path) => path.display().to_string(),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but shellcheck is not on PATH (scripts/test.sh installs it)")
        }
        None => {
            eprintln!("note: shellcheck not on PATH; actionlint runs without it (-shellcheck=)");
            String::new()
        }
    };
    let run = |dir: &Path, files: &[PathBuf]| {
        Command::new(&actionlint)
            .arg("-no-color")
            .arg(format!("-shellcheck={shellcheck}"))
            .args(files)
            .current_dir(dir)
            .output()
            .expect("actionlint runs")
    };

    // The linter is live: an unknown key and (with shellcheck) an unquoted variable both fail.
    let scratch = TempDir::new();
    let bad = scratch.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step:\n      - run: echo hi\n  \
         b:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: rm -rf $DIR/*\n",
    )
    .unwrap();
    let out = run(scratch.path(), &[bad]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("\"step\""),
        "actionlint accepted an unknown key: {out:?}"
    );
    if !shellcheck.is_empty() {
        assert!(
            report.contains("SC2086"),
            "actionlint did not run shellcheck on a `run:` script: {report}"
        );
    }

    let dir = workspace_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    for expected in ["ci.yml", "deploy.yml"] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            ".github/workflows/{expected} is missing (found {files:?})"
        );
    }
    let out = run(&workspace_root(), &files);
    assert!(
        out.status.success(),
        "actionlint found problems in .github/workflows:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A linter on PATH; `None` (with a note) when it is missing outside CI.
fn linter(name: &str) -> Option<PathBuf> {
    match find_on_path(name) {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {name} is not on PATH (scripts/test.sh installs it)")
        }
        None => {
            eprintln!(
                "note: {name} is not on PATH, so this check is skipped; \
                 ./scripts/test.sh installs it"
            );
            None
        }
    }
}
