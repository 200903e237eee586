//! Application Default Credentials discovery: which source of tokens to use, in Google's
//! order, and the checks that make a broken credentials file a startup error naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::authorized_user::{AuthorizedUser, AuthorizedUserFile};
use super::external_account::{ExternalAccount, ExternalAccountFile};
use super::metadata::{self, MetadataServer};
use super::oauth::{AccessToken, GOOGLE_TOKEN_URI};
use super::service_account::{ServiceAccount, ServiceAccountFile};
use crate::http_client::HttpClient;

/// File name of gcloud's Application Default Credentials in its config folder.
const GCLOUD_ADC_FILE: &str = "application_default_credentials.json";

/// What discovery reads from the environment; tests build their own.
pub(super) struct AdcEnv {
    /// `$GOOGLE_APPLICATION_CREDENTIALS`.
    pub credentials_file: Option<PathBuf>,
    /// gcloud's config folder: `$CLOUDSDK_CONFIG`, else `$HOME/.config/gcloud`.
    pub gcloud_dir: Option<PathBuf>,
    /// `host[:port]` of the metadata server.
    pub metadata_host: String,
    /// `$GOOGLE_CLOUD_QUOTA_PROJECT`: overrides a file's `quota_project_id`.
    pub quota_project: Option<String>,
}

impl AdcEnv {
    /// The process environment. Empty variables count as unset.
    pub fn from_process() -> AdcEnv {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        AdcEnv {
            credentials_file: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            gcloud_dir: var("CLOUDSDK_CONFIG")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| Path::new(&home).join(".config/gcloud"))),
            metadata_host: metadata::host_from_env(),
            quota_project: var("GOOGLE_CLOUD_QUOTA_PROJECT")
                .map(|v| v.to_string_lossy().into_owned()),
        }
    }
}

/// Where tokens come from.
pub(super) enum Source {
    ServiceAccount(ServiceAccount),
    AuthorizedUser(AuthorizedUser),
    ExternalAccount(ExternalAccount),
    Metadata(MetadataServer),
}

impl Source {
    /// A fresh token, within `timeout` for the HTTP exchange.
    pub async fn fetch(&self, client: &HttpClient, timeout: Duration) -> Result<AccessToken> {
        match self {
            Source::ServiceAccount(account) => account.fetch(client, timeout).await,
            Source::AuthorizedUser(user) => user.fetch(client, timeout).await,
            Source::ExternalAccount(account) => account.fetch(client, timeout).await,
            Source::Metadata(server) => server.fetch(client, timeout).await,
        }
    }
}

/// The source discovery chose, and how to name it in logs.
pub(super) struct Found {
    pub source: Source,
    pub description: String,
    /// The project billed for the calls (`x-goog-user-project`), when the credentials name one.
    pub quota_project: Option<String>,
}

/// Application Default Credentials in Google's order. Files are read and checked now; the
/// metadata server only when asked for a token.
pub(super) fn discover(env: &AdcEnv) -> Result<Found> {
    let mut found = discover_source(env)?;
    if let Some(project) = env.quota_project.as_ref().filter(|p| !p.is_empty()) {
        found.quota_project = Some(project.clone());
    }
    Ok(found)
}

fn discover_source(env: &AdcEnv) -> Result<Found> {
    if let Some(path) = &env.credentials_file {
        let origin = format!("GOOGLE_APPLICATION_CREDENTIALS={}", path.display());
        let text = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the credentials file {} named by GOOGLE_APPLICATION_CREDENTIALS",
                path.display()
            )
        })?;
        return from_file(&text, path, &origin);
    }
    let searched = match &env.gcloud_dir {
        Some(dir) => {
            let path = dir.join(GCLOUD_ADC_FILE);
            match std::fs::read(&path) {
                Ok(text) => {
                    let origin = format!("gcloud ADC file {}", path.display());
                    return from_file(&text, &path, &origin);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                    "GOOGLE_APPLICATION_CREDENTIALS is not set and {} does not exist",
                    path.display()
                ),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot read the gcloud credentials file {}", path.display())
                    });
                }
            }
        }
        None => "GOOGLE_APPLICATION_CREDENTIALS, CLOUDSDK_CONFIG and HOME are not set".to_owned(),
    };
    let server = MetadataServer::new(env.metadata_host.clone(), searched)?;
    Ok(Found {
        description: format!("metadata server ({})", server.host()),
        source: Source::Metadata(server),
        quota_project: None,
    })
}

/// The `type`s of credentials files ion-host reads.
const SUPPORTED: &str = "\"service_account\", \"authorized_user\", \"external_account\"";

/// A source from the text of a credentials file; errors name `path`, never a secret.
fn from_file(text: &[u8], path: &Path, origin: &str) -> Result<Found> {
    let in_file = || format!("credentials file {}", path.display());
    let json: serde_json::Value =
        serde_json::from_slice(text).with_context(|| format!("{} is not valid JSON", in_file()))?;
    let kind = json.get("type").and_then(serde_json::Value::as_str);
    let quota_project = json
        .get("quota_project_id")
        .and_then(serde_json::Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let (source, description) = match kind {
        Some("service_account") => {
            let account = serde_json::from_value::<ServiceAccountFile>(json)
                .map_err(anyhow::Error::from)
                .and_then(ServiceAccount::new)
                .with_context(|| format!("invalid service account key in {}", in_file()))?;
            let description = format!(
                "service account {} ({origin}{})",
                account.client_email(),
                endpoint_note(account.token_uri())
            );
            (Source::ServiceAccount(account), description)
        }
        Some("authorized_user") => {
            let user = serde_json::from_value::<AuthorizedUserFile>(json)
                .map_err(anyhow::Error::from)
                .and_then(AuthorizedUser::new)
                .with_context(|| format!("invalid authorized user in {}", in_file()))?;
            let description = format!(
                "authorized user ({origin}{})",
                endpoint_note(user.token_uri())
            );
            (Source::AuthorizedUser(user), description)
        }
        Some("external_account") => {
            let account = serde_json::from_value::<ExternalAccountFile>(json)
                .map_err(anyhow::Error::from)
                .and_then(ExternalAccount::new)
                .with_context(|| format!("invalid external account in {}", in_file()))?;
            let description = format!("{} ({origin})", account.describe());
            (Source::ExternalAccount(account), description)
        }
        Some(other) => bail!(
            "{} has unsupported credentials type {other:?} (supported: {SUPPORTED})",
            in_file()
        ),
        None => bail!(
            "{} has no \"type\" field (supported: {SUPPORTED})",
            in_file()
        ),
    };
    Ok(Found {
        source,
        description,
        quota_project,
    })
}

/// `", token endpoint X"` when a file names an endpoint other than Google's.
fn endpoint_note(token_uri: &str) -> String {
    if token_uri == GOOGLE_TOKEN_URI {
        String::new()
    } else {
        format!(", token endpoint {token_uri}")
    }
}
