//! Fault injection: a test asks for failures with the marker `[[emulator:FAULTS]]` anywhere in
//! the last user text, or with the header `x-emulator-fault: FAULTS` (the header wins; only the
//! first marker counts, so combine names with commas: `[[emulator:parallel-calls,slow=10]]`).
//!
//! FAULTS is one fault or several separated by commas, e.g. `503x2,chunk-delay=50`: at most
//! one *outcome* (a status, `safety`, `drop`, `stream-error`, …) plus any *modifiers*
//! (`slow=MS`, `chunk-delay=MS`, `retry-delay=MS`, `pad=BYTES`) and *answer modifiers* (`parallel-calls`,
//! `no-tool`: how a request with tools is answered, see [`Steering`]), each named once.

use std::time::Duration;

use serde_json::json;

use crate::status::ApiError;

/// The header that selects faults.
pub const FAULT_HEADER: &str = "x-emulator-fault";

const MARKER_OPEN: &str = "[[emulator:";
const MARKER_CLOSE: &str = "]]";

/// Delay of a plain `slow` fault.
pub const DEFAULT_SLOW: Duration = Duration::from_millis(5000);

/// `retryDelay` of a persistent `429`.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(3);

/// `retryDelay` of a transient `429xN`: short, so tests that retry stay fast.
pub const TRANSIENT_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Largest padding of `pad=BYTES`.
pub const MAX_PADDING: usize = 64 * 1024 * 1024;

/// Largest N of `STATUSxN`.
pub const MAX_TRANSIENT_FAILURES: u32 = 1000;

/// Every fault name, for help and error messages.
pub const FAULT_NAMES: &[&str] = &[
    "400",
    "401",
    "403",
    "404",
    "429",
    "500",
    "503",
    "504",
    "STATUSxN",
    "slow",
    "slow=MS",
    "chunk-delay=MS",
    "retry-delay=MS",
    "pad=BYTES",
    "safety",
    "blocked=REASON",
    "finish-safety",
    "empty",
    "garbage",
    "drop",
    "stream-error",
    "parallel-calls",
    "no-tool",
];

const STATUSES: &[u16] = &[400, 401, 403, 404, 429, 500, 503, 504];

/// What happens instead of a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An error reply with this HTTP status (400, 401, 403, 404, 429, 500, 503 or 504): every
    /// time (`times: None`), or only for the first `times` attempts of the same request.
    Status { code: u16, times: Option<u32> },
    /// HTTP 200, no candidates, `promptFeedback.blockReason` = the reason.
    PromptBlocked(String),
    /// One candidate, finishReason SAFETY, no content parts.
    FinishSafety,
    /// One candidate, finishReason STOP, no content parts.
    Empty,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// Close the connection without any response.
    Drop,
    /// Streaming: one or two good chunks, then an error event, then the end. Unary: a 500.
    StreamError,
}

/// How a request that declares functions is answered (not faults: the answer is still a
/// normal one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Steering {
    /// `parallel-calls`: call the first two allowed functions at once instead of one.
    pub parallel_calls: bool,
    /// `no-tool`: in mode AUTO (or unspecified), answer with text instead of a call.
    pub no_tool: bool,
}

/// Everything the faults of one request ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub outcome: Option<Outcome>,
    /// Extra wait before the response (`slow`).
    pub delay: Duration,
    /// Pause between stream events, instead of the configured one (`chunk-delay`).
    pub chunk_delay: Option<Duration>,
    /// `retryDelay` of a 429 (`retry-delay`).
    pub retry_delay: Option<Duration>,
    /// Bytes of padding in a unary answer's JSON, in a field clients ignore (`pad`): a large
    /// reply without a long answer.
    pub padding: usize,
    /// `parallel-calls`, `no-tool`.
    pub steering: Steering,
}

impl Plan {
    /// The `retryDelay` a 429 of this plan carries.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delay.unwrap_or(match self.outcome {
            Some(Outcome::Status { times: Some(_), .. }) => TRANSIENT_RETRY_DELAY,
            _ => DEFAULT_RETRY_DELAY,
        })
    }
}

enum Piece {
    Outcome(Outcome),
    Slow(Duration),
    ChunkDelay(Duration),
    RetryDelay(Duration),
    Pad(usize),
    ParallelCalls,
    NoTool,
}

fn millis(name: &str, ms: &str) -> Result<Duration, String> {
    ms.parse().map(Duration::from_millis).map_err(|_| {
        format!("emulator fault \"{name}={ms}\": MS must be a whole number of milliseconds")
    })
}

/// `STATUS` or `STATUSxN`.
fn status(name: &str) -> Option<Result<Outcome, String>> {
    let (code, times) = match name.split_once('x') {
        Some((code, times)) => (code, Some(times)),
        None => (name, None),
    };
    let code: u16 = code.parse().ok().filter(|c| STATUSES.contains(c))?;
    let Some(times) = times else {
        return Some(Ok(Outcome::Status { code, times: None }));
    };
    Some(
        times
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_TRANSIENT_FAILURES).contains(n))
            .map(|n| Outcome::Status {
                code,
                times: Some(n),
            })
            .ok_or_else(|| {
                format!(
                    "emulator fault \"{name}\": N must be a whole number from 1 to \
                     {MAX_TRANSIENT_FAILURES}"
                )
            }),
    )
}

/// Parses one fault name (case-insensitive; a `blocked=` reason keeps its case).
fn parse_one(spec: &str) -> Result<Piece, String> {
    let spec = spec.trim();
    let (name, arg) = match spec.split_once('=') {
        Some((name, arg)) => (name.trim().to_ascii_lowercase(), Some(arg.trim())),
        None => (spec.to_ascii_lowercase(), None),
    };
    if arg.is_none()
        && let Some(outcome) = status(&name)
    {
        return outcome.map(Piece::Outcome);
    }
    let piece = match (name.as_str(), arg) {
        ("slow", None) => Piece::Slow(DEFAULT_SLOW),
        ("slow", Some(ms)) => Piece::Slow(millis("slow", ms)?),
        ("chunk-delay", Some(ms)) => Piece::ChunkDelay(millis("chunk-delay", ms)?),
        ("retry-delay", Some(ms)) => Piece::RetryDelay(millis("retry-delay", ms)?),
        ("pad", Some(bytes)) => Piece::Pad(
            bytes
                .parse()
                .ok()
                .filter(|n| (1..=MAX_PADDING).contains(n))
                .ok_or_else(|| {
                    format!(
                        "emulator fault \"pad={bytes}\": BYTES must be a whole number from 1 to \
                         {MAX_PADDING}"
                    )
                })?,
        ),
        ("safety", None) => Piece::Outcome(Outcome::PromptBlocked("SAFETY".into())),
        ("blocked", Some(reason))
            if !reason.is_empty()
                && reason
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Piece::Outcome(Outcome::PromptBlocked(reason.to_string()))
        }
        ("finish-safety", None) => Piece::Outcome(Outcome::FinishSafety),
        ("empty", None) => Piece::Outcome(Outcome::Empty),
        ("garbage", None) => Piece::Outcome(Outcome::Garbage),
        ("drop", None) => Piece::Outcome(Outcome::Drop),
        ("stream-error", None) => Piece::Outcome(Outcome::StreamError),
        ("parallel-calls", None) => Piece::ParallelCalls,
        ("no-tool", None) => Piece::NoTool,
        _ => {
            return Err(format!(
                "Unknown emulator fault \"{spec}\". Known faults: {}.",
                FAULT_NAMES.join(", ")
            ));
        }
    };
    Ok(piece)
}

/// Parses a comma-separated list of faults into one plan.
pub fn parse(specs: &str) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut slow = None;
    for spec in specs.split(',') {
        let twice = || {
            format!(
                "emulator faults \"{specs}\": \"{}\" conflicts with another fault",
                spec.trim()
            )
        };
        match parse_one(spec)? {
            Piece::Outcome(outcome) => {
                if plan.outcome.replace(outcome).is_some() {
                    return Err(twice());
                }
            }
            Piece::Slow(delay) => {
                if slow.replace(delay).is_some() {
                    return Err(twice());
                }
            }
            Piece::ChunkDelay(delay) => {
                if plan.chunk_delay.replace(delay).is_some() {
                    return Err(twice());
                }
            }
            Piece::RetryDelay(delay) => {
                if plan.retry_delay.replace(delay).is_some() {
                    return Err(twice());
                }
            }
            Piece::Pad(bytes) => {
                if std::mem::replace(&mut plan.padding, bytes) != 0 {
                    return Err(twice());
                }
            }
            Piece::ParallelCalls => {
                if std::mem::replace(&mut plan.steering.parallel_calls, true) {
                    return Err(twice());
                }
            }
            Piece::NoTool => {
                if std::mem::replace(&mut plan.steering.no_tool, true) {
                    return Err(twice());
                }
            }
        }
    }
    plan.delay = slow.unwrap_or_default();
    Ok(plan)
}

/// The faults named by the first `[[emulator:...]]` marker in `text`, if any.
pub fn find_marker(text: &str) -> Option<&str> {
    let start = text.find(MARKER_OPEN)? + MARKER_OPEN.len();
    let len = text[start..].find(MARKER_CLOSE)?;
    Some(&text[start..start + len])
}

/// The fault spec of a request: the header first, then the marker in the last user text.
pub fn spec<'a>(header: Option<&'a str>, last_user_text: &'a str) -> Option<&'a str> {
    header.or_else(|| find_marker(last_user_text))
}

/// Parses the fault spec of a request (no spec: the empty plan). An unknown name is a
/// 400 INVALID_ARGUMENT.
pub fn select(spec: Option<&str>) -> Result<Plan, ApiError> {
    match spec {
        None => Ok(Plan::default()),
        Some(spec) => parse(spec).map_err(ApiError::invalid_argument),
    }
}

/// A google.protobuf.Duration in its JSON form: whole seconds as `"3s"`, otherwise with
/// 3, 6 or 9 fractional digits (`"0.200s"`), as Google prints it.
pub fn duration_json(delay: Duration) -> String {
    let (secs, nanos) = (delay.as_secs(), delay.subsec_nanos());
    if nanos == 0 {
        format!("{secs}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{secs}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{secs}.{:06}s", nanos / 1_000)
    } else {
        format!("{secs}.{nanos:09}s")
    }
}

/// `Retry-After` in whole seconds (HTTP allows no fraction), rounded up.
pub fn retry_after_secs(delay: Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}

/// The error reply for a status fault, worded like Google's. A 429 carries a
/// google.rpc.RetryInfo detail with `retry_delay`.
pub fn status_error(code: u16, resource: &str, rpc_name: &str, retry_delay: Duration) -> ApiError {
    match code {
        400 => ApiError::invalid_argument("Request contains an invalid argument."),
        401 => ApiError::unauthenticated(false, rpc_name),
        403 => ApiError::new(
            403,
            "PERMISSION_DENIED",
            format!(
                "Permission 'aiplatform.endpoints.predict' denied on resource \
                 '//aiplatform.googleapis.com/{resource}' (or it may not exist)."
            ),
        ),
        404 => ApiError::model_not_found(resource),
        429 => ApiError::new(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource exhausted. Please try again later. Please refer to \
             https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
        )
        .with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": duration_json(retry_delay),
        })),
        503 => ApiError::new(503, "UNAVAILABLE", "The service is currently unavailable."),
        504 => ApiError::new(
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        _ => internal_error(),
    }
}

/// The 500 Vertex AI answers (or sends as a stream's last event) on an internal failure.
pub fn internal_error() -> ApiError {
    ApiError::new(500, "INTERNAL", "Internal error encountered.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(spec: &str) -> Option<Outcome> {
        parse(spec).unwrap().outcome
    }

    fn persistent(code: u16) -> Option<Outcome> {
        Some(Outcome::Status { code, times: None })
    }

    #[test]
    fn parses_every_fault() {
        for code in [400, 401, 403, 404, 429, 500, 503, 504] {
            assert_eq!(outcome(&code.to_string()), persistent(code));
            assert_eq!(
                outcome(&format!("{code}x3")),
                Some(Outcome::Status {
                    code,
                    times: Some(3)
                })
            );
        }
        assert_eq!(parse("slow").unwrap().delay, Duration::from_secs(5));
        assert_eq!(parse("slow=250").unwrap().delay, Duration::from_millis(250));
        assert_eq!(parse(" SLOW = 7 ").unwrap().delay, Duration::from_millis(7));
        assert_eq!(parse("slow=250").unwrap().outcome, None);
        assert_eq!(
            parse("chunk-delay=40").unwrap().chunk_delay,
            Some(Duration::from_millis(40))
        );
        assert_eq!(
            parse("retry-delay=1500").unwrap().retry_delay,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            outcome("safety"),
            Some(Outcome::PromptBlocked("SAFETY".into()))
        );
        assert_eq!(
            outcome("blocked=PROHIBITED_CONTENT"),
            Some(Outcome::PromptBlocked("PROHIBITED_CONTENT".into()))
        );
        assert_eq!(outcome("finish-safety"), Some(Outcome::FinishSafety));
        assert_eq!(outcome("empty"), Some(Outcome::Empty));
        assert_eq!(outcome("garbage"), Some(Outcome::Garbage));
        assert_eq!(outcome("Drop"), Some(Outcome::Drop));
        assert_eq!(outcome("stream-error"), Some(Outcome::StreamError));
        assert_eq!(outcome("503X2"), outcome("503x2"));
    }

    #[test]
    fn combines_one_outcome_with_modifiers() {
        let plan = parse("503x2, chunk-delay=10,slow=5,retry-delay=0").unwrap();
        assert_eq!(
            plan,
            Plan {
                outcome: Some(Outcome::Status {
                    code: 503,
                    times: Some(2)
                }),
                delay: Duration::from_millis(5),
                chunk_delay: Some(Duration::from_millis(10)),
                retry_delay: Some(Duration::ZERO),
                padding: 0,
                steering: Steering::default(),
            }
        );
        assert_eq!(parse("pad=1000,slow=1").unwrap().padding, 1000);
        for conflicting in [
            "429,503",
            "drop,stream-error",
            "slow,slow=1",
            "chunk-delay=1,chunk-delay=2",
            "parallel-calls,Parallel-Calls",
            "no-tool,no-tool",
            "pad=1,pad=2",
        ] {
            let err = parse(conflicting).unwrap_err();
            assert!(
                err.contains("conflicts with another fault"),
                "{conflicting}: {err}"
            );
        }
    }

    #[test]
    fn answer_modifiers_combine_with_faults() {
        let plan = parse("parallel-calls").unwrap();
        assert_eq!(plan.outcome, None);
        assert_eq!(
            plan.steering,
            Steering {
                parallel_calls: true,
                no_tool: false
            }
        );
        let plan = parse("No-Tool, 503x1, parallel-calls, chunk-delay=5").unwrap();
        assert_eq!(
            plan.steering,
            Steering {
                parallel_calls: true,
                no_tool: true
            }
        );
        assert_eq!(
            plan.outcome,
            Some(Outcome::Status {
                code: 503,
                times: Some(1)
            })
        );
        assert_eq!(plan.chunk_delay, Some(Duration::from_millis(5)));
        assert_eq!(spec(None, "go [[emulator:no-tool]]"), Some("no-tool"));
    }

    #[test]
    fn retry_delay_defaults_depend_on_persistence() {
        assert_eq!(parse("429").unwrap().retry_delay(), Duration::from_secs(3));
        assert_eq!(
            parse("429x1").unwrap().retry_delay(),
            Duration::from_millis(200)
        );
        assert_eq!(
            parse("429x1,retry-delay=1000").unwrap().retry_delay(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn rejects_unknown_or_malformed_faults() {
        for bad in [
            "",
            "502",
            "502x1",
            "teapot",
            "slow=abc",
            "slow=-1",
            "blocked",
            "blocked=",
            "blocked=a b",
            "drop=1",
            "429=2",
            "503x0",
            "503x",
            "503x-1",
            "503x1001",
            "x2",
            "chunk-delay",
            "chunk-delay=1.5",
            "retry-delay",
            "stream-error=1",
            "parallel-calls=2",
            "no-tool=yes",
            "pad",
            "pad=0",
            "pad=x",
            "pad=67108865",
            "parallel",
            "503,",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("emulator fault"), "{bad}: {err}");
        }
        assert!(parse("teapot").unwrap_err().contains("Known faults: 400"));
    }

    #[test]
    fn finds_the_first_marker() {
        assert_eq!(find_marker("hi [[emulator:429]] there"), Some("429"));
        assert_eq!(
            find_marker("[[emulator:slow=10]][[emulator:drop]]"),
            Some("slow=10")
        );
        assert_eq!(find_marker("no marker"), None);
        assert_eq!(find_marker("[[emulator:unterminated"), None);
        assert_eq!(find_marker("[emulator:429]"), None);
    }

    #[test]
    fn header_wins_and_unknown_is_400() {
        assert_eq!(spec(None, "plain"), None);
        assert_eq!(select(None), Ok(Plan::default()));
        assert_eq!(spec(None, "x [[emulator:503]]"), Some("503"));
        assert_eq!(spec(Some("empty"), "x [[emulator:503]]"), Some("empty"));
        let err = select(Some("nope")).unwrap_err();
        assert_eq!((err.code, err.status), (400, "INVALID_ARGUMENT"));
        assert!(err.message.contains("\"nope\""));
    }

    #[test]
    fn durations_print_like_protobuf_json() {
        assert_eq!(duration_json(Duration::from_secs(3)), "3s");
        assert_eq!(duration_json(Duration::ZERO), "0s");
        assert_eq!(duration_json(Duration::from_millis(200)), "0.200s");
        assert_eq!(duration_json(Duration::from_micros(1_500_001)), "1.500001s");
        assert_eq!(duration_json(Duration::from_nanos(7)), "0.000000007s");
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
    }

    #[test]
    fn status_errors_use_canonical_statuses() {
        let expected = [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
        ];
        for (code, status) in expected {
            let err = status_error(
                code,
                "projects/p/locations/l/publishers/google/models/m",
                "GenerateContent",
                DEFAULT_RETRY_DELAY,
            );
            assert_eq!((err.code, err.status), (code, status));
        }
        let quota = status_error(429, "r", "GenerateContent", Duration::from_millis(250)).to_json();
        assert_eq!(
            quota["error"]["details"][0]["@type"],
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        assert_eq!(quota["error"]["details"][0]["retryDelay"], "0.250s");
    }
}
