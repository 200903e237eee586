//! ion-loadtest: the original service's Locust scenarios, in goose.
//!
//!     ion-loadtest light --host http://127.0.0.1:8080 --report-file report.html
//!
//! A scenario sets the users, the spawn rate and the run time (each can still be overridden
//! with goose's own options, e.g. `--run-time 30s`). Every user waits 1–3 s between tasks.
//! `ApiUser` sends the original's mix (`/chat` 5, `/health` 1, `/docs` 2); `EdgeCaseUser` sends
//! bad bodies that must get a 4xx. The run fails (exit status 1) on any 5xx, on a failed
//! threshold (`--threshold "p95<2s"`, goose's rule syntax), or on an edge case answered
//! outside 4xx.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use goose::config::GooseConfiguration;
use goose::goose::{GooseMethod, GooseResponse};
use goose::prelude::*;

#[derive(Parser)]
#[command(name = "ion-loadtest", version)]
struct Cli {
    /// The load profile.
    #[arg(value_enum)]
    scenario: Profile,
    /// A Cloud Run identity token, sent as `X-Serverless-Authorization: Bearer …` with every
    /// request: Cloud Run checks that header and passes `Authorization` through, which a service
    /// that takes API keys reads as a key.
    #[arg(long, env = "ION_LOADTEST_BEARER", hide_env_values = true)]
    bearer: Option<String>,
    /// An API key (`ion_sk_…`), sent as `Authorization: Bearer …`: for a service that requires
    /// keys (its limit and budget then apply to the load test).
    #[arg(long, env = "ION_LOADTEST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(flatten)]
    goose: GooseConfiguration,
}

/// The original's scenarios (users, users started per second, run time), plus a smoke run.
#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// 10 users, 1/s, 2 minutes.
    Light,
    /// 30 users, 2/s, 5 minutes.
    Medium,
    /// 50 users, 5/s, 10 minutes.
    Heavy,
    /// 100 users, 10/s, 10 minutes.
    Stress,
    /// 5 users at once for 5 seconds, without think time: the test suite's check.
    Smoke,
}

impl Profile {
    /// (users, spawn rate per second, run time in seconds)
    fn profile(self) -> (usize, &'static str, usize) {
        match self {
            Profile::Light => (10, "1", 120),
            Profile::Medium => (30, "2", 300),
            Profile::Heavy => (50, "5", 600),
            Profile::Stress => (100, "10", 600),
            Profile::Smoke => (5, "5", 5),
        }
    }
}

/// The original's messages: Korean questions in the styles the persona routing tells apart.
const MESSAGES: &[&str] = &[
    "어떻게 해야 하나요?",
    "급해요!!! 빨리 배포를 고쳐야 해요",
    "왜 이렇게 답답하죠? 테스트가 계속 이상하게 실패해요",
    "지난 분기 결과 리포트를 분석하고 확인하는 좋은 방법을 단계별로 알려 주세요.",
    "How should I plan my first month as a junior developer?",
];

/// Bodies the API must refuse with a 4xx (never a 5xx, never a 2xx).
fn edge_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty body", Vec::new()),
        ("empty message", br#"{"message": ""}"#.to_vec()),
        (
            "10,000 characters",
            format!(r#"{{"message": "{}"}}"#, "a".repeat(10_000)).into_bytes(),
        ),
        (
            "emoji only, too long",
            format!(r#"{{"message": "{}"}}"#, "😀".repeat(1_001)).into_bytes(),
        ),
        ("NUL byte", b"{\"message\": \"a\0b\"}".to_vec()),
        ("newlines only", br#"{"message": "\n\n\n"}"#.to_vec()),
        ("malformed JSON", br#"{"message": "#.to_vec()),
        ("not an object", b"[1, 2, 3]".to_vec()),
    ]
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ion-loadtest: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let (users, rate, seconds) = cli.scenario.profile();
    let smoke = matches!(cli.scenario, Profile::Smoke);
    if let Some(token) = cli.bearer.filter(|t| !t.is_empty()) {
        // Transactions are plain functions: the token reaches them through the process.
        BEARER.set(format!("Bearer {token}")).ok();
    }
    if let Some(key) = cli.api_key.filter(|k| !k.is_empty()) {
        API_KEY.set(format!("Bearer {key}")).ok();
    }
    let think = if smoke {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    };
    let api_user = scenario!("ApiUser")
        .set_weight(if smoke { 4 } else { 9 })
        .and_then(|s| s.set_wait_time(think.0, think.1))
        .map_err(|e| e.to_string())?
        .register_transaction(
            transaction!(chat)
                .set_name("POST /chat")
                .set_weight(5)
                .map_err(|e| e.to_string())?,
        )
        .register_transaction(
            transaction!(health)
                .set_name("GET /health")
                .set_weight(1)
                .map_err(|e| e.to_string())?,
        )
        .register_transaction(
            transaction!(docs)
                .set_name("GET /docs")
                .set_weight(2)
                .map_err(|e| e.to_string())?,
        );
    let edge_user = scenario!("EdgeCaseUser")
        .set_weight(1)
        .and_then(|s| s.set_wait_time(think.0, think.1))
        .map_err(|e| e.to_string())?
        .register_transaction(transaction!(edge_cases_all).set_name("POST /chat (edge cases)"));

    let outcome = GooseAttack::initialize_with_config(cli.goose)
        .and_then(|a| a.set_default(GooseDefault::Users, users))
        .and_then(|a| a.set_default(GooseDefault::IncreaseRate, rate))
        .and_then(|a| a.set_default(GooseDefault::RunTime, seconds))
        .map_err(|e| e.to_string())?
        .register_scenario(api_user)
        .register_scenario(edge_user)
        .execute()
        .await;
    let (metrics, thresholds_failed) = match outcome {
        Ok(metrics) => (metrics, false),
        Err(GooseError::ThresholdsFailed { metrics, .. }) => (*metrics.0, true),
        Err(e) => return Err(format!("the load test did not run: {e}")),
    };
    let mut problems = Vec::new();
    for (name, aggregate) in &metrics.requests {
        let server_errors: usize = aggregate
            .status_code_counts
            .iter()
            .filter(|(status, _)| **status >= 500)
            .map(|(_, n)| n)
            .sum();
        if server_errors > 0 {
            problems.push(format!("{server_errors} × 5xx on {name}"));
        }
        if name.contains("edge cases") && aggregate.fail_count > 0 {
            problems.push(format!(
                "{} edge-case requests not answered with a 4xx",
                aggregate.fail_count
            ));
        }
    }
    if metrics.requests.values().all(|a| a.success_count == 0) {
        problems.push("no request succeeded".to_owned());
    }
    if thresholds_failed {
        problems.push("a --threshold failed (see the report)".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

static BEARER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static API_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sends one request, reported as `METHOD name`, with the identity token and the key if any; `body` makes it a JSON POST.
async fn send(
    user: &mut GooseUser,
    name: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<GooseResponse, Box<TransactionError>> {
    let method = if body.is_some() {
        GooseMethod::Post
    } else {
        GooseMethod::Get
    };
    let mut builder = user.get_request_builder(&method, path)?;
    if let Some(bearer) = BEARER.get() {
        builder = builder.header("x-serverless-authorization", bearer);
    }
    if let Some(key) = API_KEY.get() {
        builder = builder.header("authorization", key);
    }
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    user.request(request).await
}

async fn chat(user: &mut GooseUser) -> TransactionResult {
    let message = MESSAGES[user.weighted_users_index % MESSAGES.len()];
    let body = format!(r#"{{"message": {message:?}}}"#).into_bytes();
    send(user, "/chat", "/chat", Some(body)).await?;
    Ok(())
}

async fn health(user: &mut GooseUser) -> TransactionResult {
    send(user, "/health", "/health", None).await?;
    Ok(())
}

async fn docs(user: &mut GooseUser) -> TransactionResult {
    send(user, "/docs", "/docs", None).await?;
    Ok(())
}

/// One pass over the edge cases: a 4xx is the expected answer, anything else a failure.
async fn edge_cases_all(user: &mut GooseUser) -> TransactionResult {
    for (case, body) in edge_cases() {
        let mut answer = send(user, "/chat (edge cases)", "/chat", Some(body)).await?;
        let status = answer.request.status_code;
        if (400..500).contains(&status) {
            user.set_success(&mut answer.request)?;
        } else {
            user.set_failure(
                &format!("edge case {case:?} got {status}, not a 4xx"),
                &mut answer.request,
                None,
                None,
            )?;
        }
    }
    Ok(())
}
