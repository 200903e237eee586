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
fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let _heavy = serial::heavy();
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
