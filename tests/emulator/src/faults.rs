//! Fault injection: a test asks for a failure with the marker `[[emulator:FAULT]]` anywhere in
//! the last user text, or with the header `x-emulator-fault: FAULT` (the header wins).

use std::time::Duration;

use serde_json::json;

use crate::status::ApiError;

/// The header that selects a fault.
pub const FAULT_HEADER: &str = "x-emulator-fault";

const MARKER_OPEN: &str = "[[emulator:";
const MARKER_CLOSE: &str = "]]";

/// Delay of a plain `slow` fault.
pub const DEFAULT_SLOW: Duration = Duration::from_millis(5000);

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
    "slow",
    "slow=MS",
    "safety",
    "blocked=REASON",
    "finish-safety",
    "empty",
    "garbage",
    "drop",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An error reply with this HTTP status (400, 401, 403, 404, 429, 500, 503 or 504).
    Status(u16),
    /// Answer normally after this extra delay.
    Slow(Duration),
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
}

/// Parses one fault name (case-insensitive; a `blocked=` reason keeps its case).
pub fn parse(spec: &str) -> Result<Fault, String> {
    let spec = spec.trim();
    let (name, arg) = match spec.split_once('=') {
        Some((name, arg)) => (name.trim().to_ascii_lowercase(), Some(arg.trim())),
        None => (spec.to_ascii_lowercase(), None),
    };
    let fault = match (name.as_str(), arg) {
        ("400" | "401" | "403" | "404" | "429" | "500" | "503" | "504", None) => {
            Fault::Status(name.parse().expect("three digits"))
        }
        ("slow", None) => Fault::Slow(DEFAULT_SLOW),
        ("slow", Some(ms)) => Fault::Slow(Duration::from_millis(ms.parse().map_err(|_| {
            format!("emulator fault \"slow={ms}\": MS must be a whole number of milliseconds")
        })?)),
        ("safety", None) => Fault::PromptBlocked("SAFETY".into()),
        ("blocked", Some(reason))
            if !reason.is_empty()
                && reason
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Fault::PromptBlocked(reason.to_string())
        }
        ("finish-safety", None) => Fault::FinishSafety,
        ("empty", None) => Fault::Empty,
        ("garbage", None) => Fault::Garbage,
        ("drop", None) => Fault::Drop,
        _ => {
            return Err(format!(
                "Unknown emulator fault \"{spec}\". Known faults: {}.",
                FAULT_NAMES.join(", ")
            ));
        }
    };
    Ok(fault)
}

/// The fault named by the first `[[emulator:...]]` marker in `text`, if any.
pub fn find_marker(text: &str) -> Option<&str> {
    let start = text.find(MARKER_OPEN)? + MARKER_OPEN.len();
    let len = text[start..].find(MARKER_CLOSE)?;
    Some(&text[start..start + len])
}

/// Picks the fault for a request: header first, then the marker in the last user text.
/// An unknown name is a 400 INVALID_ARGUMENT.
pub fn select(header: Option<&str>, last_user_text: &str) -> Result<Option<Fault>, ApiError> {
    match header.or_else(|| find_marker(last_user_text)) {
        None => Ok(None),
        Some(spec) => parse(spec).map(Some).map_err(ApiError::invalid_argument),
    }
}

/// The error reply for a `Status` fault, worded like Google's.
pub fn status_error(code: u16, resource: &str, rpc_name: &str) -> ApiError {
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
            "retryDelay": "3s",
        })),
        503 => ApiError::new(503, "UNAVAILABLE", "The service is currently unavailable."),
        504 => ApiError::new(
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        _ => ApiError::new(500, "INTERNAL", "Internal error encountered."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault() {
        for code in [400, 401, 403, 404, 429, 500, 503, 504] {
            assert_eq!(parse(&code.to_string()), Ok(Fault::Status(code)));
        }
        assert_eq!(parse("slow"), Ok(Fault::Slow(Duration::from_secs(5))));
        assert_eq!(
            parse("slow=250"),
            Ok(Fault::Slow(Duration::from_millis(250)))
        );
        assert_eq!(
            parse(" SLOW = 7 "),
            Ok(Fault::Slow(Duration::from_millis(7)))
        );
        assert_eq!(parse("safety"), Ok(Fault::PromptBlocked("SAFETY".into())));
        assert_eq!(
            parse("blocked=PROHIBITED_CONTENT"),
            Ok(Fault::PromptBlocked("PROHIBITED_CONTENT".into()))
        );
        assert_eq!(parse("finish-safety"), Ok(Fault::FinishSafety));
        assert_eq!(parse("empty"), Ok(Fault::Empty));
        assert_eq!(parse("garbage"), Ok(Fault::Garbage));
        assert_eq!(parse("Drop"), Ok(Fault::Drop));
    }

    #[test]
    fn rejects_unknown_or_malformed_faults() {
        for bad in [
            "",
            "502",
            "teapot",
            "slow=abc",
            "slow=-1",
            "blocked",
            "blocked=",
            "blocked=a b",
            "drop=1",
            "429=2",
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
        assert_eq!(select(None, "plain"), Ok(None));
        assert_eq!(
            select(None, "x [[emulator:503]]"),
            Ok(Some(Fault::Status(503)))
        );
        assert_eq!(
            select(Some("empty"), "x [[emulator:503]]"),
            Ok(Some(Fault::Empty))
        );
        let err = select(None, "[[emulator:nope]]").unwrap_err();
        assert_eq!((err.code, err.status), (400, "INVALID_ARGUMENT"));
        assert!(err.message.contains("\"nope\""));
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
            );
            assert_eq!((err.code, err.status), (code, status));
        }
        let quota = status_error(429, "r", "GenerateContent").to_json();
        assert_eq!(
            quota["error"]["details"][0]["@type"],
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        assert_eq!(quota["error"]["details"][0]["retryDelay"], "3s");
    }
}
