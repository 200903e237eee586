//! The component's `allowed_outbound_hosts`: parsed once at startup, checked on every request.

use anyhow::{Context, Result, bail};
use http::Uri;

use crate::template::Template;
use crate::variables::AppVariables;

/// One `scheme://host[:port]` entry.
#[derive(Debug, Clone, PartialEq)]
struct AllowedOrigin {
    /// `None` = any scheme (`*://`).
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    /// `*.example.com`: any subdomain (not the apex).
    Subdomains(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Exact(u16),
    /// No port written: the scheme's default port.
    SchemeDefault,
}

/// The allow-list of one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowList(Vec<AllowedOrigin>);

impl AllowList {
    /// Renders templates and parses every entry. An entry that renders to an empty string
    /// (an unset optional variable) allows nothing.
    pub fn new(entries: &[Template], values: &AppVariables) -> Result<AllowList> {
        let mut origins = Vec::new();
        for entry in entries {
            let rendered = values
                .render(entry)
                .with_context(|| format!("allowed_outbound_hosts entry {entry}"))?;
            if rendered.trim().is_empty() {
                continue;
            }
            origins.push(
                parse_origin(rendered.trim())
                    .with_context(|| format!("allowed_outbound_hosts entry {entry}"))?,
            );
        }
        Ok(AllowList(origins))
    }

    /// Whether a request to `uri` may be sent.
    pub fn allows(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let scheme = scheme.to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme));
        self.0.iter().any(|o| {
            o.scheme.as_ref().is_none_or(|s| *s == scheme)
                && match &o.host {
                    HostPattern::Any => true,
                    HostPattern::Subdomains(suffix) => {
                        host.len() > suffix.len() + 1
                            && host.ends_with(suffix.as_str())
                            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    }
                    HostPattern::Exact(h) => *h == host,
                }
                && match o.port {
                    PortPattern::Any => true,
                    PortPattern::Exact(p) => port == Some(p),
                    PortPattern::SchemeDefault => port.is_some() && port == default_port(&scheme),
                }
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_origin(entry: &str) -> Result<AllowedOrigin> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        bail!("{entry:?} has no scheme: write it as scheme://host[:port]");
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "*" => None,
        s @ ("http" | "https") => Some(s.to_owned()),
        other => bail!("unsupported scheme {other:?}"),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        bail!("{entry:?} has a path: only scheme://host[:port] is allowed");
    }
    // An IPv6 literal keeps its brackets, as `Uri::host` reports it.
    let (host, port) = match authority.find(']') {
        Some(end) => match &authority[end + 1..] {
            "" => (authority, None),
            rest => (
                &authority[..=end],
                Some(rest.strip_prefix(':').context("invalid port")?),
            ),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host = host.to_ascii_lowercase();
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        HostPattern::Subdomains(suffix.to_owned())
    } else if host.is_empty() || host.contains('*') {
        bail!("invalid host {host:?}");
    } else {
        HostPattern::Exact(host)
    };
    let port = match port {
        None => PortPattern::SchemeDefault,
        Some("*") => PortPattern::Any,
        Some(p) => PortPattern::Exact(p.parse().with_context(|| format!("invalid port {p:?}"))?),
    };
    Ok(AllowedOrigin { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::new(&templates(entries), &AppVariables::default()).unwrap()
    }

    fn templates(entries: &[&str]) -> Vec<Template> {
        entries
            .iter()
            .map(|e| Template::parse(e).unwrap())
            .collect()
    }

    fn allows(list: &AllowList, uri: &str) -> bool {
        list.allows(&uri.parse().unwrap())
    }

    #[test]
    fn exact_hosts_use_the_scheme_default_port() {
        let l = list(&["https://aiplatform.googleapis.com"]);
        assert!(allows(&l, "https://aiplatform.googleapis.com/v1/x"));
        assert!(allows(&l, "https://AIPLATFORM.googleapis.com:443/v1/x"));
        assert!(!allows(&l, "http://aiplatform.googleapis.com/v1/x"));
        assert!(!allows(&l, "https://aiplatform.googleapis.com:8443/v1/x"));
        assert!(!allows(&l, "https://evil.com/?aiplatform.googleapis.com"));
    }

    #[test]
    fn wildcards() {
        let l = list(&["https://*.googleapis.com", "http://127.0.0.1:*"]);
        assert!(allows(
            &l,
            "https://us-central1-aiplatform.googleapis.com/v1"
        ));
        assert!(!allows(&l, "https://googleapis.com/v1"));
        assert!(!allows(&l, "https://evilgoogleapis.com/v1"));
        assert!(allows(&l, "http://127.0.0.1:9000/v1"));
        assert!(!allows(&l, "http://127.0.0.2:9000/v1"));
        assert!(allows(&list(&["*://*:*"]), "http://anything:1/"));
    }

    #[test]
    fn templates_render_and_empty_entries_allow_nothing() {
        let app = crate::manifest::App::parse(
            r#"
spin_manifest_version = 2
[variables]
vertex_endpoint = { default = "" }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
"#,
            std::path::Path::new("."),
        )
        .unwrap();
        let entries = templates(&["{{ vertex_endpoint }}"]);
        let empty = AppVariables::resolve(&app, |_| None).unwrap();
        assert_eq!(
            AllowList::new(&entries, &empty).unwrap(),
            AllowList::default()
        );
        let set = AppVariables::resolve(&app, |_| Some("http://127.0.0.1:9000".into())).unwrap();
        let l = AllowList::new(&entries, &set).unwrap();
        assert!(allows(&l, "http://127.0.0.1:9000/v1/projects"));
        assert!(!allows(&l, "http://127.0.0.1:9001/v1/projects"));
    }

    #[test]
    fn malformed_entries_are_startup_errors() {
        for bad in [
            "aiplatform.googleapis.com",
            "ftp://x",
            "https://x/path",
            "https://x:port",
            "https://a*b",
        ] {
            assert!(
                AllowList::new(&templates(&[bad]), &AppVariables::default()).is_err(),
                "{bad}"
            );
        }
    }
}
