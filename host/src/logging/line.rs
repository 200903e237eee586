//! One log entry as a line on stdout: a JSON object with Cloud Logging's `severity` and
//! `message` (and whatever fields the caller adds), or plain text when stdout is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::filter::Filter;

/// Cloud Logging's severities, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
            Severity::Alert => "ALERT",
            Severity::Emergency => "EMERGENCY",
        }
    }

    /// A severity as a guest writes it: Cloud Logging's names, any case (`WARN` too).
    pub(super) fn from_name(name: &str) -> Option<Severity> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Severity::Debug,
            "INFO" => Severity::Info,
            "NOTICE" => Severity::Notice,
            "WARNING" | "WARN" => Severity::Warning,
            "ERROR" => Severity::Error,
            "CRITICAL" => Severity::Critical,
            "ALERT" => Severity::Alert,
            "EMERGENCY" => Severity::Emergency,
            _ => return None,
        })
    }
}

struct Logger {
    json: bool,
    filter: Filter,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        json: !std::io::stdout().is_terminal(),
        filter: Filter::parse(&std::env::var("RUST_LOG").unwrap_or_default()),
    })
}

/// Whether entries of `severity` for `target` are written.
pub(super) fn enabled(target: &str, severity: Severity) -> bool {
    logger().filter.enabled(target, severity)
}

/// The JSON object of one entry.
pub(super) fn entry(
    severity: Severity,
    message: &str,
    fields: Map<String, Value>,
) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("severity".into(), json!(severity.as_str()));
    entry.insert("message".into(), json!(message));
    entry.extend(fields);
    entry
}

/// Writes one entry for `target`, if `RUST_LOG` lets it through: `fields` are merged into the
/// JSON object (or appended as `k=v` in text).
pub(super) fn write(target: &str, severity: Severity, message: &str, fields: Map<String, Value>) {
    #[cfg(test)]
    if capture::record(severity, message, &fields) {
        return;
    }
    let logger = logger();
    if !logger.filter.enabled(target, severity) {
        return;
    }
    let line = if logger.json {
        Value::Object(entry(severity, message, fields)).to_string()
    } else {
        let mut line = format!("{:<7} {message}", severity.as_str());
        for (key, value) in fields {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

/// In tests: the entries written on this thread, kept instead of printed.
#[cfg(test)]
pub mod capture {
    use std::cell::RefCell;

    use serde_json::{Map, Value};

    use super::Severity;

    thread_local! {
        static ENTRIES: RefCell<Option<Vec<Value>>> = const { RefCell::new(None) };
    }

    /// Keeps every entry written on this thread (whatever `RUST_LOG` says) until dropped. A
    /// current-thread tokio runtime runs spawned tasks on this thread too.
    pub struct Capture(());

    impl Capture {
        pub fn start() -> Capture {
            ENTRIES.with(|e| *e.borrow_mut() = Some(Vec::new()));
            Capture(())
        }

        /// The entries so far, as the JSON objects that would be written.
        pub fn entries(&self) -> Vec<Value> {
            ENTRIES.with(|e| e.borrow().clone().unwrap_or_default())
        }

        /// The entries so far whose message contains `text`.
        pub fn matching(&self, text: &str) -> Vec<Value> {
            self.entries()
                .into_iter()
                .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(text)))
                .collect()
        }
    }

    impl Drop for Capture {
        fn drop(&mut self) {
            ENTRIES.with(|e| *e.borrow_mut() = None);
        }
    }

    /// Keeps the entry if a capture is on; returns whether it did.
    pub(super) fn record(severity: Severity, message: &str, fields: &Map<String, Value>) -> bool {
        ENTRIES.with(|e| match &mut *e.borrow_mut() {
            Some(entries) => {
                let entry = super::entry(severity, message, fields.clone());
                entries.push(Value::Object(entry));
                true
            }
            None => false,
        })
    }
}
