//! Google credentials held by the host: the component never sees them.
//!
//! [`Credentials`] hands out OAuth2 access tokens for Vertex AI, either a fixed token or ones
//! obtained through Application Default Credentials ([`adc`]): a service-account key, a gcloud
//! authorized-user file, an external account (Workload Identity Federation) or the metadata
//! server. Obtained tokens are cached and refreshed by [`cache::TokenCache`], once for all
//! concurrent callers.

mod adc;
mod authorized_user;
mod cache;
mod external_account;
mod metadata;
mod oauth;
mod service_account;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::http_client::HttpClient;
use crate::logging::RequestContext;
use cache::TokenCache;
use metadata::Detection;

/// A source of OAuth2 access tokens for Vertex AI. `Send + Sync`; share it as `Arc<Credentials>`.
pub struct Credentials {
    kind: Kind,
    description: String,
    quota_project: Option<String>,
}

enum Kind {
    Static(String),
    Refreshing(TokenCache),
}

impl Credentials {
    /// A fixed token (the `access_token` variable), for local use. Never refreshed.
    pub fn from_static(token: String) -> Credentials {
        Credentials {
            kind: Kind::Static(token),
            description: "static token".to_owned(),
            quota_project: None,
        }
    }

    /// Application Default Credentials, looked up in Google's order: the JSON file named by
    /// `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's `application_default_credentials.json`
    /// (in `$CLOUDSDK_CONFIG`, else `$HOME/.config/gcloud`), then the metadata server at
    /// `$GCE_METADATA_HOST` or `metadata.google.internal`.
    ///
    /// Files are read and checked here, so a broken file is a startup error naming it. The
    /// metadata server is asked whether it is there (a few attempts over about a second, as
    /// Google's libraries do); if it is not, the error says where credentials were looked for.
    pub async fn discover(client: HttpClient) -> Result<Credentials> {
        Credentials::discover_in(client, &adc::AdcEnv::from_process(), Tuning::default()).await
    }

    async fn discover_in(
        client: HttpClient,
        env: &adc::AdcEnv,
        tuning: Tuning,
    ) -> Result<Credentials> {
        let found = adc::discover(env)?;
        if let adc::Source::Metadata(server) = &found.source
            && !metadata::detect(&client, server.host(), tuning.detection).await
        {
            anyhow::bail!("{}", server.nothing_found());
        }
        Ok(Credentials {
            kind: Kind::Refreshing(TokenCache::new(found.source, client, tuning)),
            description: found.description,
            quota_project: found.quota_project,
        })
    }

    /// A valid access token. Obtained tokens are cached. With less than 3 min 45 s of life
    /// left, the cached token is still returned while one refresh runs in the background;
    /// with less than 30 s left (or none yet, or after [`invalidate`](Self::invalidate)),
    /// callers wait for the refresh. Concurrent callers share one refresh, bounded by a 10 s
    /// timeout; its failure is an error for every caller waiting on it, and the next call
    /// tries again.
    pub async fn token(&self) -> Result<String> {
        self.token_as_part_of(None).await
    }

    /// [`token`](Self::token) for a call made while serving `request`: a refresh it starts
    /// logs its failure as part of that request.
    pub async fn token_for(&self, request: &Arc<RequestContext>) -> Result<String> {
        self.token_as_part_of(Some(request)).await
    }

    async fn token_as_part_of(&self, request: Option<&Arc<RequestContext>>) -> Result<String> {
        match &self.kind {
            Kind::Static(token) => Ok(token.clone()),
            Kind::Refreshing(cache) => cache.token(request).await,
        }
    }

    /// Vertex AI answered 401 to `token`: forgets it if it is still the cached token, so the
    /// next [`token`](Self::token) refreshes. A token already replaced is ignored, so many 401s
    /// for the same token cause one refresh.
    pub fn invalidate(&self, token: &str) {
        if let Kind::Refreshing(cache) = &self.kind {
            cache.invalidate(token);
        }
    }

    /// Where tokens come from, for logs; never secret.
    pub fn describe(&self) -> String {
        match &self.quota_project {
            Some(project) => format!("{}, quota project {project}", self.description),
            None => self.description.clone(),
        }
    }

    /// The project to bill for API calls (sent as `x-goog-user-project`): the credentials
    /// file's `quota_project_id`, or `$GOOGLE_CLOUD_QUOTA_PROJECT`. Needed with user
    /// credentials, whose OAuth client belongs to Google rather than to the caller's project.
    pub fn quota_project(&self) -> Option<&str> {
        self.quota_project.as_deref()
    }
}

/// The project id from the metadata server at `$GCE_METADATA_HOST` or
/// `metadata.google.internal`, asked a few times with a short timeout; `Ok(None)` when no
/// metadata server answers.
pub async fn project_id_from_metadata(client: &HttpClient) -> Result<Option<String>> {
    metadata::project_id(client, &metadata::host_from_env(), Detection::default()).await
}

/// Remaining life below which a cached token is refreshed: 3 min 45 s, the margin Google's
/// auth libraries use (the metadata server renews its own cached token 4 minutes before expiry,
/// so a refresh then gets a new token, not the same one).
const REFRESH_MARGIN: Duration = Duration::from_secs(225);

/// Timing of token refreshes; shortened in tests.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Bound on one token request, connect to last byte.
    request_timeout: Duration,
    /// Remaining life below which a background refresh starts.
    refresh_margin: Duration,
    /// Remaining life below which a cached token is no longer handed out.
    min_remaining: Duration,
    /// Pause after a failed background refresh before the next one (callers that have no
    /// usable token always try at once).
    background_retry: Duration,
    /// How discovery looks for the metadata server.
    detection: Detection,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            request_timeout: Duration::from_secs(10),
            refresh_margin: REFRESH_MARGIN,
            // Leaves a request that gets the token time to reach Vertex AI, with clock skew.
            min_remaining: Duration::from_secs(30),
            background_retry: Duration::from_secs(5),
            detection: Detection::default(),
        }
    }
}
