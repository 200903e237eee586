//! The access log: one entry per served request, with Cloud Logging's `httpRequest`.

use std::time::Duration;

use serde_json::json;

use super::{RequestContext, Severity, line, target};

/// A request URL as the access log shows it. A conversation id grants access to the
/// conversation, so `/conversations/{id}` keeps only the id's first 8 characters.
pub fn logged_url(url: &str) -> String {
    const PREFIX: &str = "/conversations/";
    match url.strip_prefix(PREFIX) {
        Some(rest) if rest.chars().count() > 8 => {
            let kept: String = rest.chars().take(8).collect();
            format!("{PREFIX}{kept}…")
        }
        _ => url.to_owned(),
    }
}

/// The `httpRequest` of one served request.
#[derive(Debug, Clone)]
pub struct HttpRequestEntry {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub request_size: Option<u64>,
    pub user_agent: Option<String>,
    pub remote_ip: String,
    pub protocol: String,
    /// Time to the response head.
    pub latency: Duration,
}

/// One entry per request; 5xx are errors, 4xx warnings, a successful `/health` debug.
pub fn request(context: &RequestContext, entry: &HttpRequestEntry) {
    let severity = match entry.status {
        500.. => Severity::Error,
        400..=499 => Severity::Warning,
        // Cloud Run's request log already has every health check; at info level a successful
        // one would only add a line (and its CPU) per probe.
        _ if entry.url == "/health" => Severity::Debug,
        _ => Severity::Info,
    };
    if !line::enabled(target::ACCESS, severity) {
        return;
    }
    let mut fields = context.fields();
    let mut http_request = json!({
        "requestMethod": entry.method,
        "requestUrl": entry.url,
        "status": entry.status,
        "remoteIp": entry.remote_ip,
        "protocol": entry.protocol,
        "latency": format!("{:.6}s", entry.latency.as_secs_f64()),
    });
    if let Some(size) = entry.request_size {
        http_request["requestSize"] = json!(size.to_string());
    }
    if let Some(agent) = &entry.user_agent {
        http_request["userAgent"] = json!(agent);
    }
    fields.insert("httpRequest".into(), http_request);
    line::write(
        target::ACCESS,
        severity,
        &format!("{} {} {}", entry.method, entry.url, entry.status),
        fields,
    );
}

#[cfg(test)]
mod tests {
    use super::logged_url;

    #[test]
    fn conversation_ids_are_cut_in_the_access_log() {
        assert_eq!(
            logged_url("/conversations/0123456789abcdef0123456789abcdef"),
            "/conversations/01234567…"
        );
        assert_eq!(logged_url("/conversations/abc"), "/conversations/abc");
        assert_eq!(logged_url("/chat?x=1"), "/chat?x=1");
    }
}
