//! The API description against the running service, and real clients against the API:
//!
//! - `schemathesis` (PyPI) generates requests from `/openapi.json` and checks every response
//!   against it, under ion-host and the Vertex AI emulator;
//! - `tests/python/contract_check.py` sends chosen requests that reach every documented status
//!   (faults injected through the emulator) and checks each answer against the document, on
//!   both runtimes;
//! - `tests/python/openai_client.py` runs the official `openai` package, unchanged, against
//!   `/v1` on both runtimes.
//!
//! The Python tools live in a virtualenv that `scripts/test.sh` installs from
//! `tests/python/requirements.txt` (`target/python-tests`, or `$ION_TEST_PYTHON_VENV`).

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Longest a Python tool may run before the test fails (the schemathesis run takes well under
/// a minute on two cores; this bound only stops a hang).
const TOOL_LIMIT: Duration = Duration::from_secs(300);

fn venv() -> PathBuf {
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

fn python_dir() -> PathBuf {
    workspace_root().join("tests/python")
}

/// Runs a tool of the virtualenv to completion (at most [`TOOL_LIMIT`]), in a scratch directory;
/// fails the test with its output unless it exits 0.
fn run_tool(what: &str, program: &str, args: &[&str], env: &[(&str, PathBuf)]) {
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

#[test]
fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let emulator = start_emulator();
    let service = Service::start_host(&[], &emulator_env(&emulator));
    let seed = std::env::var("ION_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("ION_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    run_tool(
        "schemathesis",
        "schemathesis",
        &[
            "--no-color",
            "run",
            &service.url("/openapi.json"),
            // Two checks come from tests/python/schemathesis_hooks.py: `no_server_fault`
            // stands in for not_a_server_error (as strict, except for the 5xx that are Vertex
            // AI's answer to the generated request itself), and `conforming_chat_is_accepted`
            // fails on a 422 for a /chat body that conforms to the schema.
            "--checks",
            "no_server_fault,conforming_chat_is_accepted,status_code_conformance,\
             content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--workers",
            "1",
            "--max-redirects",
            "0",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
        ],
        &[(
            "SCHEMATHESIS_HOOKS",
            python_dir().join("schemathesis_hooks.py"),
        )],
    );
    // The run reached the chat, not only the cheap routes.
    assert!(
        emulator.requests().len() > 10,
        "schemathesis made only {} upstream calls",
        emulator.requests().len()
    );
}

#[test]
fn every_documented_answer_matches_the_document_on_both_runtimes() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let name = match runtime {
            Runtime::IonHost => "ion-host",
            Runtime::Spin => "spin",
        };
        let service = match runtime {
            // One request at a time, so that the check can see ion-host's 503 `overloaded`.
            Runtime::IonHost => Service::start_host(
                &["--max-concurrent-requests", "1"],
                &emulator_env(&emulator),
            ),
            Runtime::Spin => Service::start(runtime, &emulator_env(&emulator)),
        };
        let script = python_dir().join("contract_check.py");
        let script = script.to_str().unwrap();
        run_tool(
            &format!("contract check on {name}"),
            "python",
            &[script, &service.base_url, name],
            &[],
        );
        drop(service);

        if runtime == Runtime::IonHost {
            let limited =
                Service::start_host(&["--rate-limit-per-minute", "1"], &emulator_env(&emulator));
            run_tool(
                "contract check on ion-host, rate limited",
                "python",
                &[script, &limited.base_url, name, "--rate-limited"],
                &[],
            );
        }

        let unconfigured = Service::start(
            runtime,
            &[("SPIN_VARIABLE_VERTEX_ENDPOINT".into(), emulator.url())],
        );
        run_tool(
            &format!("contract check on {name}, not configured"),
            "python",
            &[script, &unconfigured.base_url, name, "--unconfigured"],
            &[],
        );
    }
}

#[test]
fn the_official_openai_client_works_unchanged_on_both_runtimes() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let script = python_dir().join("openai_client.py");
        run_tool(
            &format!("openai client on {runtime:?}"),
            "python",
            &[script.to_str().unwrap(), &service.base_url],
            &[],
        );
    }
}
