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

/// Models that answer 404 like Google does since they were shut down.
pub const RETIRED_MODELS: &[&str] = &[
    "gemini-1.5-flash-002",
    "gemini-1.5-pro-002",
    "gemini-2.0-flash-001",
];

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
        self.model.starts_with("gemini-") && !RETIRED_MODELS.contains(&self.model.as_str())
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
        "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash";

    #[test]
    fn recognises_generate_and_stream() {
        let call = parse(&Method::POST, &format!("{BASE}:generateContent"), None).unwrap();
        assert_eq!(call.project, "proj");
        assert_eq!(call.location, "us-central1");
        assert_eq!(call.model, "gemini-2.5-flash");
        assert_eq!(call.rpc, Rpc::Generate);
        assert_eq!(
            call.resource(),
            "projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash"
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
        for model in RETIRED_MODELS.iter().chain(&["claude-3", "text-bison"]) {
            call.model = model.to_string();
            assert!(!call.model_available(), "{model}");
        }
    }
}
