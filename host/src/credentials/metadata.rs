//! The metadata server of Cloud Run, GCE and GKE: the default service account's token and the
//! project id, asked over plain HTTP with `Metadata-Flavor: Google`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::Instant;

use super::oauth::{self, AccessToken, Failure};
use crate::http_client::{ClientBody, HttpClient, empty_body};

/// Where the metadata server is when `GCE_METADATA_HOST` does not say.
pub(super) const DEFAULT_HOST: &str = "metadata.google.internal";

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const PROJECT_ID_PATH: &str = "/computeMetadata/v1/project/project-id";

/// `host[:port]` of the metadata server: `$GCE_METADATA_HOST`, else [`DEFAULT_HOST`].
pub(super) fn host_from_env() -> String {
    std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

/// Tokens of the instance's default service account.
pub(super) struct MetadataServer {
    host: String,
    /// Where credentials were looked for before, for the error when the server is unreachable.
    searched: String,
}

impl MetadataServer {
    /// The server at `host` (`host[:port]`); `searched` says what was tried before it.
    pub(super) fn new(host: String, searched: String) -> Result<MetadataServer> {
        request(&host, TOKEN_PATH).with_context(|| {
            format!("metadata server address {host:?} (GCE_METADATA_HOST) is not a host[:port]")
        })?;
        Ok(MetadataServer { host, searched })
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The error for an unreachable server: it was the last place to look.
    pub(super) fn nothing_found(&self) -> String {
        format!(
            "no Google credentials: {}, and no metadata server answered (outside Google Cloud, \
             set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`)",
            self.searched
        )
    }

    /// A fresh access token from the metadata server.
    pub(super) async fn fetch(
        &self,
        client: &HttpClient,
        timeout: Duration,
    ) -> Result<AccessToken> {
        let what = format!("metadata server at {}", self.host);
        let request = request(&self.host, TOKEN_PATH)?;
        let requested_at = Instant::now();
        let (status, body) = match oauth::fetch(client, request, timeout, &what).await {
            Ok(answer) => answer,
            Err(Failure::Unreachable(e)) => return Err(e.context(self.nothing_found())),
            Err(Failure::Other(e)) => return Err(e),
        };
        oauth::parse_token(status, &body, requested_at, &what)
    }
}

/// How hard to look for a metadata server before concluding there is none: a few attempts
/// with short pauses, as Google's auth libraries do (the server can be slow to answer in the
/// first moments of an instance).
#[derive(Debug, Clone, Copy)]
pub(super) struct Detection {
    pub attempts: u32,
    /// Bound on each attempt.
    pub timeout: Duration,
    /// Pause before the second attempt; doubled before each later one.
    pub pause: Duration,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            attempts: 3,
            timeout: Duration::from_secs(2),
            pause: Duration::from_millis(200),
        }
    }
}

/// Runs `attempt` until it reaches the server, up to `detection.attempts` times.
async fn retry_unreachable<T>(
    detection: Detection,
    mut attempt: impl AsyncFnMut() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let mut pause = detection.pause;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(Failure::Unreachable(_)) if tries < detection.attempts => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Whether a metadata server answers at `host`: anything it answers with
/// `Metadata-Flavor: Google` counts.
pub(super) async fn detect(client: &HttpClient, host: &str, detection: Detection) -> bool {
    let what = format!("metadata server at {host}");
    let outcome = retry_unreachable(detection, async || {
        let request = request(host, "/").map_err(Failure::Other)?;
        let response = client
            .send(
                request,
                crate::http_client::Timeouts {
                    connect: detection.timeout,
                    first_byte: detection.timeout,
                    between_bytes: detection.timeout,
                },
            )
            .await
            .map_err(|e| Failure::Unreachable(anyhow!("{what}: {e}")))?;
        Ok(response
            .headers()
            .get("metadata-flavor")
            .is_some_and(|v| v == "Google"))
    })
    .await;
    matches!(outcome, Ok(true))
}

/// The project id from the metadata server at `host`; `Ok(None)` when nothing answers there
/// (after the attempts of `detection`).
pub(super) async fn project_id(
    client: &HttpClient,
    host: &str,
    detection: Detection,
) -> Result<Option<String>> {
    let what = format!("metadata server at {host}");
    request(host, PROJECT_ID_PATH).with_context(|| {
        format!("metadata server address {host:?} (GCE_METADATA_HOST) is not a host[:port]")
    })?;
    let answer = retry_unreachable(detection, async || {
        let request = request(host, PROJECT_ID_PATH).map_err(Failure::Other)?;
        oauth::fetch(client, request, detection.timeout, &what).await
    })
    .await;
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(Failure::Unreachable(_)) => return Ok(None),
        Err(Failure::Other(e)) => return Err(e.context("cannot read the project id")),
    };
    if !status.is_success() {
        bail!(
            "{what} answered {status} to {PROJECT_ID_PATH}: {}",
            oauth::refusal_detail(&body)
        );
    }
    let id = std::str::from_utf8(&body)
        .map_err(|_| anyhow!("{what} answered a project id that is not UTF-8"))?
        .trim();
    if id.is_empty() {
        bail!("{what} answered an empty project id");
    }
    Ok(Some(id.to_owned()))
}

fn request(host: &str, path: &str) -> Result<http::Request<ClientBody>> {
    let uri: http::Uri = format!("http://{host}{path}").parse()?;
    if uri.path() != path || uri.authority().is_none_or(|a| a.as_str() != host) {
        bail!("not a host[:port]");
    }
    Ok(http::Request::get(uri)
        .header("Metadata-Flavor", "Google")
        .body(empty_body())?)
}
