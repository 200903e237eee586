//! The Python tools of the end-to-end tests (schemathesis, the official `openai` client, the
//! contract checks), from the virtualenv `scripts/test.sh` installs from
//! `tests/python/requirements.txt` (`target/python-tests`, or `$ION_TEST_PYTHON_VENV`).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, workspace_root};

/// Longest a Python tool may run before the test fails (the schemathesis run takes well under
/// a minute on two cores; this bound only stops a hang).
pub const TOOL_LIMIT: Duration = Duration::from_secs(300);

pub fn venv() -> PathBuf {
    let dir = std::env::var_os("ION_TEST_PYTHON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/python-tests"));
    assert!(
        dir.join("bin/python").exists(),
        "{} has no Python tools: run ./scripts/test.sh, which installs tests/python/requirements.txt there",
        dir.display()
    );
    dir
}

pub fn python_dir() -> PathBuf {
    workspace_root().join("tests/python")
}

/// Runs a tool of the virtualenv to completion (at most [`TOOL_LIMIT`]), in a scratch directory;
/// fails the test with its output unless it exits 0.
pub fn run_tool(what: &str, program: &str, args: &[&str], env: &[(&str, PathBuf)]) {
    let scratch = TempDir::new();
    let mut child = Command::new(venv().join("bin").join(program))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("NO_COLOR", "1")
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {program} does not start: {e}"));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TOOL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let [out, err] = readers.map(|r| r.join().unwrap());
    println!(
        "{what} ({:.1} s):\n{out}{err}",
        started.elapsed().as_secs_f64()
    );
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{what} failed ({s}):\n{out}\n{err}"),
        None => panic!("{what} did not finish within {TOOL_LIMIT:?}:\n{out}\n{err}"),
    }
}
