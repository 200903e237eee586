//! The API description against the running service, and real clients against the API:
//!
//! - `schemathesis` (PyPI) generates requests from `/openapi.json` and checks every response
//!   against it, under ion-host and the Vertex AI emulator;
//! - `tests/python/contract_check.py` sends chosen requests that reach every documented status
//!   (faults injected through the emulator) and checks each answer against the document, on
//!   both runtimes: with the default access settings, and on a second service with API keys
//!   (`auth_mode` keys_or_anonymous), the admin API and small anonymous limits;
//! - `tests/python/openai_client.py` runs the official `openai` package, unchanged, against
//!   `/v1` on both runtimes.
//!
//! The Python tools live in a virtualenv that `scripts/test.sh` installs from
//! `tests/python/requirements.txt` (`target/python-tests`, or `$ION_TEST_PYTHON_VENV`).

use crate::common::python::{python_dir, run_tool};
use crate::common::serial;
use crate::common::*;

/// The admin token of the service with API keys.
const ADMIN_TOKEN: &str = "contract-admin-token-0123456789abcdef";

/// A service wired to `emulator` with API keys: a key or none (then the anonymous limits), the
/// admin API on, and anonymous limits small enough to reach (`ANONYMOUS_LIMITS` in
/// contract_check.py).
fn keys_env(emulator: &Emulator) -> Vec<(String, String)> {
    let mut env = emulator_env(emulator);
    env.extend(
        [
            ("SPIN_VARIABLE_AUTH_MODE", "keys_or_anonymous"),
            ("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "2"),
            ("SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS", "1000000"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    env
}

#[test]
fn schemathesis_with_every_check_finds_nothing() {
    let _heavy = serial::heavy();
    let emulator = start_emulator();
    // The admin API on, so that its operations are reached (and refuse a missing token); the
    // token goes with every request, which the chat routes do not read (`auth_mode` none).
    let mut env = emulator_env(&emulator);
    env.push(("SPIN_VARIABLE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()));
    let service = Service::start_host(&[], &env);
    let seed = std::env::var("ION_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("ION_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let authorization = format!("Authorization: Bearer {ADMIN_TOKEN}");
    // 413 counts as refusing invalid data (see the file).
    let config = python_dir().join("schemathesis.toml");
    run_tool(
        "schemathesis",
        "schemathesis",
        &[
            "--no-color",
            "--config-file",
            config.to_str().unwrap(),
            "run",
            &service.url("/openapi.json"),
            // Every check, positive and negative data, undeclared methods and missing
            // headers included. tests/python/schemathesis_hooks.py keeps generated /v1
            // conversations to the rules JSON Schema cannot state.
            "--checks",
            "all",
            "--mode",
            "all",
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
            "--header",
            &authorization,
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
        let keyed = Service::start(runtime, &keys_env(&emulator));
        let script = python_dir().join("contract_check.py");
        let script = script.to_str().unwrap();
        run_tool(
            &format!("contract check on {name}"),
            "python",
            &[
                script,
                &service.base_url,
                name,
                "--keys",
                &keyed.base_url,
                ADMIN_TOKEN,
            ],
            &[],
        );
        drop(service);
        drop(keyed);

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
