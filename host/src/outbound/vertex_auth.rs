//! With `credentials = "runtime"`, the host authenticates the component's Vertex AI requests:
//! which credentials, for which endpoint, and the project id they imply.

use std::sync::Arc;

use anyhow::{Context, Result};
use http::Uri;

use crate::credentials::{self, Credentials};
use crate::http_client::HttpClient;
use crate::logging;
use crate::variables::AppVariables;

/// Adds Google credentials to requests for one origin (the configured Vertex AI endpoint).
pub struct VertexAuth {
    /// `host[:port]` of the Vertex AI endpoint, lowercase.
    pub authority: String,
    pub credentials: Arc<Credentials>,
}

impl VertexAuth {
    pub(super) fn applies_to(&self, uri: &Uri) -> bool {
        uri.authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(&self.authority))
    }
}

/// `None` unless `credentials = "runtime"`. Then the credentials are the static `access_token`
/// variable if set, else Application Default Credentials; the project id comes from the
/// `project_id` variable, else from the metadata server.
pub async fn configure(
    values: &mut AppVariables,
    client: &HttpClient,
) -> Result<Option<VertexAuth>> {
    if values.get("credentials") != Some("runtime") {
        return Ok(None);
    }
    let credentials = match values.get("access_token").filter(|t| !t.is_empty()) {
        Some(token) => Credentials::from_static(token.to_owned()),
        None => Credentials::discover(client.clone())
            .await
            .context("cannot load Google credentials (credentials = \"runtime\")")?,
    };
    if values.get("project_id").is_none_or(str::is_empty) {
        let project = credentials::project_id_from_metadata(client)
            .await?
            .context(
                "no project id: set SPIN_VARIABLE_PROJECT_ID (no metadata server was found to ask)",
            )?;
        values.set("project_id", project);
    }
    let authority = vertex_authority(
        values.get("vertex_endpoint").unwrap_or_default(),
        values.get("location").unwrap_or("global"),
    )?;
    logging::info(&format!(
        "authenticating requests to {authority} with {}",
        credentials.describe()
    ));
    // Fetch the first token now, so that credentials that are refused show in the startup log
    // rather than on the first chat. Later calls share this refresh.
    let credentials = Arc::new(credentials);
    let warm = credentials.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.token().await {
            logging::warn(&format!("cannot obtain Google credentials yet: {e:#}"));
        }
    });
    Ok(Some(VertexAuth {
        authority,
        credentials,
    }))
}

/// `host[:port]` the component sends Vertex AI requests to, by the component's own rule: the
/// Google default endpoint becomes the regional host when `location` is a region.
fn vertex_authority(endpoint: &str, location: &str) -> Result<String> {
    const GLOBAL: &str = "https://aiplatform.googleapis.com";
    let endpoint = endpoint.trim_end_matches('/');
    let url = if (endpoint.is_empty() || endpoint == GLOBAL) && location != "global" {
        format!("https://{location}-aiplatform.googleapis.com")
    } else if endpoint.is_empty() {
        GLOBAL.to_owned()
    } else {
        endpoint.to_owned()
    };
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("vertex_endpoint {url:?} is not a URL"))?;
    Ok(uri
        .authority()
        .with_context(|| format!("vertex_endpoint {url:?} has no host"))?
        .as_str()
        .to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_authority_follows_the_component_rule() {
        assert_eq!(
            vertex_authority("", "global").unwrap(),
            "aiplatform.googleapis.com"
        );
        assert_eq!(
            vertex_authority("https://aiplatform.googleapis.com", "us-central1").unwrap(),
            "us-central1-aiplatform.googleapis.com"
        );
        assert_eq!(
            vertex_authority("http://127.0.0.1:9000/", "us-central1").unwrap(),
            "127.0.0.1:9000"
        );
        assert!(vertex_authority("not a url", "global").is_err());
    }
}
