//! The chat page for people: `GET /` from a browser, and its script, style sheet and icon
//! under `/ui/`. The files are compiled into the component, so both runtimes serve the same
//! page and it needs nothing but this service (no CDN, no web fonts).
//!
//! Every other caller of `/` keeps the JSON service description: the page is only chosen when
//! the `Accept` header prefers `text/html` to `application/json`.

use crate::response::ApiResponse;

const PAGE_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const MARKDOWN_JS: &str = include_str!("markdown.js");
const APP_CSS: &str = include_str!("app.css");
const ICON_SVG: &str = include_str!("icon.svg");

/// The page runs only its own same-origin script and style sheet (no inline code), talks only
/// to this origin, and cannot be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the page for a browser, `json()` (the service description) for everyone else.
/// Both say they depend on `Accept`, so a shared cache keeps them apart.
pub fn index(accept: Option<&str>, json: impl FnOnce() -> ApiResponse) -> ApiResponse {
    let response = if wants_html(accept) { page() } else { json() };
    response.with_header("vary", "accept")
}

/// The chat page itself.
pub fn page() -> ApiResponse {
    hardened(ApiResponse::with_body(
        200,
        "text/html; charset=utf-8",
        PAGE_HTML,
    ))
}

/// One of the page's files under `/ui/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Script,
    /// The Markdown renderer for answers, an ES module imported by the script.
    Markdown,
    Style,
    Icon,
}

impl Asset {
    pub const ALL: [Asset; 4] = [Asset::Script, Asset::Markdown, Asset::Style, Asset::Icon];

    /// Where the page links it (and `routes::route` serves it).
    pub fn path(self) -> &'static str {
        match self {
            Asset::Script => "/ui/app.js",
            Asset::Markdown => "/ui/markdown.js",
            Asset::Style => "/ui/app.css",
            Asset::Icon => "/ui/icon.svg",
        }
    }

    /// The file served at `path` (without its query string), if any.
    pub fn from_path(path: &str) -> Option<Asset> {
        Asset::ALL.into_iter().find(|asset| asset.path() == path)
    }
}

/// `GET /ui/...`: one of the page's files.
pub fn asset(asset: Asset) -> ApiResponse {
    let (content_type, body) = match asset {
        Asset::Script => ("text/javascript; charset=utf-8", APP_JS),
        Asset::Markdown => ("text/javascript; charset=utf-8", MARKDOWN_JS),
        Asset::Style => ("text/css; charset=utf-8", APP_CSS),
        Asset::Icon => ("image/svg+xml", ICON_SVG),
    };
    hardened(ApiResponse::with_body(200, content_type, body))
}

/// Security headers shared by the page and its files. The files change with the component,
/// so caches must check back (`no-cache` revalidates; it does not forbid storing).
fn hardened(response: ApiResponse) -> ApiResponse {
    response
        .with_header("content-security-policy", CONTENT_SECURITY_POLICY)
        .with_header("x-content-type-options", "nosniff")
        .with_header("referrer-policy", "no-referrer")
        .with_header("x-frame-options", "DENY")
        .with_header("cross-origin-opener-policy", "same-origin")
        .with_header("cache-control", "no-cache")
}

/// Whether an `Accept` header ranks `text/html` above `application/json`. A missing header,
/// `*/*` or a tie keep JSON, so programs that never asked for HTML see no change.
pub fn wants_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let html = quality(accept, "text", "html");
    html > 0.0 && html > quality(accept, "application", "json")
}

/// The quality an `Accept` header gives `type/subtype`: that of the most specific media
/// range matching it (RFC 9110 §12.5.1), 0 when none does.
///
/// Written by hand: only media ranges and their `q` parameter matter here, and this keeps a
/// dependency out of the component for a dozen lines.
fn quality(accept: &str, type_: &str, subtype: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or_default().trim();
        let Some((t, s)) = media.split_once('/') else {
            continue;
        };
        let (t, s) = (t.trim(), s.trim());
        let specificity = match (t, s) {
            ("*", "*") => 0,
            (t, "*") if t.eq_ignore_ascii_case(type_) => 1,
            (t, s) if t.eq_ignore_ascii_case(type_) && s.eq_ignore_ascii_case(subtype) => 2,
            _ => continue,
        };
        let q = params
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, value)| value.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(0.0);
        if best.is_none_or(|(known, _)| specificity > known) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHROMIUM: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                            image/avif,image/webp,image/apng,*/*;q=0.8";
    const FIREFOX: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[test]
    fn browsers_get_the_page() {
        assert!(wants_html(Some(CHROMIUM)));
        assert!(wants_html(Some(FIREFOX)));
        assert!(wants_html(Some("text/html")));
        assert!(wants_html(Some("TEXT/HTML; charset=utf-8")));
        assert!(wants_html(Some("text/*, application/json;q=0.5")));
        assert!(wants_html(Some("application/json;q=0.2, text/html;q=0.3")));
    }

    #[test]
    fn everyone_else_keeps_json() {
        assert!(!wants_html(None));
        assert!(!wants_html(Some("")));
        assert!(!wants_html(Some("*/*")));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(Some("application/json, text/html")));
        assert!(!wants_html(Some("text/html;q=0.5, application/json")));
        assert!(!wants_html(Some("text/html;q=0")));
        assert!(!wants_html(Some("text/html;q=abc")));
        assert!(!wants_html(Some("text/plain, */*;q=0.1")));
        // A specific range outranks a wildcard whatever their order.
        assert!(!wants_html(Some("text/*;q=0.9, text/html;q=0, */*")));
    }

    #[test]
    fn index_negotiates_and_varies() {
        let json = || ApiResponse::json(200, &json!({"status": "running"}));
        let r = index(Some(CHROMIUM), json);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("vary"), Some("accept"));
        let r = index(Some("*/*"), json);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("vary"), Some("accept"));
        assert_eq!(r.body, br#"{"status":"running"}"#);
        assert_eq!(r.header("content-security-policy"), None);
    }

    #[test]
    fn the_page_is_hardened_and_self_contained() {
        let r = page();
        assert_eq!(r.status, 200);
        let csp = r.header("content-security-policy").unwrap();
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        let html = String::from_utf8(r.body).unwrap();
        for asset in Asset::ALL {
            let path = asset.path();
            assert!(
                html.contains(&format!("\"{path}\"")),
                "the page links {path}"
            );
        }
        // Nothing from elsewhere, and no inline script or style for the CSP to refuse.
        for text in [PAGE_HTML, APP_JS, MARKDOWN_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
        for handler in ["onclick=", "onload=", "onsubmit=", "onkeydown="] {
            assert!(!html.contains(handler), "inline {handler}");
        }
    }

    #[test]
    fn the_router_serves_every_file_where_the_page_links_it() {
        for asset in Asset::ALL {
            assert_eq!(
                crate::routes::route("GET", asset.path()),
                Ok(crate::routes::Route::Ui(asset))
            );
        }
        assert_eq!(
            crate::routes::route("POST", "/ui/app.js"),
            Err(crate::error::ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert!(crate::routes::route("GET", "/ui/").is_err());
        assert!(crate::routes::route("GET", "/ui/app.js/").is_err());
        assert_eq!(
            crate::routes::route("GET", "/ui/app.css?v=2"),
            Ok(crate::routes::Route::Ui(Asset::Style))
        );
    }

    #[test]
    fn assets_have_their_types() {
        let js = asset(Asset::Script);
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            asset(Asset::Markdown).header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset(Asset::Style).header("content-type"),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(
            asset(Asset::Icon).header("content-type"),
            Some("image/svg+xml")
        );
    }
}
