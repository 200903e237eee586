//! Maps a request line onto a Vertex AI model call, and knows which models exist.

/// What a recognised request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub project: String,
    pub location: String,
    pub model: String,
    pub rpc: Rpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `:generateContent`, one JSON object.
    Generate,
    /// `:streamGenerateContent`; `sse` when the query has `alt=sse`, otherwise a streamed JSON array.
    Stream { sse: bool },
}

/// Model id prefixes of the families Google has shut down on Vertex AI (every 1.x, 2.0 and 2.5
/// model, the last of them on 2026-10-16, and the unversioned 1.0 aliases): any id starting
/// with one of them answers 404 NOT_FOUND, as the real service does.
pub const RETIRED_FAMILIES: &[&str] = &[
    "gemini-1.",
    "gemini-2.0",
    "gemini-2.5",
    "gemini-pro",
    "gemini-ultra",
];

/// Models Google serves today (read 2026-12-01). Any other `gemini-N…` id with N ≥ 3 is
/// served too, so the next model can be tried before this list knows it.
pub const SERVED_MODELS: &[&str] = &[
    "gemini-3.5-flash",
    "gemini-3.5-flash-lite",
    "gemini-3.1-flash-lite",
];

/// Whether a model id is one Vertex AI answers today: `gemini-` followed by a major version of
/// 3 or later (`gemini-3-flash`, `gemini-3.5-flash-lite`, `gemini-4-pro`, …) and not retired.
pub fn model_is_served(model: &str) -> bool {
    if RETIRED_FAMILIES
        .iter()
        .any(|prefix| model.starts_with(prefix))
    {
        return false;
    }
    let Some(version) = model.strip_prefix("gemini-") else {
        return false;
    };
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|major| major >= 3)
}

/// Whether a served model is a Pro model (which only thinks at `LOW` or `HIGH`).
pub fn is_pro(model: &str) -> bool {
    model.split('-').any(|word| word == "pro")
}

impl Call {
    /// The resource name used in Google's messages.
    pub fn resource(&self) -> String {
        format!(
            "projects/{}/locations/{}/publishers/google/models/{}",
            self.project, self.location, self.model
        )
    }

    /// The RPC method name, as it appears in error details.
    pub fn rpc_name(&self) -> &'static str {
        match self.rpc {
            Rpc::Generate => "GenerateContent",
            Rpc::Stream { .. } => "StreamGenerateContent",
        }
    }

    pub fn model_available(&self) -> bool {
        model_is_served(&self.model)
    }
}

/// Recognises `POST /v1/projects/P/locations/L/publishers/google/models/M:VERB[?query]`
/// (`v1beta1` too). Anything else is `None`, which the server answers with 404.
pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> Option<Call> {
    if method != http::Method::POST {
        return None;
    }
    let rest = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v1beta1/"))?;
    // Some clients percent-encode the ':' before the verb.
    let rest = rest.replace("%3A", ":").replace("%3a", ":");
    let segments: Vec<&str> = rest.split('/').collect();
    let [
        "projects",
        project,
        "locations",
        location,
        "publishers",
        "google",
        "models",
        last,
    ] = segments.as_slice()
    else {
        return None;
    };
    let (model, verb) = last.split_once(':')?;
    if project.is_empty() || location.is_empty() || model.is_empty() {
        return None;
    }
    let rpc = match verb {
        "generateContent" => Rpc::Generate,
        "streamGenerateContent" => Rpc::Stream {
            sse: query_has(query, "alt", "sse"),
        },
        _ => return None,
    };
    Some(Call {
        project: project.to_string(),
        location: location.to_string(),
        model: model.to_string(),
        rpc,
    })
}

fn query_has(query: Option<&str>, key: &str, value: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| k == key && v == value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    const BASE: &str =
        "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-3.5-flash";

    #[test]
    fn recognises_generate_and_stream() {
        let call = parse(&Method::POST, &format!("{BASE}:generateContent"), None).unwrap();
        assert_eq!(call.project, "proj");
        assert_eq!(call.location, "us-central1");
        assert_eq!(call.model, "gemini-3.5-flash");
        assert_eq!(call.rpc, Rpc::Generate);
        assert_eq!(
            call.resource(),
            "projects/proj/locations/us-central1/publishers/google/models/gemini-3.5-flash"
        );

        let sse = parse(
            &Method::POST,
            &format!("{BASE}:streamGenerateContent"),
            Some("alt=sse"),
        )
        .unwrap();
        assert_eq!(sse.rpc, Rpc::Stream { sse: true });
        let array = parse(
            &Method::POST,
            &format!("{BASE}:streamGenerateContent"),
            None,
        )
        .unwrap();
        assert_eq!(array.rpc, Rpc::Stream { sse: false });
        let other_alt = parse(
            &Method::POST,
            &format!("{BASE}:streamGenerateContent"),
            Some("key=x&alt=json"),
        )
        .unwrap();
        assert_eq!(other_alt.rpc, Rpc::Stream { sse: false });
    }

    #[test]
    fn accepts_encoded_colon_and_v1beta1() {
        let call = parse(&Method::POST, &format!("{BASE}%3AgenerateContent"), None).unwrap();
        assert_eq!(call.rpc, Rpc::Generate);
        let beta = BASE.replace("/v1/", "/v1beta1/");
        assert!(parse(&Method::POST, &format!("{beta}:generateContent"), None).is_some());
    }

    #[test]
    fn rejects_other_shapes() {
        let generate = format!("{BASE}:generateContent");
        assert!(parse(&Method::GET, &generate, None).is_none());
        assert!(parse(&Method::POST, BASE, None).is_none());
        assert!(parse(&Method::POST, &format!("{BASE}:predict"), None).is_none());
        assert!(parse(&Method::POST, "/", None).is_none());
        assert!(parse(&Method::POST, &generate.replace("/v1/", "/v2/"), None).is_none());
        assert!(
            parse(
                &Method::POST,
                &generate.replace("google", "anthropic"),
                None
            )
            .is_none()
        );
        assert!(parse(&Method::POST, &format!("{generate}/extra"), None).is_none());
        assert!(
            parse(
                &Method::POST,
                "/v1/projects//locations/l/publishers/google/models/m:generateContent",
                None
            )
            .is_none()
        );
    }

    #[test]
    fn retired_and_foreign_models_are_unavailable() {
        let mut call = parse(&Method::POST, &format!("{BASE}:generateContent"), None).unwrap();
        assert!(call.model_available());
        for model in [
            "gemini-1.0-pro",
            "gemini-1.5-flash-002",
            "gemini-1.5-pro",
            "gemini-2.0-flash-001",
            "gemini-2.0-flash-lite",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-2.5-pro",
            "gemini-2.5-flash-preview-09-2025",
            "gemini-pro",
            "gemini-pro-vision",
            "gemini-2-flash",
            "gemini-flash-latest",
            "gemini-",
            "gemini",
            "claude-3",
            "text-bison",
        ] {
            call.model = model.to_string();
            assert!(!call.model_available(), "{model}");
        }
        for model in SERVED_MODELS.iter().copied().chain([
            "gemini-3-flash",
            "gemini-3.0-pro",
            "gemini-3.5-flash-001",
            "gemini-3.8-flash",
            "gemini-4-flash",
            "gemini-10-ultra",
        ]) {
            call.model = model.to_string();
            assert!(call.model_available(), "{model}");
        }
    }

    #[test]
    fn pro_models_are_recognised() {
        assert!(is_pro("gemini-3-pro"));
        assert!(is_pro("gemini-3.1-pro-preview"));
        assert!(!is_pro("gemini-3.5-flash"));
        assert!(!is_pro("gemini-3-prod-flash"));
    }
}
