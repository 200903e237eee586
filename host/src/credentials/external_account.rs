//! External-account files (Workload Identity Federation: GitHub Actions, another cloud, a
//! Kubernetes cluster): a token from another identity provider (the subject token, read from a
//! file or a URL) is exchanged at Google's Security Token Service for a federated access token
//! (RFC 8693 token exchange), which may then impersonate a service account through the IAM
//! Credentials API. AWS and executable-sourced subject tokens are not supported.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use tokio::time::Instant;

use super::oauth::{self, AccessToken};
use super::service_account::SCOPE;
use crate::http_client::{HttpClient, empty_body, full_body};

/// Google's Security Token Service, used when the file names none.
const GOOGLE_STS_URI: &str = "https://sts.googleapis.com/v1/token";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Lifetime asked of an impersonated token when the file does not say: the IAM default maximum.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The fields of a `"type": "external_account"` file that are used.
#[derive(Deserialize)]
pub(super) struct ExternalAccountFile {
    audience: String,
    subject_token_type: String,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    service_account_impersonation: Option<ImpersonationOptions>,
    credential_source: CredentialSourceFile,
    /// Workforce pools: the project billed for the exchange when no service account is
    /// impersonated.
    workforce_pool_user_project: Option<String>,
}

#[derive(Deserialize)]
struct ImpersonationOptions {
    token_lifetime_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct CredentialSourceFile {
    file: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    format: Option<FormatFile>,
    environment_id: Option<String>,
    executable: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct FormatFile {
    #[serde(rename = "type")]
    kind: String,
    subject_token_field_name: Option<String>,
}

/// Where the subject token is read, each time a token is needed (providers rotate it).
enum SubjectSource {
    File(PathBuf),
    Url {
        url: String,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
}

/// How the subject token is written at its source.
enum SubjectFormat {
    Text,
    /// A JSON object; the token is this field.
    Json(String),
}

/// Service-account impersonation after the exchange.
struct Impersonation {
    url: String,
    lifetime: Duration,
}

/// A configured external account.
pub(super) struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: String,
    source: SubjectSource,
    format: SubjectFormat,
    impersonation: Option<Impersonation>,
    workforce_pool_user_project: Option<String>,
}

impl ExternalAccount {
    /// Checks the file's fields; subject tokens are read only when a token is needed.
    pub(super) fn new(file: ExternalAccountFile) -> Result<ExternalAccount> {
        if file.audience.is_empty() {
            bail!("audience is empty");
        }
        if file.subject_token_type.is_empty() {
            bail!("subject_token_type is empty");
        }
        let source = file.credential_source;
        if source.environment_id.is_some() {
            bail!(
                "credential_source.environment_id (AWS) is not supported; use a file- or \
                 URL-sourced credential"
            );
        }
        if source.executable.is_some() {
            bail!(
                "credential_source.executable is not supported; use a file- or URL-sourced \
                 credential"
            );
        }
        let subject = match (source.file, source.url) {
            (Some(path), None) => SubjectSource::File(path),
            (None, Some(url)) => {
                check_url(&url).context("credential_source.url")?;
                let headers = source
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        Ok((
                            http::HeaderName::try_from(name.as_str())?,
                            http::HeaderValue::try_from(value.as_str())?,
                        ))
                    })
                    .collect::<Result<_>>()
                    .context("credential_source.headers")?;
                SubjectSource::Url { url, headers }
            }
            (Some(_), Some(_)) => bail!("credential_source has both file and url"),
            (None, None) => bail!("credential_source has neither file nor url"),
        };
        let format = match source.format {
            None => SubjectFormat::Text,
            Some(f) if f.kind == "text" => SubjectFormat::Text,
            Some(f) if f.kind == "json" => SubjectFormat::Json(
                f.subject_token_field_name
                    .filter(|n| !n.is_empty())
                    .context("credential_source.format.subject_token_field_name is missing")?,
            ),
            Some(f) => bail!(
                "credential_source.format.type {:?} is not \"text\" or \"json\"",
                f.kind
            ),
        };
        let token_url = match file.token_url.filter(|u| !u.is_empty()) {
            Some(url) => {
                check_url(&url).context("token_url")?;
                url
            }
            None => GOOGLE_STS_URI.to_owned(),
        };
        let impersonation = match file.service_account_impersonation_url {
            Some(url) if !url.is_empty() => {
                check_url(&url).context("service_account_impersonation_url")?;
                let lifetime = file
                    .service_account_impersonation
                    .and_then(|o| o.token_lifetime_seconds)
                    .map_or(DEFAULT_LIFETIME, Duration::from_secs);
                Some(Impersonation { url, lifetime })
            }
            _ => None,
        };
        Ok(ExternalAccount {
            audience: file.audience,
            subject_token_type: file.subject_token_type,
            token_url,
            source: subject,
            format,
            impersonation,
            workforce_pool_user_project: file.workforce_pool_user_project,
        })
    }

    /// For logs: the pool and, if any, the impersonated service account.
    pub(super) fn describe(&self) -> String {
        match &self.impersonation {
            Some(i) => format!(
                "external account {} as {}",
                self.audience,
                service_account_of(&i.url)
            ),
            None => format!("external account {}", self.audience),
        }
    }

    /// A fresh access token: subject token, exchange, then impersonation if configured.
    pub(super) async fn fetch(
        &self,
        client: &HttpClient,
        timeout: Duration,
    ) -> Result<AccessToken> {
        let subject = self.subject_token(client, timeout).await?;
        let federated = self.exchange(client, &subject, timeout).await?;
        match &self.impersonation {
            None => Ok(federated),
            Some(impersonation) => {
                impersonate(client, impersonation, &federated.value, timeout).await
            }
        }
    }

    async fn subject_token(&self, client: &HttpClient, timeout: Duration) -> Result<String> {
        let (text, origin) = match &self.source {
            SubjectSource::File(path) => {
                let text = std::fs::read(path).with_context(|| {
                    format!("cannot read the subject token file {}", path.display())
                })?;
                (text, path.display().to_string())
            }
            SubjectSource::Url { url, headers } => {
                let mut request = http::Request::get(url.as_str());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let request = request
                    .body(empty_body())
                    .with_context(|| format!("invalid subject token URL {url}"))?;
                let what = format!("subject token URL {url}");
                let (status, body) = oauth::fetch(client, request, timeout, &what).await?;
                if !status.is_success() {
                    bail!("{what} answered {status}: {}", oauth::refusal_detail(&body));
                }
                (body.to_vec(), url.clone())
            }
        };
        // The token is a secret: errors say what is wrong with it, never what it is.
        let token = match &self.format {
            SubjectFormat::Text => String::from_utf8(text)
                .map_err(|_| anyhow!("the subject token from {origin} is not UTF-8"))?,
            SubjectFormat::Json(field) => {
                let json: serde_json::Value = serde_json::from_slice(&text)
                    .map_err(|_| anyhow!("the subject token from {origin} is not JSON"))?;
                json.get(field)
                    .and_then(serde_json::Value::as_str)
                    .with_context(|| {
                        format!("the subject token from {origin} has no string field {field:?}")
                    })?
                    .to_owned()
            }
        };
        let token = token.trim();
        if token.is_empty() {
            bail!("the subject token from {origin} is empty");
        }
        Ok(token.to_owned())
    }

    /// RFC 8693 token exchange at the Security Token Service.
    async fn exchange(
        &self,
        client: &HttpClient,
        subject: &str,
        timeout: Duration,
    ) -> Result<AccessToken> {
        let options = match (&self.impersonation, &self.workforce_pool_user_project) {
            (None, Some(project)) => {
                Some(serde_json::json!({ "userProject": project }).to_string())
            }
            _ => None,
        };
        let mut fields = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("audience", &self.audience),
            ("scope", SCOPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token", subject),
            ("subject_token_type", &self.subject_token_type),
        ];
        if let Some(options) = &options {
            fields.push(("options", options));
        }
        oauth::post_form(client, &self.token_url, oauth::form(&fields), timeout).await
    }
}

/// The IAM Credentials API's `generateAccessToken`, called with the federated token.
async fn impersonate(
    client: &HttpClient,
    impersonation: &Impersonation,
    federated: &str,
    timeout: Duration,
) -> Result<AccessToken> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        access_token: String,
    }
    let url = &impersonation.url;
    let body = serde_json::json!({
        "scope": [SCOPE],
        "lifetime": format!("{}s", impersonation.lifetime.as_secs()),
    });
    let request = http::Request::post(url.as_str())
        .header(AUTHORIZATION, format!("Bearer {federated}"))
        .header(CONTENT_TYPE, "application/json")
        .body(full_body(Bytes::from(body.to_string())))
        .with_context(|| format!("invalid service_account_impersonation_url {url}"))?;
    let requested_at = Instant::now();
    let (status, body) = oauth::fetch(client, request, timeout, url).await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", oauth::refusal_detail(&body));
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|_| anyhow!("{url} answered {status} without a usable accessToken"))?;
    if answer.access_token.is_empty() {
        bail!("{url} answered {status} with an empty accessToken");
    }
    // The token lives exactly the lifetime asked for (IAM refuses longer ones rather than
    // shortening them), counted from the request so that clock skew cannot stretch it.
    Ok(AccessToken {
        value: answer.access_token,
        expires_at: requested_at + impersonation.lifetime,
    })
}

/// `https://.../serviceAccounts/SA:generateAccessToken` → `SA`, for logs.
fn service_account_of(url: &str) -> &str {
    url.rsplit('/')
        .next()
        .and_then(|last| last.split(':').next())
        .unwrap_or(url)
}

fn check_url(url: &str) -> Result<()> {
    let parsed: Option<http::Uri> = url.parse().ok();
    if !parsed.is_some_and(|u| {
        matches!(u.scheme_str(), Some("https" | "http")) && u.authority().is_some()
    }) {
        bail!("{url:?} is not an http(s) URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_names_come_from_the_impersonation_url() {
        assert_eq!(
            service_account_of(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
            ),
            "sa@p.iam.gserviceaccount.com"
        );
    }
}
