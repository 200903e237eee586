//! Logs as Cloud Logging reads them: one JSON object per line on stdout with `severity`,
//! `message`, `httpRequest`, `logging.googleapis.com/trace` and labels; plain text when stdout is
//! a terminal. Levels come from `RUST_LOG`: a default level and `target=level` directives (see
//! [`filter`]); default `info`.
//!
//! One module per job:
//! - [`line`] writes one entry as a line on stdout; it has the severities.
//! - [`filter`] reads `RUST_LOG`.
//! - [`request`] holds a request's id and trace, the fields every entry of that request
//!   carries: the access log's, the component's output's, and the host's own messages about
//!   the request (outbound calls, the credentials they wait for), written through
//!   [`RequestContext`].
//! - [`access`] writes the access log, one entry per request.
//! - [`guest`] turns the component's stdout and stderr into entries.
//!
//! Written by hand rather than with a tracing subscriber: Cloud Logging's schema is a handful of
//! fixed field names, and serde_json writes them directly with no formatter layer to adapt.

mod access;
mod filter;
mod guest;
mod line;
mod request;

pub use access::{HttpRequestEntry, logged_url, request};
pub use guest::GuestOutput;
pub use line::Severity;
#[cfg(test)]
pub use line::capture::Capture;
pub use request::{RequestContext, Trace, set_project_id};

use serde_json::{Map, Value};

/// Targets that `RUST_LOG` directives name.
pub mod target {
    /// The host's own messages (startup, shutdown, credentials, outbound policy).
    pub const HOST: &str = "ion_host";
    /// One entry per served request, with `httpRequest`.
    pub const ACCESS: &str = "ion_host::access";
    /// The component's stdout and stderr lines, the per-chat line among them.
    pub const GUEST: &str = "ion_host::guest";
}

/// Whether the host's own messages of `severity` are written.
pub fn enabled(severity: Severity) -> bool {
    line::enabled(target::HOST, severity)
}

/// Writes one host entry: `fields` are merged into the JSON object (or appended as `k=v` in
/// text).
pub fn write(severity: Severity, message: &str, fields: Map<String, Value>) {
    line::write(target::HOST, severity, message, fields);
}

/// Writes one host entry, as part of `request` when there is one.
pub fn write_for(request: Option<&RequestContext>, severity: Severity, message: &str) {
    match request {
        Some(request) => request.write(severity, message),
        None => write(severity, message, Map::new()),
    }
}

pub fn info(message: &str) {
    write(Severity::Info, message, Map::new());
}

pub fn warn(message: &str) {
    write(Severity::Warning, message, Map::new());
}

pub fn error(message: &str) {
    write(Severity::Error, message, Map::new());
}
